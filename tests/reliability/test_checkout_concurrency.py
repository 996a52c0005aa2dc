"""Money under pressure, on PostgreSQL with the service under gunicorn (several processes):
no oversell, one confirmation for many simultaneous duplicates, recovery after a crash."""
from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
import requests
from sqlalchemy import func, select

from carbon.checkout.models import InboxEntry, Order, Payment
from carbon.core.db import db
from carbon.credits.models import Reservation, Retirement
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction
from tests.payments.conftest import seed_project
from tests.reliability.servers import gunicorn_service


@pytest.fixture
def pg(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("these run against PostgreSQL (set TEST_DATABASE_URL)")
    return database_url


def login(base: str, sandbox, openid: str) -> str:
    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": openid}, timeout=5).json()["code"]
    return requests.post(f"{base}/api/v1/auth/login", json={"code": code}, timeout=10).json()["token"]


def order(base: str, token: str, kg: str, key: str) -> requests.Response:
    return requests.post(f"{base}/api/v1/orders", json={"kg": kg}, timeout=60,
                         headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def test_two_hundred_concurrent_orders_never_oversell(app, pg, sandbox):
    seed_project(app, units=150)
    with gunicorn_service(pg, sandbox.url) as base:
        tokens = [login(base, sandbox, f"o_rush_{i}") for i in range(200)]
        with ThreadPoolExecutor(max_workers=50) as pool:
            answers = list(pool.map(lambda i: order(base, tokens[i], "1", f"rush-{i}"), range(200)))
    outcomes = Counter((a.status_code, a.json().get("error", {}).get("code")) for a in answers)
    assert outcomes == {(201, None): 150, (409, "credits.sold_out"): 50}
    with app.app_context():
        held = db.session.execute(select(Reservation.first_serial, Reservation.last_serial)
                                  .where(Reservation.status == "active")).all()
        serials = [serial for first, last in held for serial in range(first, last + 1)]
        assert sorted(serials) == list(range(1, 151))  # every serial held once, none beyond the block
        assert db.session.scalar(select(func.count()).select_from(Order).where(Order.status == "canceled")) == 0


def test_one_guests_simultaneous_orders_stay_within_the_hold_limit(app, pg, sandbox):
    """The open-order limit is counted under the buyer's row lock: ten orders at once by one guest
    (four server processes) make exactly the limit's worth, the rest are refused."""
    seed_project(app, units=1000)
    with gunicorn_service(pg, sandbox.url, extra_env={"DIANDIAN_MAX_OPEN_ORDERS_PER_GUEST": "2"}) as base:
        token = login(base, sandbox, "o_hoarder")
        barrier = Barrier(10)

        def at_once(i: int) -> requests.Response:
            barrier.wait()
            return order(base, token, "1", f"hoard-{i}")

        with ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(at_once, range(10)))
    outcomes = Counter((a.status_code, a.json().get("error", {}).get("code")) for a in answers)
    assert outcomes == {(201, None): 2, (409, "order.hold_limit"): 8}, outcomes
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Reservation)
                                 .where(Reservation.status == "active")) == 2
        db.session.rollback()


def test_the_same_notify_twenty_times_at_once_confirms_once(app, pg, sandbox):
    seed_project(app, units=1000)
    with gunicorn_service(pg, sandbox.url, workers=4) as base:
        token = login(base, sandbox, "o_dupes")
        created = order(base, token, "12", "dupes").json()
        out_trade_no = created["order"]["payments"][0]["out_trade_no"]
        paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment",
                             json={**created["request_payment"], "deliver": False}, timeout=10)
        assert paid.status_code == 200
        sends = requests.post(f"{sandbox.url}/__sandbox__/pay/notify", timeout=60, json={
            "out_trade_no": out_trade_no, "variant": "normal", "count": 20, "concurrency": 20}).json()
    assert [send["status"] for send in sends] == [204] * 20
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert payment.status == "confirmed" and payment.order.status == "fulfilled"  # paid, then its certificate issued
        assert db.session.scalar(select(func.count()).select_from(Retirement)) == 1
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 12
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 1
        assert db.session.scalar(select(func.count()).select_from(InboxEntry)) == 1
        assert ledger.unbalanced_transactions() == []


def test_a_crash_between_notify_and_commit_is_completed_by_the_retry(app, pg, sandbox, tmp_path):
    seed_project(app, units=1000)
    marker = tmp_path / "crashed"
    failpoints = {"DIANDIAN_FAILPOINTS": f"checkout.confirm.before_commit@{marker}"}
    with gunicorn_service(pg, sandbox.url, workers=2, extra_env=failpoints) as base:
        token = login(base, sandbox, "o_crash")
        created = order(base, token, "7", "crash").json()
        out_trade_no = created["order"]["payments"][0]["out_trade_no"]
        first = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created["request_payment"],
                              timeout=30).json()["notify"]
        assert marker.exists() and first["acknowledged"] is False  # the worker died mid-confirmation
        with app.app_context():
            payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
            assert payment.status == "pending" and db.session.scalar(select(func.count()).select_from(Retirement)) == 0
        requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 15}, timeout=5)
        retried = requests.post(f"{sandbox.url}/__sandbox__/pay/notifications/run-due", json={}, timeout=30).json()
    assert [(d["attempt"], d["status"]) for d in retried] == [(2, 204)]
    with app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert payment.status == "confirmed"
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 7
        assert ledger.unbalanced_transactions() == []
