from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db
from carbon.core.ids import new_public_id


class Footprint(db.Model):
    """A saved calculation. ``result`` is stored as computed, with the dataset version it used,
    so a later dataset never changes it; ``request`` is kept so it can be recomputed. A guest's
    (``user_id``) or, for the ``host`` kind, an organization's (``organization_id``)."""

    __tablename__ = "footprints"
    __table_args__ = (Index("ix_footprints_user_kind_created", "user_id", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("fp"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # a ``host`` footprint (the event itself, entered by its organizer) belongs to the organization
    organization_id: Mapped[int | None] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"),
                                                        index=True)
    scene_id: Mapped[int | None] = mapped_column(ForeignKey("scenes.id", ondelete="SET NULL"), index=True)
    channel: Mapped[str | None] = mapped_column(String(12))
    scene_code: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(8))
    dataset_version: Mapped[str] = mapped_column(String(32))
    total_grams: Mapped[int] = mapped_column(BigInteger)
    request: Mapped[dict] = mapped_column(JSON)
    result: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
