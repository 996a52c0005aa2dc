"""/metrics: counters moved by a guest's walk (requests by URL rule, latency, notify outcomes),
gauges read from the database (inbox, outbox, orders by state, held credits), who may read it, and
counts summed over gunicorn's worker processes."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import free_port
from carbon.checkout.models import InboxEntry
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.jobs.models import OutboxEvent
from tests.conftest import ROOT, make_config
from tests.observability.conftest import guest_walk
from tests.payments.conftest import guest_token
from tests.reliability.servers import service_env

NOTIFY = "/api/v1/payments/wechatpay/notify"


def scrape(get) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of one scrape; ``get`` answers GET /metrics."""
    response = get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_guest_walk_moves_the_counters_and_the_gauges(live, sandbox):
    before = scrape(live.get)
    walk = guest_walk(live, sandbox)
    token = guest_token(live.url, sandbox, "o_unpaid")  # an order left unpaid holds 5 kg
    unpaid = live.post("/api/v1/orders", json={"kg": "5"}, headers={
        "Authorization": f"Bearer {token}", "Idempotency-Key": "unpaid"})
    assert unpaid.status_code == 201
    # a forged notify for it (a tampered body): refused, counted as rejected
    sent = requests.post(f"{sandbox.url}/__sandbox__/pay/notify", timeout=30, json={
        "out_trade_no": unpaid.json()["order"]["payments"][0]["out_trade_no"], "variant": "tampered_body"}).json()
    assert sent[0]["status"] == 401
    after = scrape(live.get)
    body = live.get("/metrics").text

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("diandian_http_requests_total", route="/api/v1/orders", method="POST", status="201") == 2
    assert moved("diandian_http_requests_total", route="/api/v1/auth/login", method="POST", status="200") == 2
    assert moved("diandian_http_requests_total", route=NOTIFY, method="POST", status="204") == 1
    assert moved("diandian_http_requests_total", route=NOTIFY, method="POST", status="401") == 1
    assert moved("diandian_http_requests_total", route="/api/v1/certificates/<string:number>/card.jpg",
                 method="GET", status="200") == 1
    assert moved("diandian_http_request_duration_seconds_count", route="/api/v1/orders", method="POST") == 2
    assert moved("diandian_http_request_duration_seconds_bucket", route="/api/v1/orders", method="POST",
                 le="+Inf") == 2
    assert moved("diandian_http_request_duration_seconds_sum", route="/api/v1/orders", method="POST") > 0
    assert moved("diandian_wechatpay_notify_total", outcome="confirmed") == 1
    assert moved("diandian_wechatpay_notify_total", outcome="rejected") == 1
    # the URL rule, never the path: no certificate number, order id or openid in any label
    assert walk.certificate not in body and walk.order_id not in body and walk.openid not in body
    # gauges: what the database holds now
    assert value(after, "diandian_database_up") == 1
    assert value(after, "diandian_orders", state="fulfilled") == 1
    assert value(after, "diandian_orders", state="awaiting_payment") == 1
    assert value(after, "diandian_orders", state="refunded") == 0  # every state is listed
    assert value(after, "diandian_credits_held_kg") == 5
    assert value(after, "diandian_credits_holds_overdue") == 0
    assert value(after, "diandian_inbox_entries", status="pending") == 0
    assert value(after, "diandian_outbox_events", status="pending") == 0
    assert value(after, "diandian_refunds_open", status="abnormal", cause="operator") == 0  # every pair is listed
    with live.app.app_context():  # a refund asked for: open until WeChat Pay reports the money back
        from carbon.checkout.operations import refund_order

        refund_order(walk.order_id, "测试 / test")
    refunded = scrape(live.get)
    assert value(refunded, "diandian_refunds_open", status="processing", cause="operator") == 1
    assert value(refunded, "diandian_orders", state="refunded") == 1


def test_unmatched_paths_share_one_label(client):
    before = scrape(client.get)
    assert client.get("/no/such/path/o_secret_openid").status_code == 404
    after = scrape(client.get)
    key = ("diandian_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))
    assert after[key] - before.get(key, 0) == 1
    assert "o_secret_openid" not in client.get("/metrics").text


def test_backlog_and_failed_jobs_are_read_at_scrape_time(app, client):
    with app.app_context():
        now = utcnow()
        db.session.add_all([
            InboxEntry(provider="wechatpay", kind="transaction", event_id="ev-1", external_id="tx-1",
                       out_trade_no="o1", source="notify", payload={}, status="pending",
                       received_at=now - timedelta(seconds=300)),
            InboxEntry(provider="wechatpay", kind="transaction", event_id="ev-2", external_id="tx-2",
                       out_trade_no="o2", source="notify", payload={}, status="failed", outcome="mismatch"),
            OutboxEvent(kind="order.paid", handler="h", payload={}, status="pending", attempts=2,
                        created_at=now - timedelta(seconds=90), next_attempt_at=now + timedelta(hours=1)),
            OutboxEvent(kind="order.paid", handler="h", payload={}, status="failed", attempts=8),
            OutboxEvent(kind="order.paid", handler="h", payload={}, status="done", attempts=1)])
        db.session.commit()
    samples = scrape(client.get)
    assert value(samples, "diandian_inbox_entries", status="pending") == 1
    assert value(samples, "diandian_inbox_entries", status="failed") == 1
    assert 300 <= value(samples, "diandian_inbox_oldest_pending_seconds") < 400
    assert value(samples, "diandian_outbox_events", status="pending") == 1
    assert value(samples, "diandian_outbox_events", status="failed") == 1
    assert value(samples, "diandian_outbox_retrying_events") == 1
    assert 90 <= value(samples, "diandian_outbox_oldest_pending_seconds") < 200


def test_metrics_need_the_token_or_a_direct_local_client(database_url, sandbox):
    from app import create_app

    local = create_app(make_config(database_url, sandbox.url)).test_client()
    assert local.get("/metrics").status_code == 200
    refused = local.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})  # came through a proxy
    assert refused.status_code == 403 and refused.get_json()["error"]["code"] == "metrics.local_only"
    remote = local.get("/metrics", environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert remote.status_code == 403

    token = "metrics-token-0123456789abcdef"
    guarded = create_app(make_config(database_url, sandbox.url, METRICS_TOKEN=token)).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Basic {token}"}):
        answer = guarded.get("/metrics", headers=headers)
        assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "metrics.token_required"
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    allowed = guarded.get("/metrics", headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": "203.0.113.9"},
                          environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert allowed.status_code == 200 and b"diandian_database_up 1.0" in allowed.data


@pytest.mark.slow
def test_counts_are_summed_over_gunicorn_workers(database_url, sandbox, tmp_path):
    """deploy/gunicorn.conf.py with two workers, one of them stopped halfway: every scrape, whichever
    worker answers, sees all requests, those of the worker gone too."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    (metrics_dir / "counter_999999.db").write_bytes(b"left from a previous run")
    env = {**os.environ, **service_env(database_url, sandbox.url, base), "DIANDIAN_BIND": f"127.0.0.1:{port}",
           "DIANDIAN_WORKERS": "2", "DIANDIAN_THREADS": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "app:create_app()"],
                               cwd=ROOT, env=env)

    def healthz(times: int) -> None:
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(lambda _: requests.get(base + "/healthz", timeout=20).status_code, range(times)))
        assert statuses == [200] * times

    def counted_by() -> set[str]:
        return {path.stem.rsplit("_", 1)[1] for path in metrics_dir.glob("counter_*.db")}

    try:
        wait_ready(base, process)
        healthz(30)
        served = counted_by()
        assert "999999" not in served and served  # emptied at start
        stopped = int(min(served))
        os.kill(stopped, signal.SIGTERM)  # a worker of the gunicorn this test started; the master replaces it
        deadline = time.monotonic() + 30
        while Path(f"/proc/{stopped}").exists():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        wait_ready(base, process)
        healthz(30)
        assert len(counted_by()) >= 2  # the stopped worker's file stays, another worker served the rest
        for _ in range(6):
            samples = scrape(lambda path: requests.get(base + path, timeout=20))
            assert value(samples, "diandian_http_requests_total", route="/healthz", method="GET", status="200") == 60
    finally:
        process.terminate()
        process.wait(30)


def wait_ready(base: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(base + "/readyz", timeout=3).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline and process.poll() is None, "gunicorn did not start"
        time.sleep(0.2)


def test_the_operations_table_names_every_metric_with_its_labels(client):
    """docs/OPERATIONS.md's metrics table and a scrape name the same ``diandian_`` metrics, with the
    same labels (checked for every metric the scrape has a sample of)."""
    text = (ROOT / "docs" / "OPERATIONS.md").read_text(encoding="utf-8").split("## Metrics and alerts")[1]
    documented = {name: set(filter(None, (labels or "").split(",")))
                  for row in text.split("\n## ")[0].splitlines() if row.startswith("| `diandian_")
                  for name, labels in re.findall(r"`(diandian_[a-z_]+)(?:\{([a-z_,]+)\})?`", row.split("|")[1])}
    client.get("/metrics")  # so the request counters have a sample
    body = client.get("/metrics").get_data(as_text=True)
    served = {name for name in re.findall(r"^# TYPE (diandian_\w+) ", body, re.MULTILINE)
              if not name.endswith("_created")}  # prometheus_client's own, beside each counter and histogram
    assert set(documented) == served
    labels: dict[str, set[str]] = {}
    for sample, names in re.findall(r"^(diandian_\w+)\{([^}]*)\}", body, re.MULTILINE):
        family = max((name for name in served if sample.startswith(name.removesuffix("_total"))), key=len)
        labels.setdefault(family, set()).update(set(re.findall(r"(\w+)=", names)) - {"le"})
    assert labels  # the requests' and the gauges' at least
    for family, found in labels.items():
        assert found == documented[family], family
