"""A refund made by hand at WeChat Pay's merchant platform (never asked for by Diandian): the sandbox
refunds the order and sends its REFUND.* notification, encrypted and signed, to the notify route.
A confirmed payment refunded in full is booked as our refunds are (one rule: refunds.refund_in_full)
and settled at once; anything else books nothing and alerts."""
from __future__ import annotations

import dataclasses
import logging
import threading
from decimal import Decimal

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from carbon.certificates.models import Certificate
from carbon.checkout import inbox
from carbon.checkout.models import InboxEntry, Order, Payment, Refund
from carbon.checkout.operations import reconcile_payments, refund_order
from carbon.core import extensions as ext
from carbon.jobs.models import OutboxEvent
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction
from tests.payments.conftest import guest_token, seed_project
from tests.payments.test_checkout_e2e import hook, place_order
from tests.payments.test_jobs import run_due
from tests.payments.test_paid_path_rules import recorded_logs  # noqa: F401 - a fixture

REASON = "微信支付商户平台退款 / refunded at WeChat Pay's merchant platform"


def paid(live, sandbox, openid: str, kg: str = "50", *, deliver: bool = True) -> dict:
    """A guest's order, paid (and, delivered, confirmed: fulfilled, its certificate issued); 50 kg is 3.00 CNY."""
    token = guest_token(live.url, sandbox, openid)
    created = place_order(live, token, {"kg": kg}, key=f"k-{openid}").json()
    answer = hook(sandbox, "request-payment", {**created["request_payment"], "deliver": deliver}).json()
    assert not deliver or answer["notify"]["acknowledged"] is True
    return {"order": created["order"]["id"], "out_trade_no": created["order"]["payments"][0]["out_trade_no"],
            "transaction_id": answer["transaction_id"]}


def refund_by_hand(sandbox, out_trade_no: str, **body) -> dict:
    answer = requests.post(f"{sandbox.url}/__sandbox__/pay/orders/{out_trade_no}/merchant-refund", json=body,
                           timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def books(app) -> dict:
    """What a refund could have changed: refunds, ledger transactions by kind, balances, events."""
    with app.app_context():
        from carbon.core.db import db

        return {"refunds": db.session.execute(select(Refund.cause, Refund.status).order_by(Refund.id)).all(),
                "ledger": sorted(db.session.scalars(select(LedgerTransaction.kind))),
                "cash": ledger.balance("cash:wechatpay", "CNY"),
                "refund_due": ledger.balance("refund_due:wechatpay", "CNY"),
                "orders": db.session.scalars(select(Order.status).order_by(Order.id)).all(),
                "payments": db.session.scalars(select(Payment.status).order_by(Payment.id)).all(),
                "events": sorted(db.session.scalars(select(OutboxEvent.kind))),
                "revoked": db.session.scalars(select(Certificate.revoke_seq.is_not(None))).all()}


def inbox_outcomes(app) -> list[str]:
    with app.app_context():
        from carbon.core.db import db

        return db.session.scalars(select(InboxEntry.outcome).where(InboxEntry.kind == "refund")
                                  .order_by(InboxEntry.id)).all()


def alerts(records, level: int) -> list[logging.LogRecord]:
    return [r for r in records if r.levelno == level and r.name == "diandian.checkout"]


def test_a_full_refund_made_at_the_merchant_platform_is_booked_once_and_revokes_the_certificate(
        live, sandbox, recorded_logs):  # noqa: F811
    project_id = seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_refund")
    with live.app.app_context():
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("3.00")
    before = books(live.app)
    assert before["orders"] == ["fulfilled"] and before["revoked"] == [False]

    made = refund_by_hand(sandbox, bought["out_trade_no"])  # 300 fen, what is left: all of it
    assert made["amount"]["refund"] == 300 and made["notify"]["status"] == 204  # acknowledged
    out_refund_no = made["out_refund_no"]

    from carbon.core.db import db
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == bought["order"]))
        assert order.status == "refunded" and order.payments[0].status == "refunded"
        refund = db.session.scalar(select(Refund))
        assert (refund.cause, refund.status, refund.amount, refund.reason) == \
            ("merchant", "succeeded", Decimal("3.00"), REASON)
        assert (refund.out_refund_no, refund.refund_id, refund.charge_transaction_id) == \
            (out_refund_no, made["refund_id"], bought["transaction_id"])
        assert refund.completed_at is not None and refund.retry_of_id is None
        # The same postings as an operator's refund, then the cash leaves at once.
        booked = db.session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "refund"))
        assert booked.reference == order.public_id
        assert sorted((p.account, p.amount) for p in booked.postings) == sorted([
            (f"payable:project:{project_id}", Decimal("2.85")), ("revenue:platform_fee", Decimal("0.15")),
            ("refund_due:wechatpay", Decimal("-3.00"))])
        settled = db.session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "refund_paid"))
        assert settled.reference == out_refund_no
        assert sorted((p.account, p.amount) for p in settled.postings) == [
            ("cash:wechatpay", Decimal("-3.00")), ("refund_due:wechatpay", Decimal("3.00"))]
        assert ledger.balance("cash:wechatpay", "CNY") == 0  # down by the 3.00 refunded
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.balance(f"payable:project:{project_id}", "CNY") == 0
        assert ledger.balance("revenue:platform_fee", "CNY") == 0
        assert ledger.balance(f"inventory:project:{project_id}", "kg") == Decimal("-50.000")  # stays retired
        assert ledger.unbalanced_transactions() == []
        number = db.session.scalar(select(Certificate.number))
    after = books(live.app)
    assert after["revoked"] == [True]
    assert "order.refunded" in after["events"] and "payment.needs_refund" not in after["events"]  # paid back already
    shown = live.get(f"/api/v1/certificates/{number}").json()
    assert shown["status"] == "revoked"
    assert inbox_outcomes(live.app) == ["merchant_refund"]
    [warning] = [r for r in alerts(recorded_logs, logging.WARNING)
                 if r.getMessage() == "refund made at WeChat Pay's merchant platform booked"]
    assert warning.fields["order"] == bought["order"] and warning.fields["refund"] == refund.public_id
    assert "o_hand_refund" not in repr(warning.fields)  # no openid

    # Delivered again (a new event, the same refund), asked by a query, settled again: nothing changes.
    again = hook(sandbox, "notify", {"out_trade_no": bought["out_trade_no"], "variant": "refund_event"}).json()
    assert again[0]["status"] == 204
    with live.app.app_context():
        notice = ext.payments().query_refund(out_refund_no)
        assert inbox.receive_refund(notice, event_id=None, source="query").outcome == "duplicate"
        from carbon.checkout.confirmation import settle_refund

        assert settle_refund(notice) == "duplicate"  # the refund row itself answers, past the inbox
        db.session.rollback()
        assert reconcile_payments(0)["refunds_settled"] == 0  # ended: never asked about
    assert books(live.app) == after
    assert inbox_outcomes(live.app) == ["merchant_refund"]


def test_a_partial_refund_at_the_merchant_platform_books_nothing_and_alerts(live, sandbox, recorded_logs):  # noqa: F811
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_partial")
    before = books(live.app)
    made = refund_by_hand(sandbox, bought["out_trade_no"], refund=100)  # 1.00 of 3.00
    assert made["notify"]["status"] == 204  # acknowledged: WeChat Pay must stop sending it
    assert books(live.app) == before
    assert inbox_outcomes(live.app) == ["refund_partial"]
    [alert] = [r for r in alerts(recorded_logs, logging.ERROR)
               if r.getMessage() == "partial refund made outside Diandian"]
    assert alert.fields["out_refund_no"] == made["out_refund_no"] and alert.fields["amount"] == "1.00"
    assert alert.fields["order"] == bought["order"]


def test_a_refund_at_the_merchant_platform_of_a_payment_we_never_confirmed_books_nothing(
        live, sandbox, recorded_logs):  # noqa: F811
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_unconfirmed", deliver=False)  # its notification not (yet) sent
    before = books(live.app)
    assert before["payments"] == ["pending"]
    made = refund_by_hand(sandbox, bought["out_trade_no"])
    assert made["notify"]["status"] == 204
    assert books(live.app) == before
    assert inbox_outcomes(live.app) == ["refund_unknown"]
    assert [r.fields["out_trade_no"] for r in alerts(recorded_logs, logging.ERROR)
            if r.getMessage() == "refund of a payment we never confirmed"] == [bought["out_trade_no"]]


def test_a_refund_at_the_merchant_platform_of_an_order_we_refunded_is_a_second_refund_alerted(
        live, sandbox, recorded_logs):  # noqa: F811
    """Refunded by hand (its notification not yet delivered) and by an operator in Diandian: WeChat
    Pay refuses ours (NOT_ENOUGH: failed), then the hand refund's notification arrives. The order
    is refunded already: nothing more is booked, an operator is told."""
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_twice")
    made = refund_by_hand(sandbox, bought["out_trade_no"], deliver=False)
    with live.app.app_context():
        refund_order(bought["order"], "客户要求 / asked by the guest")
    before = books(live.app)
    assert before["refunds"] == [("operator", "failed")]
    assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]
    assert books(live.app) == before
    assert inbox_outcomes(live.app) == ["refund_twice"]
    with live.app.app_context():
        from carbon.core.db import db

        ours = db.session.scalar(select(Refund.public_id))
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)
                                 .where(LedgerTransaction.kind == "refund")) == 1
    [alert] = [r for r in alerts(recorded_logs, logging.ERROR) if r.getMessage() == "second refund of a refunded order"]
    assert alert.fields["out_refund_no"] == made["out_refund_no"] and alert.fields["refunds"] == ours


@pytest.mark.parametrize("status", ["ABNORMAL", "CLOSED"])
def test_a_merchant_platform_refund_not_successful_books_nothing(live, sandbox, recorded_logs, status):  # noqa: F811
    """ABNORMAL has not paid back yet (its end is reported later, under the same out_refund_no, and
    books then); CLOSED paid back nothing."""
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, f"o_hand_{status.lower()}")
    before = books(live.app)
    made = refund_by_hand(sandbox, bought["out_trade_no"], status=status)
    assert made["notify"]["status"] == 204
    assert books(live.app) == before
    assert inbox_outcomes(live.app) == ["ignored"]
    assert [r.fields["status"] for r in alerts(recorded_logs, logging.ERROR)
            if r.getMessage() == "refund notification for an unknown refund"] == [status]
    if status == "ABNORMAL":  # the operator completes it at the merchant platform: now it is booked
        resolved = requests.post(f"{sandbox.url}/__sandbox__/pay/refunds/{made['out_refund_no']}/resolve",
                                 json={"status": "SUCCESS"}, timeout=5)
        assert resolved.status_code == 200, resolved.text
        assert [(d["event_type"], d["status"]) for d in run_due(sandbox)] == [("REFUND.SUCCESS", 204)]
        assert inbox_outcomes(live.app) == ["ignored", "merchant_refund"]
        assert books(live.app)["refunds"] == [("merchant", "succeeded")]
        with live.app.app_context():
            assert ledger.balance("cash:wechatpay", "CNY") == 0 and ledger.unbalanced_transactions() == []


def test_a_refund_notice_naming_another_transaction_books_nothing_and_alerts(live, sandbox, recorded_logs):  # noqa: F811
    """WeChat Pay's refund of the payment's out_trade_no but of another transaction than the one we
    confirmed (a second charge of it, say): not ours to book. Acknowledged, nothing changes, alerted."""
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_other_tx")
    made = refund_by_hand(sandbox, bought["out_trade_no"], deliver=False)
    before = books(live.app)
    with live.app.app_context():
        notice = ext.payments().query_refund(made["out_refund_no"])
        assert notice.transaction_id == bought["transaction_id"]
        other = dataclasses.replace(notice, transaction_id="4200000000" + "9" * 18)
        assert inbox.receive_refund(other, event_id=None, source="query").outcome == "refund_unknown"
    assert books(live.app) == before
    assert inbox_outcomes(live.app) == ["refund_unknown"]
    [alert] = [r for r in alerts(recorded_logs, logging.ERROR)
               if r.getMessage() == "refund of a payment we never confirmed"]
    assert alert.fields["transaction_id"] == other.transaction_id and alert.fields["order"] == bought["order"]
    assert "o_hand_other_tx" not in repr(alert.fields)  # no openid


def test_a_payment_and_its_refund_by_hand_in_one_inbox_batch_are_confirmed_then_booked(live, sandbox):
    """The payment's notification waited (workers down, a backlog) until the hand refund's came too:
    one worker's batch holds both. The payment is confirmed first, then its refund is booked, as if
    they had come one at a time: the cash back to zero, the order refunded, no certificate for it."""
    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_batch", deliver=False)
    with live.app.app_context():
        transaction = ext.payments().query(bought["out_trade_no"])
        assert transaction.trade_state == "SUCCESS"
    made = refund_by_hand(sandbox, bought["out_trade_no"], deliver=False)
    with live.app.app_context():
        notice = ext.payments().query_refund(made["out_refund_no"])
        paying, _ = inbox.record("transaction", transaction.transaction_id, transaction.out_trade_no, "ev-pay",
                                 "notify", inbox._fields_of(transaction))
        refunding, _ = inbox.record("refund", f"{notice.refund_id}:{notice.status}", notice.out_trade_no,
                                    "ev-refund", "notify", inbox._fields_of(notice))
        outcomes = inbox.process()  # a worker's batch: the oldest pending entries
        assert {entry: receipt.outcome for entry, receipt in outcomes.items()} == {
            paying: "confirmed", refunding: "merchant_refund"}
        assert ledger.balance("cash:wechatpay", "CNY") == 0
        assert ledger.balance("refund_due:wechatpay", "CNY") == 0
        assert ledger.unbalanced_transactions() == []
    after = books(live.app)
    assert after["orders"] == ["refunded"] and after["payments"] == ["refunded"]
    assert after["refunds"] == [("merchant", "succeeded")]
    assert after["revoked"] == []  # refunded before its certificate was issued: none is
    assert sorted(after["ledger"]) == ["payment", "refund", "refund_paid"]


@pytest.mark.parametrize("first", ["notification", "operator"])
def test_a_hand_refunds_notification_racing_an_operators_refund_books_once(live, sandbox, database_url, first):
    """On PostgreSQL: the hand refund's notification (the notify route) and ``refund_order`` for the
    same order wait behind a third connection holding the order, ``first`` ahead; then it lets go.
    Exactly one refund is booked, the ledger balances, the notification is acknowledged, the
    operator's refund that came second is refused (409, not 500), and no deadlock."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    from carbon.checkout.states import TransitionRefused
    from carbon.core.db import db
    from tests.payments.test_lock_order import deadlocks, deadlocks_since, wait_for_lock_waiters

    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, f"o_hand_race_{first}")
    refund_by_hand(sandbox, bought["out_trade_no"], deliver=False)
    observer = create_engine(database_url)
    before = deadlocks(observer)
    blocker = create_engine(database_url).connect()  # holds the order a moment
    blocker.execute(text("SELECT id FROM orders WHERE public_id = :o FOR UPDATE"), {"o": bought["order"]})
    results: dict = {}

    def operator() -> None:
        with live.app.app_context():
            try:
                results["operator"] = refund_order(bought["order"], "客户要求 / asked by the guest").status
            except Exception as exc:  # noqa: BLE001
                results["operator"] = exc
            db.session.remove()

    def notification() -> None:
        results["notification"] = run_due(sandbox)

    threads = {"operator": threading.Thread(target=operator), "notification": threading.Thread(target=notification)}
    second = "operator" if first == "notification" else "notification"
    threads[first].start()
    wait_for_lock_waiters(observer, 1)
    threads[second].start()
    wait_for_lock_waiters(observer, 2)
    blocker.rollback()
    blocker.close()
    for thread in threads.values():
        thread.join(30)
    seen = deadlocks_since(observer, before)
    observer.dispose()
    assert seen == 0, f"PostgreSQL detected {seen} deadlock(s)"
    assert [(d["event_type"], d["status"]) for d in results["notification"]] == [("REFUND.SUCCESS", 204)]
    after = books(live.app)
    assert after["orders"] == ["refunded"] and after["payments"] == ["refunded"]
    assert after["ledger"].count("refund") == 1
    with live.app.app_context():
        assert ledger.unbalanced_transactions() == []
        cash, due = ledger.balance("cash:wechatpay", "CNY"), ledger.balance("refund_due:wechatpay", "CNY")
    if first == "notification":
        assert inbox_outcomes(live.app) == ["merchant_refund"]
        assert after["refunds"] == [("merchant", "succeeded")] and (cash, due) == (0, 0)
        assert isinstance(results["operator"], TransitionRefused) and results["operator"].http_status == 409
    else:  # ours asked WeChat Pay after the hand refund: refused there (nothing left), the second alerted
        assert results["operator"] == "refunded"
        assert inbox_outcomes(live.app) == ["refund_twice"]
        assert after["refunds"] == [("operator", "failed")]
        assert (cash, due) == (Decimal("3.00"), Decimal("-3.00"))  # still owed back in the books: the alert's job


def test_a_hand_refund_waits_for_its_payments_confirmation_under_way_in_another_worker(
        live, sandbox, database_url, monkeypatch):
    """On PostgreSQL, two workers: one confirms the payment (its notification had waited), the other
    takes the hand refund's notification meanwhile. The refund waits for the confirmation to end,
    then is booked: not ``refund_unknown`` for a payment confirmed a moment later."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    from carbon.core.db import db
    from tests.payments.test_lock_order import wait_for_lock_waiters

    seed_project(live.app, units=1000, price="60.00")
    bought = paid(live, sandbox, "o_hand_two_workers", deliver=False)
    with live.app.app_context():
        transaction = ext.payments().query(bought["out_trade_no"])
    made = refund_by_hand(sandbox, bought["out_trade_no"], deliver=False)
    with live.app.app_context():
        notice = ext.payments().query_refund(made["out_refund_no"])
        paying, _ = inbox.record("transaction", transaction.transaction_id, transaction.out_trade_no, "ev-pay",
                                 "notify", inbox._fields_of(transaction))
        refunding, _ = inbox.record("refund", f"{notice.refund_id}:{notice.status}", notice.out_trade_no,
                                    "ev-refund", "notify", inbox._fields_of(notice))
    confirming, release = threading.Event(), threading.Event()

    def held(name: str) -> None:  # the confirming worker, just before its commit
        if name == "checkout.confirm.before_commit" and threading.current_thread().name == "payer":
            confirming.set()
            release.wait(30)

    monkeypatch.setattr(inbox, "failpoint", held)
    results: dict = {}

    def work(name: str, entry: int) -> None:
        with live.app.app_context():
            try:
                results[name] = inbox.process([entry])[entry].outcome
            except Exception as exc:  # noqa: BLE001
                results[name] = exc
            db.session.remove()

    payer = threading.Thread(target=work, args=("payer", paying), name="payer")
    payer.start()
    assert confirming.wait(30)
    refunder = threading.Thread(target=work, args=("refunder", refunding), name="refunder")
    refunder.start()
    observer = create_engine(database_url)
    try:
        wait_for_lock_waiters(observer, 1, timeout=3)  # the refund waits for the payment's lock
    except AssertionError:
        pass  # it did not wait: its outcome says what it decided
    finally:
        observer.dispose()
        release.set()
    payer.join(30)
    refunder.join(30)
    assert results == {"payer": "confirmed", "refunder": "merchant_refund"}
    after = books(live.app)
    assert after["orders"] == ["refunded"] and after["refunds"] == [("merchant", "succeeded")]
    with live.app.app_context():
        assert ledger.balance("cash:wechatpay", "CNY") == 0 and ledger.unbalanced_transactions() == []
