"""The outbox: one row per consumer, dispatched after commit, effects once, retried with backoff,
failures kept visible and replayable (flask outbox failed / replay)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from carbon import jobs
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.jobs.models import OutboxEvent
from carbon.scenes.models import SceneDailyStat


@pytest.fixture
def consumers(monkeypatch):
    """Two consumers of a test kind: one that counts, one that fails while ``failing`` is set."""
    calls = {"counted": [], "flaky": 0, "failing": True}

    def count(payload):
        calls["counted"].append(payload["n"])

    def flaky(payload):
        calls["flaky"] += 1
        if calls["failing"]:
            raise RuntimeError("the far side is down")

    monkeypatch.setitem(jobs.HANDLERS, "test.thing", {"tests.count": count, "tests.flaky": flaky})
    return calls


def test_each_consumer_runs_once_after_commit_and_failures_back_off(app, consumers):
    with app.app_context():
        ids = jobs.emit("test.thing", {"n": 1})
        assert len(ids) == 2 and consumers["counted"] == []  # nothing runs before the commit
        db.session.commit()
        jobs.kick()  # inline (DIANDIAN_JOBS=inline)
        assert consumers["counted"] == [1] and consumers["flaky"] == 1
        rows = {e.handler: e for e in db.session.scalars(select(OutboxEvent))}
        assert rows["tests.count"].status == "done"
        flaky = rows["tests.flaky"]
        assert (flaky.status, flaky.attempts) == ("pending", 1) and "far side" in flaky.last_error
        assert jobs.run_due() == {}  # not due yet: the first retry waits BACKOFF_SECONDS[0]
        clock.advance(jobs.BACKOFF_SECONDS[0] + 1)
        assert jobs.run_due() == {"retry": 1}
        assert consumers["counted"] == [1]  # the consumer that succeeded is not run again
        for seconds in jobs.BACKOFF_SECONDS[1:]:
            clock.advance(seconds + 1)
            jobs.run_due()
        db.session.expire_all()
        flaky = db.session.get(OutboxEvent, flaky.id)
        assert (flaky.status, flaky.attempts) == ("failed", jobs.MAX_ATTEMPTS)
        assert [e.id for e in jobs.failed()] == [flaky.id]
        consumers["failing"] = False
        assert jobs.replay(flaky.id) == "done"
        assert jobs.failed() == [] and consumers["flaky"] == jobs.MAX_ATTEMPTS + 1


def test_a_job_that_meets_a_dead_database_leaves_its_events_for_the_next_round(app, consumers, database_url, caplog):
    from carbon.jobs.worker import run_events
    from tests.reliability.test_outages import terminate_other_backends

    if not database_url.startswith("postgresql"):
        pytest.skip("server-side connection loss is a PostgreSQL behaviour")
    consumers["failing"] = False
    with app.app_context():
        ids = jobs.emit("test.thing", {"n": 7})
        db.session.commit()  # not kicked: an RQ job will run them
        terminate_other_backends(database_url)  # the pooled connection the job gets is dead
        assert run_events(ids) == {}
        assert "outbox batch deferred" in caplog.text and consumers["counted"] == []
        assert {e.status: e.attempts for e in db.session.scalars(select(OutboxEvent))} == {"pending": 0}
        assert run_events(ids) == dict.fromkeys(ids, "done") and consumers["counted"] == [7]


def test_a_rolled_back_event_is_never_dispatched(app, consumers):
    with app.app_context():
        jobs.emit("test.thing", {"n": 2})
        db.session.rollback()
        jobs.kick()
        assert consumers["counted"] == [] and db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 0


def test_a_kind_without_consumers_is_kept_as_done(app):
    with app.app_context():
        assert jobs.emit("test.nobody", {"n": 3}) == []
        db.session.commit()
        event = db.session.scalar(select(OutboxEvent))
        assert (event.kind, event.status) == ("test.nobody", "done")


COUNT, UNCOUNT = "carbon.scenes.stats.count_paid_order", "carbon.scenes.stats.uncount_refunded_order"


@pytest.fixture
def counted_scene(live):
    """A live scene (code ``cnt001``, channel ``door``) offering a project; returns its public id."""
    from tests.payments.conftest import live_scene, seed_project

    project_id = seed_project(live.app, units=100)
    with live.app.app_context():
        return live_scene(project_id, "cnt001", "cnt@x.example")[1]


def scene_counts(live, scene_public_id: str) -> tuple[int, str, str]:
    """The scene's grams and money (its counters), and its public progress."""
    from carbon.scenes import stats
    from carbon.scenes.models import Scene

    with live.app.app_context():
        scene_id = db.session.scalar(select(Scene.id).where(Scene.public_id == scene_public_id))
        totals = stats.totals(scene_id)
        db.session.rollback()
    board = live.get("/api/v1/leaderboards", params={"scene": scene_public_id})
    assert board.status_code == 200, board.text
    return int(totals["grams_neutralized"]), f"{totals['money_raised']:.2f}", board.json()["progress"]["neutralized_kg"]


def counter_events(live, order_public_id: str) -> dict[str, OutboxEvent]:
    with live.app.app_context():
        events = [e for e in db.session.scalars(select(OutboxEvent).where(OutboxEvent.handler.in_((COUNT, UNCOUNT))))
                  if e.payload["order"] == order_public_id]
        db.session.expunge_all()
    return {e.handler: e for e in events}


def test_the_scene_counters_consume_order_paid_once(live, sandbox, counted_scene):
    """Replaying an event that already succeeded is refused: counters never count twice. They
    count the order on the channel and the day (Asia/Shanghai) it was paid."""
    from carbon.core.clock import CHINA_TZ
    from tests.leaderboards.conftest import Guests

    order = Guests(live, sandbox).pay("o_once", "5", scene="s=cnt001&c=door")
    with live.app.app_context():
        ids = list(db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.kind == "order.paid")))
        assert len(ids) == len(jobs.HANDLERS["order.paid"])  # one row per consumer (counters, certificates, …)
        for event_id in ids:
            assert jobs.dispatch(event_id) == "skipped"
            with pytest.raises(LookupError):
                jobs.replay(event_id)
        row = db.session.scalar(select(SceneDailyStat))
        assert (row.channel, row.grams_neutralized, row.day) == ("door", 5000, clock.now().astimezone(CHINA_TZ).date())
    assert scene_counts(live, counted_scene) == (5000, order["amount"], "5.000")


def test_a_refund_before_the_count_leaves_the_scene_at_zero_and_the_late_count_adds_nothing(
        live, sandbox, counted_scene, monkeypatch):
    """The order.paid counter fails (retried with backoff, then ``failed``) while the order is
    refunded: the refund has nothing to take off, and the count, when it finally runs, finds the
    order refunded and adds nothing. The scene is never below zero."""
    from carbon.checkout.operations import refund_order
    from tests.leaderboards.conftest import Guests

    counter = jobs.HANDLERS["order.paid"][COUNT]

    def held_back(payload):
        raise RuntimeError("the counters are held back")

    monkeypatch.setitem(jobs.HANDLERS["order.paid"], COUNT, held_back)
    guests = Guests(live, sandbox)
    refunded = guests.pay("o_early", "4", scene="s=cnt001")
    assert (counter_events(live, refunded["id"])[COUNT].status, scene_counts(live, counted_scene)) == \
        ("pending", (0, "0.00", "0.000"))
    with live.app.app_context():
        refund_order(refunded["id"], "退款 / refund")
    assert counter_events(live, refunded["id"])[UNCOUNT].status == "done"
    assert scene_counts(live, counted_scene) == (0, "0.00", "0.000")  # was (-4000, "-1.00", "-4.000")

    monkeypatch.setitem(jobs.HANDLERS["order.paid"], COUNT, counter)  # the counters are back: the retry runs
    with live.app.app_context():
        clock.advance(jobs.BACKOFF_SECONDS[0] + 1)
        assert jobs.run_due() == {"done": 1}
    assert scene_counts(live, counted_scene) == (0, "0.00", "0.000")  # was 4000 more: an order refunded

    monkeypatch.setitem(jobs.HANDLERS["order.paid"], COUNT, held_back)  # a second order's count ends failed
    late = guests.pay("o_late", "2", scene="s=cnt001")
    with live.app.app_context():
        for seconds in jobs.BACKOFF_SECONDS:
            clock.advance(seconds + 1)
            jobs.run_due()
        assert counter_events(live, late["id"])[COUNT].status == "failed"
        refund_order(late["id"], "退款 / refund")
    assert scene_counts(live, counted_scene) == (0, "0.00", "0.000")
    monkeypatch.setitem(jobs.HANDLERS["order.paid"], COUNT, counter)
    with live.app.app_context():
        assert jobs.replay(counter_events(live, late["id"])[COUNT].id) == "done"  # an operator replays it
    assert scene_counts(live, counted_scene) == (0, "0.00", "0.000")


def test_each_counter_handler_run_again_with_its_stored_payload_changes_nothing(live, sandbox, counted_scene):
    """Every outbox handler is idempotent on its own (the dispatcher's once is not the only guard):
    pay counts once, pay then refund nets to zero, and neither handler counts twice."""
    from carbon.checkout.operations import refund_order
    from carbon.scenes import stats
    from tests.leaderboards.conftest import Guests

    def run_again(handler, payload) -> None:
        with live.app.app_context():
            handler(payload)
            db.session.commit()

    guests = Guests(live, sandbox)
    kept = guests.pay("o_kept", "3", scene="s=cnt001&c=door")
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")  # pay alone: counted once
    run_again(stats.count_paid_order, counter_events(live, kept["id"])[COUNT].payload)
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")  # was 6000

    refunded = guests.pay("o_gone", "4", scene="s=cnt001")
    assert scene_counts(live, counted_scene)[0] == 7000
    with live.app.app_context():
        refund_order(refunded["id"], "退款 / refund")
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")  # pay, refund: nets to zero
    events = counter_events(live, refunded["id"])
    run_again(stats.uncount_refunded_order, events[UNCOUNT].payload)
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")  # was 4000 less
    run_again(stats.count_paid_order, events[COUNT].payload)
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")  # was 4000 more

    with live.app.app_context():  # a handler failing after it counted: its savepoint rolls back, and the count too
        with pytest.raises(RuntimeError), db.session.begin_nested():
            stats.uncount_refunded_order({"order": kept["id"]})
            raise RuntimeError("after the count")
        db.session.commit()
    assert scene_counts(live, counted_scene) == (3000, kept["amount"], "3.000")


def test_the_cli_lists_and_replays_failed_events(app, consumers):
    with app.app_context():
        [_, flaky_id] = sorted(jobs.emit("test.thing", {"n": 4}))
        db.session.commit()
        db.session.execute(OutboxEvent.__table__.update().values(status="failed", attempts=8, last_error="boom"))
        db.session.commit()
    runner = app.test_cli_runner()
    listed = runner.invoke(args=["outbox", "failed"])
    assert listed.exit_code == 0 and "test.thing" in listed.output and "boom" in listed.output
    consumers["failing"] = False
    replayed = runner.invoke(args=["outbox", "replay", str(flaky_id)])
    assert replayed.exit_code == 0 and replayed.output.strip() == "done"
    assert runner.invoke(args=["outbox", "replay", "999999"]).exit_code != 0


def test_the_cli_runs_every_due_event_of_a_backlog_larger_than_a_batch(app, monkeypatch):
    """After the workers were down: ``flask outbox run`` dispatches batch after batch until none is due."""
    seen: list[int] = []
    monkeypatch.setitem(jobs.HANDLERS, "test.backlog", {"tests.count": lambda payload: seen.append(payload["n"])})
    backlog = jobs.DISPATCH_BATCH + jobs.DISPATCH_BATCH // 2
    with app.app_context():
        jobs.emit_many("test.backlog", [{"n": n} for n in range(backlog)])
        db.session.commit()
        db.session.info.pop(jobs.COMMITTED, None)  # not handed on: the workers were down
    result = app.test_cli_runner().invoke(args=["outbox", "run"])
    assert result.exit_code == 0 and f"'done': {backlog}" in result.output, result.output
    assert sorted(seen) == list(range(backlog))


@pytest.fixture
def lanes(monkeypatch):
    """Two consumers of a test kind on two queues: ``quick`` (default) counts, ``slow`` (render)
    fails while ``failing`` is set."""
    calls = {"quick": [], "slow": [], "failing": True}

    def quick(payload):
        calls["quick"].append(payload["n"])

    def slow(payload):
        calls["slow"].append(payload["n"])
        if calls["failing"]:
            raise RuntimeError("the renderer is down")

    monkeypatch.setitem(jobs.HANDLERS, "test.lanes", {"tests.quick": quick, "tests.slow": slow})
    monkeypatch.setitem(jobs.QUEUES, "tests.slow", "render")
    return calls


def test_each_queue_runs_only_its_events_and_a_failing_one_blocks_no_other(app, lanes):
    with app.app_context():
        assert jobs.queue_names()[0] == "default" and "render" in jobs.queue_names()
        ids = jobs.emit_many("test.lanes", [{"n": 1}, {"n": 2}])
        db.session.commit()
        db.session.info.pop(jobs.COMMITTED)  # not handed on (as with workers and no Redis): left to the sweeps
        rows = db.session.scalars(select(OutboxEvent).where(OutboxEvent.id.in_(ids))).all()
        assert sorted((e.handler, e.queue) for e in rows) == [("tests.quick", "default"), ("tests.quick", "default"),
                                                              ("tests.slow", "render"), ("tests.slow", "render")]
        assert jobs.run_due(queues=["render"]) == {"retry": 2}  # the render lane's sweep: its events only
        assert lanes["quick"] == [] and lanes["slow"] == [1, 2]
        assert jobs.run_due(queues=["default"]) == {"done": 2}  # not held up by the failing lane
        assert lanes["quick"] == [1, 2]
        for seconds in jobs.BACKOFF_SECONDS:
            clock.advance(seconds + 1)
            jobs.run_due(queues=["render"])
        assert [(e.queue, e.handler) for e in jobs.failed()] == [("render", "tests.slow")] * 2
        lanes["failing"] = False
        assert [jobs.replay(e.id) for e in jobs.failed()] == ["done", "done"]  # the same replay on every lane
        statuses = db.session.execute(select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status)).all()
        assert dict(statuses) == {"done": 4}  # nothing lost
        assert lanes["quick"] == [1, 2]  # and nothing run twice


def test_a_worker_refuses_a_lane_nobody_serves(app):
    runner = app.test_cli_runner()
    answer = runner.invoke(args=["worker", "-q", "pictures"])
    assert answer.exit_code == 2 and "unknown lane 'pictures'" in answer.output and "inbox, default" in answer.output


def test_rq_delivers_each_queue_to_its_own_workers(app_config, sandbox, lanes):
    """Real RQ on Redis: a commit's events go to the RQ queue of their lane, in jobs of at most
    DISPATCH_BATCH; a worker of one lane never takes another lane's jobs."""
    from rq import SimpleWorker

    from app import create_app
    from tests.conftest import TEST_REDIS_URL, dispose_app

    if not TEST_REDIS_URL:
        pytest.skip("real RQ: set TEST_REDIS_URL")
    import redis

    redis.Redis.from_url(TEST_REDIS_URL).flushdb()
    application = create_app({**app_config, "JOBS": "workers", "REDIS_URL": TEST_REDIS_URL})
    try:
        with application.app_context():
            from carbon.core import extensions as ext

            jobs.emit_many("test.lanes", [{"n": n} for n in range(jobs.DISPATCH_BATCH + 1)])
            db.session.commit()
            jobs.kick()
            default, render = ext.job_queue(), ext.job_queue("render")
            assert (default.name, render.name) == ("diandian", "diandian.render")
            assert (default.count, render.count) == (2, 2)  # 101 events each: jobs of 100 and 1
            SimpleWorker([render], connection=render.connection).work(burst=True, logging_level="WARNING")
            assert (default.count, render.count) == (2, 0)
            assert len(lanes["slow"]) == jobs.DISPATCH_BATCH + 1 and lanes["quick"] == []
            SimpleWorker([default], connection=default.connection).work(burst=True, logging_level="WARNING")
            assert default.count == 0 and sorted(lanes["quick"]) == list(range(jobs.DISPATCH_BATCH + 1))
            counts = dict(db.session.execute(select(OutboxEvent.queue, func.count()).where(
                OutboxEvent.status == "pending").group_by(OutboxEvent.queue)).all())
            assert counts == {"render": jobs.DISPATCH_BATCH + 1}  # the failures wait for their retry, kept
            lanes["failing"] = False
            clock.advance(jobs.BACKOFF_SECONDS[0] + 1)
            assert application.test_cli_runner().invoke(args=["outbox", "run", "-q", "render"]).exit_code == 0
            jobs.run_due(queues=["render"])  # the rest beyond one batch
            assert db.session.scalar(select(func.count()).select_from(OutboxEvent)
                                     .where(OutboxEvent.status != "done")) == 0
    finally:
        redis.Redis.from_url(TEST_REDIS_URL).flushdb()
        dispose_app(application)
