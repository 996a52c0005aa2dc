"""The sliding-window limiter, in-process and on Redis (TEST_REDIS_URL): no burst of twice the
limit across a window's edge, a Retry-After that is exactly the wait, counts that slide out."""
from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from carbon.core.clock import clock
from carbon.core.errors import RateLimited
from carbon.core.ratelimit import RateLimiter
from tests.conftest import REDIS_MODES, TEST_REDIS_URL

WINDOW = 60
START = datetime(2026, 12, 6, 12, 0, 0, tzinfo=UTC)  # a window's first second (a multiple of 60)


@pytest.fixture(params=REDIS_MODES)
def limiter(request):
    clock.set(START)
    client = None
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(TEST_REDIS_URL)
    yield RateLimiter(client, prefix=f"diandian:test-rl:{uuid.uuid4().hex}:")
    clock.reset()


def allowed(limiter: RateLimiter, key: str, count: int, limit: int = 10) -> int:
    """Hits until the first refusal (or ``count``)."""
    for n in range(count):
        try:
            limiter.hit(key, limit, WINDOW)
        except RateLimited:
            return n
    return count


def test_a_burst_at_a_windows_end_is_not_followed_by_another_at_the_next_ones_start(limiter):
    clock.advance(55)
    assert allowed(limiter, "edge", 10) == 10
    clock.advance(6)  # one second into the next window: a fixed window would allow 10 more
    assert allowed(limiter, "edge", 10) == 0


def test_the_retry_after_is_the_wait_to_the_second(limiter):
    clock.advance(30)
    assert allowed(limiter, "wait", 10) == 10
    clock.advance(20)  # 50 s into the window
    with pytest.raises(RateLimited) as refused:
        limiter.check("wait", 10, WINDOW)
    wait = refused.value.details["retry_after_seconds"]
    assert refused.value.details["limit"] == 10 and 0 < wait <= 2 * WINDOW
    clock.advance(wait - 1)
    with pytest.raises(RateLimited):
        limiter.check("wait", 10, WINDOW)  # a second early: still over
    clock.advance(1)
    limiter.check("wait", 10, WINDOW)
    assert allowed(limiter, "wait", 10) == 1  # exactly one more, then full again


def test_counts_slide_out_over_the_next_window_and_are_gone_after_it(limiter):
    assert allowed(limiter, "slide", 10) == 10
    clock.advance(WINDOW + WINDOW // 2)  # half of the last window still counts: 5 of its 10
    assert allowed(limiter, "slide", 10) == 5
    clock.advance(2 * WINDOW)
    assert allowed(limiter, "slide", 10) == 10


def test_refused_hits_count_so_hammering_at_the_limit_stays_refused(limiter):
    assert allowed(limiter, "hammer", 11) == 10  # ten in, the eleventh refused and counted
    for _ in range(50):  # then one every 6 s (the limit's own rate) for five minutes: never let in,
        clock.advance(WINDOW // 10)  # where a fixed window would let one in at each window's start
        assert allowed(limiter, "hammer", 1) == 0
    clock.advance(2 * WINDOW)
    assert allowed(limiter, "hammer", 10) == 10  # once it stops, it is let in again


def test_forget_drops_this_windows_count_and_the_last_ones(limiter):
    clock.advance(50)
    assert allowed(limiter, "forgotten", 10) == 10
    clock.advance(15)  # into the next window, the 10 still counted
    assert allowed(limiter, "forgotten", 1) == 0
    limiter.forget("forgotten", WINDOW)
    assert allowed(limiter, "forgotten", 10) == 10


def test_bounding_memory_keeps_the_counts_of_longer_windows():
    """In-process (no Redis, or Redis down): past 100,000 keys the stale ones are dropped, each judged
    by its own window. A flood of one-minute keys (logins from many addresses) must not wipe a
    15-minute lockout or an hour's exports."""
    clock.set(START)
    try:
        limiter = RateLimiter(None)
        for _ in range(3):
            limiter.record("admin-login:email:x", 900)
        with pytest.raises(RateLimited):
            limiter.check("admin-login:email:x", 3, 900)
        for n in range(100_001):
            limiter.hit(f"login:ip:{n}", 30, 60)
        with pytest.raises(RateLimited):
            limiter.check("admin-login:email:x", 3, 900)
    finally:
        clock.reset()
