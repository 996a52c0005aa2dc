from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db
from carbon.core.ids import new_public_id


class LedgerTransaction(db.Model):
    """One business event (a payment confirmed, a refund, a payout) and its balanced postings."""

    __tablename__ = "ledger_transactions"
    # One business event posts once (an index, so SQLite needs no table rebuild to add it).
    __table_args__ = (Index("uq_ledger_transactions_kind_reference", "kind", "reference", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("ltx"))
    kind: Mapped[str] = mapped_column(String(32))  # payment | refund | payout | reversal
    reference: Mapped[str] = mapped_column(String(64), index=True)  # e.g. the order or payout id
    memo: Mapped[str] = mapped_column(String(256), default="")
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    postings: Mapped[list[Posting]] = relationship(back_populates="transaction", order_by="Posting.id")


class Posting(db.Model):
    """A signed amount on an account (debit positive, credit negative), never zero. Never updated or
    deleted: on PostgreSQL a trigger refuses both; corrections are reversing transactions."""

    __tablename__ = "postings"
    __table_args__ = (Index("ix_postings_account_unit", "account", "unit"),
                      CheckConstraint("amount <> 0", name="nonzero"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id", ondelete="RESTRICT"),
                                                index=True)
    account: Mapped[str] = mapped_column(String(64))  # cash:wechatpay, payable:project:<id>, ...
    unit: Mapped[str] = mapped_column(String(3))  # CNY | kg
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 3))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    transaction: Mapped[LedgerTransaction] = relationship(back_populates="postings")
