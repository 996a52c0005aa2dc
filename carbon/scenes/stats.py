"""Scene counters per channel and day. Visits are buffered in the worker and added in batches
(a resolve must stay a read); logins and footprints are added in their own transactions; kg and
money by the ``order.paid`` outbox handler (and back off by ``order.refunded``)."""
from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, func, select
from sqlalchemy.dialects import postgresql, sqlite

from carbon import jobs
from carbon.core.clock import CHINA_TZ, clock
from carbon.core.db import db, on_postgresql
from carbon.core.units import kg_to_grams
from carbon.scenes.models import SceneDailyStat

FLUSH_SECONDS = 2.0
FLUSH_AT = 200
COUNTERS = ("visits", "logins", "footprints", "grams_neutralized", "money_raised")


def today() -> date:
    return clock.now().astimezone(CHINA_TZ).date()


def add(scene_id: int, channel: str, **increments) -> None:
    """Add to today's counters in the current transaction (the caller commits)."""
    _upsert(scene_id, channel, today(), increments)


@jobs.handles("order.paid")
def count_paid_order(payload: dict) -> None:
    """A paid order's kg and money count for its scene and channel, on the day it was paid."""
    if payload.get("scene_id"):
        _upsert(payload["scene_id"], payload.get("channel") or "", date.fromisoformat(payload["day"]),
                {"grams_neutralized": payload["grams"], "money_raised": Decimal(payload["amount"])})


@jobs.handles("order.refunded")
def uncount_refunded_order(payload: dict) -> None:
    """A refund takes the order's kg and money back off the day and channel it was counted on."""
    from carbon.checkout.models import Order

    order = db.session.scalar(select(Order).where(Order.public_id == payload["order"]))
    if order is not None and order.scene_id and order.paid_at is not None:
        _upsert(order.scene_id, order.channel or "", order.paid_at.astimezone(CHINA_TZ).date(),
                {"grams_neutralized": -kg_to_grams(order.kg), "money_raised": -order.amount})


def _upsert(scene_id: int, channel: str, day: date, increments: dict) -> None:
    db.session.execute(_upsert_statement(on_postgresql(), tuple(sorted(increments))), {
        "scene_id": scene_id, "channel": channel, "day": day, **{name: increments.get(name, 0) for name in COUNTERS}})


@functools.cache
def _upsert_statement(postgres: bool, added: tuple[str, ...]):
    """INSERT … ON CONFLICT DO UPDATE adding ``added``, built once per dialect and counter set: a
    login and a footprint each add one, and building it per call cost more than running it."""
    table = SceneDailyStat.__table__
    statement = (postgresql if postgres else sqlite).insert(table)
    excluded = statement.excluded
    return statement.on_conflict_do_update(index_elements=["scene_id", "channel", "day"],
                                           set_={name: table.c[name] + excluded[name] for name in added})


class VisitBuffer:
    """Counts resolves in memory; written by the first request after ``FLUSH_SECONDS`` or ``FLUSH_AT``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: Counter = Counter()
        self._last = time.monotonic()

    def count(self, scene_id: int, channel: str) -> None:
        with self._lock:
            self._pending[(scene_id, channel, today())] += 1
            due = sum(self._pending.values()) >= FLUSH_AT or time.monotonic() - self._last >= FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            pending, self._pending, self._last = self._pending, Counter(), time.monotonic()
        if not pending:
            return
        for (scene_id, channel, day), count in pending.items():
            _upsert(scene_id, channel, day, {"visits": count})
        db.session.commit()


def rows(scene_id: int) -> list[SceneDailyStat]:
    return list(db.session.scalars(select(SceneDailyStat).where(SceneDailyStat.scene_id == scene_id)
                                   .order_by(SceneDailyStat.day, SceneDailyStat.channel)))


def totals(scene_id: int, connection=None) -> dict:
    """The scene's counters summed over its days and channels; on ``connection`` when given (a
    read that need not flush the session first)."""
    values = (connection or db.session).execute(_TOTALS, {"scene_id": scene_id}).one()
    return dict(zip(COUNTERS, values, strict=True))


# Built once: SQLAlchemy then reuses its compiled form (resolve reads it for every uncached scene).
_TOTALS = select(*[func.coalesce(func.sum(getattr(SceneDailyStat, name)), 0) for name in COUNTERS]) \
    .where(SceneDailyStat.scene_id == bindparam("scene_id"))
