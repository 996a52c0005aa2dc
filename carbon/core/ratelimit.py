"""Sliding-window rate limits: Redis when configured (shared by every process), in-process otherwise,
and in-process too while Redis cannot be reached (carbon/core/fallback.py).

A key's count is this window's hits plus the last window's, weighted by the part of the last window
still within ``window_seconds`` of now (the sliding-window counter). Fixed windows let a client send
twice the limit across a window's edge; this does not, for two counters per key. Refused hits count
too: a client that keeps hammering stays refused."""
from __future__ import annotations

import hashlib
import threading
from typing import NamedTuple

from carbon.core.clock import clock
from carbon.core.errors import RateLimited
from carbon.core.fallback import RedisBreaker


def key_of(value: str) -> str:
    """A fixed-length stand-in for a secret or personal value (a login code, an email) in a key."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Counted(NamedTuple):
    current: int  # hits in this window
    previous: int  # hits in the last one
    into: int  # seconds into this window
    window_seconds: int

    @property
    def sliding(self) -> int:
        """This window's hits and the last one's still within a window of now (rounded up)."""
        left = self.window_seconds - self.into
        return self.current + -(-self.previous * left // self.window_seconds)

    def seconds_until_one_more(self, limit: int) -> int:
        """How long until one more hit is within ``limit``, if nothing else is counted meanwhile."""
        seconds = self.window_seconds
        room = limit - 1 - self.current
        if room >= 0:  # this window has room: wait for enough of the last one to slide out
            return max(1, seconds - room * seconds // max(self.previous, 1) - self.into)
        # This window alone is over: wait for the next, where this window's hits are the last one's.
        return seconds - self.into + seconds - (limit - 1) * seconds // self.current


class RateLimiter:
    def __init__(self, redis_client=None, prefix: str = "diandian:rl:", breaker: RedisBreaker | None = None) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.breaker = breaker or RedisBreaker()
        # key: (window, its hits, the last window's hits, the window's seconds)
        self._counts: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int = 60, error: type[RateLimited] = RateLimited) -> None:
        """Count one hit; raise ``error`` when ``key`` is over ``limit`` in the sliding window."""
        counted = self._count(key, window_seconds, add=1)
        if counted.sliding > limit:
            raise self._refusal(error, limit, counted)

    def check(self, key: str, limit: int, window_seconds: int = 60, error: type[RateLimited] = RateLimited) -> None:
        """Raise ``error`` when ``key`` already has ``limit`` hits in the sliding window; count nothing."""
        counted = self._count(key, window_seconds, add=0)
        if counted.sliding >= limit:
            raise self._refusal(error, limit, counted)

    def record(self, key: str, window_seconds: int = 60) -> None:
        """Count one hit without judging it (e.g. a failed attempt, judged by ``check`` next time)."""
        self._count(key, window_seconds, add=1)

    def forget(self, key: str, window_seconds: int = 60) -> None:
        """Drop ``key``'s counts (this window's and the last one's)."""
        window = clock.timestamp() // window_seconds

        def remote() -> None:
            self.redis.delete(f"{self.prefix}{key}:{window}", f"{self.prefix}{key}:{window - 1}")

        def local() -> None:
            with self._lock:
                self._counts.pop(key, None)

        local()
        if self.redis is not None:
            self.breaker.call(remote, lambda: None)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    @staticmethod
    def _refusal(error: type[RateLimited], limit: int, counted: Counted) -> RateLimited:
        return error(details={"retry_after_seconds": counted.seconds_until_one_more(limit), "limit": limit})

    def _count(self, key: str, window_seconds: int, add: int) -> Counted:
        window, into = divmod(clock.timestamp(), window_seconds)

        def remote() -> Counted:
            name = f"{self.prefix}{key}:{window}"
            pipe = self.redis.pipeline()
            if add:
                pipe.incrby(name, add)
                pipe.expire(name, 2 * window_seconds + 1)
            else:
                pipe.get(name)
            pipe.get(f"{self.prefix}{key}:{window - 1}")
            answers = pipe.execute()
            return Counted(int(answers[0] or 0), int(answers[-1] or 0), into, window_seconds)

        def local() -> Counted:
            with self._lock:
                seen_window, current, previous, _ = self._counts.get(key, (window, 0, 0, window_seconds))
                if seen_window != window:
                    current, previous = 0, (current if seen_window == window - 1 else 0)
                current += add
                self._counts[key] = (window, current, previous, window_seconds)
                if len(self._counts) > 100_000:  # bound memory: drop keys idle for two of their windows
                    now = clock.timestamp()
                    self._counts = {k: v for k, v in self._counts.items() if v[0] >= now // v[3] - 1}
                return Counted(current, previous, into, window_seconds)

        return local() if self.redis is None else self.breaker.call(remote, local)
