"""The demo that ``make run`` seeds: idempotent, so a second run changes nothing."""
from __future__ import annotations

from collections.abc import Iterator


def seed() -> Iterator[str]:
    yield "demo: nothing to seed yet"
