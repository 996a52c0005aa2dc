"""Confirmation (``confirm_many``): the one place that retires credits, posts the ledger, moves
payment and order, and queues the events that follow a payment; and its counterpart for refunds
WeChat Pay reports.

Both run from the inbox (carbon/checkout/inbox.py) inside the caller's transaction, under the
payment's (or refund's) row lock. Lock order: inbox entries, payment, reservations. A transaction
whose amount, currency, appid, mchid or payer does not match its order changes nothing.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import bindparam, select, update

from carbon import jobs
from carbon.accounts.models import User
from carbon.checkout import refunds
from carbon.checkout.models import Order, Payment, Refund
from carbon.checkout.outcomes import Outcome, Receipt
from carbon.checkout.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    REFUND_ENDED,
    REFUND_TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    allowed,
    closed_status,
    move,
)
from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.ids import new_public_id
from carbon.core.units import cny, from_fen, to_fen
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.ledger import service as ledger
from carbon.ledger import settlement
from payments.provider import RefundNotice, Transaction

log = logging.getLogger("diandian.checkout")
CASH, REFUND_DUE = refunds.CASH, refunds.REFUND_DUE


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
    user_id: int | None
    organization_id: int | None
    beneficiary_name: str
    purpose: str
    scene_id: int | None
    channel: str | None
    openid: str | None  # None for an organization's order
    account_deleted: bool  # the guest deleted their account: their openid is erased


LOCK_PAYMENT = (
    select(Payment.id, Payment.status, Payment.amount, Payment.transaction_id, Payment.out_trade_no, Order.id,
           Order.public_id, Order.status, Order.units, Order.kg, Order.project_id, Project.public_id, Project.unit_kg,
           Order.user_id, Order.organization_id, Order.beneficiary_name, Order.purpose, Order.scene_id,
           Order.channel, User.openid, User.deleted_at.is_not(None))
    .join(Order, Order.id == Payment.order_id).join(Project, Project.id == Order.project_id)
    .outerjoin(User, User.id == Order.user_id).with_for_update(of=Payment))


def mismatches(transaction: Transaction, payment: LockedPayment | None) -> str:
    """What in a verified transaction is not ours (empty when all is well): amount, currency, appid,
    mchid, the payer (the order's guest; an organization's Native order is paid by whoever scans
    its code), or the payment itself. A deleted account's payer cannot be compared (its openid is
    erased); its orders are all closed (deletion waits for them), so such money is only ever
    refunded, to whoever paid it."""
    if payment is None:
        return "unknown out_trade_no"
    settings = ext.settings()
    return ", ".join(name for name, ok in (
        ("amount", transaction.total_fen == to_fen(payment.amount)), ("currency", transaction.currency == "CNY"),
        ("appid", transaction.appid == settings.WECHAT_APPID), ("mchid", transaction.mchid == settings.WECHATPAY_MCHID),
        ("payer", payment.organization_id is not None or payment.account_deleted
         or transaction.payer_openid == payment.openid)) if not ok)


PAYMENTS, ORDERS = Payment.__table__, Order.__table__
CONFIRM_PAYMENT = update(PAYMENTS).where(PAYMENTS.c.id == bindparam("payment")).values(
    status=bindparam("status"), transaction_id=bindparam("transaction"), provider_data=bindparam("data"),
    confirmed_at=bindparam("at"))
PAY_ORDER = update(ORDERS).where(ORDERS.c.id == bindparam("order")).values(status=bindparam("status"),
                                                                            paid_at=bindparam("at"))
CLOSE_PAYMENT = update(PAYMENTS).where(PAYMENTS.c.id == bindparam("payment")).values(status=bindparam("status"))
CLOSE_ORDER = update(ORDERS).where(ORDERS.c.id == bindparam("order")).values(status=bindparam("status"),
                                                                              closed_at=bindparam("at"))


def confirm_many(transactions: list[Transaction]) -> list[Receipt]:
    """Apply successful transactions to their payments, each at most once, in the order given (see
    the module's docstring). Set-based: however many, one statement for the payment locks, three
    for the retirements, and one each for payments, orders, ledger rows, postings and events."""
    sql = db.session.connection()  # Core on the session's connection: no unit of work on this path
    locked = sql.execute(LOCK_PAYMENT.where(Payment.out_trade_no.in_({t.out_trade_no for t in transactions}))
                         .order_by(Payment.id))
    payments = {row.out_trade_no: LockedPayment(*row) for row in locked}
    problems = [mismatches(transaction, payments.get(transaction.out_trade_no)) for transaction in transactions]
    candidates: dict[str, Transaction] = {}
    for transaction, problem in zip(transactions, problems, strict=True):  # a payment's first good success
        payment = payments.get(transaction.out_trade_no)
        if not problem and transaction.trade_state == "SUCCESS" and transaction.out_trade_no not in candidates and \
                allowed(PAYMENT_TRANSITIONS, payment.status, PaymentStatus.CONFIRMED) and \
                allowed(ORDER_TRANSITIONS, payment.order_status, OrderStatus.PAID):
            candidates[transaction.out_trade_no] = transaction
    retired = credits.retire([_RetireFacts(payments[no]) for no in candidates]) if candidates else {}
    now, outcomes, applied, given_up = utcnow(), [], [], []
    for transaction, problem in zip(transactions, problems, strict=True):
        payment = payments.get(transaction.out_trade_no)
        if problem:
            outcomes.append(Receipt(Outcome.MISMATCH, problem))
        elif payment.status in (PaymentStatus.CONFIRMED, PaymentStatus.REFUNDED):
            outcomes.append(Receipt(Outcome.DUPLICATE) if payment.transaction_id == transaction.transaction_id
                            else Receipt(_book_for_refund(payment, transaction, "double_charge")))
        elif transaction.trade_state != "SUCCESS":
            outcomes.append(Receipt(Outcome.IGNORED, transaction.trade_state))
        elif candidates.get(transaction.out_trade_no) is transaction and retired[payment.order_id] is not None:
            order = _Status(payment.order_status)
            move(payment, PAYMENT_TRANSITIONS, PaymentStatus.CONFIRMED)
            move(order, ORDER_TRANSITIONS, OrderStatus.PAID)
            payment.transaction_id, payment.order_status = transaction.transaction_id, order.status
            applied.append((payment, transaction))
            outcomes.append(Receipt(Outcome.CONFIRMED))
        else:  # given up, or its holds expired and went to someone else
            outcomes.append(Receipt(_book_for_refund(payment, transaction, "late_payment")))
            if allowed(PAYMENT_TRANSITIONS, payment.status, PaymentStatus.CANCELED):
                given_up.append(payment)
    if applied:
        _apply(applied, now)
    if given_up:
        _give_up(given_up, now)
    return outcomes


def _apply(applied: list[tuple[LockedPayment, Transaction]], now) -> None:
    sql = db.session.connection()
    sql.execute(CONFIRM_PAYMENT, [{"payment": p.id, "status": p.status, "transaction": t.transaction_id,
                                   "data": t.raw, "at": now} for p, t in applied])
    sql.execute(PAY_ORDER, [{"order": p.order_id, "status": p.order_status, "at": now} for p, _ in applied])
    fee_rate = Decimal(ext.settings().PLATFORM_FEE_RATE)
    ledger.post_many([ledger.Entry("payment", p.order_public_id, _payment_postings(p, fee_rate),
                                   f"{p.out_trade_no} {t.transaction_id}") for p, t in applied])
    # The event names the order; each handler reads what it needs from the order, locked.
    jobs.emit_many("order.paid", [{"order": p.order_public_id} for p, _ in applied])


def _give_up(payments: list[LockedPayment], now) -> None:
    """Orders still open whose money came too late to apply (their holds went to someone else): the
    payment is canceled and the order closed as expiry would close it, its remaining holds released;
    the money itself is already booked for refund."""
    closed = []
    for payment in payments:
        move(payment, PAYMENT_TRANSITIONS, PaymentStatus.CANCELED)
        order = _Status(payment.order_status)
        target = closed_status(order.status)
        if allowed(ORDER_TRANSITIONS, order.status, target):
            move(order, ORDER_TRANSITIONS, target)
            payment.order_status = order.status
            closed.append(payment)
    sql = db.session.connection()
    sql.execute(CLOSE_PAYMENT, [{"payment": p.id, "status": p.status} for p in payments])
    if closed:
        sql.execute(CLOSE_ORDER, [{"order": p.order_id, "status": p.order_status, "at": now} for p in closed])
    credits.release([p.order_id for p in payments])


def _payment_postings(payment: LockedPayment, fee_rate: Decimal) -> list[tuple[str, str, Decimal]]:
    """A payment: the cash is ours, the project is owed it less the platform's fee; the kg leave the
    project's inventory and are retired in the buyer's name (a guest's, or an organization's)."""
    fee = cny(payment.amount * fee_rate)
    retired = f"retired:user:{payment.user_id}" if payment.user_id is not None \
        else f"retired:organization:{payment.organization_id}"
    return [(CASH, "CNY", payment.amount),
            (settlement.payable_account(payment.project_public_id), "CNY", -(payment.amount - fee)),
            ("revenue:platform_fee", "CNY", -fee),
            (retired, "kg", payment.kg),
            (f"inventory:project:{payment.project_public_id}", "kg", -payment.kg)]


@dataclass
class _Status:
    status: str


class _RetireFacts:
    """What credits.retire needs of an order, from the locked row."""

    def __init__(self, payment: LockedPayment):
        self.id, self.units, self.project_id = payment.order_id, payment.units, payment.project_id
        self.unit_kg, self.user_id, self.organization_id = payment.unit_kg, payment.user_id, payment.organization_id
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
    """WeChat Pay reports a refund's end: the cash leaves (refund_due → cash) once, or an operator is
    alerted. A refund we never asked for was made by hand at WeChat Pay's merchant platform: see
    ``_settle_merchant_refund``."""
    refund = db.session.scalar(select(Refund).where(Refund.out_refund_no == notice.out_refund_no)
                               .with_for_update())
    if refund is None:
        return _settle_merchant_refund(notice)
    abnormal = notice.status == "ABNORMAL"  # not final: WeChat Pay reports the refund's end later
    if refund.status in REFUND_ENDED or \
            (abnormal and refund.status == RefundStatus.ABNORMAL):
        return Outcome.DUPLICATE
    if notice.status == "PROCESSING":  # a query's answer while WeChat Pay is still at it: nothing yet
        return Outcome.IGNORED
    refund.refund_id = notice.refund_id
    if abnormal:
        move(refund, REFUND_TRANSITIONS, RefundStatus.ABNORMAL)
        log.error("refund abnormal at WeChat Pay", extra={"fields": {"refund": refund.public_id}})
        return Outcome.REFUND_ABNORMAL
    refund.completed_at = utcnow()
    if notice.status != "SUCCESS":
        move(refund, REFUND_TRANSITIONS, RefundStatus.FAILED)
        log.error("refund failed at WeChat Pay", extra={"fields": {"refund": refund.public_id, "status": notice.status}})
        return Outcome.REFUND_FAILED
    move(refund, REFUND_TRANSITIONS, RefundStatus.SUCCEEDED)
    refunds.paid_back(refund)
    db.session.flush()
    return Outcome.REFUND_SETTLED


MERCHANT_REASON = "微信支付商户平台退款 / refunded at WeChat Pay's merchant platform"


def _settle_merchant_refund(notice: RefundNotice) -> Outcome:
    """A refund we have no row for: someone refunded at WeChat Pay's merchant platform, by hand. A
    successful refund of a confirmed payment's whole charge, on an order still paid or fulfilled, is
    booked as one of ours (``refunds.refund_in_full``: cause ``merchant``, no ``payment.needs_refund``
    since the money is back already) and settled at once. Anything else books nothing and alerts: a
    partial refund (which share of the credits goes back is an operator's call), a second refund of
    an order we refunded, a payment we never confirmed (or another charge of it), a refund not (yet)
    successful. Repeats are one: the inbox keeps one entry per refund and status, and once booked the
    refund row answers ``DUPLICATE`` above. Locks: the order, then its payment (as ``refund_order``);
    a payment not yet confirmed is locked first, alone, so a confirmation under way ends first."""
    fields = {"out_refund_no": notice.out_refund_no, "out_trade_no": notice.out_trade_no,
              "refund_id": notice.refund_id, "status": notice.status, "amount": str(from_fen(notice.refund_fen))}
    if notice.status != "SUCCESS":  # CLOSED paid nothing back; ABNORMAL reports its end later
        log.error("refund notification for an unknown refund", extra={"fields": fields})
        return Outcome.IGNORED
    paid = (PaymentStatus.CONFIRMED, PaymentStatus.REFUNDED)
    found = db.session.execute(select(Payment.order_id, Payment.status).where(
        Payment.out_trade_no == notice.out_trade_no)).one_or_none()
    if found is not None and found.status not in paid:
        # Perhaps being confirmed right now, in another worker's batch (both notifications waited):
        # wait for it under the payment's lock, then read it again. The confirmation's lock order
        # (payment, then order); refund_order cannot hold this order yet, it was not paid.
        found = db.session.execute(select(Payment.order_id, Payment.status).where(
            Payment.out_trade_no == notice.out_trade_no).with_for_update()).one()
    if found is None or found.status not in paid:
        log.error("refund of a payment we never confirmed", extra={"fields": fields})
        return Outcome.REFUND_UNKNOWN
    order = db.session.scalar(select(Order).where(Order.id == found.order_id).with_for_update()
                              .execution_options(populate_existing=True))
    payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == notice.out_trade_no)
                                .with_for_update().execution_options(populate_existing=True))
    fields["order"] = order.public_id
    if payment.transaction_id != notice.transaction_id:
        log.error("refund of a payment we never confirmed", extra={"fields": fields | {
            "transaction_id": notice.transaction_id}})
        return Outcome.REFUND_UNKNOWN
    if payment.status == PaymentStatus.REFUNDED or order.status == OrderStatus.REFUNDED:
        ours = db.session.scalars(select(Refund.public_id).where(Refund.payment_id == payment.id)
                                  .order_by(Refund.id)).all()
        log.error("second refund of a refunded order", extra={"fields": fields | {"refunds": ", ".join(ours)}})
        return Outcome.REFUND_TWICE
    if notice.refund_fen != to_fen(payment.amount):
        log.error("partial refund made outside Diandian", extra={"fields": fields | {
            "payment_amount": str(payment.amount)}})
        return Outcome.REFUND_PARTIAL
    refund = refunds.refund_in_full(order, cause="merchant", reason=MERCHANT_REASON,
                                    out_refund_no=notice.out_refund_no)
    refund.refund_id, refund.completed_at = notice.refund_id, utcnow()
    move(refund, REFUND_TRANSITIONS, RefundStatus.SUCCEEDED)
    refunds.paid_back(refund)
    db.session.flush()
    log.warning("refund made at WeChat Pay's merchant platform booked", extra={"fields": {
        "order": order.public_id, "refund": refund.public_id, "out_refund_no": notice.out_refund_no,
        "amount": str(refund.amount)}})
    return Outcome.MERCHANT_REFUND
