"""An injectable clock, so tests can move time.

Code asks ``clock.now()`` (aware UTC) instead of ``datetime.now()``. Tests call
``clock.set(...)`` / ``clock.advance(...)`` and ``clock.reset()`` afterwards.
"""
from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


class Clock:
    def __init__(self) -> None:
        self._offset = timedelta(0)
        self._frozen: datetime | None = None

    def now(self) -> datetime:
        if self._frozen is not None:
            return self._frozen
        return datetime.now(UTC) + self._offset

    def timestamp(self) -> int:
        """Whole seconds since the epoch, on this clock."""
        return int(self.now().timestamp())

    def monotonic(self) -> float:
        return time.monotonic()

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None:
            raise ValueError("clock.set needs an aware datetime")
        self._frozen = moment.astimezone(UTC)

    def advance(self, seconds: float) -> None:
        if self._frozen is not None:
            self._frozen += timedelta(seconds=seconds)
        else:
            self._offset += timedelta(seconds=seconds)

    def reset(self) -> None:
        self._offset = timedelta(0)
        self._frozen = None


clock = Clock()


def utcnow() -> datetime:
    return clock.now()


def as_utc(moment: datetime) -> datetime:
    """Aware UTC datetime; naive values (as SQLite returns them) are taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)
