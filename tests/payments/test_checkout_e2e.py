"""Over HTTP, end to end: login → footprint → order → the sandbox plays wx.requestPayment →
WeChat Pay's notification reaches the service → paid, serials retired, ledger balanced."""
from __future__ import annotations

from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from carbon.checkout.models import InboxEntry, Order, Payment
from carbon.core.db import db
from carbon.credits import service as credits
from carbon.credits.models import Project, Reservation, Retirement
from carbon.jobs.models import OutboxEvent
from carbon.ledger import service as ledger
from carbon.ledger.models import Posting
from tests.payments.conftest import guest_token, seed_project


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def place_order(live, token, body, key="key-1"):
    return live.post("/api/v1/orders", json=body, headers={**bearer(token), "Idempotency-Key": key})


def hook(sandbox, path, body):
    return requests.post(f"{sandbox.url}/__sandbox__/pay/{path}", json=body, timeout=30)


def counts(app) -> dict:
    with app.app_context():
        return {model.__name__: db.session.scalar(select(func.count()).select_from(model))
                for model in (Retirement, Posting, InboxEntry, OutboxEvent)}


def test_guest_pays_and_the_credits_are_retired_once(live, sandbox):
    project_id = seed_project(live.app, units=10_000, price="60.00")
    token = guest_token(live.url, sandbox, "o_payer")
    footprint = live.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 1000}]},
                          headers=bearer(token)).json()
    assert footprint["neutralize_kg"] == "31"

    created = place_order(live, token, {"footprint_id": footprint["id"]})
    assert created.status_code == 201, created.text
    order, params = created.json()["order"], created.json()["request_payment"]
    assert (order["status"], order["kg"], order["units"], order["amount"]) == ("awaiting_payment", "31.000", 31, "1.86")
    assert order["project"]["id"] == project_id
    assert set(params) == {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"}
    assert params["signType"] == "RSA" and params["package"].startswith("prepay_id=")
    # The same key returns the same order; another body under that key is refused.
    again = place_order(live, token, {"footprint_id": footprint["id"]})
    assert again.status_code == 201 and again.json()["order"]["id"] == order["id"]
    reused = place_order(live, token, {"kg": "5"})
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "order.idempotency_key_reused"

    paid = hook(sandbox, "request-payment", params)
    assert paid.status_code == 200, paid.text
    notify = paid.json()["notify"]
    assert (notify["attempt"], notify["status"], notify["acknowledged"]) == (1, 204, True)

    final = live.get(f"/api/v1/orders/{order['id']}", headers=bearer(token)).json()["order"]
    assert final["status"] == "fulfilled" and final["payments"][0]["status"] == "confirmed"  # paid, certified
    assert final["payments"][0]["transaction_id"] == paid.json()["transaction_id"]
    with live.app.app_context():
        row = db.session.scalar(select(Order).where(Order.public_id == order["id"]))
        retirements = db.session.scalars(select(Retirement).where(Retirement.order_id == row.id)).all()
        assert [(r.first_serial, r.last_serial, r.quantity) for r in retirements] == [(1, 31, 31)]
        assert retirements[0].kg == Decimal("31.000") and retirements[0].vintage_label == "2021"
        assert db.session.scalar(select(Reservation.status).where(Reservation.order_id == row.id)) == "consumed"
        project = db.session.scalar(select(Project).where(Project.public_id == project_id))
        assert credits.available_units(project) == 10_000 - 31
        assert ledger.unbalanced_transactions() == []
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("1.86")
        assert ledger.balance(f"payable:project:{project_id}", "CNY") == Decimal("-1.77")
        assert ledger.balance("revenue:platform_fee", "CNY") == Decimal("-0.09")
        assert ledger.balance(f"retired:user:{row.user_id}", "kg") == Decimal("31.000")
        assert ledger.balance(f"inventory:project:{project_id}", "kg") == Decimal("-31.000")
        assert db.session.scalar(select(OutboxEvent.kind)) == "order.paid"

    before = counts(live.app)
    duplicates = hook(sandbox, "notify", {"out_trade_no": final["payments"][0]["out_trade_no"], "variant": "normal",
                                          "count": 5, "concurrency": 5})
    assert [send["status"] for send in duplicates.json()] == [204] * 5
    # A new event id (shared by the five copies) for a transaction already in the inbox: nothing moves.
    assert counts(live.app) == before


@pytest.mark.parametrize(("variant", "status"), [
    ("stale", 401), ("tampered_ciphertext", 401), ("tampered_body", 401), ("signtest", 401),
    ("other_key", 401), ("bad_serial", 401), ("wrong_amount", 400), ("wrong_appid", 400),
    ("wrong_mchid", 400), ("unknown_order", 400), ("wrong_payer", 400),
])
def test_forged_notifies_are_refused_and_change_nothing(live, sandbox, variant, status):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_forged")
    created = place_order(live, token, {"kg": "10"}).json()
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    before = counts(live.app)
    target = {"url": f"{live.url}/api/v1/payments/wechatpay/notify"} if variant == "unknown_order" \
        else {"out_trade_no": out_trade_no}
    sent = hook(sandbox, "notify", {**target, "variant": variant})
    assert sent.status_code == 200, sent.text
    answer = sent.json()[0]
    assert answer["status"] == status, answer
    assert '"code":"FAIL"' in answer["body"].replace(" ", "")
    if status == 400:  # signed by WeChat Pay but not matching the order: kept (failed) for operators
        assert counts(live.app) == {**before, "InboxEntry": before["InboxEntry"] + 1}
        with live.app.app_context():
            entry = db.session.scalar(select(InboxEntry))
            assert (entry.status, entry.outcome) == ("failed", "mismatch") and entry.last_error
    else:
        assert counts(live.app) == before
    with live.app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert payment.status == "pending" and payment.order.status == "awaiting_payment"


def test_a_lost_notification_is_completed_by_reconciliation(live, sandbox):
    from carbon.checkout.operations import reconcile_payments
    from carbon.core.clock import clock

    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_lost")
    created = place_order(live, token, {"kg": "3"}).json()
    order_id = created["order"]["id"]
    paid = hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).json()
    assert paid["notify"] is None  # WeChat Pay took the money; the notification never came
    assert live.get(f"/api/v1/orders/{order_id}", headers=bearer(token)).json()["order"]["status"] == \
        "awaiting_payment"
    with live.app.app_context():
        nothing = {"confirmed": 0, "refunded": 0, "pending": 0, "deferred": 0, "refunds_settled": 0,
                   "refunds_failed": 0, "refunds_waiting": 0, "refunds_deferred": 0}
        assert reconcile_payments(10) == nothing  # too young to ask
        clock.advance(11 * 60)  # time passes for both sides
        requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 11 * 60}, timeout=5)
        assert reconcile_payments(10) == nothing | {"confirmed": 1}
        assert reconcile_payments(10) == nothing
        assert ledger.unbalanced_transactions() == []
    assert live.get(f"/api/v1/orders/{order_id}", headers=bearer(token)).json()["order"]["status"] == "fulfilled"


def test_a_notify_that_meets_a_locked_payment_gets_503_and_the_retry_completes_it(live, sandbox, database_url):
    """PostgreSQL: a payment row held by someone else makes the handler give up after its lock
    timeout (503); WeChat Pay retries 15 s later and that delivery confirms."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row-lock timeouts are a PostgreSQL behaviour")
    from sqlalchemy import create_engine, text

    from carbon.core.clock import clock

    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_locked")
    created = place_order(live, token, {"kg": "4"}).json()
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    engine = create_engine(database_url)
    with engine.connect() as holder:
        holder.execute(text("SELECT id FROM payments WHERE out_trade_no = :no FOR UPDATE"), {"no": out_trade_no})
        paid = hook(sandbox, "request-payment", created["request_payment"]).json()
        assert paid["notify"]["status"] == 503 and paid["notify"]["acknowledged"] is False
        holder.rollback()
    engine.dispose()
    clock.advance(15)
    requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 15}, timeout=5)
    retried = hook(sandbox, "notifications/run-due", {}).json()
    assert [(d["attempt"], d["status"]) for d in retried] == [(2, 204)]
    with live.app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert payment.status == "confirmed" and payment.order.status == "fulfilled"
