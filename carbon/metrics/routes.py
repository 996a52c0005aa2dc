"""``GET /metrics``: the Prometheus text format, for a scraper that shows the metrics token
(``DIANDIAN_METRICS_TOKEN``) or, when no token is set, for a client on this machine that came
through no proxy."""
from __future__ import annotations

import hmac
import ipaddress
import os

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from carbon.accounts.auth import bearer_token
from carbon.core import extensions as ext
from carbon.core.errors import AuthenticationError, PermissionDenied
from carbon.metrics.collector import DatabaseCollector

bp = Blueprint("metrics", __name__)


class MetricsTokenRequired(AuthenticationError):
    code = "metrics.token_required"
    message = "需要指标访问令牌 / The metrics token is required (Authorization: Bearer <DIANDIAN_METRICS_TOKEN>)"


class MetricsLocalOnly(PermissionDenied):
    code = "metrics.local_only"
    message = ("未设置指标令牌时仅限本机直接访问 / Without DIANDIAN_METRICS_TOKEN only a client on this machine, "
               "not through a proxy, may read the metrics")


@bp.get("/metrics")
def metrics() -> Response:
    _check_access()
    registry = CollectorRegistry()
    registry.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        counted = CollectorRegistry()
        multiprocess.MultiProcessCollector(counted)
        body = generate_latest(counted)
    else:
        body = generate_latest(REGISTRY)
    body += generate_latest(registry)
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


def _check_access() -> None:
    expected = ext.settings().METRICS_TOKEN
    if expected:
        given = bearer_token() or ""
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise MetricsTokenRequired()
        return
    forwarded = any(name in request.headers for name in ("X-Forwarded-For", "X-Real-IP", "Forwarded"))
    if forwarded or not _loopback(request.remote_addr):
        raise MetricsLocalOnly()


def _loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
