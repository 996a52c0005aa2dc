from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import JSON, Boolean, CheckConstraint, ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carbon.checkout.states import OrderStatus, PaymentStatus
from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db
from carbon.core.ids import new_public_id
from carbon.credits.models import Project


class Order(db.Model):
    """A buyer (a guest, or an organization) buying ``units`` of one project's credits (``kg`` = units
    × unit size) for ``amount`` CNY. The buyer is also the beneficiary: exactly one of ``user_id``
    (a guest, paying by JSAPI in the mini-program) and ``organization_id`` (an organization, paying
    by Native from the console) is set."""

    __tablename__ = "orders"
    __table_args__ = (CheckConstraint("(user_id IS NULL) <> (organization_id IS NULL)", name="one_buyer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("ord"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"),
                                                        index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    footprint_id: Mapped[int | None] = mapped_column(ForeignKey("footprints.id", ondelete="SET NULL"))
    scene_id: Mapped[int | None] = mapped_column(ForeignKey("scenes.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str | None] = mapped_column(String(12))
    units: Mapped[int] = mapped_column(Integer)
    kg: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[str] = mapped_column(String(20), default=OrderStatus.CREATED)
    beneficiary_name: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Whether its scene's kg and money counters hold it (carbon/scenes/stats.py): NULL not yet
    # counted, true counted, false taken back off or never to be counted (refunded first).
    counted: Mapped[bool | None] = mapped_column(Boolean)

    project: Mapped[Project] = relationship()
    payments: Mapped[list[Payment]] = relationship(back_populates="order", order_by="Payment.id")


class Payment(db.Model):
    """One attempt to collect an order's amount through a provider; ``out_trade_no`` is ours."""

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    provider: Mapped[str] = mapped_column(String(16))
    out_trade_no: Mapped[str] = mapped_column(String(32), unique=True)
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    status: Mapped[str] = mapped_column(String(12), default=PaymentStatus.CREATED)
    prepay_id: Mapped[str | None] = mapped_column(String(64))
    transaction_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    provider_data: Mapped[dict | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    order: Mapped[Order] = relationship(back_populates="payments")


class InboxEntry(db.Model):
    """A verified provider notification (or query answer), recorded once before it is acted on.

    Unique per provider event and per provider object (a transaction id or a refund id), so a
    notification delivered twice, or a query answer for a transaction already notified, is one row.
    Confirmation runs from here: inline in the notify request, or by workers."""

    __tablename__ = "payment_inbox"
    __table_args__ = (UniqueConstraint("provider", "event_id"),
                      UniqueConstraint("provider", "kind", "external_id"),
                      Index("ix_payment_inbox_status", "status", "id"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    provider: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(12))  # transaction | refund
    event_id: Mapped[str | None] = mapped_column(String(64))  # None for query answers
    external_id: Mapped[str] = mapped_column(String(64))  # transaction_id or refund_id
    out_trade_no: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(8))  # notify | query
    payload: Mapped[dict] = mapped_column(JSON)  # the decrypted resource, as the provider sent it
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending | done | failed
    outcome: Mapped[str | None] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(256))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Refund(db.Model):
    """Money going back to a payer: for an order refunded by an operator (or by hand at WeChat Pay's
    merchant platform), for money that arrived for an order already given up, or for a second charge
    of the same order. Booked to
    ``refund_due:wechatpay`` when decided; cash leaves when WeChat Pay says the refund succeeded."""

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("rfd"))
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id", ondelete="RESTRICT"), index=True)
    out_refund_no: Mapped[str] = mapped_column(String(64), unique=True)
    charge_transaction_id: Mapped[str] = mapped_column(String(64))  # the provider transaction refunded
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    # operator | late_payment | double_charge | merchant (made by hand at WeChat Pay's merchant platform)
    cause: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(12), default="requested")
    refund_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The failed refund this one asks again for (``flask refund-retry``), with a new out_refund_no.
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("refunds.id"), unique=True)

    payment: Mapped[Payment] = relationship()


class IdempotencyKey(db.Model):
    """A client's ``Idempotency-Key`` for order creation: in progress, then bound to its order. Per
    guest, or per organization for its orders."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key"), UniqueConstraint("organization_id", "key"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
