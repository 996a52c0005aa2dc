"""Lock order on PostgreSQL: paths that lock the same rows take them in one order, so none is a
deadlock victim. Each test makes two paths meet: a third connection holds one row a moment (as
an expiry run or a push handler would), both wait behind it, then it lets go."""
from __future__ import annotations

import dataclasses
import threading
import time
from decimal import Decimal

import pytest
import requests
from sqlalchemy import create_engine, select, text

from carbon.certificates.models import Certificate
from carbon.checkout import inbox
from carbon.checkout.models import Order
from carbon.checkout.operations import refund_order
from carbon.core import extensions as ext
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.credits import service as credits
from carbon.credits.models import Reservation, Retirement
from carbon.jobs.models import OutboxEvent
from carbon.ledger import service as ledger
from tests.payments.conftest import guest_token, seed_project


@pytest.fixture
def pg(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite has one writer at a time)")
    return database_url


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def wait_for_lock_waiters(engine, count: int, timeout: float = 10.0) -> None:
    """Until ``count`` backends of this database wait for a lock."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                 "AND wait_event_type = 'Lock'")).scalar() >= count:
                return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} backends wait for a lock")


def deadlocks(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")).scalar()


def deadlocks_since(engine, before: int) -> int:
    time.sleep(1.5)  # a backend's statistics reach pg_stat_database within a second
    return deadlocks(engine) - before


def place(live, sandbox, openid: str, kg: str) -> dict:
    token = guest_token(live.url, sandbox, openid)
    answer = live.post("/api/v1/orders", json={"kg": kg}, headers={**bearer(token), "Idempotency-Key": openid})
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_new_orders_sweep_of_expired_holds_and_a_batch_of_late_payments_do_not_deadlock(pg, live, sandbox):
    """The new order's sweep (credits.reserve) and the batch's retire both lock holds by order id:
    here the older order's hold sits in the later block, where a sweep by block would meet it last."""
    project_id = seed_project(live.app, units=10)  # block 1: serials 1-10
    with live.app.app_context():
        credits.add_block(project_id, "2022", 11, 20, Decimal("60.00"))  # block 2: serials 11-20
    given_up = place(live, sandbox, "o_zero", "10")  # all of block 1
    older = place(live, sandbox, "o_one", "1")  # serial 11, block 2
    with live.app.app_context():  # the first order given up (WeChat Pay failed): block 1 free again
        zero = db.session.scalar(select(Order.id).where(Order.public_id == given_up["order"]["id"]))
        credits.release([zero])
        db.session.execute(text("UPDATE orders SET status = 'canceled' WHERE id = :o"), {"o": zero})
        db.session.commit()
    newer = place(live, sandbox, "o_two", "1")  # serial 1, block 1
    newcomer = guest_token(live.url, sandbox, "o_three")
    for created in (older, newer):  # both paid at WeChat Pay, their notifications late
        paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment",
                             json={**created["request_payment"], "deliver": False}, timeout=10)
        assert paid.status_code == 200
    clock.advance(16 * 60)  # both holds past their expiry, still active (the expiry job has not run)
    requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 16 * 60}, timeout=5)
    with live.app.app_context():
        entries = []
        for created in (older, newer):
            transaction = ext.payments().query(created["order"]["payments"][0]["out_trade_no"])
            entries.append(inbox.record("transaction", transaction.transaction_id, transaction.out_trade_no, None,
                                        "query", dataclasses.asdict(transaction))[0])
        older_id, newer_id = (db.session.scalar(select(Order.id).where(Order.public_id == created["order"]["id"]))
                              for created in (older, newer))
        db.session.commit()

    observer = create_engine(pg)
    before = deadlocks(observer)
    blocker = create_engine(pg).connect()
    blocker.execute(text("SELECT id FROM reservations WHERE order_id = :o FOR UPDATE"), {"o": older_id})
    results = {}

    def confirm() -> None:
        with live.app.app_context():
            try:
                results["batch"] = {entry: str(receipt.outcome) for entry, receipt in inbox.process(entries).items()}
            except Exception as exc:  # noqa: BLE001
                results["batch"] = exc
            db.session.remove()

    batch = threading.Thread(target=confirm)
    batch.start()
    wait_for_lock_waiters(observer, 1)  # the batch holds both payments and waits at the older order's hold
    buyer = threading.Thread(target=lambda: results.setdefault("order", live.post(
        "/api/v1/orders", json={"kg": "1"}, headers={**bearer(newcomer), "Idempotency-Key": "newcomer"})))
    buyer.start()
    wait_for_lock_waiters(observer, 2)  # the new order holds the blocks and waits at an expired hold
    blocker.rollback()
    blocker.close()
    batch.join(30)
    buyer.join(30)
    seen = deadlocks_since(observer, before)
    observer.dispose()
    assert seen == 0, f"PostgreSQL detected {seen} deadlock(s)"
    assert results["batch"] == {entry: "confirmed" for entry in entries}
    assert results["order"].status_code == 201, results["order"].text
    with live.app.app_context():
        assert sorted(db.session.execute(select(Retirement.order_id, Retirement.first_serial)).all()) == \
            sorted([(older_id, 11), (newer_id, 1)])
        assert db.session.scalars(select(Reservation.first_serial).where(Reservation.status == "active")).all() == [2]
        assert ledger.unbalanced_transactions() == []


def test_deleting_the_account_while_its_refunded_certificate_is_revoked_does_not_deadlock(pg, live, sandbox):
    """Revocation (order.refunded) and account deletion both lock the order before its certificate."""
    seed_project(live.app, units=100)
    token = guest_token(live.url, sandbox, "o_refunded_leaver")
    created = live.post("/api/v1/orders", json={"kg": "3"}, headers={**bearer(token), "Idempotency-Key": "k"}).json()
    notify = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created["request_payment"],
                           timeout=30).json()["notify"]
    assert notify["acknowledged"] is True  # paid and certified
    order_id = created["order"]["id"]

    observer = create_engine(pg)
    before = deadlocks(observer)
    blocker = create_engine(pg).connect()  # holds the certificate a moment (e.g. its push handler)
    blocker.execute(text("SELECT id FROM certificates FOR UPDATE"))
    results = {}

    def refund() -> None:  # the operator's refund; its order.refunded handler (inline) revokes the certificate
        with live.app.app_context():
            try:
                refund_order(order_id, "客户要求 / asked by the guest")
                results["refund"] = "ok"
            except Exception as exc:  # noqa: BLE001
                results["refund"] = exc
            db.session.remove()

    refunder = threading.Thread(target=refund)
    refunder.start()
    wait_for_lock_waiters(observer, 1)  # the refund is committed; the revocation waits at the certificate
    deleter = threading.Thread(target=lambda: results.setdefault("delete", requests.delete(
        live.url + "/api/v1/me", json={"confirm": "注销账号"}, headers=bearer(token), timeout=30)))
    deleter.start()
    wait_for_lock_waiters(observer, 2)  # the deletion waits too
    blocker.rollback()
    blocker.close()
    refunder.join(30)
    deleter.join(30)
    seen = deadlocks_since(observer, before)
    observer.dispose()
    assert seen == 0, f"PostgreSQL detected {seen} deadlock(s)"
    assert results["refund"] == "ok"
    assert results["delete"].status_code == 204, results["delete"].text
    with live.app.app_context():
        assert set(db.session.scalars(select(OutboxEvent.status).where(  # the revocation among them
            OutboxEvent.kind == "order.refunded"))) == {"done"}
        assert db.session.scalar(select(Certificate.revoke_seq)) is not None


def test_a_sweep_counting_one_order_and_the_refund_of_another_at_the_same_scene_do_not_deadlock(
        pg, live, sandbox, monkeypatch):
    """A scene's counter rows are written at the commit of the outbox batch, after every lock its
    handlers take. Here a sweep retries A's count and then B's leaderboard refresh (B's guest) while
    B's refund holds B's guest and order, its revocation waiting at the certificate, and then takes
    B back off the same counter row: had the sweep written A's count at once, each would wait for
    the other."""
    from carbon import jobs
    from carbon.scenes import stats
    from carbon.scenes.models import Scene
    from tests.leaderboards.conftest import Guests
    from tests.payments.conftest import live_scene

    project_id = seed_project(live.app, units=100)
    with live.app.app_context():
        _, scene_public_id = live_scene(project_id, "lock01", "lock@x.example")
    count, refresh = "carbon.scenes.stats.count_paid_order", "carbon.leaderboards.service.refresh_for_order"
    held: set[str] = set()  # the handlers failing for now
    for name in (count, refresh):
        def held_back(payload, name=name, handler=jobs.HANDLERS["order.paid"][name]):
            if name in held:
                raise RuntimeError("held back")
            handler(payload)
        monkeypatch.setitem(jobs.HANDLERS["order.paid"], name, held_back)
    guests = Guests(live, sandbox)
    held.add(count)
    first = guests.pay("o_lock_a", "2", scene="s=lock01")  # its count is retried later
    held.symmetric_difference_update({count, refresh})
    second = guests.pay("o_lock_b", "3", scene="s=lock01")  # counted; its refresh is retried later
    held.clear()
    clock.advance(jobs.BACKOFF_SECONDS[0] + 1)
    with live.app.app_context():
        second_id = db.session.scalar(select(Order.id).where(Order.public_id == second["id"]))
        scene_id = db.session.scalar(select(Scene.id).where(Scene.public_id == scene_public_id))
        assert stats.totals(scene_id)["grams_neutralized"] == 3000
        db.session.rollback()

    observer = create_engine(pg)
    before = deadlocks(observer)
    blocker = create_engine(pg).connect()  # holds B's certificate a moment (e.g. its push handler)
    blocker.execute(text("SELECT id FROM certificates WHERE order_id = :o FOR UPDATE"), {"o": second_id})
    results = {}

    def run(name, work) -> None:
        with live.app.app_context():
            try:
                results[name] = work()
            except Exception as exc:  # noqa: BLE001
                results[name] = exc
            db.session.remove()

    refunder = threading.Thread(target=run, args=("refund", lambda: refund_order(second["id"], "退款").status))
    refunder.start()
    wait_for_lock_waiters(observer, 1)  # B refunded; its revocation holds B's guest and order, waits at the certificate
    sweeper = threading.Thread(target=run, args=("sweep", jobs.run_due))
    sweeper.start()
    wait_for_lock_waiters(observer, 2)  # A's count done (its order locked); B's refresh waits at B's guest
    blocker.rollback()
    blocker.close()
    refunder.join(30)
    sweeper.join(30)
    seen = deadlocks_since(observer, before)
    observer.dispose()
    assert seen == 0, f"PostgreSQL detected {seen} deadlock(s)"
    assert results == {"refund": "refunded", "sweep": {"done": 2}}
    with live.app.app_context():
        assert set(db.session.scalars(select(OutboxEvent.status))) == {"done"}
        assert stats.totals(scene_id)["grams_neutralized"] == 2000  # A counted; B counted, then taken back
        assert db.session.scalar(select(Order.counted).where(Order.public_id == first["id"])) is True
