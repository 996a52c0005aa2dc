"""The outbox: events written in the business transaction that caused them, dispatched after
commit to the handler registered for their kind (decision 0009).

- ``emit(kind, payload)`` writes the event in the caller's transaction (one INSERT).
- Each consumer runs on a queue (a lane, ``@handles(kind, queue=…)``; ``default`` unless said):
  workers serve queues (``flask worker -q``), so slow work can have workers of its own, at a lower
  OS priority than the payment confirmations (decision 0015). Retries, failures and replay are the
  same on every queue.
- After the commit, ``kick()`` hands the session's new events on: run here and now (``inline``,
  development and tests) or queued for the workers (``workers``: RQ on Redis when configured, one
  RQ queue per queue, else the workers' sweep of the table).
- ``dispatch_batch(ids)`` claims due rows, runs each handler under a savepoint and marks it done
  in the same transaction, so a handler's database writes take effect once. A failure is recorded and retried
  with backoff; after ``MAX_ATTEMPTS`` the event ends ``failed``, listed and replayed by
  ``flask outbox``. Handlers with effects outside the database must be idempotent themselves.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.failpoints import failpoint
from carbon.jobs.models import OutboxEvent

log = logging.getLogger("diandian.jobs")
Handler = Callable[[dict], None]
HANDLERS: dict[str, dict[str, Handler]] = {}  # kind → handler name → handler
QUEUES: dict[str, str] = {}  # handler name → the queue its events run on (absent: DEFAULT_QUEUE)
DEFAULT_QUEUE = "default"
DISPATCH_BATCH = 100  # events per claim (and per RQ job)
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = (5, 30, 120, 600, 1800, 3600, 3 * 3600)
PENDING, COMMITTED = "outbox.pending", "outbox.committed"
TABLE = OutboxEvent.__table__


def handles(kind: str, queue: str = DEFAULT_QUEUE) -> Callable[[Handler], Handler]:
    """Register a consumer of one event kind (each area registers its own, at import), run on ``queue``."""
    def register(handler: Handler) -> Handler:
        name = f"{handler.__module__}.{handler.__qualname__}"
        HANDLERS.setdefault(kind, {})[name] = handler
        QUEUES[name] = queue
        return handler
    return register


def queue_of(handler: str) -> str:
    return QUEUES.get(handler, DEFAULT_QUEUE)


def queue_names() -> list[str]:
    """Every queue a consumer runs on, ``default`` first."""
    return [DEFAULT_QUEUE, *sorted(set(QUEUES.values()) - {DEFAULT_QUEUE})]


def emit(kind: str, payload: dict) -> list[int]:
    """Queue an event in the current transaction (see ``emit_many``)."""
    return emit_many(kind, [payload])


def emit_many(kind: str, payloads: list[dict]) -> list[int]:
    """Queue events of one kind in the current transaction, one row per event and consumer (each
    retried on its own), in one statement; they are dispatched after the commit. A kind nobody
    consumes yet is kept as done."""
    now = utcnow()
    consumers = sorted(HANDLERS.get(kind, {})) or [""]
    rows = [{"kind": kind, "handler": name, "queue": queue_of(name), "payload": payload,
             "status": "pending" if name else "done", "attempts": 0, "next_attempt_at": now, "created_at": now,
             "processed_at": None if name else now}
            for payload in payloads for name in consumers]
    ids = list(db.session.connection().execute(
        insert(TABLE).returning(TABLE.c.id, sort_by_parameter_order=True), rows).scalars())
    pending = [(event_id, row["queue"]) for event_id, row in zip(ids, rows, strict=True) if row["status"] == "pending"]
    db.session.info.setdefault(PENDING, []).extend(pending)
    return [event_id for event_id, _ in pending]


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.info.get(PENDING):
        session.info.setdefault(COMMITTED, []).extend(session.info.pop(PENDING))


@event.listens_for(Session, "after_rollback")
def _rolled_back(session: Session) -> None:
    session.info.pop(PENDING, None)


def kick() -> None:
    """Hand on the events this session has committed: run them now, or queue each on its queue for
    the workers (in jobs of at most ``DISPATCH_BATCH``). A request that never used the session
    committed nothing: its session is not created here."""
    if not db.session.registry.has():
        return
    events = db.session.info.pop(COMMITTED, [])
    if not events:
        return
    if ext.settings().JOBS == "inline":
        for start in range(0, len(events), DISPATCH_BATCH):
            dispatch_batch([event_id for event_id, _ in events[start:start + DISPATCH_BATCH]])
        return
    by_queue: dict[str, list[int]] = {}
    for event_id, queue in events:
        by_queue.setdefault(queue, []).append(event_id)
    for name, ids in by_queue.items():
        queue = ext.job_queue(name)
        if queue is None:
            return  # no Redis: the workers' sweep finds them in the table
        for start in range(0, len(ids), DISPATCH_BATCH):
            chunk = ids[start:start + DISPATCH_BATCH]
            try:
                # the outbox rows hold each event's outcome: RQ keeps no result (fewer writes per job)
                queue.enqueue("carbon.jobs.worker.run_events", chunk, result_ttl=0)
            except Exception as exc:  # noqa: BLE001 - Redis unavailable: the sweep finds them in the table
                log.warning("outbox enqueue failed", extra={"fields": {
                    "error": type(exc).__name__, "queue": name, "events": chunk}})


def dispatch(event_id: int) -> str:
    """Run one due event: ``done``, ``retry``, ``failed`` or ``skipped`` (not due, taken, or gone)."""
    return dispatch_batch([event_id]).get(event_id, "skipped")


def dispatch_batch(event_ids: list[int] | None = None, limit: int = DISPATCH_BATCH,
                   queues: list[str] | None = None) -> dict[int, str]:
    """Claim due events (these, or the oldest ``limit`` of ``queues``), run each handler under its
    own savepoint, and commit once: a handler's database writes and its event's ``done`` mark
    commit together, so they take effect once. Events another process holds are skipped, never
    waited for."""
    session = db.session
    now = utcnow()
    due = select(TABLE.c.id).where(TABLE.c.status == "pending", TABLE.c.next_attempt_at <= now)
    if event_ids is not None:
        due = due.where(TABLE.c.id.in_(event_ids))
    if queues is not None:
        due = due.where(TABLE.c.queue.in_(queues))
    due = due.order_by(TABLE.c.id).limit(limit).with_for_update(skip_locked=True)
    claimed = session.connection().execute(
        update(TABLE).where(TABLE.c.id.in_(due.scalar_subquery())).values(attempts=TABLE.c.attempts + 1)
        .returning(TABLE.c.id, TABLE.c.kind, TABLE.c.handler, TABLE.c.payload, TABLE.c.attempts)).all()
    if not claimed:
        session.rollback()
        return {}
    results: dict[int, str] = {}
    failures = []
    for event_id, kind, name, payload, attempts in sorted(claimed):
        handler = HANDLERS.get(kind, {}).get(name)
        try:
            if handler is None:
                raise LookupError(f"no handler {name} for {kind}")
            with session.begin_nested():
                handler(payload)
            results[event_id] = "done"
        except Exception as exc:  # noqa: BLE001 - any failure of a handler is recorded and retried
            failures.append((event_id, attempts, exc))
    sql = session.connection()
    done = [{"event": event_id} for event_id, result in results.items() if result == "done"]
    if done:
        sql.execute(update(TABLE).where(TABLE.c.id == bindparam("event"))
                    .values(status="done", processed_at=utcnow(), last_error=None), done)
    for event_id, attempts, exc in failures:
        results[event_id] = _record_failure(event_id, attempts, exc)
    for kind in sorted({kind for _, kind, *_ in claimed}):
        failpoint(f"outbox.{kind}.before_commit")  # tests: a worker killed with the handlers' work uncommitted
    session.commit()
    kick()  # what the handlers emitted
    return results


def _record_failure(event_id: int, attempts: int, exc: Exception) -> str:
    """In the batch's transaction: the error, and the next attempt's time (backoff) or ``failed``."""
    final = attempts >= MAX_ATTEMPTS
    delay = BACKOFF_SECONDS[min(attempts, len(BACKOFF_SECONDS)) - 1]
    error = f"{type(exc).__name__}: {exc}"[:512]
    db.session.connection().execute(update(TABLE).where(TABLE.c.id == event_id).values(
        last_error=error, status="failed" if final else "pending",
        next_attempt_at=utcnow() + timedelta(seconds=delay)))
    (log.error if final else log.warning)("outbox event failed", extra={"fields": {
        "event": event_id, "attempts": attempts, "final": final, "error": error}})
    return "failed" if final else "retry"


def due(limit: int = DISPATCH_BATCH, lag_seconds: float = 0, queues: list[str] | None = None) -> list[int]:
    """Ids of pending events (of ``queues``, or all) due ``lag_seconds`` ago or earlier, oldest first."""
    cutoff = utcnow() - timedelta(seconds=lag_seconds)
    query = select(TABLE.c.id).where(TABLE.c.status == "pending", TABLE.c.next_attempt_at <= cutoff)
    if queues is not None:
        query = query.where(TABLE.c.queue.in_(queues))
    ids = list(db.session.scalars(query.order_by(TABLE.c.id).limit(limit)))
    db.session.rollback()
    return ids


def run_due(limit: int = DISPATCH_BATCH, lag_seconds: float = 0, queues: list[str] | None = None) -> dict[str, int]:
    """Dispatch due events (of ``queues``, or all) here: the workers' sweep of their queues (with a
    lag when RQ delivers fresh events), and ``flask outbox run``."""
    counts: dict[str, int] = {}
    ids = due(limit, lag_seconds, queues)
    if ids:
        for outcome in dispatch_batch(ids, limit).values():
            counts[outcome] = counts.get(outcome, 0) + 1
    return counts


def failed(limit: int = DISPATCH_BATCH) -> list[OutboxEvent]:
    return list(db.session.scalars(select(OutboxEvent).where(OutboxEvent.status == "failed")
                                   .order_by(OutboxEvent.id).limit(limit)))


def replay(event_id: int) -> str:
    """Give a failed event a fresh start (attempts reset) and dispatch it now."""
    changed = db.session.execute(update(TABLE).where(TABLE.c.id == event_id, TABLE.c.status == "failed")
                                 .values(status="pending", attempts=0, next_attempt_at=utcnow())).rowcount
    db.session.commit()
    if not changed:
        raise LookupError(f"no failed outbox event {event_id}")
    return dispatch(event_id)
