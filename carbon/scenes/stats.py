"""Scene counters per channel and day. Visits are buffered in the worker and added in batches
(a resolve must stay a read); logins and footprints are added in their own transactions; kg and
money by the ``order.paid`` outbox handler (and back off by ``order.refunded``).

An order's kg and money are in the counters when ``orders.counted`` is true, and only then:
``order.paid`` counts an order whose ``counted`` is NULL (never counted) and that is still paid;
``order.refunded`` takes off an order whose ``counted`` is true, and sets it false in any case, so a
refund that runs before the count leaves nothing to count later. Both lock the order (guest, then
order, as the certificate handlers do), so each is idempotent on its own and neither can cross the
other. The counter rows themselves are written at the commit of the handlers' transaction (an
outbox batch of many orders), summed per row and in key order, after every order lock the batch
takes: an order is never locked after a counter row."""
from __future__ import annotations

import functools
import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal

from sqlalchemy import bindparam, event, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from carbon import jobs
from carbon.checkout.states import OrderStatus
from carbon.core.clock import CHINA_TZ, clock
from carbon.core.db import db, on_postgresql
from carbon.core.units import kg_to_grams
from carbon.scenes.models import SceneDailyStat

FLUSH_SECONDS = 2.0
FLUSH_AT = 200
COUNTERS = ("visits", "logins", "footprints", "grams_neutralized", "money_raised")
COUNTABLE = (OrderStatus.PAID, OrderStatus.FULFILLED)  # paid, and not refunded
AT_COMMIT = "scenes.counts_at_commit"  # session.info: (savepoint, row key, grams, money) to add at commit


def today() -> date:
    return clock.now().astimezone(CHINA_TZ).date()


def add(scene_id: int, channel: str, **increments) -> None:
    """Add to today's counters in the current transaction (the caller commits)."""
    _upsert(scene_id, channel, today(), increments)


@jobs.handles("order.paid")
def count_paid_order(payload: dict) -> None:
    """A paid order's kg and money count for its scene and channel, on the day it was paid: once,
    and not if it was refunded first (see the module's docstring)."""
    from carbon.checkout.orders import locked_order  # (it imports the scenes)

    order = locked_order(payload["order"])
    if order is None or order.counted is not None or order.status not in COUNTABLE:
        return
    order.counted = True
    _count_at_commit(order, 1)


@jobs.handles("order.refunded")
def uncount_refunded_order(payload: dict) -> None:
    """A refund takes the order's kg and money back off the day and channel it was counted on, if
    it was counted; and it is never to be counted after."""
    from carbon.checkout.orders import locked_order  # (it imports the scenes)

    order = locked_order(payload["order"])
    if order is None or order.counted is False:
        return
    if order.counted:
        _count_at_commit(order, -1)
    order.counted = False


def _count_at_commit(order, sign: int) -> None:
    """Add ``sign`` × the order's kg and money to the day and channel it was paid on, at this
    transaction's commit; forgotten if the savepoint it was added in (its handler's) rolls back."""
    if not order.scene_id or order.paid_at is None:
        return
    session = db.session()
    savepoint = session.get_nested_transaction()
    session.info.setdefault(AT_COMMIT, []).append((
        savepoint if savepoint is not None else session.get_transaction(),
        (order.scene_id, order.channel or "", order.paid_at.astimezone(CHINA_TZ).date()),
        sign * kg_to_grams(order.kg), sign * order.amount))


@event.listens_for(Session, "before_commit")
def _write_counts(session: Session) -> None:
    if session.in_nested_transaction() or not session.info.get(AT_COMMIT):
        return
    root = session.get_transaction()
    sums: dict[tuple, list] = {}
    for transaction, key, grams, money in session.info.pop(AT_COMMIT):
        if _within(transaction, root):
            total = sums.setdefault(key, [0, Decimal(0)])
            total[0] += grams
            total[1] += money
    session.flush()
    for (scene_id, channel, day), (grams, money) in sorted(sums.items()):
        if grams or money:
            _upsert(scene_id, channel, day, {"grams_neutralized": grams, "money_raised": money})


@event.listens_for(Session, "after_soft_rollback")
def _forget_counts(session: Session, rolled_back) -> None:
    if session.info.get(AT_COMMIT):
        session.info[AT_COMMIT] = [entry for entry in session.info[AT_COMMIT] if not _within(entry[0], rolled_back)]


@event.listens_for(Session, "after_transaction_end")
def _end_counts(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(AT_COMMIT, None)


def _within(transaction, outer) -> bool:
    while transaction is not None:
        if transaction is outer:
            return True
        transaction = transaction.parent
    return False


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
        for (scene_id, channel, day), count in sorted(pending.items()):  # rows in key order, as at a batch's commit
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
