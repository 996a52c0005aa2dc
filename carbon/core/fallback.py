"""Redis is optional at run time: when it cannot be reached, its users carry on with their fallbacks
(in-process rate limits, the database token store) instead of failing the request.

After a failure Redis is skipped for ``retry_seconds``, so an outage costs one failed call (at most
the socket timeout) per interval and process, not one per request. ``/readyz`` pings Redis on every
probe and reports it as down without taking the service out of rotation (it is not required).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import RedisError

log = logging.getLogger("diandian.redis")
T = TypeVar("T")


class RedisBreaker:
    def __init__(self, retry_seconds: float = 5.0) -> None:
        self.retry_seconds = retry_seconds
        self._down_until = 0.0
        self._lock = threading.Lock()

    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            was_up = self.available()
            self._down_until = time.monotonic() + self.retry_seconds
        if was_up:
            log.warning("redis unavailable, using fallbacks", extra={"fields": {
                "error": type(exc).__name__, "retry_seconds": self.retry_seconds}})

    def call(self, primary: Callable[[], T], fallback: Callable[[], T]) -> T:
        """``primary()`` (which talks to Redis) unless Redis is known to be down; ``fallback()`` then."""
        if self.available():
            try:
                return primary()
            except RedisError as exc:
                self.failed(exc)
        return fallback()
