"""Liveness (/healthz) and readiness (/readyz).

/readyz checks each part the service uses and says ``ok`` or ``down`` for each. The database is
required: without it nothing can be served, so the answer is 503 and the load balancer takes the
instance out. Redis (when configured) is not: rate limits, the access token and the other Redis
users fall back (carbon/core/fallback.py), so the answer stays 200 with ``"status": "degraded"``.
"""
from __future__ import annotations

import logging

from flask import Blueprint, jsonify
from sqlalchemy import text

from carbon.core import extensions as ext
from carbon.core.db import db
from carbon.core.http import end_session

bp = Blueprint("health", __name__)
log = logging.getLogger("diandian.health")
REQUIRED = {"database"}


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    checks = {"database": _probe("database", lambda: db.session.execute(text("SELECT 1")))}
    redis = ext.redis_client()
    if redis is not None:
        checks["redis"] = _probe("redis", redis.ping)
        if checks["redis"] == "down":
            ext.redis_breaker().failed(ConnectionError("readyz ping failed"))
    down = {name for name, state in checks.items() if state != "ok"}
    status = "unavailable" if down & REQUIRED else "degraded" if down else "ok"
    return jsonify({"status": status, "checks": checks}), 503 if down & REQUIRED else 200


def _probe(name: str, check) -> str:
    try:
        check()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - any failure means that part is down
        if name == "database":
            end_session(remove=False)
        log.warning("readiness check failed", extra={"fields": {"part": name, "error": type(exc).__name__}})
        return "down"
