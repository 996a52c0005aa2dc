"""With DIANDIAN_JOBS=workers the notify route only records; `flask worker` processes confirm from
the inbox (woken by LISTEN/NOTIFY) and run the outbox (RQ on Redis, or the table sweep). PostgreSQL."""
from __future__ import annotations

import os
import signal
import time

import pytest
import requests
from sqlalchemy import func, select

from carbon.checkout.models import InboxEntry, Order, Payment
from carbon.core.db import db
from carbon.credits.models import Retirement
from carbon.jobs.models import OutboxEvent
from carbon.jobs.worker import SWEEP_LAG_SECONDS
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction
from carbon.scenes.models import SceneDailyStat
from tests.conftest import TEST_REDIS_URL
from tests.payments.conftest import live_scene, seed_project
from tests.reliability.servers import gunicorn_service, worker_process
from tests.reliability.test_checkout_concurrency import login

QUEUES = ["table"] + (["rq"] if TEST_REDIS_URL else [])


@pytest.fixture
def pg(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("workers claim inbox rows with FOR UPDATE SKIP LOCKED: PostgreSQL (set TEST_DATABASE_URL)")
    return database_url


def wait_for(predicate, seconds: float = 15.0, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


def pay(base: str, sandbox, token: str, kg: str, key: str, scene: str | None = None) -> dict:
    body = {"kg": kg, **({"scene": scene} if scene else {})}
    created = requests.post(f"{base}/api/v1/orders", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key}).json()
    assert "request_payment" in created, created
    notify = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created["request_payment"],
                           timeout=30).json()["notify"]
    assert (notify["status"], notify["acknowledged"]) == (204, True)  # recorded: answered at once
    return created


@pytest.mark.parametrize("queue", QUEUES)
def test_a_worker_confirms_what_the_notify_route_recorded(app, pg, sandbox, queue):
    project_id = seed_project(app, units=1000)
    with app.app_context():
        _, scene_id = live_scene(project_id, "wkone", "w@x.example")
    env = {"DIANDIAN_JOBS": "workers", **({"DIANDIAN_REDIS_URL": TEST_REDIS_URL} if queue == "rq" else {})}
    if queue == "rq":
        import redis

        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    with gunicorn_service(pg, sandbox.url, workers=2, extra_env=env) as base:
        token = login(base, sandbox, "o_worker")
        with worker_process(pg, sandbox.url, base, env):
            created = pay(base, sandbox, token, "12", "w-1", scene="s%3Dwkone")
            headers = {"Authorization": f"Bearer {token}"}

            def paid():
                answer = requests.get(f"{base}/api/v1/orders/{created['order']['id']}", headers=headers, timeout=10)
                return answer.json()["order"]["status"] in ("paid", "fulfilled")  # certificate issued

            wait_for(paid, seconds=90)  # the worker's start-up included: slow on a busy machine
            with app.app_context():  # the order.paid handler counted it for the scene, once
                wait_for(lambda: db.session.scalar(select(func.sum(SceneDailyStat.grams_neutralized))) == 12_000)
                db.session.rollback()
                event = db.session.scalar(select(OutboxEvent).where(OutboxEvent.kind == "order.paid"))
                assert event.status == "done" and event.attempts == 1
                if queue == "rq":  # delivered by the queue, not by the sweep (which waits SWEEP_LAG_SECONDS)
                    assert (event.processed_at - event.created_at).total_seconds() < SWEEP_LAG_SECONDS
    with app.app_context():
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 12
        entry = db.session.scalar(select(InboxEntry))
        assert (entry.status, entry.outcome, entry.source) == ("done", "confirmed", "notify")
        assert ledger.unbalanced_transactions() == []
        assert scene_id


def test_rows_held_by_a_killed_worker_are_confirmed_by_another_once(app, pg, sandbox, tmp_path):
    seed_project(app, units=1000)
    marker = tmp_path / "worker-died"
    env = {"DIANDIAN_JOBS": "workers", "DIANDIAN_FAILPOINTS": f"checkout.confirm.before_commit@{marker}"}
    with gunicorn_service(pg, sandbox.url, workers=2, extra_env=env) as base:
        tokens = [login(base, sandbox, f"o_held_{i}") for i in range(5)]
        orders = [pay(base, sandbox, token, "3", f"held-{i}") for i, token in enumerate(tokens)]
        with app.app_context():  # recorded, nobody confirmed yet
            assert db.session.scalar(select(func.count()).select_from(InboxEntry)
                                     .where(InboxEntry.status == "pending")) == 5
        with worker_process(pg, sandbox.url, base, env) as doomed:
            assert doomed.wait(30) == 137  # it claimed the batch and died before its commit
        assert marker.exists()
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Retirement)) == 0
            assert db.session.scalar(select(func.count()).select_from(InboxEntry)
                                     .where(InboxEntry.status == "pending")) == 5
        with worker_process(pg, sandbox.url, base, env) as survivor:
            with app.app_context():
                wait_for(lambda: db.session.scalar(select(func.count()).select_from(Order)
                                                   .where(Order.status == "paid")) == 5 or db.session.rollback())
            survivor.send_signal(signal.SIGTERM)
    with app.app_context():
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 15
        assert db.session.scalar(select(func.count()).select_from(LedgerTransaction)) == 5
        assert db.session.scalar(select(func.count()).select_from(Payment)
                                 .where(Payment.status == "confirmed")) == 5
        assert {o["order"]["id"] for o in orders} == set(db.session.scalars(select(Order.public_id)))
        assert ledger.unbalanced_transactions() == []
    assert os.path.exists(marker)


def test_two_workers_issue_consecutive_certificates_on_one_chain(app, pg, sandbox):
    from carbon.certificates import service as certificates
    from carbon.certificates.models import Certificate

    seed_project(app, units=1000)
    env = {"DIANDIAN_JOBS": "workers"}
    with gunicorn_service(pg, sandbox.url, workers=2, extra_env=env) as base:
        tokens = [login(base, sandbox, f"o_chain_{i}") for i in range(12)]
        with worker_process(pg, sandbox.url, base, env), worker_process(pg, sandbox.url, base, env):
            for i, token in enumerate(tokens):
                pay(base, sandbox, token, "1", f"chain-{i}")
            with app.app_context():
                wait_for(lambda: db.session.scalar(select(func.count()).select_from(Certificate)) == 12
                         or db.session.rollback(), seconds=30)
    with app.app_context():
        numbers = sorted(db.session.scalars(select(Certificate.number)))
        year = numbers[0].split("-")[1]
        assert numbers == [f"DD-{year}-{n:06d}" for n in range(1, 13)]  # no gaps, no repeats
        assert certificates.check_chain(certificates.chain()) is None  # one chain, never forked
        assert db.session.scalar(select(func.count()).select_from(Order).where(Order.status == "fulfilled")) == 12


@pytest.mark.parametrize("queue", QUEUES)
def test_the_work_after_a_payment_waits_for_a_worker_of_its_lane_and_none_is_lost(app, pg, sandbox, queue):
    """Lanes (decision 0015): a worker of the inbox lane confirms the payment but never runs what
    follows it; a worker of the default lane does, once, when it starts. No picture is drawn ahead."""
    from carbon.certificates.models import Certificate, CertificateImage

    seed_project(app, units=1000)
    env = {"DIANDIAN_JOBS": "workers", **({"DIANDIAN_REDIS_URL": TEST_REDIS_URL} if queue == "rq" else {})}
    if queue == "rq":
        import redis

        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    with gunicorn_service(pg, sandbox.url, workers=2, extra_env=env) as base:
        tokens = [login(base, sandbox, f"o_lane_{i}") for i in range(3)]
        # --nice: the flag changes the worker's priority (root may raise it; anyone else sees it lowered)
        nice = -5 if os.geteuid() == 0 else 5
        with worker_process(pg, sandbox.url, base, env, args=("-q", "inbox", "--nice", str(nice))) as confirmer:
            for i, token in enumerate(tokens):
                pay(base, sandbox, token, "2", f"lane-{i}")
            with app.app_context():
                wait_for(lambda: db.session.scalar(select(func.count()).select_from(Order)
                                                   .where(Order.status == "paid")) == 3 or db.session.rollback(),
                         seconds=90)  # a worker's start-up is slow on a busy machine
                time.sleep(SWEEP_LAG_SECONDS + 1.5)  # past the sweep's lag: a default worker would have taken them
                assert os.getpriority(os.PRIO_PROCESS, confirmer.pid) == max(min(os.getpriority(os.PRIO_PROCESS, 0) + nice, 19), -20)
                after = db.session.scalars(select(OutboxEvent).where(OutboxEvent.kind == "order.paid")).all()
                assert after and {(e.status, e.attempts, e.queue) for e in after} == {("pending", 0, "default")}
                assert db.session.scalar(select(func.count()).select_from(Certificate)) == 0
                db.session.rollback()
            if queue == "rq":
                import redis

                assert redis.Redis.from_url(TEST_REDIS_URL).llen("rq:queue:diandian") >= 1  # waiting in RQ
            with worker_process(pg, sandbox.url, base, env, args=("-q", "default")), app.app_context():
                wait_for(lambda: db.session.scalar(select(func.count()).select_from(OutboxEvent)  # pushes too
                                                   .where(OutboxEvent.status != "done")) == 0
                         or db.session.rollback(), seconds=90)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Certificate)) == 3
        assert db.session.scalar(select(func.count()).select_from(CertificateImage)) == 0  # drawn when first asked
        events = db.session.scalars(select(OutboxEvent).where(OutboxEvent.handler != "")).all()
        assert {(e.status, e.attempts) for e in events} == {("done", 1)}  # every lane drained, nothing retried
        assert {e.queue for e in events} == {"default"}
