"""Jobs: expiring unpaid orders, refunds, settlement and payouts."""
from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select

from carbon.checkout.models import Order, Refund
from carbon.checkout.operations import expire_orders, reconcile_payments, refund_order
from carbon.core.clock import clock, utcnow
from carbon.core.db import db
from carbon.core.errors import DomainError
from carbon.credits import service as credits
from carbon.credits.models import Project, Reservation, Retirement
from carbon.jobs.models import OutboxEvent
from carbon.ledger import service as ledger
from carbon.ledger import settlement
from carbon.ledger.models import LedgerTransaction
from tests.payments.conftest import guest_token, seed_project
from tests.payments.test_checkout_e2e import hook, place_order


def advance_both(sandbox, seconds: int) -> None:
    clock.advance(seconds)
    requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": seconds}, timeout=5)


def test_unpaid_orders_expire_close_at_wechat_pay_and_release_their_credits(live, sandbox):
    project_id = seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_expire")
    created = place_order(live, token, {"kg": "40"}).json()
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    with live.app.app_context():
        project = db.session.scalar(select(Project).where(Project.public_id == project_id))
        assert credits.available_units(project) == 60
        assert expire_orders() == {"expired": 0, "confirmed": 0, "refunded": 0, "deferred": 0}  # not yet due
        advance_both(sandbox, 16 * 60)
        assert expire_orders() == {"expired": 1, "confirmed": 0, "refunded": 0, "deferred": 0}
        assert credits.available_units(project) == 100
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        assert order.status == "expired" and order.payments[0].status == "canceled"
    state = requests.get(f"{sandbox.url}/__sandbox__/pay/orders/{out_trade_no}", timeout=5).json()
    assert state["trade_state"] == "CLOSED"
    refused = hook(sandbox, "request-payment", created["request_payment"])
    assert refused.status_code == 400  # nobody can pay a closed order


def test_money_that_comes_after_the_holds_went_to_someone_else_closes_the_order_and_is_refunded(live, sandbox):
    """Paid in time but notified late: meanwhile another guest's order took the expired holds. Expiry
    asks WeChat Pay, books the money for refund, and closes the order and its payment (it never stays
    awaiting payment); once the refund is done, later rounds expire other orders as usual."""
    project_id = seed_project(live.app, units=5)
    first = guest_token(live.url, sandbox, "o_late_a")
    created = place_order(live, first, {"kg": "5"}, key="a").json()
    assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
    advance_both(sandbox, 16 * 60)
    second = guest_token(live.url, sandbox, "o_late_b")
    other = place_order(live, second, {"kg": "5"}, key="b")
    assert other.status_code == 201, other.json()  # the expired holds' serials, taken
    with live.app.app_context():
        assert expire_orders() == {"expired": 0, "confirmed": 0, "refunded": 1, "deferred": 0}
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        assert (order.status, order.payments[0].status) == ("expired", "canceled") and order.closed_at is not None
        refund = db.session.scalar(select(Refund))
        assert (refund.cause, refund.amount) == ("late_payment", Decimal("1.00"))
        assert db.session.scalar(select(func.count()).select_from(Retirement)) == 0
        project = db.session.scalar(select(Project).where(Project.public_id == project_id))
        assert credits.available_units(project) == 0  # the other guest's holds stand
        assert ledger.unbalanced_transactions() == []
    requests.post(f"{sandbox.url}/__sandbox__/pay/notifications/run-due", json={}, timeout=30)  # the refund's notify
    with live.app.app_context():
        assert db.session.scalar(select(Refund.status)) == "succeeded"
        assert ledger.balances().get(("refund_due:wechatpay", "CNY"), Decimal(0)) == 0
    advance_both(sandbox, 16 * 60)
    with live.app.app_context():
        assert expire_orders() == {"expired": 1, "confirmed": 0, "refunded": 0, "deferred": 0}
        assert db.session.scalar(select(Order.status).where(Order.public_id == other.json()["order"]["id"])) == \
            "expired"


def test_an_order_paid_just_before_expiry_is_confirmed_not_expired(live, sandbox):
    seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_late")
    created = place_order(live, token, {"kg": "5"}).json()
    assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
    with live.app.app_context():
        advance_both(sandbox, 16 * 60)
        assert expire_orders() == {"expired": 0, "confirmed": 1, "refunded": 0, "deferred": 0}
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        assert order.status == "fulfilled"  # paid, and its certificate issued
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 5


def test_an_order_paid_while_the_expiry_run_is_under_way_is_left_paid(live, sandbox, monkeypatch):
    """The run reads the due orders first; one of them is paid (its late notify arrives) while the run
    is closing another at WeChat Pay. The run leaves it paid and goes on: no refused transition."""
    from carbon.core import extensions as ext

    seed_project(live.app, units=100)
    early = place_order(live, guest_token(live.url, sandbox, "o_run_a"), {"kg": "2"}, key="a").json()
    late = place_order(live, guest_token(live.url, sandbox, "o_run_b"), {"kg": "3"}, key="b").json()
    assert hook(sandbox, "request-payment", {**late["request_payment"], "deliver": False}).status_code == 200
    advance_both(sandbox, 16 * 60)
    with live.app.app_context():
        provider, close = ext.payments(), ext.payments().close

        def close_while_the_notify_lands(out_trade_no: str) -> None:
            close(out_trade_no)
            if out_trade_no == early["order"]["payments"][0]["out_trade_no"]:  # the late notify arrives now
                requests.post(f"{sandbox.url}/__sandbox__/pay/notifications/run-due", json={}, timeout=30)

        monkeypatch.setattr(provider, "close", close_while_the_notify_lands)
        assert expire_orders() == {"expired": 1, "confirmed": 0, "refunded": 0, "deferred": 0}
        statuses = dict(db.session.execute(select(Order.public_id, Order.status)).all())
        assert statuses == {early["order"]["id"]: "expired", late["order"]["id"]: "fulfilled"}
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 3
        assert ledger.unbalanced_transactions() == []


def _paid_order(live, sandbox, openid: str, kg: str) -> str:
    token = guest_token(live.url, sandbox, openid)
    created = place_order(live, token, {"kg": kg}, key=f"k-{openid}").json()
    notify = hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]
    assert notify["acknowledged"] is True
    return created["order"]["id"]


def run_due(sandbox) -> list[dict]:
    """The sandbox sends what it has queued (refund notifications) to the service."""
    return requests.post(f"{sandbox.url}/__sandbox__/pay/notifications/run-due", json={}, timeout=30).json()


def test_refund_reverses_the_money_and_keeps_the_credits_retired(live, sandbox):
    project_id = seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_refund", "50")  # 50 kg × 60/t = 3.00 CNY
    with live.app.app_context():
        with pytest.raises(DomainError) as missing_reason:
            refund_order(order_id, "  ")
        assert missing_reason.value.http_status == 422
        order = refund_order(order_id, "重复购买 / bought twice")
        assert order.status == "refunded" and order.payments[0].status == "refunded"
        out_trade_no = order.payments[0].out_trade_no
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 50  # a retirement is final
        # Decided and booked: the project and the platform give their shares back to refund_due;
        # the cash is still ours until WeChat Pay reports the refund done.
        assert ledger.balance(f"payable:project:{project_id}", "CNY") == 0
        assert ledger.balance("revenue:platform_fee", "CNY") == 0
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-3.00")
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("3.00")
        assert ledger.balance(f"inventory:project:{project_id}", "kg") == Decimal("-50.000")
        refund = db.session.scalar(select(Refund))
        assert (refund.status, refund.cause, refund.amount) == ("processing", "operator", Decimal("3.00"))
        assert refund.refund_id  # the payment.needs_refund handler asked WeChat Pay (inline here)
        assert db.session.scalar(select(OutboxEvent.kind).where(OutboxEvent.kind == "order.refunded"))
        with pytest.raises(DomainError) as twice:
            refund_order(order_id, "again")
        assert twice.value.code == "order.transition_refused"
    sandbox_order = requests.get(f"{sandbox.url}/__sandbox__/pay/orders/{out_trade_no}", timeout=5).json()
    assert sandbox_order["trade_state"] == "REFUND"
    delivered = run_due(sandbox)  # WeChat Pay's REFUND.SUCCESS notification, verified like a payment's
    assert [(d["event_type"], d["status"]) for d in delivered] == [("REFUND.SUCCESS", 204)]
    again = hook(sandbox, "notify", {"out_trade_no": out_trade_no, "variant": "refund_event"}).json()
    assert again[0]["status"] == 204  # the same refund reported again changes nothing
    with live.app.app_context():
        refund = db.session.scalar(select(Refund))
        assert refund.status == "succeeded" and refund.completed_at is not None
        assert ledger.balance("cash:wechatpay", "CNY") == 0
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.unbalanced_transactions() == []
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "refund_paid")) == 1


def test_two_refunds_of_one_order_at_once_refund_it_once(live, sandbox, database_url):
    """A double-clicked refund: one refunds, the other waits for the order's lock and is refused (409)."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_twice", "50")
    barrier, outcomes = threading.Barrier(2), []

    def refund() -> None:
        with live.app.app_context():
            barrier.wait()
            try:
                refund_order(order_id, "双击 / double click")
                outcomes.append("refunded")
            except DomainError as exc:
                outcomes.append(exc.code)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=refund) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(outcomes) == ["order.transition_refused", "refunded"]
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Refund)) == 1
        assert ledger.unbalanced_transactions() == []


def refund_outcome(sandbox, status: str) -> None:
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/refund-outcome", json={"status": status},
                         timeout=5).status_code == 200


def refund_counts(counts: dict) -> dict:
    return {key: value for key, value in counts.items() if key.startswith("refunds_") and value}


def test_a_refund_whose_notification_is_lost_is_settled_by_reconciliation(live, sandbox):
    """WeChat Pay answers a refund PROCESSING and notifies its end; that notification lost, the
    reconciliation's query settles it (through the inbox, once): the cash leaves once, and the late
    notification, delivered after all, changes nothing."""
    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_lost_refund_notify", "50")  # 3.00 CNY
    refund_outcome(sandbox, "PROCESSING")
    with live.app.app_context():
        refund_order(order_id, "lost notify")
        out_refund_no = db.session.scalar(select(Refund.out_refund_no))
        assert db.session.scalar(select(Refund.status)) == "processing"
        assert refund_counts(reconcile_payments(0)) == {"refunds_waiting": 1}  # WeChat Pay: still PROCESSING
    assert run_due(sandbox) == []  # nothing is notified while it is processing
    resolved = requests.post(f"{sandbox.url}/__sandbox__/pay/refunds/{out_refund_no}/resolve",
                             json={"status": "SUCCESS"}, timeout=5)
    assert resolved.status_code == 200, resolved.text  # its REFUND.SUCCESS is queued, not delivered: lost
    with live.app.app_context():
        assert refund_counts(reconcile_payments(0)) == {"refunds_settled": 1}
        assert db.session.scalar(select(Refund.status)) == "succeeded"
        assert refund_counts(reconcile_payments(0)) == {}  # ended: not asked again
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "refund_paid")) == 1
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.balance("cash:wechatpay", "CNY") == 0
        assert ledger.unbalanced_transactions() == []
    refund_outcome(sandbox, "SUCCESS")


def test_a_refund_closed_while_its_notification_was_lost_ends_failed_by_reconciliation(live, sandbox):
    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_lost_closed", "50")
    refund_outcome(sandbox, "PROCESSING")
    with live.app.app_context():
        refund_order(order_id, "lost notify")
        out_refund_no = db.session.scalar(select(Refund.out_refund_no))
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/refunds/{out_refund_no}/resolve", json={"status": "CLOSED"},
                         timeout=5).status_code == 200
    refund_outcome(sandbox, "SUCCESS")
    with live.app.app_context():
        assert refund_counts(reconcile_payments(0)) == {"refunds_failed": 1}
        assert db.session.scalar(select(Refund.status)) == "failed"
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-3.00")  # still owed back
        refund_id = db.session.scalar(select(Refund.public_id))
    from tests.payments.test_cli import invoke

    assert invoke(live.app, "refund-retry", refund_id).exit_code == 0  # WeChat Pay took the closed amount back
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.CLOSED", 204), ("REFUND.SUCCESS", 204)]
    with live.app.app_context():
        assert db.session.scalars(select(Refund.status).order_by(Refund.id)).all() == ["retried", "succeeded"]
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0 and ledger.unbalanced_transactions() == []


def test_a_refund_wechat_pay_refuses_for_good_ends_failed_and_is_retried(live, sandbox, caplog):
    """NOT_ENOUGH (here: refunded already at the merchant platform) is no outage: the refund ends
    failed at once (not retried eight times), alerts, and waits for an operator."""
    import logging

    from carbon.core import extensions as ext

    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_refused_refund", "50")
    caplog.set_level(logging.ERROR)
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == order_id))
        ext.payments().refund(out_trade_no=order.payments[0].out_trade_no, out_refund_no="RPLATFORM1",
                              refund_fen=300, total_fen=300, reason="merchant platform")
        refund_order(order_id, "operator")
        refund = db.session.scalar(select(Refund))
        event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.kind == "payment.needs_refund"))
        assert (refund.status, refund.refund_id, event.status, event.attempts) == ("failed", None, "done", 1)
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-3.00")
    [alert] = [r for r in caplog.records if r.getMessage() == "refund refused by WeChat Pay"]
    assert alert.fields["code"] == "NOT_ENOUGH" and alert.fields["status"] == 403


def test_a_payment_refunded_at_wechat_pay_before_we_heard_of_it_alerts_and_books_nothing(live, sandbox, caplog):
    """Paid (the notification lost), then refunded by hand at the merchant platform: the query says
    REFUND. Nothing is booked or retired on a guess; every run says so at error level."""
    import logging

    from carbon.core import extensions as ext

    seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_refunded_elsewhere")
    created = place_order(live, token, {"kg": "5"}, key="re").json()
    assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    total = int(Decimal(created["order"]["amount"]) * 100)
    with live.app.app_context():
        ext.payments().refund(out_trade_no=out_trade_no, out_refund_no="RPLATFORM2", refund_fen=total,
                              total_fen=total, reason="merchant platform")
    advance_both(sandbox, 16 * 60)
    caplog.set_level(logging.ERROR)
    with live.app.app_context():
        assert [expire_orders() for _ in range(2)] == [{"expired": 0, "confirmed": 0, "refunded": 0, "deferred": 1}] * 2
        assert db.session.scalar(select(Order.status)) == "awaiting_payment"
        assert db.session.scalar(select(func.count()).select_from(Retirement)) == 0
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 0
    alerts = [r for r in caplog.records if r.getMessage() == "payment refunded at WeChat Pay outside Diandian"]
    assert len(alerts) == 2 and alerts[0].fields["out_trade_no"] == out_trade_no


def test_a_refund_answered_frequency_limited_is_asked_again_later(live, sandbox):
    """429 FREQUENCY_LIMITED is WeChat Pay saying "not now": the refund stays requested and the
    outbox asks again (same out_refund_no), unlike a refusal for good."""
    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_refund_limited", "50")
    armed = requests.post(f"{sandbox.url}/__sandbox__/failures", json={
        "path": "/v3/refund/domestic/refunds", "status": 429, "code": "FREQUENCY_LIMITED"}, timeout=5)
    assert armed.status_code == 200, armed.text
    with live.app.app_context():
        refund_order(order_id, "operator")
        refund = db.session.scalar(select(Refund))
        event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.kind == "payment.needs_refund"))
        assert (refund.status, event.status, event.attempts) == ("requested", "pending", 1)
        assert event.last_error.startswith("PaymentUnavailable")
    advance_both(sandbox, 3600)
    with live.app.app_context():
        from carbon import jobs

        assert jobs.run_due() == {"done": 1}, db.session.scalar(select(OutboxEvent.last_error))
        assert db.session.scalar(select(Refund.status)) == "processing"
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]


def test_a_refund_wechat_pay_closed_is_asked_again_and_the_cash_leaves_once(live, sandbox):
    """REFUND.CLOSED ends a refund ``failed`` with the money still owed back; ``flask refund-retry``
    asks again under a new out_refund_no, whose success moves the cash once. A late duplicate of
    the closed one's notification changes nothing; only a failed refund can be retried."""
    from tests.payments.test_cli import invoke

    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_closed_refund", "50")  # 3.00 CNY
    refund_outcome(sandbox, "ABNORMAL")
    with live.app.app_context():
        refund_order(order_id, "重复购买 / bought twice")
        first = db.session.scalar(select(Refund))
        first_id, first_no = first.public_id, first.out_refund_no
    assert [d["event_type"] for d in run_due(sandbox)] == ["REFUND.ABNORMAL"]
    refund_outcome(sandbox, "SUCCESS")
    refused = invoke(live.app, "refund-retry", first_id)  # abnormal is not final: nothing to retry yet
    assert refused.exit_code == 1 and "abnormal → retried" in refused.output
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/refunds/{first_no}/resolve", json={"status": "CLOSED"},
                         timeout=5).status_code == 200
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.CLOSED", 204)]
    with live.app.app_context():
        assert db.session.scalar(select(Refund.status)) == "failed"
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-3.00")  # still owed back
    open_failed = 'diandian_refunds_open{cause="operator",status="failed"} 1.0'
    assert open_failed in live.get("/metrics").text

    retried = invoke(live.app, "refund-retry", first_id)
    assert retried.exit_code == 0, retried.output
    assert f"({first_no}-2)" in retried.output
    assert invoke(live.app, "refund-retry", first_id).exit_code == 1  # retried once: now "retried"
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]
    with live.app.app_context():
        rows = db.session.execute(select(Refund.out_refund_no, Refund.status, Refund.retry_of_id, Refund.amount)
                                  .order_by(Refund.id)).all()
        first_pk = db.session.scalar(select(Refund.id).where(Refund.public_id == first_id))
        assert rows == [(first_no, "retried", None, Decimal("3.00")),
                        (f"{first_no}-2", "succeeded", first_pk, Decimal("3.00"))]
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.balance("cash:wechatpay", "CNY") == 0
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "refund_paid")) == 1
        assert ledger.unbalanced_transactions() == []
    assert 'diandian_refunds_open{cause="operator",status="failed"} 0.0' in live.get("/metrics").text
    assert 'status="retried"' not in live.get("/metrics").text
    with live.app.app_context():  # the closed refund's notification, delivered again late
        from carbon.checkout.confirmation import settle_refund
        from carbon.checkout.outcomes import Outcome
        from payments.provider import RefundNotice

        late = RefundNotice(out_trade_no="", out_refund_no=first_no, refund_id="x", status="CLOSED", mchid="",
                            refund_fen=300)
        assert settle_refund(late) == Outcome.DUPLICATE
        db.session.rollback()


def test_an_abnormal_refund_waits_and_its_later_success_moves_the_cash(live, sandbox):
    """REFUND.ABNORMAL is not final: the refund waits (the cash is still owed back) until WeChat Pay
    reports its end for the same refund, which then settles it once."""
    seed_project(live.app, units=1000, price="60.00")
    order_id = _paid_order(live, sandbox, "o_abnormal", "50")  # 3.00 CNY
    refund_outcome(sandbox, "ABNORMAL")
    with live.app.app_context():
        refund_order(order_id, "重复购买 / bought twice")
        out_refund_no = db.session.scalar(select(Refund.out_refund_no))
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.ABNORMAL", 204)]
    with live.app.app_context():
        assert db.session.scalar(select(Refund.status)) == "abnormal"
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-3.00")  # still owed back
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("3.00")
    resolved = requests.post(f"{sandbox.url}/__sandbox__/pay/refunds/{out_refund_no}/resolve",
                             json={"status": "SUCCESS"}, timeout=5)
    assert resolved.status_code == 200, resolved.text
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]
    with live.app.app_context():
        refund = db.session.scalar(select(Refund))
        assert refund.status == "succeeded" and refund.completed_at is not None
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.balance("cash:wechatpay", "CNY") == 0
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "refund_paid")) == 1
        assert ledger.unbalanced_transactions() == []


def test_settlement_report_and_payouts(live, sandbox):
    project_id = seed_project(live.app, units=10_000, price="60.00")
    start = utcnow() - timedelta(days=1)
    _paid_order(live, sandbox, "o_settle_1", "100")  # 6.00 CNY, fee 0.30 → owed 5.70
    _paid_order(live, sandbox, "o_settle_2", "50")   # 3.00 CNY, fee 0.15 → owed 2.85
    end = utcnow() + timedelta(days=1)
    with live.app.app_context():
        [row] = settlement.report(start, end)
        assert (row["project"], row["opening_owed"], row["earned"], row["paid_out"], row["closing_owed"]) == \
            (project_id, Decimal("0.00"), Decimal("8.55"), Decimal("0.00"), Decimal("8.55"))
        with pytest.raises(DomainError) as too_much:
            settlement.record_payout(project_id, Decimal("9.00"), "BANK-1")
        assert too_much.value.code == "settlement.overpayment"
        settlement.record_payout(project_id, Decimal("8.00"), "BANK-2")
        [after] = settlement.report(start, end + timedelta(seconds=1))
        assert (after["paid_out"], after["closing_owed"]) == (Decimal("8.00"), Decimal("0.55"))
        text = settlement.report_csv(start, end)
        assert text.startswith("\ufeffproject,name,registry,opening_owed") and project_id in text
        assert ledger.unbalanced_transactions() == []
        assert db.session.scalar(select(func.count()).select_from(Reservation)
                                 .where(Reservation.status == "active")) == 0


def test_two_payouts_recorded_at_once_never_pay_more_than_is_owed(app, monkeypatch):
    """Operator B records a transfer while A's is between its check of what is owed and its posting:
    B waits for A's lock, then sees A's payout and is refused."""
    project_id = seed_project(app, units=10)
    account = settlement.payable_account(project_id)
    with app.app_context():
        ledger.post("payment", "ord_x", [("cash:wechatpay", "CNY", Decimal("9.00")), (account, "CNY", Decimal("-8.55")),
                                         ("revenue:platform_fee", "CNY", Decimal("-0.45"))])
        db.session.commit()
    balance, outcome = ledger.balance, {}

    def operator_b() -> None:
        with app.app_context():
            try:
                settlement.record_payout(project_id, Decimal("8.00"), "BANK-B")
                outcome["b"] = "recorded"
            except DomainError as exc:
                outcome["b"] = exc.code
            finally:
                db.session.remove()

    other = threading.Thread(target=operator_b)

    def balance_while_b_records(*args):
        owed = balance(*args)
        if not other.is_alive() and "b" not in outcome:
            other.start()
            other.join(1.5)  # B would finish now if nothing held it back
        return owed

    monkeypatch.setattr(settlement.ledger, "balance", balance_while_b_records)
    with app.app_context():
        settlement.record_payout(project_id, Decimal("8.00"), "BANK-A")
    other.join(30)
    monkeypatch.setattr(settlement.ledger, "balance", balance)
    assert outcome == {"b": "settlement.overpayment"}
    with app.app_context():
        assert -ledger.balance(account, "CNY") == Decimal("0.55")


def test_money_for_an_order_we_gave_up_is_booked_and_refunded_automatically(live, sandbox):
    """If WeChat Pay reports a payment for an order we already closed, nothing is retired; the cash
    is booked against refund_due, the notify is acknowledged (no endless retries), the refund is
    asked for by the payment.needs_refund handler and settled by WeChat Pay's refund notification."""
    seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_orphan")
    created = place_order(live, token, {"kg": "5"}).json()
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        order.payments[0].status, order.status = "canceled", "expired"
        credits.release([order.id])
        db.session.commit()
    sent = hook(sandbox, "notify", {"out_trade_no": out_trade_no, "variant": "normal"}).json()
    assert sent[0]["status"] == 204
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Retirement)) == 0
        assert ledger.balances() == {("cash:wechatpay", "CNY"): Decimal("1.00"),
                                     ("refund_due:wechatpay", "CNY"): Decimal("-1.00")}
        refund = db.session.scalar(select(Refund))
        assert (refund.cause, refund.status, refund.amount) == ("late_payment", "processing", Decimal("1.00"))
        event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.kind == "payment.needs_refund"))
        assert event.payload == {"refund": refund.public_id} and event.status == "done"
    delivered = run_due(sandbox)  # the payment's own retry (a duplicate now) and the refund's notification
    assert {(d["event_type"], d["status"]) for d in delivered} == {("TRANSACTION.SUCCESS", 204),
                                                                    ("REFUND.SUCCESS", 204)}
    with live.app.app_context():
        assert db.session.scalar(select(Refund.status)) == "succeeded"
        assert ledger.balance("cash:wechatpay", "CNY") == 0 and ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert db.session.scalar(select(Order.status).where(Order.public_id == created["order"]["id"])) == "expired"
    assert requests.get(f"{sandbox.url}/__sandbox__/pay/orders/{out_trade_no}", timeout=5).json()["trade_state"] \
        == "REFUND"


def test_an_order_stuck_before_wechat_pay_answered_is_cancelled_and_released(live, sandbox):
    """A process that died between reserving and hearing from WeChat Pay leaves a ``created``
    order holding serials; the expiry job cancels it (WeChat Pay does not know it: ORDER_NOT_EXIST)."""
    from carbon.checkout.models import Payment

    project_id = seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_stuck")
    created = place_order(live, token, {"kg": "30"}).json()
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        order.status = "created"
        order.payments[0].status = "created"
        order.payments[0].out_trade_no = "DDNEVERSENT0001"  # as if WeChat Pay never heard of it
        db.session.commit()
        advance_both(sandbox, 16 * 60)
        assert expire_orders() == {"expired": 1, "confirmed": 0, "refunded": 0, "deferred": 0}
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        assert order.status == "canceled"
        assert db.session.scalar(select(Payment.status).where(Payment.out_trade_no == "DDNEVERSENT0001")) == "canceled"
        project = db.session.scalar(select(Project).where(Project.public_id == project_id))
        assert credits.available_units(project) == 100
