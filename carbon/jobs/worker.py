"""``flask worker``: confirms payments from the inbox and dispatches outbox events (``DIANDIAN_JOBS=workers``).

A worker serves queues (lanes, decision 0015): ``inbox`` (payment confirmations) and the outbox's
queues (``default``, ``render`` …); all of them unless told (``flask worker -q inbox -q default``).
The inbox loop waits on PostgreSQL's ``LISTEN`` (a notify route's ``NOTIFY`` wakes it at once;
SQLite polls), claims a batch with ``FOR UPDATE SKIP LOCKED`` and confirms it; under a backlog it
claims larger batches. Outbox events go through RQ on Redis when it is configured (the main thread
is an RQ worker of the served queues, in the order given); a sweep of the served queues also runs
every due event the queue did not deliver (retries, lost enqueues), and without Redis the sweep is
the dispatcher. Any number of workers may run side by side.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from flask import Flask
from sqlalchemy.exc import InterfaceError, OperationalError, PendingRollbackError

from carbon import jobs
from carbon.core import extensions as ext
from carbon.core.db import db, on_postgresql

log = logging.getLogger("diandian.worker")
IDLE_WAIT_SECONDS = 1.0
SWEEP_SECONDS = 1.0
# After a batch that was not full, the next waits this long: under a storm the inbox (running above
# the app, decision 0015) would otherwise confirm a few entries per batch at twice the CPU each.
GATHER_SECONDS = 0.05
SWEEP_LAG_SECONDS = 5.0  # with RQ: leave fresh events to the queue
INBOX = "inbox"  # the payment confirmations' lane


def lanes() -> list[str]:
    """What a worker can serve: the inbox, then the outbox's queues."""
    return [INBOX, *jobs.queue_names()]


def run_events(event_ids: list[int]) -> dict[int, str]:
    """The RQ job: dispatch the outbox events one commit queued, in the worker's app context.
    A database that is away (a handler's failure is recorded by ``dispatch_batch`` itself) leaves
    the events pending, untouched, for the sweep: a warning, not a failed job kept in Redis."""
    try:
        return jobs.dispatch_batch(event_ids)
    except (OperationalError, InterfaceError, PendingRollbackError) as exc:  # the connection, not our SQL
        log.warning("outbox batch deferred", extra={"fields": {"events": len(event_ids), "error": type(exc).__name__}})
        return {}
    finally:
        db.session.remove()


def work(app: Flask, stop: threading.Event | None = None, queues: Sequence[str] | None = None) -> None:
    """Serve ``queues`` (every lane by default) until ``stop`` is set (or forever, for ``flask worker``)."""
    stop = stop or threading.Event()
    with app.app_context():
        queues = list(queues or lanes())
        outbox = [name for name in queues if name != INBOX]
        rq_queues = [ext.job_queue(name) for name in outbox] if ext.job_queue() is not None else []
    confirmed = threading.Event()  # set after an inbox batch: its events are due for the sweep
    threads = []
    if INBOX in queues:
        threads.append(threading.Thread(target=_inbox_loop, args=(app, stop, confirmed), name="inbox", daemon=True))
    if outbox:
        threads.append(threading.Thread(target=_sweep_loop, args=(app, stop, confirmed, outbox), name="outbox-sweep",
                                        daemon=True))
    for thread in threads:
        thread.start()
    if rq_queues:
        from rq import SimpleWorker

        worker = SimpleWorker(rq_queues, connection=rq_queues[0].connection)
        # The main thread serves the queues; the loops above stop with the process.
        worker.work(with_scheduler=False, logging_level="WARNING")
        stop.set()
    else:
        while not stop.is_set():
            stop.wait(0.5)
    for thread in threads:
        thread.join(5)


def _inbox_loop(app: Flask, stop: threading.Event, confirmed: threading.Event) -> None:
    from carbon.checkout import inbox

    with app.app_context():
        listener = None
        limit = inbox.BATCH
        while not stop.is_set():
            try:
                if listener is None and on_postgresql():
                    listener = _listen()  # before the batch: a wake-up during it is not lost
                processed = inbox.process(limit=limit)
                full = len(processed) >= limit  # judged against the limit this batch was claimed with
                # A full batch means a backlog: larger batches clear it with fewer statements per payment.
                limit = min(2 * limit, inbox.MAX_BATCH) if full else inbox.BATCH
                if processed:
                    confirmed.set()
                    if not full:  # arriving one by one: let a few gather into the next batch
                        stop.wait(GATHER_SECONDS)
                    continue  # there may be more
            except Exception:
                db.session.rollback()
                log.exception("inbox batch failed")
                listener = None
                stop.wait(IDLE_WAIT_SECONDS)
                continue
            finally:
                db.session.remove()
            if not _wait(listener, stop):
                listener = None


def _listen():
    """A connection of its own that LISTENs for the notify route's wake-up."""
    import psycopg

    url = db.engine.url.set(drivername="postgresql")
    connection = psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)
    from carbon.checkout.inbox import WAKE_CHANNEL

    connection.execute(f"LISTEN {WAKE_CHANNEL}")
    return connection


def _wait(listener, stop: threading.Event) -> bool:
    """Wait for a wake-up (or a short while); False when the listening connection is gone."""
    if listener is None:
        stop.wait(0.2)
        return True
    try:
        for _ in listener.notifies(timeout=IDLE_WAIT_SECONDS, stop_after=1):
            pass
    except Exception:  # noqa: BLE001 - the connection dropped: the next round reconnects
        listener.close()
        return False
    return True


def _sweep_loop(app: Flask, stop: threading.Event, confirmed: threading.Event, queues: list[str]) -> None:
    with app.app_context():
        queued = ext.job_queue() is not None
        lag = SWEEP_LAG_SECONDS if queued else 0
        while not stop.is_set():
            ran = 0
            try:
                ran = sum(jobs.run_due(lag_seconds=lag, queues=queues).values())
            except Exception:
                db.session.rollback()
                log.exception("outbox sweep failed")
            finally:
                db.session.remove()
            if ran >= jobs.DISPATCH_BATCH:
                continue  # a full batch: more are due
            if queued:
                stop.wait(SWEEP_SECONDS)
            else:  # the sweep is the dispatcher: woken by the inbox loop, or once a second
                confirmed.wait(SWEEP_SECONDS)
                confirmed.clear()

