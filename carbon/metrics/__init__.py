"""Prometheus metrics (``prometheus_client``), served at ``/metrics`` (see ``carbon.metrics.routes``).

Counted as they happen: requests by route (the URL rule, never the raw path), method and status;
their latency; WeChat Pay notifications by outcome (at the notify route). Read from the database
when scraped (``carbon.metrics.collector``): inbox and outbox depth and age, failed jobs, orders
by state, held credits.

Under gunicorn every worker is a process: ``deploy/gunicorn.conf.py`` points
``PROMETHEUS_MULTIPROC_DIR`` at a directory before the workers import this module, so counters are
kept in files there and a scrape of any worker adds them all up (prometheus_client's multiprocess
mode). Without it (``flask run``, tests) the counters live in this process.
"""
from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import Counter, Histogram

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "<unmatched>"  # no URL rule matched (404, or a 405 before routing): one label, not the path

REQUESTS = Counter("diandian_http_requests_total", "Requests answered, by URL rule, method and status",
                   ["route", "method", "status"])
LATENCY = Histogram("diandian_http_request_duration_seconds", "Time from the first before_request to the answer",
                    ["route", "method"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
NOTIFY_OUTCOMES = Counter("diandian_wechatpay_notify_total", "WeChat Pay notifications by outcome "
                          "(carbon.checkout.outcomes.Outcome)", ["outcome"])


def count_notify(outcome: str) -> None:
    NOTIFY_OUTCOMES.labels(outcome=str(outcome)).inc()


_CHILDREN: dict[tuple, tuple] = {}  # (route, method, status) → its counter and histogram (labels() locks and checks)


def _observe(response: Response) -> Response:
    req = request._get_current_object()  # type: ignore[attr-defined]
    rule = req.url_rule
    route = rule.rule if rule is not None else UNMATCHED
    method = req.method if req.method in KNOWN_METHODS else "other"
    key = (route, method, response.status_code)
    children = _CHILDREN.get(key)
    if children is None:
        children = _CHILDREN[key] = (REQUESTS.labels(route=route, method=method, status=str(response.status_code)),
                                     LATENCY.labels(route=route, method=method))
    children[0].inc()
    started = g.get("started")
    if started is not None:
        children[1].observe(time.perf_counter() - started)
    return response


def install(app: Flask) -> None:
    """Count every answer of ``app`` (after its error handlers made it) and serve ``/metrics``."""
    from carbon.metrics.routes import bp

    app.after_request(_observe)
    app.register_blueprint(bp)
