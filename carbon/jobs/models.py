from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db


class OutboxEvent(db.Model):
    """Work queued in the same transaction as what caused it (e.g. count a paid order for its scene):
    one row per handler registered for its kind, dispatched after commit, retried with backoff until
    it succeeds or ends ``failed``, where operators see and replay it. ``queue`` is the lane its
    handler runs on (``flask worker -q``)."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_status_queue_due", "status", "queue", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    handler: Mapped[str] = mapped_column(String(64), default="")  # one row per consumer of the kind
    queue: Mapped[str] = mapped_column(String(16), default="default", server_default="default")  # its lane
    payload: Mapped[dict] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(8), default="pending")  # pending | done | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
