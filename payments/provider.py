"""What the checkout needs from a payment provider, independent of WeChat Pay's wire format.

Amounts cross this boundary as integer fen (the provider's edge); the checkout keeps Decimal CNY.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


class ProviderError(Exception):
    """The provider could not be reached or answered unexpectedly (retry later)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code, self.status = code, status


class ProviderRefused(ProviderError):
    """The provider answered with a business refusal (e.g. ORDERPAID, ORDER_NOT_EXIST)."""


class NotifyRejected(Exception):
    """A notification that must not be trusted: forged, stale, tampered, a probe, or not even text."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Transaction:
    """A payment as the provider sees it (query answer or decrypted notification)."""

    out_trade_no: str
    trade_state: str  # SUCCESS, NOTPAY, CLOSED, REFUND, USERPAYING, PAYERROR, REVOKED
    appid: str
    mchid: str
    total_fen: int
    currency: str
    transaction_id: str | None = None
    payer_openid: str | None = None
    success_time: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RefundNotice:
    """A refund as the provider reports it in a refund notification (or a refund query)."""

    out_trade_no: str
    out_refund_no: str
    refund_id: str
    status: str  # SUCCESS, CLOSED, ABNORMAL (and PROCESSING, from a query)
    mchid: str
    refund_fen: int
    transaction_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Notification:
    event_id: str
    event_type: str
    transaction: Transaction | None
    received_at: datetime
    refund: RefundNotice | None = None


@dataclass(frozen=True)
class Refund:
    out_refund_no: str
    refund_id: str
    status: str  # SUCCESS, PROCESSING, CLOSED, ABNORMAL
    refund_fen: int


class PaymentProvider(Protocol):
    name: str

    def create(self, *, out_trade_no: str, description: str, total_fen: int, openid: str,
               time_expire: datetime, attach: str = "") -> str:
        """Create the provider's order; returns the prepay id."""

    def native(self, *, out_trade_no: str, description: str, total_fen: int, time_expire: datetime,
               attach: str = "") -> str:
        """Create a Native order (paid by scanning a QR code); returns its ``code_url``."""

    def client_params(self, prepay_id: str) -> dict[str, str]:
        """What the mini-program passes to ``wx.requestPayment``."""

    def parse_notify(self, headers: dict[str, str], body: bytes) -> Notification:
        """Verify and decrypt a notification; raises NotifyRejected."""

    def query(self, out_trade_no: str) -> Transaction | None:
        """The provider's view of a payment; None when it does not know it."""

    def close(self, out_trade_no: str) -> None:
        """Close an unpaid order; raises ProviderRefused('ORDERPAID') when it was paid meanwhile."""

    def refund(self, *, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int,
               reason: str, transaction_id: str | None = None) -> Refund:
        """Ask for a refund (idempotent per ``out_refund_no``); its outcome arrives as a notification."""

    def query_refund(self, out_refund_no: str) -> RefundNotice | None:
        """A refund as WeChat Pay sees it now (status PROCESSING too), or None when it knows none."""
