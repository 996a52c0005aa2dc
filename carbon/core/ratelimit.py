"""Fixed-window rate limits: Redis when configured (shared by every process), in-process otherwise,
and in-process too while Redis cannot be reached (carbon/core/fallback.py)."""
from __future__ import annotations

import hashlib
import threading

from carbon.core.clock import clock
from carbon.core.errors import RateLimited
from carbon.core.fallback import RedisBreaker


def key_of(value: str) -> str:
    """A fixed-length stand-in for a secret or personal value (a login code, an email) in a key."""
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class RateLimiter:
    def __init__(self, redis_client=None, prefix: str = "diandian:rl:", breaker: RedisBreaker | None = None) -> None:
        self.redis = redis_client
        self.prefix = prefix
        self.breaker = breaker or RedisBreaker()
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int = 60, error: type[RateLimited] = RateLimited) -> None:
        """Count one hit; raise ``error`` when ``key`` went over ``limit`` in this window."""
        if self._count(key, window_seconds, add=1) > limit:
            raise self._refusal(error, limit, window_seconds)

    def check(self, key: str, limit: int, window_seconds: int = 60, error: type[RateLimited] = RateLimited) -> None:
        """Raise ``error`` when ``key`` already has ``limit`` hits in this window; count nothing."""
        if self._count(key, window_seconds, add=0) >= limit:
            raise self._refusal(error, limit, window_seconds)

    def record(self, key: str, window_seconds: int = 60) -> None:
        """Count one hit without judging it (e.g. a failed attempt, judged by ``check`` next time)."""
        self._count(key, window_seconds, add=1)

    def forget(self, key: str, window_seconds: int = 60) -> None:
        """Drop this window's count of ``key``."""
        window = clock.timestamp() // window_seconds

        def remote() -> None:
            self.redis.delete(f"{self.prefix}{key}:{window}")

        def local() -> None:
            with self._lock:
                self._counts.pop(key, None)

        local()
        if self.redis is not None:
            self.breaker.call(remote, lambda: None)

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()

    def _refusal(self, error: type[RateLimited], limit: int, window_seconds: int) -> RateLimited:
        retry_after = window_seconds - clock.timestamp() % window_seconds
        return error(details={"retry_after_seconds": retry_after, "limit": limit})

    def _count(self, key: str, window_seconds: int, add: int) -> int:
        window = clock.timestamp() // window_seconds

        def remote() -> int:
            name = f"{self.prefix}{key}:{window}"
            if not add:
                return int(self.redis.get(name) or 0)
            pipe = self.redis.pipeline()
            pipe.incrby(name, add)
            pipe.expire(name, window_seconds + 1)
            return pipe.execute()[0]

        def local() -> int:
            with self._lock:
                seen_window, count = self._counts.get(key, (window, 0))
                count = (count if seen_window == window else 0) + add
                self._counts[key] = (window, count)
                if len(self._counts) > 100_000:  # bound memory: drop stale windows
                    self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
                return count

        return local() if self.redis is None else self.breaker.call(remote, local)
