"""Rows the WeChat adapter keeps: shared credentials (the access token) and their refresh lease."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from carbon.core.db import UTCDateTime, db


class WeChatCredential(db.Model):
    """A value shared by every worker and process, e.g. ``<appid>_access_token``."""

    __tablename__ = "wechat_credentials"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_holder: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
