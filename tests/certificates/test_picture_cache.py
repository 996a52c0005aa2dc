"""The per-process picture cache holds at most its byte limit, dropping the least recently read first."""
from __future__ import annotations

from carbon.certificates.service import PictureCache


def entry(size: int) -> tuple[str, str, bytes, float]:
    return ("etag", "image/jpeg", b"x" * size, 0.0)


def test_the_least_recently_read_picture_goes_first_once_the_bytes_are_over_the_limit():
    cache = PictureCache(limit=300)
    for number in ("a", "b", "c"):
        cache.put((number, "card"), entry(100))
    assert cache.get(("a", "card")) is not None  # read again: now the most recent
    cache.put(("d", "card"), entry(100))
    assert cache.get(("b", "card")) is None
    assert all(cache.get((n, "card")) is not None for n in ("a", "c", "d"))
    assert (len(cache), cache.size) == (3, 300)


def test_a_replaced_or_dropped_picture_gives_its_bytes_back():
    cache = PictureCache(limit=1000)
    cache.put(("a", "card"), entry(400))
    cache.put(("a", "card"), entry(100))
    assert cache.size == 100
    assert cache.pop(("a", "card"))[2] == b"x" * 100
    assert (len(cache), cache.size) == (0, 0)
    assert cache.pop(("a", "card")) is None


def test_one_picture_larger_than_the_limit_is_still_kept_alone():
    cache = PictureCache(limit=50)
    cache.put(("a", "poster"), entry(10))
    cache.put(("b", "poster"), entry(80))
    assert cache.get(("a", "poster")) is None and cache.get(("b", "poster")) is not None
