"""Where board scores are kept: ``leaderboard_scores`` in the database (always) and a Redis sorted
set per board (when Redis is configured). Both keep the same order: grams descending, then user id
descending (Redis lists equal scores by member, descending, and members are zero-padded ids).

These classes only store and read; what a score is, and what a rank is, is decided in service.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from carbon.core.db import db, on_postgresql
from carbon.leaderboards.models import LeaderboardScore as Score

Row = tuple[int, int]  # (user id, grams)
REDIS_PREFIX = "diandian:lb:"


def member(user_id: int) -> str:
    return f"{user_id:012d}"


class SqlIndex:
    def put(self, board: str, scores: dict[int, int]) -> None:
        """Set these guests' grams on the board (0 takes a guest off), in the caller's transaction."""
        gone = [user for user, grams in scores.items() if grams <= 0]
        kept = [{"board": board, "user_id": user, "grams": grams} for user, grams in scores.items() if grams > 0]
        if gone:
            db.session.execute(delete(Score).where(Score.board == board, Score.user_id.in_(gone)))
        if kept:
            dialect = postgresql if on_postgresql() else sqlite
            statement = dialect.insert(Score.__table__)
            db.session.execute(statement.on_conflict_do_update(index_elements=["board", "user_id"],
                                                               set_={"grams": statement.excluded.grams}), kept)

    def replace(self, board: str, scores: dict[int, int]) -> None:
        db.session.execute(delete(Score).where(Score.board == board))
        self.put(board, scores)

    def scores(self, board: str, users: Iterable[int]) -> dict[int, int]:
        return dict(db.session.execute(select(Score.user_id, Score.grams)
                                       .where(Score.board == board, Score.user_id.in_(list(users)))).all())

    def top(self, board: str, limit: int) -> list[Row]:
        return [tuple(row) for row in db.session.execute(
            select(Score.user_id, Score.grams).where(Score.board == board)
            .order_by(Score.grams.desc(), Score.user_id.desc()).limit(limit))]

    def size(self, board: str) -> int:
        return db.session.scalar(select(func.count()).where(Score.board == board))

    def count_above(self, board: str, grams: int) -> int:
        return db.session.scalar(select(func.count()).where(Score.board == board, Score.grams > grams))

    def around(self, board: str, user_id: int, grams: int, width: int) -> tuple[int, list[Row], list[Row]]:
        """(the guest's position from 0, up to ``width`` rows above, up to ``width`` below)."""
        me = tuple_(Score.grams, Score.user_id)
        position = db.session.scalar(select(func.count()).where(Score.board == board, me > tuple_(grams, user_id)))
        above = db.session.execute(select(Score.user_id, Score.grams)
                                   .where(Score.board == board, me > tuple_(grams, user_id))
                                   .order_by(Score.grams, Score.user_id).limit(width)).all()
        below = db.session.execute(select(Score.user_id, Score.grams)
                                   .where(Score.board == board, me < tuple_(grams, user_id))
                                   .order_by(Score.grams.desc(), Score.user_id.desc()).limit(width)).all()
        return position, [tuple(row) for row in reversed(above)], [tuple(row) for row in below]


class RedisIndex:
    def __init__(self, client) -> None:
        self.redis = client

    def put(self, board: str, scores: dict[int, int], expires: datetime | None = None) -> None:
        key = REDIS_PREFIX + board
        pipe = self.redis.pipeline(transaction=True)
        gone = [member(user) for user, grams in scores.items() if grams <= 0]
        kept = {member(user): grams for user, grams in scores.items() if grams > 0}
        if gone:
            pipe.zrem(key, *gone)
        if kept:
            pipe.zadd(key, kept)
        if expires is not None:
            pipe.expireat(key, expires)
        pipe.execute()

    def replace(self, board: str, scores: dict[int, int], expires: datetime | None = None) -> None:
        """Fill a fresh key, then swap it in: readers never see a half-built board."""
        key, building = REDIS_PREFIX + board, REDIS_PREFIX + "building:" + board
        self.redis.delete(building)
        items = [(member(user), grams) for user, grams in scores.items() if grams > 0]
        for start in range(0, len(items), 10_000):
            self.redis.zadd(building, dict(items[start:start + 10_000]))
        pipe = self.redis.pipeline(transaction=True)
        if items:
            pipe.rename(building, key)
            if expires is not None:
                pipe.expireat(key, expires)
        else:
            pipe.delete(key)
        pipe.execute()

    def scores(self, board: str, users: Iterable[int]) -> dict[int, int]:
        users = list(users)
        values = self.redis.zmscore(REDIS_PREFIX + board, [member(user) for user in users]) if users else []
        return {user: int(value) for user, value in zip(users, values, strict=True) if value is not None}

    def top(self, board: str, limit: int) -> list[Row]:
        return _rows(self.redis.zrevrange(REDIS_PREFIX + board, 0, limit - 1, withscores=True))

    def size(self, board: str) -> int:
        return self.redis.zcard(REDIS_PREFIX + board)

    def count_above(self, board: str, grams: int) -> int:
        return self.redis.zcount(REDIS_PREFIX + board, f"({grams}", "+inf")

    def around(self, board: str, user_id: int, grams: int, width: int) -> tuple[int, list[Row], list[Row]]:
        key = REDIS_PREFIX + board
        position = self.redis.zrevrank(key, member(user_id))
        if position is None:
            return 0, [], []
        rows = _rows(self.redis.zrevrange(key, max(0, position - width), position + width, withscores=True))
        mine = min(position, width)
        return position, rows[:mine], rows[mine + 1:]


def _rows(pairs) -> list[Row]:
    return [(int(name), int(score)) for name, score in pairs]
