"""The order, payment and refund state machines: one transition table each, nothing else moves a state."""
from __future__ import annotations

from enum import StrEnum
from functools import partial

from carbon.core import states
from carbon.core.errors import Conflict


class OrderStatus(StrEnum):
    CREATED = "created"
    AWAITING_PAYMENT = "awaiting_payment"
    PAID = "paid"
    FULFILLED = "fulfilled"
    EXPIRED = "expired"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class PaymentStatus(StrEnum):
    CREATED = "created"
    PENDING = "pending"
    CONFIRMED = "confirmed"
    FAILED = "failed"
    CANCELED = "canceled"
    REFUNDED = "refunded"


class RefundStatus(StrEnum):
    REQUESTED = "requested"  # decided and booked; WeChat Pay not yet asked
    PROCESSING = "processing"  # WeChat Pay accepted it
    SUCCEEDED = "succeeded"  # WeChat Pay's refund notification (or query) says the money went back
    ABNORMAL = "abnormal"  # WeChat Pay could not pay it back (e.g. the account is closed): not final, an
    # operator completes it at WeChat Pay, which then reports its end
    FAILED = "failed"  # WeChat Pay closed it: an operator must act (``flask refund-retry``)
    RETRIED = "retried"  # failed, then asked again as a new refund (whose retry_of names this one)


REFUND_ENDED = (RefundStatus.SUCCEEDED, RefundStatus.FAILED, RefundStatus.RETRIED)  # WeChat Pay said its end
REFUND_DONE_WITH = (RefundStatus.SUCCEEDED, RefundStatus.RETRIED)  # nothing left to do for the row
O, P, R = OrderStatus, PaymentStatus, RefundStatus
ORDER_TRANSITIONS: dict[str, set[str]] = {
    O.CREATED: {O.AWAITING_PAYMENT, O.CANCELED},
    O.AWAITING_PAYMENT: {O.PAID, O.EXPIRED, O.CANCELED},
    O.PAID: {O.FULFILLED, O.REFUNDED},
    O.FULFILLED: {O.REFUNDED},
    O.EXPIRED: set(),
    O.CANCELED: set(),
    O.REFUNDED: set(),
}
PAYMENT_TRANSITIONS: dict[str, set[str]] = {
    P.CREATED: {P.PENDING, P.FAILED, P.CANCELED},
    P.PENDING: {P.CONFIRMED, P.FAILED, P.CANCELED},
    P.CONFIRMED: {P.REFUNDED},
    P.FAILED: set(),
    P.CANCELED: set(),
    P.REFUNDED: set(),
}
REFUND_TRANSITIONS: dict[str, set[str]] = {
    R.REQUESTED: {R.PROCESSING, R.ABNORMAL, R.SUCCEEDED, R.FAILED},
    R.PROCESSING: {R.ABNORMAL, R.SUCCEEDED, R.FAILED},
    R.ABNORMAL: {R.SUCCEEDED, R.FAILED},
    R.SUCCEEDED: set(),
    R.FAILED: {R.RETRIED},
    R.RETRIED: set(),
}


class TransitionRefused(Conflict):
    code = "order.transition_refused"
    message = "状态不允许此操作 / Not allowed in the current state"


move = partial(states.move, refused=TransitionRefused)


UNPAID = (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT)  # an order's holds count; it may still be paid


def closed_status(order_status: str) -> OrderStatus:
    """What an order that will not be paid becomes: expired once it awaited payment, else canceled."""
    return OrderStatus.EXPIRED if order_status == OrderStatus.AWAITING_PAYMENT else OrderStatus.CANCELED


def allowed(table: dict[str, set[str]], current: str, new: str) -> bool:
    return new in table.get(current, set())


def sources(table: dict[str, set[str]], target: str) -> frozenset[str]:
    """The states from which ``target`` may be reached."""
    return frozenset(state for state, targets in table.items() if target in targets)
