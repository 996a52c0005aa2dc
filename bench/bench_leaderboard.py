"""Leaderboards at 10,000 / 100,000 / 1,000,000 guests: a guest's rank with two neighbours above
and below, and the top 100, on Redis and on PostgreSQL (the table, with its (board, grams, user)
index and its guests-per-score tally).

The board is filled directly (users by generate_series, scores drawn from 1–500 kg so ties are
common, the same scores in the table and in the sorted set): this measures lookups, not how
scores are derived (the tests compare that with the retirements). Each figure is median and p99
over random guests, in-process, through ``carbon.leaderboards.service`` — once for the index
lookup alone and once for the whole answer (which adds one query for the names).

    python bench/bench_leaderboard.py            # PostgreSQL on 127.0.0.1, Redis db 13
"""
from __future__ import annotations

import os
import random
import statistics
import time

from harness import calibration_ms
from sqlalchemy import create_engine, text

PG = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
SIZES = [int(n) for n in os.environ.get("BENCH_SIZES", "10000,100000,1000000").split(",")]
SAMPLES = 1000
BOARD = "g:all:all"


def timed(work, samples: int) -> tuple[float, float]:
    laps = []
    for _ in range(samples):
        started = time.perf_counter()
        work()
        laps.append((time.perf_counter() - started) * 1000)
    laps.sort()
    return statistics.median(laps), laps[int(len(laps) * 0.99) - 1]


def fresh_database() -> str:
    from sqlalchemy.engine import make_url

    name = "diandian_bench_leaderboard"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(PG).set(database=name).render_as_string(hide_password=False)


def grow(app, start: int, stop: int, generator: random.Random) -> None:
    """Guests start+1..stop with random scores, in the table and in the sorted set."""
    from carbon.core.db import db
    from carbon.leaderboards.index import RedisIndex, SqlIndex

    with app.app_context():
        db.session.execute(text(
            "INSERT INTO users (id, public_id, openid, created_at, leaderboard_hidden) "
            "SELECT n, 'usr_b' || n, 'o_bench_' || n, now(), n % 10 = 0 FROM generate_series(CAST(:a AS integer), CAST(:b AS integer)) n"),
            {"a": start + 1, "b": stop})
        db.session.execute(text("UPDATE users SET nickname = '嘉宾' || id WHERE id > :a"), {"a": start})
        scores = {user: generator.randint(1, 500) * 1000 for user in range(start + 1, stop + 1)}
        redis_index, table = RedisIndex(app.extensions["diandian.redis"]), SqlIndex()
        items = list(scores.items())
        for first in range(0, len(items), 20_000):
            table.put_many({BOARD: dict(items[first:first + 20_000])})
            redis_index.put_many({BOARD: (dict(items[first:first + 20_000]), None)})
        db.session.commit()


def vacuum(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM ANALYZE leaderboard_scores"))
        conn.execute(text("VACUUM ANALYZE users"))
    engine.dispose()


def measure(app, size: int, generator: random.Random) -> dict[str, tuple[float, float]]:
    from carbon.leaderboards import service
    from carbon.leaderboards.index import RedisIndex, SqlIndex

    figures = {}
    with app.app_context():
        redis_index = RedisIndex(app.extensions["diandian.redis"]) if "diandian.redis" in app.extensions else None
        index = redis_index or SqlIndex()
        users = [generator.randint(1, size) for _ in range(SAMPLES)]
        cursor = iter(users * 3)

        def lookup():
            user = next(cursor)
            grams = index.scores(BOARD, [user])[user]
            index.around(BOARD, user, grams, 2)
            index.count_above(BOARD, grams)

        figures["rank lookup (index)"] = timed(lookup, SAMPLES)
        figures["standing() with names"] = timed(lambda: service.standing(None, "all", next(cursor), 2), SAMPLES)
        figures["top 100 with names"] = timed(lambda: service.top(None, "all", 100), 200)
    return figures


def main() -> None:
    from app import create_app
    from carbon.core.db import db

    url = fresh_database()
    from flask_migrate import upgrade

    base = {"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False}
    on_redis = create_app({**base, "REDIS_URL": REDIS})
    on_table = create_app(base)
    with on_redis.app_context():
        upgrade()
        on_redis.extensions["diandian.redis"].unlink("diandian:lb:" + BOARD)
    generator = random.Random(7)
    print(f"calibration: {calibration_ms():.1f} ms per 10^6-step loop")
    print(f"{'guests':>9} {'store':<6} {'what':<24} {'median ms':>9} {'p99 ms':>8}")
    done = 0
    for size in SIZES:
        grow(on_redis, done, size, generator)
        vacuum(url)
        done = size
        for label, app in (("redis", on_redis), ("pg", on_table)):
            for what, (median, p99) in measure(app, size, generator).items():
                print(f"{size:>9,} {label:<6} {what:<24} {median:>9.3f} {p99:>8.3f}", flush=True)
    with on_redis.app_context():
        on_redis.extensions["diandian.redis"].unlink("diandian:lb:" + BOARD)
        db.engine.dispose()
    with on_table.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
