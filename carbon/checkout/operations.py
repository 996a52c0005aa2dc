"""Operations on orders after they were placed: expiry, reconciliation with WeChat Pay, refunds."""
from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import func, select

from carbon import jobs
from carbon.checkout import inbox, refunds
from carbon.checkout.models import InboxEntry, Order, Payment, Refund
from carbon.checkout.orders import OrderNotFound, PaymentUnavailable
from carbon.checkout.outcomes import Outcome
from carbon.checkout.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    UNPAID,
    PaymentStatus,
    RefundStatus,
    closed_status,
    move,
)
from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import NotFound, ValidationError
from carbon.core.ids import new_public_id
from carbon.core.units import to_fen
from carbon.credits import service as credits
from payments.provider import ProviderError, ProviderRefused

log = logging.getLogger("diandian.checkout")
# What WeChat Pay's answer about a payment led to (see ``_settle_from_query``).
SETTLED = {Outcome.CONFIRMED: "confirmed", Outcome.DUPLICATE: "confirmed", Outcome.ORPHANED: "refunded",
           Outcome.DOUBLE_CHARGE: "refunded"}


def expire_orders() -> dict[str, int]:
    """Close unpaid orders past their reservation at WeChat Pay and release their serials.
    An order WeChat says was paid meanwhile is confirmed instead (or, when its holds went to someone
    else, closed and its money refunded). Orders left ``created`` (the process died before WeChat
    Pay answered) are canceled the same way."""
    counts = {"expired": 0, "confirmed": 0, "refunded": 0, "deferred": 0}
    due = list(db.session.scalars(select(Order.id).where(Order.status.in_(UNPAID), Order.expires_at <= utcnow())
                                  .order_by(Order.id)))
    for order_id in due:
        db.session.rollback()  # read it afresh: since the list was read it may have been paid or closed
        order = db.session.get(Order, order_id)
        if order.status not in UNPAID:
            continue
        payment = next((p for p in reversed(order.payments)
                        if p.status in (PaymentStatus.CREATED, PaymentStatus.PENDING)), None)
        try:
            if payment is not None:
                ext.payments().close(payment.out_trade_no)
        except ProviderRefused as exc:
            if exc.code == "ORDERPAID":  # paid, says WeChat Pay; a query that does not say so waits a round
                settled = _settle_from_query(payment)
                counts["deferred" if settled == "pending" else settled] += 1
                continue
            if exc.code != "ORDER_NOT_EXIST":
                counts["deferred"] += 1
                continue
        except ProviderError:
            counts["deferred"] += 1
            continue
        if not _lock_unpaid(order):  # paid or closed by another process while WeChat Pay was asked
            db.session.rollback()
            continue
        if payment is not None:
            move(payment, PAYMENT_TRANSITIONS, PaymentStatus.CANCELED)
        move(order, ORDER_TRANSITIONS, closed_status(order.status))
        order.closed_at = utcnow()
        credits.release([order.id])
        db.session.commit()
        counts["expired"] += 1
    return counts


def _lock_unpaid(order: Order) -> bool:
    """Lock the order's payments, then the order (the confirmation's lock order), reloaded: True when
    it is still unpaid, so closing it cannot cross a confirmation or another expiry run."""
    db.session.execute(select(Payment).where(Payment.order_id == order.id).order_by(Payment.id)
                       .with_for_update().execution_options(populate_existing=True)).all()
    db.session.execute(select(Order).where(Order.id == order.id).with_for_update()
                       .execution_options(populate_existing=True)).one()
    return order.status in UNPAID


def reconcile_payments(older_than_minutes: int = 10) -> dict[str, int]:
    """Finish what notifications left: inbox entries still pending after a while are processed, and
    WeChat Pay is asked about payments still pending and refunds not yet ended (a notification may
    have been lost)."""
    counts = {"confirmed": 0, "refunded": 0, "pending": 0, "deferred": 0,
              "refunds_settled": 0, "refunds_failed": 0, "refunds_waiting": 0, "refunds_deferred": 0}
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    stale = list(db.session.scalars(select(InboxEntry.id).where(InboxEntry.status == "pending",
                                                                InboxEntry.received_at <= cutoff)))
    if stale:
        inbox.process(stale)
    pending = list(db.session.scalars(select(Payment).where(Payment.status == PaymentStatus.PENDING,
                                                            Payment.created_at <= cutoff)))
    for payment in pending:
        counts[_settle_from_query(payment)] += 1
    asked = list(db.session.scalars(select(Refund).where(
        Refund.status.in_((RefundStatus.PROCESSING, RefundStatus.ABNORMAL)), Refund.created_at <= cutoff)
        .order_by(Refund.id)))
    for refund in asked:
        counts[_settle_refund_from_query(refund)] += 1
    return counts


REFUND_SETTLED = {Outcome.REFUND_SETTLED: "refunds_settled", Outcome.REFUND_FAILED: "refunds_failed"}


def _settle_refund_from_query(refund: Refund) -> str:
    """Ask WeChat Pay about one refund whose end we have not heard (its notification lost); an ended
    answer goes through the inbox like a refund notification."""
    try:
        notice = ext.payments().query_refund(refund.out_refund_no)
    except ProviderError:
        return "refunds_deferred"
    if notice is None or notice.status == "PROCESSING":
        return "refunds_waiting"
    receipt = inbox.receive_refund(notice, event_id=None, source="query")
    return REFUND_SETTLED.get(receipt.outcome, "refunds_waiting")


def _settle_from_query(payment: Payment) -> str:
    """Ask WeChat Pay about one payment; a paid answer goes through the inbox like a notification."""
    try:
        transaction = ext.payments().query(payment.out_trade_no)
    except ProviderError:
        return "deferred"
    if transaction is not None and transaction.trade_state == "REFUND":
        # Paid, then refunded at WeChat Pay by hand (the merchant platform) before we heard of the
        # payment: nothing here may book it on its own (a partial refund is possible). An operator must.
        log.error("payment refunded at WeChat Pay outside Diandian", extra={"fields": {
            "out_trade_no": payment.out_trade_no, "transaction_id": transaction.transaction_id}})
        return "deferred"
    if transaction is None or transaction.trade_state != "SUCCESS":
        return "pending"
    receipt = inbox.receive(transaction, event_id=None, source="query")
    if receipt.outcome in (Outcome.MISMATCH, Outcome.DEFERRED, Outcome.FAILED):
        return "deferred"
    return SETTLED.get(receipt.outcome, "pending")


MAX_REFUND_REASON = 200  # the ledger memo holds "refund of <transaction>: " and the reason


def refund_order(order_public_id: str, reason: str) -> Order:
    """Refund a paid order in full. Retired credits stay retired (a retirement is final); what the
    project and the platform were credited moves to ``refund_due`` now, the cash when WeChat Pay
    reports the refund done. WeChat Pay is asked by the ``payment.needs_refund`` handler."""
    # Locked: a second refund of the same order (a double click) waits, then finds it refunded (409).
    order = db.session.scalar(select(Order).where(Order.public_id == order_public_id).with_for_update()
                              .execution_options(populate_existing=True))
    if order is None:
        raise OrderNotFound()
    reason = reason.strip()
    if not 1 <= len(reason) <= MAX_REFUND_REASON:
        raise ValidationError(details={"reason": [(f"需要 1 至 {MAX_REFUND_REASON} 字的理由 / a reason of 1 to "
                                                  f"{MAX_REFUND_REASON} characters is required")]})
    # Only a paid (or fulfilled) order: refused otherwise. The postings are the one refund rule's.
    refund = refunds.refund_in_full(order, cause="operator", reason=reason)
    jobs.emit("payment.needs_refund", {"refund": refund.public_id})
    db.session.commit()
    jobs.kick()
    return order


class RefundNotFound(NotFound):
    code = "refund.not_found"
    message = "未找到该退款 / Refund not found"


def retry_refund(refund_public_id: str) -> Refund:
    """Ask WeChat Pay again for a refund it closed (``failed``): a new refund of the same money under a
    new ``out_refund_no`` (WeChat Pay takes a closed refund's amount back), queued like the first.
    The ledger is untouched: the money is still owed back (``refund_due``) until the new one succeeds."""
    failed = db.session.scalar(select(Refund).where(Refund.public_id == refund_public_id).with_for_update()
                               .execution_options(populate_existing=True))
    if failed is None:
        raise RefundNotFound(details={"refund": [refund_public_id]})
    move(failed, REFUND_TRANSITIONS, RefundStatus.RETRIED)  # only a failed one: refused otherwise
    attempt = 1 + db.session.scalar(select(func.count()).select_from(Refund).where(
        Refund.payment_id == failed.payment_id, Refund.charge_transaction_id == failed.charge_transaction_id))
    first = failed.out_refund_no.rsplit("-", 1)[0] if failed.retry_of_id else failed.out_refund_no
    retry = Refund(public_id=new_public_id("rfd"), payment_id=failed.payment_id, out_refund_no=f"{first}-{attempt}",
                   charge_transaction_id=failed.charge_transaction_id, amount=failed.amount, cause=failed.cause,
                   reason=failed.reason, status=RefundStatus.REQUESTED, retry_of_id=failed.id)
    db.session.add(retry)
    db.session.flush()
    jobs.emit("payment.needs_refund", {"refund": retry.public_id})
    db.session.commit()
    jobs.kick()
    return retry


@jobs.handles("payment.needs_refund")
def request_refund(payload: dict) -> None:
    """Ask WeChat Pay to refund (idempotent: the same ``out_refund_no`` answers the same refund)."""
    refund = db.session.scalar(select(Refund).where(Refund.public_id == payload["refund"]).with_for_update())
    if refund is None or refund.status != RefundStatus.REQUESTED:
        return
    try:
        answer = ext.payments().refund(out_trade_no=refund.payment.out_trade_no,
                                       transaction_id=refund.charge_transaction_id, out_refund_no=refund.out_refund_no,
                                       refund_fen=to_fen(refund.amount), total_fen=to_fen(refund.amount),
                                       reason=refund.reason)
    except ProviderRefused as exc:
        if exc.status == 429:  # FREQUENCY_LIMITED: asked again by the outbox's retries
            raise PaymentUnavailable(details={"provider": exc.code or "refused", "check": str(exc)}) from exc
        # Refused for good (e.g. NOT_ENOUGH, INVALID_REQUEST, USER_ACCOUNT_ABNORMAL): the money is still
        # owed back; the refund ends failed and alerts, for an operator to retry (flask refund-retry).
        move(refund, REFUND_TRANSITIONS, RefundStatus.FAILED)
        refund.completed_at = utcnow()
        log.error("refund refused by WeChat Pay", extra={"fields": {"refund": refund.public_id, "code": exc.code,
                                                                    "status": exc.status}})
        return
    except ProviderError as exc:
        raise PaymentUnavailable(details={"provider": exc.code or "unreachable", "check": str(exc)}) from exc
    refund.refund_id = answer.refund_id
    move(refund, REFUND_TRANSITIONS, RefundStatus.PROCESSING)  # settled by WeChat Pay's refund notification
    # (or, when that is lost, by reconcile-payments' query)
