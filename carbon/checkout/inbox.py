"""The payment inbox: a verified notification is recorded in one short transaction and answered;
confirmation runs from the inbox — inline in the same request (``DIANDIAN_JOBS=inline``) or by
workers that claim entries with ``FOR UPDATE SKIP LOCKED`` and confirm a batch in one transaction,
each entry under its own savepoint (decision 0009)."""
from __future__ import annotations

import dataclasses
import functools
import logging

from sqlalchemy import and_, bindparam, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from carbon import jobs
from carbon.checkout import confirmation
from carbon.checkout.models import InboxEntry
from carbon.checkout.outcomes import Outcome, Receipt
from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db, on_postgresql
from carbon.core.failpoints import failpoint
from payments.provider import NotifyRejected, RefundNotice, Transaction

log = logging.getLogger("diandian.checkout")
TABLE = InboxEntry.__table__
LOCK_TIMEOUT = "3s"
BATCH = 50
MAX_BATCH = 200  # a worker's batch under a backlog (flask worker doubles it while batches come back full)
MAX_ATTEMPTS = 10
WAKE_CHANNEL = "diandian_inbox"


def handle_notify(headers: dict[str, str], body: bytes) -> Receipt:
    """A WeChat Pay notification: verify, decrypt, check, record; confirm now unless workers do."""
    try:
        notification = ext.payments().parse_notify(headers, body)
    except NotifyRejected as exc:
        log.warning("notify rejected", extra={"fields": {"reason": exc.reason}})
        return Receipt(Outcome.MALFORMED if exc.reason == "notify.not_utf8" else Outcome.REJECTED, exc.reason)
    try:
        if notification.refund is not None:
            return receive_refund(notification.refund, event_id=notification.event_id, source="notify")
        if notification.transaction is None or notification.event_type != "TRANSACTION.SUCCESS":
            return Receipt(Outcome.IGNORED, notification.event_type)
        return receive(notification.transaction, event_id=notification.event_id, source="notify")
    except OperationalError as exc:  # a lock wait timed out, or the database is unreachable
        db.session.rollback()
        log.warning("notify deferred", extra={"fields": {"error": type(exc.orig).__name__}})
        return Receipt(Outcome.DEFERRED, type(exc.orig).__name__)


def receive(transaction: Transaction, *, event_id: str | None, source: str) -> Receipt:
    """Record a verified transaction once, and confirm it here unless workers do (the checks against
    the order are made when it is confirmed, under the payment's lock)."""
    return _record_and_run("transaction", transaction.transaction_id, transaction.out_trade_no, event_id, source,
                           _fields_of(transaction))


def receive_refund(notice: RefundNotice, *, event_id: str | None, source: str) -> Receipt:
    """Record a verified refund's end once (a notification, or a query's answer), and settle it."""
    if notice.mchid != ext.settings().WECHATPAY_MCHID:
        log.warning("refund notify mismatch", extra={"fields": {"reason": "mchid", "out_refund_no": notice.out_refund_no}})
        return Receipt(Outcome.MISMATCH, "mchid")
    # One entry per refund and status: an ABNORMAL refund is reported again when it ends.
    return _record_and_run("refund", f"{notice.refund_id}:{notice.status}", notice.out_trade_no, event_id, source,
                           _fields_of(notice))


def _fields_of(verified) -> dict:
    """The verified transaction or refund as the entry's payload: its fields, ``raw`` (the decrypted
    resource, parsed for this request and never changed) not copied again (``dataclasses.asdict``
    deep-copies it: 32 µs of the notify route's ~850)."""
    return {field.name: getattr(verified, field.name) for field in dataclasses.fields(verified)}


def _record_and_run(kind: str, external_id: str | None, out_trade_no: str, event_id: str | None, source: str,
                    payload: dict) -> Receipt:
    entry_id, new = record(kind, external_id or "", out_trade_no, event_id, source, payload)
    if ext.settings().JOBS == "workers" and source == "notify":
        return Receipt(Outcome.RECORDED if new else Outcome.DUPLICATE)
    return process([entry_id]).get(entry_id) or Receipt(Outcome.DUPLICATE)  # not claimed: done, or being confirmed


def record(kind: str, external_id: str, out_trade_no: str, event_id: str | None, source: str,
           payload: dict) -> tuple[int, bool]:
    """Write the entry once (unique per event and per provider object), commit; (its id, whether new)."""
    provider = ext.payments().name
    sql = db.session.connection()
    entry_id = sql.execute(_insert_once(on_postgresql(), ext.settings().JOBS == "workers"), {
        "provider": provider, "kind": kind, "event_id": event_id, "external_id": external_id,
        "out_trade_no": out_trade_no, "source": source, "payload": payload, "status": "pending", "attempts": 0,
        "received_at": utcnow()}).scalar()
    new = entry_id is not None
    if not new:
        same = [and_(TABLE.c.kind == kind, TABLE.c.external_id == external_id)]
        if event_id:
            same.append(TABLE.c.event_id == event_id)
        entry_id = sql.execute(select(TABLE.c.id).where(TABLE.c.provider == provider, or_(*same))
                               .order_by(TABLE.c.id).limit(1)).scalar()
        # Delivered again: an entry that had failed (e.g. did not match its order) gets another try.
        sql.execute(update(TABLE).where(TABLE.c.id == entry_id, TABLE.c.status == "failed").values(
            status="pending", attempts=0, payload=payload))
    db.session.commit()
    return entry_id, new


@functools.cache
def _insert_once(postgres: bool, wake_workers: bool):
    """INSERT … ON CONFLICT DO NOTHING RETURNING id; on PostgreSQL with workers it also calls
    pg_notify, which PostgreSQL sends at commit: the same statement wakes a worker."""
    statement = (postgresql if postgres else sqlite).insert(TABLE).on_conflict_do_nothing()
    if postgres and wake_workers:
        return statement.returning(TABLE.c.id, func.pg_notify(WAKE_CHANNEL, ""))
    return statement.returning(TABLE.c.id)


def process(entry_ids: list[int] | None = None, limit: int = BATCH) -> dict[int, Receipt]:
    """Claim pending entries (these, or the oldest ``limit``) and act on each; one commit for the
    batch, then the events it queued are dispatched. Entries another process holds are skipped,
    never waited for. The batch first runs as one transaction; if an entry fails, it runs again
    entry by entry, each under its own savepoint, so one bad entry never blocks the rest."""
    session = db.session
    claimed = _claim(entry_ids, limit)
    if not claimed:
        session.rollback()
        return {}
    outcomes: dict[int, Receipt] = {}
    errors: dict[int, tuple[int, str]] = {}
    failing: int | None = None  # the entry that failed, where it can be told
    try:
        payments = [(entry_id, payload) for entry_id, kind, payload, _ in claimed if kind == "transaction"]
        if payments:
            failing = claimed[0][0] if len(claimed) == 1 else None  # a batch's failure names no one entry
            confirmed = confirmation.confirm_many([Transaction(**payload) for _, payload in payments])
            outcomes.update(zip([entry_id for entry_id, _ in payments], confirmed, strict=True))
        # Refunds after the payments: a refund made by hand at the merchant platform may be of a
        # payment this very batch confirms (its notification waited); before it, it would be unknown.
        for entry_id, kind, payload, _ in claimed:
            if kind == "refund":
                failing = entry_id
                outcomes[entry_id] = _act(kind, payload)
    except Exception as exc:  # noqa: BLE001 - again entry by entry; the one known to fail is recorded
        session.rollback()
        claimed = _claim([row[0] for row in claimed], limit)
        outcomes, errors = _one_by_one(claimed, failing, exc)
    sql = session.connection()
    # A mismatch is kept as failed for operators; a redelivery tries it again.
    finished = [{"entry": entry_id, "result": str(receipt.outcome),
                 "status": "failed" if receipt.outcome == Outcome.MISMATCH else "done",
                 "error": receipt.detail[:256] or None} for entry_id, receipt in outcomes.items() if entry_id not in errors]
    if finished:
        sql.execute(update(TABLE).where(TABLE.c.id == bindparam("entry")).values(
            status=bindparam("status"), outcome=bindparam("result"), processed_at=utcnow(),
            last_error=bindparam("error")), finished)
    for receipt in outcomes.values():
        if receipt.outcome == Outcome.MISMATCH:
            log.error("payment does not match its order", extra={"fields": {"reason": receipt.detail}})
    for entry_id, (attempts, error) in errors.items():
        sql.execute(update(TABLE).where(TABLE.c.id == entry_id).values(
            last_error=error[:256], status="failed" if attempts >= MAX_ATTEMPTS else "pending"))
    failpoint("checkout.confirm.before_commit")
    session.commit()
    log.info("payments processed", extra={"fields": {"entries": len(outcomes), "errors": len(errors)}})
    jobs.kick()
    return outcomes


def _claim(entry_ids: list[int] | None, limit: int) -> list[tuple]:
    """Take pending entries for this transaction (``FOR UPDATE SKIP LOCKED``), in lock order."""
    if on_postgresql():
        db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    due = select(TABLE.c.id).where(TABLE.c.status == "pending", TABLE.c.attempts < MAX_ATTEMPTS)
    if entry_ids is not None:
        due = due.where(TABLE.c.id.in_(entry_ids))
    due = due.order_by(TABLE.c.id).limit(limit).with_for_update(skip_locked=True)
    rows = db.session.connection().execute(update(TABLE).where(TABLE.c.id.in_(due.scalar_subquery())).values(
        attempts=TABLE.c.attempts + 1).returning(TABLE.c.id, TABLE.c.kind, TABLE.c.out_trade_no, TABLE.c.payload,
                                                 TABLE.c.attempts)).all()
    return [(entry_id, kind, payload, attempts) for entry_id, kind, _, payload, attempts
            in sorted(rows, key=lambda row: (row[2], row[0]))]  # one lock order: by payment


def _one_by_one(claimed: list[tuple], failed_id: int | None, failure: Exception
                ) -> tuple[dict[int, Receipt], dict[int, tuple[int, str]]]:
    """Each entry under its own savepoint; the one that failed the batch is recorded, not run again
    (a lock that timed out would only time out again)."""
    outcomes: dict[int, Receipt] = {}
    errors: dict[int, tuple[int, str]] = {}
    for entry_id, kind, payload, attempts in claimed:
        try:
            if entry_id == failed_id:
                raise failure
            with db.session.begin_nested():
                outcomes[entry_id] = _act(kind, payload)
        except OperationalError as exc:  # e.g. the payment's lock wait timed out: left for a retry
            outcomes[entry_id] = Receipt(Outcome.DEFERRED, type(exc.orig).__name__)
            errors[entry_id] = (attempts, type(exc.orig).__name__)
        except Exception as exc:  # recorded on the entry, never blocks the rest
            log.error("inbox entry failed", exc_info=exc, extra={"fields": {"entry": entry_id}})
            outcomes[entry_id] = Receipt(Outcome.FAILED, type(exc).__name__)
            errors[entry_id] = (attempts, f"{type(exc).__name__}: {exc}")
    return outcomes, errors


def _act(kind: str, payload: dict) -> Receipt:
    if kind == "refund":
        return Receipt(confirmation.settle_refund(RefundNotice(**payload)))
    return confirmation.confirm_many([Transaction(**payload)])[0]

