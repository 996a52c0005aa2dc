"""Confirmation: the one place that retires credits, posts the ledger, moves payment and order,
and queues the events that follow a payment; and its counterpart for refunds WeChat Pay reports.

Both run from the inbox (carbon/checkout/inbox.py) inside the caller's transaction, under the
payment's (or refund's) row lock. Lock order: inbox entries, payment, reservations. The checks of
amount, currency, appid, mchid and payer were made when the entry was accepted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, update

from carbon import jobs
from carbon.checkout.models import Order, Payment, Refund
from carbon.checkout.outcomes import Outcome
from carbon.checkout.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    allowed,
    move,
)
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ, utcnow
from carbon.core.db import db
from carbon.core.ids import new_public_id
from carbon.core.units import cny, from_fen, kg_to_grams
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.ledger import service as ledger
from carbon.ledger import settlement
from payments.provider import RefundNotice, Transaction

log = logging.getLogger("diandian.checkout")
CASH, REFUND_DUE = "cash:wechatpay", "refund_due:wechatpay"


@dataclass
class LockedPayment:
    """A payment and its order, as read under the payment's row lock (``status`` moves by ``move``)."""

    id: int
    status: str
    amount: Decimal
    transaction_id: str | None
    out_trade_no: str
    order_id: int
    order_public_id: str
    order_status: str
    units: int
    kg: Decimal
    project_id: int
    project_public_id: str
    unit_kg: Decimal
    user_id: int
    beneficiary_name: str
    purpose: str
    scene_id: int | None
    channel: str | None


LOCK_PAYMENT = (
    select(Payment.id, Payment.status, Payment.amount, Payment.transaction_id, Payment.out_trade_no, Order.id,
           Order.public_id, Order.status, Order.units, Order.kg, Order.project_id, Project.public_id, Project.unit_kg,
           Order.user_id, Order.beneficiary_name, Order.purpose, Order.scene_id, Order.channel)
    .join(Order, Order.id == Payment.order_id).join(Project, Project.id == Order.project_id)
    .with_for_update(of=Payment))


def confirm(transaction: Transaction) -> Outcome:
    """Apply a successful transaction to its payment at most once (see the module's docstring)."""
    sql = db.session.connection()  # Core on the session's connection: no unit of work on this path
    row = sql.execute(LOCK_PAYMENT.where(Payment.out_trade_no == transaction.out_trade_no)).first()
    if row is None:
        raise LookupError(f"no payment {transaction.out_trade_no}")  # accept() saw it: cannot happen
    payment = LockedPayment(*row)
    if payment.status in (PaymentStatus.CONFIRMED, PaymentStatus.REFUNDED):
        if payment.transaction_id == transaction.transaction_id:
            return Outcome.DUPLICATE
        return _book_for_refund(payment, transaction, "double_charge")
    if transaction.trade_state != "SUCCESS":
        return Outcome.IGNORED
    if not (allowed(PAYMENT_TRANSITIONS, payment.status, PaymentStatus.CONFIRMED)
            and allowed(ORDER_TRANSITIONS, payment.order_status, OrderStatus.PAID)):
        return _book_for_refund(payment, transaction, "late_payment")
    retirements = credits.retire(_RetireFacts(payment))
    if retirements is None:  # the holds expired and went to someone else
        return _book_for_refund(payment, transaction, "late_payment")
    now = utcnow()
    order = _Status(payment.order_status)
    move(payment, PAYMENT_TRANSITIONS, PaymentStatus.CONFIRMED)
    move(order, ORDER_TRANSITIONS, OrderStatus.PAID)
    sql.execute(update(Payment.__table__).where(Payment.__table__.c.id == payment.id).values(
        status=payment.status, transaction_id=transaction.transaction_id, provider_data=transaction.raw,
        confirmed_at=now))
    sql.execute(update(Order.__table__).where(Order.__table__.c.id == payment.order_id).values(
        status=order.status, paid_at=now))
    fee = cny(payment.amount * Decimal(ext.settings().PLATFORM_FEE_RATE))
    ledger.post("payment", payment.order_public_id, [
        (CASH, "CNY", payment.amount),
        (settlement.payable_account(payment.project_public_id), "CNY", -(payment.amount - fee)),
        ("revenue:platform_fee", "CNY", -fee),
        (f"retired:user:{payment.user_id}", "kg", payment.kg),
        (f"inventory:project:{payment.project_public_id}", "kg", -payment.kg),
    ], memo=f"{payment.out_trade_no} {transaction.transaction_id}")
    jobs.emit("order.paid", {
        "order": payment.order_public_id, "retirements": retirements, "scene_id": payment.scene_id,
        "channel": payment.channel or "", "grams": kg_to_grams(payment.kg), "amount": str(payment.amount),
        "day": now.astimezone(CHINA_TZ).date().isoformat()})
    return Outcome.CONFIRMED


@dataclass
class _Status:
    status: str


class _RetireFacts:
    """What credits.retire needs of an order, from the locked row."""

    def __init__(self, payment: LockedPayment):
        self.id, self.units, self.project_id = payment.order_id, payment.units, payment.project_id
        self.unit_kg, self.user_id = payment.unit_kg, payment.user_id
        self.beneficiary_name, self.purpose = payment.beneficiary_name, payment.purpose


def _book_for_refund(payment: LockedPayment, transaction: Transaction, cause: str) -> Outcome:
    """Money we cannot apply (the order was given up, or it is a second charge): the cash is booked
    against ``refund_due`` and its refund is queued, so cash received always has postings."""
    amount = from_fen(transaction.total_fen)
    ledger.post(cause, transaction.transaction_id, [(CASH, "CNY", amount), (REFUND_DUE, "CNY", -amount)],
                memo=f"{payment.out_trade_no} {transaction.transaction_id}: {cause}")
    refund = Refund(public_id=new_public_id("rfd"), payment_id=payment.id, out_refund_no=f"R{transaction.transaction_id}",
                    charge_transaction_id=transaction.transaction_id, amount=amount, cause=cause,
                    reason="订单已关闭，自动退款 / order closed, refunded" if cause == "late_payment"
                    else "重复支付，自动退款 / charged twice, refunded", status=RefundStatus.REQUESTED)
    db.session.add(refund)
    db.session.flush()
    jobs.emit("payment.needs_refund", {"refund": refund.public_id})
    log.error("payment to refund", extra={"fields": {"cause": cause, "out_trade_no": payment.out_trade_no,
                                                     "transaction_id": transaction.transaction_id,
                                                     "amount": str(amount)}})
    return Outcome.DOUBLE_CHARGE if cause == "double_charge" else Outcome.ORPHANED


def settle_refund(notice: RefundNotice) -> Outcome:
    """WeChat Pay reports a refund's end: the cash leaves (refund_due → cash) once, or an operator is alerted."""
    refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == notice.out_refund_no)
                               .with_for_update())
    if refund is None:
        log.error("refund notification for an unknown refund", extra={"fields": {
            "out_refund_no": notice.out_refund_no, "out_trade_no": notice.out_trade_no}})
        return Outcome.IGNORED
    if refund.status in (RefundStatus.SUCCEEDED, RefundStatus.FAILED):
        return Outcome.DUPLICATE
    refund.refund_id = notice.refund_id
    refund.completed_at = utcnow()
    if notice.status != "SUCCESS":
        move(refund, REFUND_TRANSITIONS, RefundStatus.FAILED)
        log.error("refund failed at WeChat Pay", extra={"fields": {"refund": refund.public_id, "status": notice.status}})
        return Outcome.REFUND_FAILED
    move(refund, REFUND_TRANSITIONS, RefundStatus.SUCCEEDED)
    ledger.post("refund_paid", refund.out_refund_no, [(REFUND_DUE, "CNY", refund.amount),
                                                      (CASH, "CNY", -refund.amount)],
                memo=f"{refund.public_id} {notice.refund_id}")
    db.session.flush()
    return Outcome.REFUND_SETTLED
