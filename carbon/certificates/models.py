"""Honour certificates and the hash chain that makes them checkable (docs/decisions/0010)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db


class ChainEntry(db.Model):
    """One entry of the platform's one chain: a certificate issued or revoked. ``record`` is the
    RFC 8785 canonical JSON that ``hash`` (SHA-256, hex) covers, stored as issued, never edited;
    it names the previous entry's hash as ``prev``."""

    __tablename__ = "certificate_chain"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(8))  # issue | revoke
    number: Mapped[str] = mapped_column(String(20), index=True)
    record: Mapped[str] = mapped_column(Text)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ChainHead(db.Model):
    """The chain's head (one row, id 1), locked by whoever appends: the chain never forks."""

    __tablename__ = "certificate_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class CertificateCounter(db.Model):
    """The last certificate number given in a year, locked with the head: numbers have no gaps."""

    __tablename__ = "certificate_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last: Mapped[int] = mapped_column(Integer)


class CertificateImage(db.Model):
    """A certificate's share card or poster, rendered once; ``etag`` is the hash of what it shows."""

    __tablename__ = "certificate_images"
    __table_args__ = (UniqueConstraint("number", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(8))  # card | poster
    etag: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(16))
    content: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Certificate(db.Model):
    """A paid order's certificate: its number, owner and where its chain entries are. The name it shows
    and the salt of the record's ``beneficiary_sha256`` live here, off the chain, so that deleting the
    account erases them (both NULL) while the chain still verifies (decision 0014)."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("order_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="RESTRICT"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="RESTRICT"), index=True)
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="RESTRICT"),
                                                        index=True)  # the owner when an organization bought
    issue_seq: Mapped[int] = mapped_column(ForeignKey("certificate_chain.seq", ondelete="RESTRICT"))
    revoke_seq: Mapped[int | None] = mapped_column(ForeignKey("certificate_chain.seq", ondelete="RESTRICT"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    push: Mapped[str | None] = mapped_column(String(12))  # sent | refused (43101) | None: not (yet) sent
    beneficiary_name: Mapped[str | None] = mapped_column(String(64))  # None: erased with the account
    beneficiary_salt: Mapped[str | None] = mapped_column(String(32))  # hex; None: erased, or a record from before 0014
