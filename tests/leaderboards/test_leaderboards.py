"""Leaderboards: ranks by the kilograms retired in a guest's name, shared by ties, per scene and
period, taken back by a refund, masked on opt-out; Redis and the table give the same answers."""
from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import event, func, insert, select, update
from sqlalchemy.exc import OperationalError

from bench.harness import free_port
from carbon import jobs
from carbon.accounts.models import User
from carbon.checkout.operations import refund_order
from carbon.core.clock import CHINA_TZ, clock
from carbon.core.db import db
from carbon.credits.models import Retirement
from carbon.jobs.models import OutboxEvent
from carbon.leaderboards import service as leaderboards
from carbon.leaderboards.index import RedisIndex, SqlIndex
from carbon.leaderboards.models import LeaderboardScore, LeaderboardScoreCount
from carbon.scenes.models import Scene
from tests.conftest import make_config
from tests.leaderboards.conftest import Guests
from tests.payments.conftest import live_scene, seed_project, serve


def board_json(live, **query) -> dict:
    response = live.get("/api/v1/leaderboards", params=query)
    assert response.status_code == 200, response.json()
    return response.json()


def ranks(body: dict) -> list[tuple[int, str, str]]:
    return [(entry["rank"], entry["name"], entry["kg"]) for entry in body["entries"]]


def name(guests, openid: str, nickname: str) -> None:
    answer = requests.patch(guests.live.url + "/api/v1/me", json={"nickname": nickname},
                            headers=guests.headers(openid), timeout=10)
    assert answer.status_code == 200, answer.json()


@pytest.fixture
def forum(live):
    project_id = seed_project(live.app, units=10_000)
    with live.app.app_context():
        _, scene_id = live_scene(project_id, "lbrd01", "lb@x.example")
    return scene_id


def test_ties_share_a_rank_and_each_guest_sees_their_neighbours(live, guests, forum):
    for openid, nickname, kg in [("o_a", "阿明", "5"), ("o_b", "小红", "3"), ("o_c", "老张", "3"),
                                 ("o_d", "Dora", "1"), ("o_e", "二狗", "8")]:
        name(guests, openid, nickname)
        guests.pay(openid, kg, scene="s=lbrd01")
    guests.pay("o_d", "2")  # not at the scene: counts globally only

    scene_board = board_json(live, scene=forum, period="all")
    assert ranks(scene_board) == [(1, "二狗", "8.000"), (2, "阿明", "5.000"), (3, "老张", "3.000"),
                                  (3, "小红", "3.000"), (5, "Dora", "1.000")]
    assert scene_board["board"]["participants"] == 5
    assert ranks(board_json(live, period="all")) == [(1, "二狗", "8.000"), (2, "阿明", "5.000"), (3, "Dora", "3.000"),
                                                     (3, "老张", "3.000"), (3, "小红", "3.000")]

    mine = live.get("/api/v1/leaderboards/me", params={"scene": forum, "neighbours": 1},
                    headers=guests.headers("o_b")).json()
    assert (mine["rank"], mine["kg"]) == (3, "3.000")
    assert [(e["rank"], e["name"]) for e in mine["above"] + mine["below"]] in (
        [(3, "老张"), (5, "Dora")], [(2, "阿明"), (3, "老张")])
    assert not any(entry["me"] for entry in mine["above"] + mine["below"])
    last = live.get("/api/v1/leaderboards/me", params={"scene": forum, "neighbours": 2},
                    headers=guests.headers("o_d")).json()
    assert (last["rank"], [e["rank"] for e in last["above"]], last["below"]) == (5, [3, 3], [])
    top = live.get("/api/v1/leaderboards/me", params={"scene": forum}, headers=guests.headers("o_e")).json()
    assert (top["rank"], top["above"], [e["rank"] for e in top["below"]]) == (1, [], [2, 3])
    assert "o_a" not in json.dumps(scene_board) and "o_a" not in json.dumps(mine)


def test_a_refund_takes_the_kilograms_back_off(live, guests, forum):
    first = guests.pay("o_r", "4", scene="s=lbrd01")
    guests.pay("o_r", "6", scene="s=lbrd01")
    guests.pay("o_s", "5", scene="s=lbrd01")
    assert [e["kg"] for e in board_json(live, scene=forum)["entries"]] == ["10.000", "5.000"]
    with live.app.app_context():
        refund_order(first["id"], "退款 / refund")
    body = board_json(live, scene=forum, period="week")
    assert [e["kg"] for e in body["entries"]] == ["6.000", "5.000"]
    assert body["progress"]["neutralized_kg"] == "11.000"  # the scene's counters took it back too
    guests.pay("o_s", "2", scene="s=lbrd01")
    refunded = guests.pay("o_t", "1", scene="s=lbrd01")
    with live.app.app_context():
        refund_order(refunded["id"], "退款")
    body = board_json(live, scene=forum, period="month")
    assert [(e["rank"], e["kg"]) for e in body["entries"]] == [(1, "7.000"), (2, "6.000")]
    assert body["board"]["participants"] == 2


def test_periods_follow_asia_shanghai_weeks_and_months():
    monday = datetime(2026, 11, 30, 0, 0, tzinfo=CHINA_TZ)
    sunday_night = monday - timedelta(seconds=1)
    assert leaderboards.board(None, "week", monday).label == "2026-W49"
    assert leaderboards.board(None, "week", sunday_night).label == "2026-W48"
    week = leaderboards.board(7, "week", monday + timedelta(days=3))
    assert (week.starts, week.ends) == (monday.astimezone(UTC), (monday + timedelta(days=7)).astimezone(UTC))
    assert week.key == "s7:week:2026-W49" and week.starts_on.isoformat() == "2026-11-30"
    # 16:30 UTC on 31 December is already January in Shanghai
    new_year = leaderboards.board(None, "month", datetime(2026, 12, 31, 16, 30, tzinfo=UTC))
    assert new_year.label == "2027-01" and new_year.starts == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert leaderboards.board(None, "all").key == "g:all:all"
    assert {b.key.split(":")[0] for b in leaderboards.boards_of(3, monday)} == {"g", "s3"}
    assert len(leaderboards.boards_of(None, monday)) == 3


def test_older_retirements_leave_this_week_and_month_but_stay_all_time(live, guests, sql_only, forum):
    old = guests.pay("o_old", "9", scene="s=lbrd01")
    guests.pay("o_new", "2", scene="s=lbrd01")
    with live.app.app_context():
        db.session.execute(update(Retirement).where(Retirement.order_id == _order_pk(old["id"]))
                           .values(retired_at=clock.now() - timedelta(days=70)))
        db.session.commit()
        leaderboards.rebuild()
        # the handlers' one read per guest says what the per-board read says, on every board
        scene_pk = db.session.scalar(select(Scene.id).where(Scene.public_id == forum))
        boards = leaderboards.boards_of(scene_pk, clock.now()) + leaderboards.boards_of(None, clock.now())
        for user_id in db.session.scalars(select(User.id)):
            assert leaderboards.retired_grams_of_guest(boards, user_id) == {
                b: leaderboards.retired_grams(b, [user_id]).get(user_id, 0) for b in boards}
    assert [e["kg"] for e in board_json(live, scene=forum, period="week")["entries"]] == ["2.000"]
    assert [e["kg"] for e in board_json(live, scene=forum, period="month")["entries"]] == ["2.000"]
    assert [e["kg"] for e in board_json(live, scene=forum, period="all")["entries"]] == ["9.000", "2.000"]
    assert_redis_and_sql_agree(live, sql_only, forum)


def _order_pk(public_id: str) -> int:
    from carbon.checkout.models import Order

    return db.session.scalar(select(Order.id).where(Order.public_id == public_id))


def assert_redis_and_sql_agree(live, sql_only, scene_public_id: str) -> None:
    """Every board and every guest's standing: the same from the live app (Redis when configured)
    and from a table-only app, and the table holds what the retirements say."""
    answers = []
    for app in (live.app, sql_only):
        with app.app_context():
            scene = db.session.scalar(select(Scene).where(Scene.public_id == scene_public_id))
            users = db.session.scalars(select(User.id).order_by(User.id)).all()
            boards = {f"{bool(s)}-{p}": (leaderboards.top(s, p, 100), [leaderboards.standing(s, p, u, 3) for u in users])
                      for s in (None, scene) for p in leaderboards.PERIODS}
            answers.append(json.dumps(boards, default=str, sort_keys=True))
            for s in (None, scene):
                for p in leaderboards.PERIODS:
                    b = leaderboards.board(s.id if s else None, p)
                    stored = dict(db.session.execute(select(LeaderboardScore.user_id, LeaderboardScore.grams)
                                                     .where(LeaderboardScore.board == b.key)).all())
                    assert stored == leaderboards.retired_grams(b)
                    tally = dict(db.session.execute(select(LeaderboardScoreCount.grams, LeaderboardScoreCount.guests)
                                                    .where(LeaderboardScoreCount.board == b.key)).all())
                    assert tally == dict(Counter(stored.values()))
    assert answers[0] == answers[1]


def test_redis_and_the_table_agree_after_payments_and_refunds(live, guests, sql_only, forum):
    for n, kg in enumerate(["3", "3", "7", "1", "3", "7", "2"]):
        guests.pay(f"o_agree_{n}", kg, scene="s=lbrd01" if n % 3 else None)
    refunded = guests.pay("o_agree_1", "5", scene="s=lbrd01")
    with live.app.app_context():
        refund_order(refunded["id"], "退款")
    assert_redis_and_sql_agree(live, sql_only, forum)


def test_redis_and_the_table_rank_many_ties_the_same(live, sql_only, redis_url):
    """300 guests with scores drawn from a few values, stored in both indexes: every top list and
    every standing the same on both (the order among ties included)."""
    if not redis_url:
        pytest.skip("needs Redis (TEST_REDIS_URL)")
    generator = random.Random(12)
    with live.app.app_context():
        db.session.execute(insert(User), [{"openid": f"o_tie_{n}", "public_id": f"usr_tie{n:04d}"}
                                          for n in range(300)])
        users = db.session.scalars(select(User.id)).all()
        scores = {user: generator.choice([1000, 2000, 2000, 3500, 9000]) for user in users}
        board = leaderboards.board(None, "all")
        SqlIndex().put_many({board.key: scores})
        db.session.commit()
        RedisIndex(live.app.extensions["diandian.redis"]).put_many({board.key: (scores, None)})
    answers = []
    for app in (live.app, sql_only):
        with app.app_context():
            answers.append(json.dumps([leaderboards.top(None, "all", 100)]
                                      + [leaderboards.standing(None, "all", user, 4) for user in users], default=str))
    assert answers[0] == answers[1]
    ordered = sorted(scores.values(), reverse=True)
    expected = [1 + sum(1 for other in ordered if other > grams) for grams in ordered[:100]]
    assert [e["rank"] for e in json.loads(answers[0])[0]["entries"]] == expected


def test_rebuild_gives_back_what_the_handlers_kept(live, guests, forum, redis_url):
    for n, kg in enumerate(["4", "4", "9"]):
        guests.pay(f"o_rb_{n}", kg, scene="s=lbrd01")
    with live.app.app_context():
        before = json.dumps(leaderboards.top(None, "all", 100), default=str)
        db.session.execute(LeaderboardScore.__table__.delete())
        db.session.commit()
        if redis_url:
            live.app.extensions["diandian.redis"].flushdb()
        assert leaderboards.top(None, "all", 100)["entries"] == []
        counts = leaderboards.rebuild()
        assert counts["g:all:all"] == 3
        assert json.dumps(leaderboards.top(None, "all", 100), default=str) == before


def impatient_app(database_url: str, sandbox, redis_url: str):
    """Another service on the same database and Redis whose statements never wait for a lock: a
    writer that meets one fails at once (SQLite) or almost at once (PostgreSQL), and is run again."""
    from app import create_app

    application = create_app(make_config(database_url, sandbox.url, REDIS_URL=redis_url))
    with application.app_context():
        sqlite = db.engine.dialect.name == "sqlite"

        def no_waiting(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=0" if sqlite else "SET lock_timeout = '50ms'")
            cursor.close()
            dbapi_connection.commit()

        db.engine.dispose()
        event.listen(db.engine, "connect", no_waiting)
    return application


def test_a_refund_beside_a_rebuild_is_not_undone_by_it(live, guests, sql_only, forum, sandbox, database_url,
                                                       redis_url, monkeypatch):
    """``flask leaderboards rebuild`` runs beside the workers (after Redis lost its data): a refund
    that commits, and is refreshed, between the rebuild's read of the retirements and its write
    stays off both indexes. Here another service refunds the order the moment the rebuild has read
    its first board (this week's, everyone's)."""
    refunded = guests.pay("o_rbr_a", "4", scene="s=lbrd01")
    guests.pay("o_rbr_b", "6", scene="s=lbrd01")
    beside = impatient_app(database_url, sandbox, redis_url)
    truth, read, refused = leaderboards.retired_grams, [], []

    def read_then_refund(board, user_ids=None):
        scores = truth(board, user_ids)
        if not read:
            read.append(board.key)
            with beside.app_context():
                try:
                    refund_order(refunded["id"], "退款 / refund")
                except OperationalError:  # SQLite: the rebuild holds the database's one write lock
                    db.session.rollback()
                    refused.append(board.key)
                finally:
                    db.session.remove()
        return scores

    monkeypatch.setattr(leaderboards, "retired_grams", read_then_refund)
    with live.app.app_context():
        leaderboards.rebuild()
        monkeypatch.setattr(leaderboards, "retired_grams", truth)
        if refused:
            refund_order(refunded["id"], "退款 / refund")  # what the operator does when it is refused
        clock.advance(jobs.BACKOFF_SECONDS[0] + 1)
        jobs.run_due()  # PostgreSQL: the refund's refresh waited for the rebuild, and is retried
    with beside.app_context():
        db.engine.dispose()
    assert read == ["g:week:" + leaderboards.board(None, "week").label]
    assert [e["kg"] for e in board_json(live, period="week")["entries"]] == ["6.000"]
    assert_redis_and_sql_agree(live, sql_only, forum)


def test_opted_out_guests_are_masked_and_openids_never_shown(live, guests, forum):
    name(guests, "o_hidden", "王小明")
    guests.pay("o_hidden", "3", scene="s=lbrd01")
    guests.pay("o_nameless", "1", scene="s=lbrd01")

    answer = requests.patch(live.url + "/api/v1/me", json={"leaderboard_hidden": True},
                            headers=guests.headers("o_hidden"), timeout=10)
    assert answer.status_code == 200 and answer.json()["leaderboard_hidden"] is True
    body = board_json(live, scene=forum)
    assert [e["name"] for e in body["entries"]] == ["王**", "微信用户"]
    assert "o_hidden" not in json.dumps(body) and "王小明" not in json.dumps(body)


def test_progress_is_neutralized_over_the_estimated_footprint(live, guests, forum):
    with live.app.app_context():
        db.session.execute(update(Scene).where(Scene.public_id == forum).values(expected_attendance=10))
        db.session.commit()
    assert board_json(live, scene=forum)["progress"]["percent"] is None  # nobody calculated yet
    for openid, km in (("o_p1", 100), ("o_p2", 300)):  # rail: 100 km and 300 km at the scene
        footprint = live.post("/api/v1/footprints", headers=guests.headers(openid),
                              json={"scene": "s=lbrd01", "activities": [{"type": "rail", "distance_km": km}]})
        assert footprint.status_code == 201, footprint.json()
    with live.app.app_context():
        from carbon.footprint.models import Footprint

        average = Decimal(db.session.scalar(select(func.sum(Footprint.total_grams)))) / 2
    guests.pay("o_p1", "5", scene="s=lbrd01")
    progress = board_json(live, scene=forum)["progress"]
    estimated = (average * 10 / 1000).quantize(Decimal("0.001"))
    assert Decimal(progress["estimated_kg"]) == estimated
    assert Decimal(progress["percent"]) == (Decimal(500) / estimated).quantize(Decimal("0.1"))
    assert (progress["neutralized_kg"], progress["participants"]) == ("5.000", 1)


def test_redis_down_the_table_answers_and_the_mirror_waits_in_the_outbox(database_url, sandbox):
    with serve(database_url, sandbox, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0") as live:  # nothing listens
        seed_project(live.app, units=100)
        Guests(live, sandbox).pay("o_down", "3")
        assert [e["kg"] for e in board_json(live)["entries"]] == ["3.000"]
        with live.app.app_context():
            waiting = db.session.scalars(select(OutboxEvent.status).where(OutboxEvent.kind == "leaderboards.mirror"))
            assert list(waiting) == ["pending"]


@pytest.mark.parametrize("query, status, code", [
    ({"period": "year"}, 422, "validation_error"), ({"limit": "0"}, 422, "validation_error"),
    ({"limit": "101"}, 422, "validation_error"), ({"scene": "scn_nope"}, 404, "scene.not_found"),
    ({"scene": "x" * 33}, 422, "validation_error"), ({"scene": "a\x00b"}, 422, "validation_error"),
])
def test_bad_queries_answer_in_the_envelope(client, query, status, code):
    response = client.get("/api/v1/leaderboards", query_string=query)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code and response.get_json()["error"]["request_id"]


def test_my_standing_needs_a_login(client):
    assert client.get("/api/v1/leaderboards/me").status_code == 401


def test_a_draft_scene_has_no_public_board(live):
    project_id = seed_project(live.app, units=10)
    with live.app.app_context():
        _, scene_id = live_scene(project_id, "lbdrf1", "d@x.example")
        db.session.execute(update(Scene).where(Scene.public_id == scene_id).values(status="draft"))
        db.session.commit()
    assert live.get("/api/v1/leaderboards", params={"scene": scene_id}).status_code == 404
