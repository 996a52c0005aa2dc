from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db
from carbon.core.ids import new_public_id


class Project(db.Model):
    """An emission-reduction project whose credits guests buy (CDCER, CCER, ...)."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("prj"))
    registry_name: Mapped[str] = mapped_column("registry", String(16))
    name_zh: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(160))
    methodology: Mapped[str] = mapped_column(String(128))
    location: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    photos: Mapped[list] = mapped_column(JSON, default=list, server_default="[]")  # image URLs
    price_per_tonne: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    unit_kg: Mapped[Decimal] = mapped_column(Numeric(12, 3), default=Decimal(1))
    owner_organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id"))
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Vintage(db.Model):
    """The year (or period) in which a project's reductions happened."""

    __tablename__ = "vintages"
    __table_args__ = (UniqueConstraint("project_id", "label"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(32))  # e.g. "2021"
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)

    project: Mapped[Project] = relationship()


class SerialBlock(db.Model):
    """A contiguous range of unit serials of one vintage, with its price. Serials are global
    positions: blocks never overlap (a database constraint), so a serial names one unit of one block."""

    __tablename__ = "serial_blocks"
    __table_args__ = (CheckConstraint("last_serial >= first_serial", name="range"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    vintage_id: Mapped[int] = mapped_column(ForeignKey("vintages.id", ondelete="RESTRICT"), index=True)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    price_per_tonne: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    registry_reference: Mapped[str] = mapped_column(String(128), default="")
    lock_version: Mapped[int] = mapped_column(Integer, default=0)  # bumped to take the block's write lock
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    vintage: Mapped[Vintage] = relationship()

    @property
    def size(self) -> int:
        return self.last_serial - self.first_serial + 1


class Reservation(db.Model):
    """Serials held for an unpaid order until ``expires_at``; at most one active hold per serial."""

    __tablename__ = "reservations"
    __table_args__ = (CheckConstraint("last_serial >= first_serial", name="range"),
                      Index("ix_reservations_active_block", "block_id", "status"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block_id: Mapped[int] = mapped_column(ForeignKey("serial_blocks.id", ondelete="RESTRICT"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | consumed | released
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    block: Mapped[SerialBlock] = relationship()

    @property
    def quantity(self) -> int:
        return self.last_serial - self.first_serial + 1


class Retirement(db.Model):
    """Serials retired in a guest's or an organization's name (exactly one of the two beneficiary
    ids). A serial is retired at most once, ever: the database refuses overlapping ranges (an
    exclusion constraint on PostgreSQL, a trigger on SQLite)."""

    __tablename__ = "retirements"
    __table_args__ = (CheckConstraint("last_serial >= first_serial", name="range"),
                      CheckConstraint("(beneficiary_user_id IS NULL) <> (beneficiary_organization_id IS NULL)",
                                      name="one_beneficiary"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("ret"))
    block_id: Mapped[int] = mapped_column(ForeignKey("serial_blocks.id", ondelete="RESTRICT"), index=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"), index=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="RESTRICT"))
    vintage_label: Mapped[str] = mapped_column(String(32))
    first_serial: Mapped[int] = mapped_column(BigInteger)
    last_serial: Mapped[int] = mapped_column(BigInteger)
    quantity: Mapped[int] = mapped_column(Integer)
    kg: Mapped[Decimal] = mapped_column(Numeric(14, 3))
    beneficiary_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    beneficiary_organization_id: Mapped[int | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT"), index=True)
    beneficiary_name: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(256))
    retired_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
