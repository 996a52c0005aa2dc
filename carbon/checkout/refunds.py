"""The one refund rule for a paid order refunded in full, whoever decided it: an operator
(``operations.refund_order``, WeChat Pay asked afterwards) or WeChat Pay's merchant platform, where
someone refunded it by hand (``confirmation.settle_refund``, the money already gone back)."""
from __future__ import annotations

from sqlalchemy import select

from carbon import jobs
from carbon.checkout.models import Order, Refund
from carbon.checkout.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    OrderStatus,
    PaymentStatus,
    RefundStatus,
    move,
)
from carbon.core.db import db
from carbon.core.ids import new_public_id
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction

CASH, REFUND_DUE = "cash:wechatpay", "refund_due:wechatpay"


def refund_in_full(order: Order, *, cause: str, reason: str, out_refund_no: str | None = None) -> Refund:
    """Move the order (paid or fulfilled: refused otherwise) and its confirmed payment to refunded,
    give back to ``refund_due`` what the project and the platform were credited, and write the
    refund (``requested``) and the ``order.refunded`` event (revocation, counters). Retired credits
    stay retired (a retirement is final); the cash leaves when the refund is reported done. The
    caller holds the order's lock (taken before its payment's). Ours are numbered ``R<out_trade_no>``;
    one made at the merchant platform keeps the number WeChat Pay gave it."""
    move(order, ORDER_TRANSITIONS, OrderStatus.REFUNDED)
    payment = next(p for p in order.payments if p.status == PaymentStatus.CONFIRMED)
    move(payment, PAYMENT_TRANSITIONS, PaymentStatus.REFUNDED)
    original = db.session.scalars(select(LedgerTransaction).where(LedgerTransaction.reference == order.public_id,
                                                                 LedgerTransaction.kind == "payment")).one()
    # The credits go back as they were given (whatever the fee rate is today); the kg stay retired.
    ledger.post("refund", order.public_id, [(p.account, p.unit, -p.amount) for p in original.postings
                                            if p.unit == "CNY" and p.account != CASH]
                + [(REFUND_DUE, "CNY", -payment.amount)], memo=f"refund of {original.public_id}: {reason}")
    refund = Refund(public_id=new_public_id("rfd"), payment=payment,
                    out_refund_no=out_refund_no or f"R{payment.out_trade_no}",
                    charge_transaction_id=payment.transaction_id, amount=payment.amount, cause=cause,
                    reason=reason[:80], status=RefundStatus.REQUESTED)
    db.session.add(refund)
    db.session.flush()
    jobs.emit("order.refunded", {"order": order.public_id})
    return refund


def paid_back(refund: Refund) -> None:
    """WeChat Pay says the refund's money went back: the cash leaves (refund_due → cash), once per refund."""
    ledger.post("refund_paid", refund.out_refund_no, [(REFUND_DUE, "CNY", refund.amount),
                                                      (CASH, "CNY", -refund.amount)],
                memo=f"{refund.public_id} {refund.refund_id}")
