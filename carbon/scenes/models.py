from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    select,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from carbon.core.clock import utcnow
from carbon.core.db import UTCDateTime, db
from carbon.core.ids import new_public_id
from carbon.credits.models import Project
from carbon.organizers.models import Organization
from carbon.scenes import search

KINDS = ("conference", "scenic_spot", "supermarket", "restaurant", "hotel", "custom")
STATUSES = ("draft", "live", "closed")
SEARCH_CHANNEL = "search"  # the channel every scene has: guests who found it in GET /api/v1/scenes

scene_projects = Table(
    "scene_projects", db.Model.metadata,
    Column("scene_id", ForeignKey("scenes.id", ondelete="CASCADE"), primary_key=True),
    Column("project_id", ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True),
)


class Scene(db.Model):
    """A place or occasion where guests go carbon neutral; its ``code`` is printed as a mini-program code."""

    __tablename__ = "scenes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("scn"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id", ondelete="CASCADE"), index=True)
    code: Mapped[str] = mapped_column(String(12), unique=True)
    slug: Mapped[str] = mapped_column(String(48), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    name_zh: Mapped[str] = mapped_column(String(128))
    name_en: Mapped[str] = mapped_column(String(160), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    city: Mapped[str] = mapped_column(String(64), default="")
    province: Mapped[str | None] = mapped_column(String(4))
    starts_on: Mapped[date | None] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    expected_attendance: Mapped[int | None] = mapped_column(Integer)
    preset: Mapped[dict] = mapped_column(JSON)
    venue_kwh: Mapped[Decimal | None] = mapped_column(Numeric(14, 1))
    organizer_pledges_venue: Mapped[bool] = mapped_column(Boolean, default=False)
    pledge_note: Mapped[str] = mapped_column(String(256), default="")
    status: Mapped[str] = mapped_column(String(8), default="draft")
    latitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    longitude: Mapped[Decimal | None] = mapped_column(Numeric(9, 6))
    search_text: Mapped[str] = mapped_column(Text, default="", server_default="")  # carbon.scenes.search
    search_city: Mapped[str] = mapped_column(String(64), default="", server_default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    projects: Mapped[list[Project]] = relationship(secondary=scene_projects, order_by=Project.id)
    channels: Mapped[list[SceneChannel]] = relationship(back_populates="scene", order_by="SceneChannel.id")


@event.listens_for(Scene, "before_insert")
@event.listens_for(Scene, "before_update")
def _index(_mapper, connection, scene: Scene) -> None:
    """The search columns follow the scene's names, organizer and city on every save."""
    organizer = connection.scalar(select(Organization.name).where(Organization.id == scene.organization_id))
    scene.search_text = search.index_text(name_zh=scene.name_zh, name_en=scene.name_en or "",
                                          organizer=organizer or "", city=scene.city or "")
    scene.search_city = search.city_key(scene.city or "")


class SceneChannel(db.Model):
    """One printed code of a scene: the default (``slug`` empty) or a channel such as door, badge, t12.

    The mini-program code image is fetched from WeChat once and kept here with the options used.
    """

    __tablename__ = "scene_channels"
    __table_args__ = (UniqueConstraint("scene_id", "slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"))
    slug: Mapped[str] = mapped_column(String(12), default="")
    label: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    wxacode_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    wxacode_options: Mapped[dict | None] = mapped_column(JSON)
    wxacode_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    scene: Mapped[Scene] = relationship(back_populates="channels")


class SceneDailyStat(db.Model):
    """Counters per scene, channel and day (China time): what organizers see and export."""

    __tablename__ = "scene_daily_stats"
    __table_args__ = (UniqueConstraint("scene_id", "channel", "day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    scene_id: Mapped[int] = mapped_column(ForeignKey("scenes.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(12), default="")
    day: Mapped[date] = mapped_column(Date)
    visits: Mapped[int] = mapped_column(BigInteger, default=0)
    logins: Mapped[int] = mapped_column(BigInteger, default=0)
    footprints: Mapped[int] = mapped_column(BigInteger, default=0)
    grams_neutralized: Mapped[int] = mapped_column(BigInteger, default=0)
    money_raised: Mapped[Decimal] = mapped_column(Numeric(14, 2), default=Decimal(0))
