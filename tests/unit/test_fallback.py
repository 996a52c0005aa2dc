"""Redis users fall back when Redis fails, and leave it alone for a while after a failure."""
from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from carbon.core.errors import RateLimited
from carbon.core.fallback import RedisBreaker
from carbon.core.ratelimit import RateLimiter


class DeadRedis:
    def __init__(self) -> None:
        self.attempts = 0

    def pipeline(self):
        self.attempts += 1
        raise RedisConnectionError("Connection refused")

    def get(self, name):
        self.attempts += 1
        raise RedisConnectionError("Connection refused")


def test_a_dead_redis_is_tried_once_per_interval_and_the_limit_holds_in_process():
    redis = DeadRedis()
    limiter = RateLimiter(redis, breaker=RedisBreaker(retry_seconds=60))
    limiter.hit("k", limit=2)
    limiter.hit("k", limit=2)
    with pytest.raises(RateLimited):
        limiter.hit("k", limit=2)
    assert redis.attempts == 1  # the first failure opened the breaker


def test_after_the_interval_redis_is_tried_again():
    redis = DeadRedis()
    breaker = RedisBreaker(retry_seconds=0)
    limiter = RateLimiter(redis, breaker=breaker)
    limiter.hit("k", limit=5)
    limiter.check("k", limit=5)
    assert redis.attempts == 2
