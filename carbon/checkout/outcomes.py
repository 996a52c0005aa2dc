"""What became of one payment notification (or query answer); only the notify route turns it into
WeChat Pay's answer."""
from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Outcome(StrEnum):
    # acknowledged (204)
    RECORDED = "recorded"  # in the inbox; a worker confirms it
    CONFIRMED = "confirmed"
    DUPLICATE = "duplicate"  # already recorded, confirmed, or being confirmed
    IGNORED = "ignored"  # nothing to do (not a success, another event type)
    ORPHANED = "orphaned"  # money for an order we had given up: booked as refund due, refunded
    DOUBLE_CHARGE = "double_charge"  # a second transaction for a paid order: booked, refunded
    REFUND_SETTLED = "refund_settled"
    REFUND_ABNORMAL = "refund_abnormal"  # WeChat Pay could not pay it back yet: an operator must act
    REFUND_FAILED = "refund_failed"  # WeChat Pay closed the refund: an operator must act
    # a refund we never asked for (made by hand at WeChat Pay's merchant platform):
    MERCHANT_REFUND = "merchant_refund"  # of a confirmed payment, in full: booked as our refunds are
    REFUND_PARTIAL = "refund_partial"  # less than the payment: nothing booked, an operator must act
    REFUND_TWICE = "refund_twice"  # of an order we refunded already: the money went back twice, alerted
    REFUND_UNKNOWN = "refund_unknown"  # of a payment we never confirmed (or another charge): alerted
    # not acknowledged: WeChat Pay sends it again
    MALFORMED = "malformed"  # 400: the body is not even text
    MISMATCH = "mismatch"  # 400: amount, currency, appid, mchid, payer or the order is not ours
    REJECTED = "rejected"  # 401: forged, stale, tampered, a probe
    DEFERRED = "deferred"  # 503: a lock wait timed out or the database is unreachable
    FAILED = "failed"  # 500: confirming raised (e.g. a refused transition); recorded, retried


class Receipt(NamedTuple):
    outcome: Outcome
    detail: str = ""
