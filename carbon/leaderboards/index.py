"""Where board scores are kept: ``leaderboard_scores`` in the database (always) and a Redis sorted
set per board (when Redis is configured). Both keep the same order: grams descending, then user id
descending (Redis lists equal scores by member, descending, and members are zero-padded ids).

These classes only store and read; what a score is, and what a rank is, is decided in service.py.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, false, func, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from carbon.core.db import db, on_postgresql
from carbon.leaderboards.models import LeaderboardScore as Score
from carbon.leaderboards.models import LeaderboardScoreCount as Tally

Row = tuple[int, int]  # (user id, grams)
REDIS_PREFIX = "diandian:lb:"


def member(user_id: int) -> str:
    return f"{user_id:012d}"


class SqlIndex:
    """``leaderboard_scores`` plus ``leaderboard_score_counts`` (guests per distinct score), kept
    together in the caller's transaction."""

    def put_many(self, fresh: dict[str, dict[int, int]]) -> None:
        """Set these guests' grams on these boards (0 takes a guest off), in the same few statements
        whatever the number of boards."""
        before = self._scores_on(fresh)
        changes: dict[str, Counter] = {}
        gone, kept = [], []
        for board, scores in fresh.items():
            change = changes.setdefault(board, Counter())
            for user, grams in scores.items():
                old = before.get((board, user))
                if old == grams or (old is None and grams <= 0):
                    continue
                if old is not None:
                    change[old] -= 1
                if grams > 0:
                    change[grams] += 1
                    kept.append({"board": board, "user_id": user, "grams": grams})
                else:
                    gone.append((board, user))
        if gone:
            db.session.execute(delete(Score).where(tuple_(Score.board, Score.user_id).in_(gone)))
        if kept:
            statement = _insert(Score)
            db.session.execute(statement.on_conflict_do_update(index_elements=["board", "user_id"],
                                                               set_={"grams": statement.excluded.grams}), kept)
        self._tally(changes)

    def _scores_on(self, fresh: dict[str, dict[int, int]]) -> dict[tuple[str, int], int]:
        """The stored scores these guests have on these boards, read FOR UPDATE: a writer waits
        here while a rebuild holds ``lock_writers``, and then reads what the rebuild stored."""
        users = {user for scores in fresh.values() for user in scores}
        rows = db.session.execute(select(Score.board, Score.user_id, Score.grams).where(
            Score.board.in_(list(fresh)), Score.user_id.in_(sorted(users))).with_for_update())
        return {(board, user): grams for board, user, grams in rows if user in fresh[board]}

    def _tally(self, changes: dict[str, Counter]) -> None:
        rows = [{"board": board, "grams": grams, "guests": delta}
                for board, change in sorted(changes.items()) for grams, delta in sorted(change.items()) if delta]
        if not rows:
            return
        statement = _insert(Tally)  # rows in board and score order: concurrent writers lock them in one order
        db.session.execute(statement.on_conflict_do_update(
            index_elements=["board", "grams"], set_={"guests": Tally.guests + statement.excluded.guests}), rows)
        db.session.execute(delete(Tally).where(Tally.board.in_(sorted({row["board"] for row in rows})),
                                               Tally.guests <= 0))

    def lock_writers(self) -> None:
        """Until the caller's transaction ends, no ``put_many`` stores anything (plain reads go on):
        PostgreSQL's EXCLUSIVE lock on the table, which ``_scores_on``'s FOR UPDATE waits for (and
        which waits for the writers already in); on SQLite the database's one write lock, taken by
        a write that changes nothing."""
        if on_postgresql():
            db.session.execute(text(f"LOCK TABLE {Score.__tablename__} IN EXCLUSIVE MODE"))
        else:
            db.session.execute(delete(Score).where(false()))

    def replace(self, board: str, scores: dict[int, int]) -> None:
        db.session.execute(delete(Score).where(Score.board == board))
        db.session.execute(delete(Tally).where(Tally.board == board))
        kept = {user: grams for user, grams in scores.items() if grams > 0}
        if kept:
            db.session.execute(_insert(Score), [{"board": board, "user_id": user, "grams": grams}
                                                for user, grams in kept.items()])
        self._tally({board: Counter(kept.values())})

    def scores(self, board: str, users: Iterable[int]) -> dict[int, int]:
        return dict(db.session.execute(select(Score.user_id, Score.grams)
                                       .where(Score.board == board, Score.user_id.in_(list(users)))).all())

    def top(self, board: str, limit: int) -> list[Row]:
        return [tuple(row) for row in db.session.execute(
            select(Score.user_id, Score.grams).where(Score.board == board)
            .order_by(Score.grams.desc(), Score.user_id.desc()).limit(limit))]

    def size(self, board: str) -> int:
        return int(db.session.scalar(select(func.coalesce(func.sum(Tally.guests), 0)).where(Tally.board == board)))

    def count_above(self, board: str, grams: int) -> int:
        return int(db.session.scalar(select(func.coalesce(func.sum(Tally.guests), 0))
                                     .where(Tally.board == board, Tally.grams > grams)))

    def around(self, board: str, user_id: int, grams: int, width: int) -> tuple[int, list[Row], list[Row]]:
        """(the guest's position from 0, up to ``width`` rows above, up to ``width`` below)."""
        me = tuple_(Score.grams, Score.user_id)
        tied_before = db.session.scalar(select(func.count()).where(Score.board == board, Score.grams == grams,
                                                                   Score.user_id > user_id))
        above = db.session.execute(select(Score.user_id, Score.grams)
                                   .where(Score.board == board, me > tuple_(grams, user_id))
                                   .order_by(Score.grams, Score.user_id).limit(width)).all()
        below = db.session.execute(select(Score.user_id, Score.grams)
                                   .where(Score.board == board, me < tuple_(grams, user_id))
                                   .order_by(Score.grams.desc(), Score.user_id.desc()).limit(width)).all()
        position = self.count_above(board, grams) + tied_before
        return position, [tuple(row) for row in reversed(above)], [tuple(row) for row in below]


def _insert(model):
    return (postgresql if on_postgresql() else sqlite).insert(model.__table__)


class RedisIndex:
    def __init__(self, client) -> None:
        self.redis = client

    def put_many(self, fresh: dict[str, tuple[dict[int, int], datetime | None]]) -> None:
        """Set these guests' grams on these boards (0 takes a guest off; a board's key expires at its
        moment, if given), in one round trip (one MULTI/EXEC)."""
        pipe = self.redis.pipeline(transaction=True)
        for board, (scores, expires) in fresh.items():
            key = REDIS_PREFIX + board
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
        self.redis.unlink(building)
        items = [(member(user), grams) for user, grams in scores.items() if grams > 0]
        for start in range(0, len(items), 10_000):
            self.redis.zadd(building, dict(items[start:start + 10_000]))
        pipe = self.redis.pipeline(transaction=True)
        pipe.unlink(key)  # frees the old set in the background: a big board never blocks Redis
        if items:
            pipe.rename(building, key)
            if expires is not None:
                pipe.expireat(key, expires)
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
