"""Fixed-window rate limits: Redis when configured (shared by every process), in-process otherwise."""
from __future__ import annotations

import threading

from carbon.core.clock import clock
from carbon.core.errors import RateLimited


class RateLimiter:
    def __init__(self, redis_client=None, prefix: str = "diandian:rl:") -> None:
        self.redis = redis_client
        self.prefix = prefix
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def hit(self, key: str, limit: int, window_seconds: int = 60) -> None:
        """Count one hit; raise RateLimited when ``key`` went over ``limit`` in this window."""
        window = clock.timestamp() // window_seconds
        retry_after = window_seconds - clock.timestamp() % window_seconds
        if self.redis is not None:
            name = f"{self.prefix}{key}:{window}"
            pipe = self.redis.pipeline()
            pipe.incr(name)
            pipe.expire(name, window_seconds + 1)
            count = pipe.execute()[0]
        else:
            with self._lock:
                seen_window, count = self._counts.get(key, (window, 0))
                count = count + 1 if seen_window == window else 1
                self._counts[key] = (window, count)
                if len(self._counts) > 100_000:  # bound memory: drop stale windows
                    self._counts = {k: v for k, v in self._counts.items() if v[0] == window}
        if count > limit:
            raise RateLimited(details={"retry_after_seconds": retry_after, "limit": limit})

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
