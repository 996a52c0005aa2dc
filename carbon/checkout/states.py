"""The order and payment state machines: one transition table each, nothing else moves a state."""
from __future__ import annotations

from functools import partial

from carbon.core import states
from carbon.core.errors import Conflict

ORDER_TRANSITIONS: dict[str, set[str]] = {
    "created": {"awaiting_payment", "cancelled"},
    "awaiting_payment": {"paid", "expired", "cancelled"},
    "paid": {"fulfilled", "refunded"},
    "fulfilled": {"refunded"},
    "expired": set(),
    "cancelled": set(),
    "refunded": set(),
}
PAYMENT_TRANSITIONS: dict[str, set[str]] = {
    "created": {"pending", "failed", "canceled"},
    "pending": {"confirmed", "failed", "canceled"},
    "confirmed": {"refunded"},
    "failed": set(),
    "canceled": set(),
    "refunded": set(),
}


class TransitionRefused(Conflict):
    code = "order.transition_refused"
    message = "状态不允许此操作 / Not allowed in the current state"


move = partial(states.move, refused=TransitionRefused)
