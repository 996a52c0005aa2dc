"""Scenes: organizers create and print them; guests resolve the code they scanned."""
from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from urllib.parse import quote

from flask import current_app
from marshmallow import ValidationError as MarshmallowError
from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import flag_modified

from carbon.core import extensions as ext
from carbon.core import states
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import Conflict, Gone, NotFound, ValidationError
from carbon.core.geo import great_circle_m, haversine_term_sql
from carbon.core.spreadsheet import csv_text
from carbon.core.units import grams_to_kg
from carbon.credits.models import Project
from carbon.organizers.models import Organization
from carbon.organizers.service import Principal
from carbon.rendering import qr_png
from carbon.scenes import codes, poster, search, stats
from carbon.scenes.models import SEARCH_CHANNEL, Scene, SceneChannel, scene_projects
from schemas.common import dumped_attributes, plain
from schemas.footprint import ACTIVITY_SCHEMAS
from schemas.scenes import ProjectBrief, PublicScene

CODE_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
TRANSITIONS = {"draft": {"live", "closed"}, "live": {"closed"}, "closed": {"live"}}
DEFAULT_PRESETS = {
    "conference": [("flight", {"round_trip": True, "cabin": "economy"}), ("rail", {"round_trip": True}),
                   ("hotel", {"nights": 2}), ("meal", {"count": 6, "diet": "medium_meat"})],
    "scenic_spot": [("rail", {"round_trip": True}), ("coach", {"round_trip": True}),
                    ("car", {"round_trip": True}), ("hotel", {"nights": 1})],
    "supermarket": [("car", {"round_trip": True}), ("bus", {}), ("metro", {})],
    "restaurant": [("meal", {"count": 1})],
    "hotel": [("hotel", {"nights": 1}), ("meal", {"count": 3})],
    "custom": [],
}
INSTRUCTIONS = ("微信扫一扫，计算并抵消您的碳足迹", "Scan with WeChat to measure and offset your carbon footprint")


class SceneNotFound(NotFound):
    code = "scene.not_found"
    message = "未找到该场景 / Scene not found"


class ChannelNotFound(NotFound):
    code = "scene.channel_not_found"
    message = "未找到该场景渠道 / This scene has no such channel"


class SceneClosed(Gone):
    code = "scene.closed"
    message = "该场景已结束 / This scene has closed"


class SearchChannelNotPrintable(ValidationError):
    code = "scene.search_channel_not_printable"
    message = ("搜索渠道不印码（它统计从搜索进入的访客） / The search channel counts guests who found the scene by "
               "search: it has no printed code")


class StatusChangeRefused(Conflict):
    code = "scene.status_change_refused"
    message = "不允许的状态变更 / This status change is not allowed"


# --- per-app runtime: resolve cache and visit buffer ------------------------------------

@dataclass
class Runtime:
    visits: stats.VisitBuffer = field(default_factory=stats.VisitBuffer)
    cache: dict = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget(self) -> None:
        with self.lock:
            self.cache.clear()


def runtime() -> Runtime:
    return current_app.extensions.setdefault("diandian.scenes", Runtime())


def flush_visits(app) -> None:
    """Write an app's buffered visits now (a worker about to exit)."""
    state = app.extensions.get("diandian.scenes")
    if state is not None:
        with app.app_context():
            state.visits.flush()


# --- organizers --------------------------------------------------------------------------

def create_scene(principal: Principal, data: dict) -> Scene:
    with _committed_unique():
        code = data.pop("code", None) or _new_code()
        scene = Scene(organization_id=principal.organization.id, code=code, slug=data.pop("slug", None) or code,
                      status="draft")
        _apply(scene, data, creating=True)
        scene.channels += [SceneChannel(slug="", label="默认 / Default"),
                           SceneChannel(slug=SEARCH_CHANNEL, label="搜索 / Search")]
        db.session.add(scene)
    return scene


def list_scenes(principal: Principal) -> list[Scene]:
    return list(db.session.scalars(select(Scene).where(Scene.organization_id == principal.organization.id)
                                   .order_by(Scene.id.desc())))


def get_scene(principal: Principal, public_id: str) -> Scene:
    """A scene of the caller's organization; another organization's scene is simply not found."""
    scene = db.session.scalar(select(Scene).where(Scene.public_id == public_id,
                                                  Scene.organization_id == principal.organization.id))
    if scene is None:
        raise SceneNotFound()
    return scene


def update_scene(principal: Principal, public_id: str, data: dict) -> Scene:
    scene = get_scene(principal, public_id)
    with _committed_unique():  # the project lookup in _apply flushes the new slug early
        status = data.pop("status", None)
        if status and status != scene.status:
            states.move(scene, TRANSITIONS, status, StatusChangeRefused)
        if "slug" in data:
            scene.slug = data.pop("slug")
        _apply(scene, data, creating=False)
    runtime().forget()
    return scene


def add_channel(principal: Principal, public_id: str, slug: str, label: str) -> SceneChannel:
    scene = get_scene(principal, public_id)
    if any(channel.slug == slug for channel in scene.channels):
        raise Conflict(code="scene.channel_exists", message="渠道已存在 / This channel exists",
                       details={"slug": [slug]})
    problem = codes.wechat_scene_problem(codes.scene_string(scene.code, slug))
    if problem:
        raise ValidationError(details={"slug": [problem]})
    channel = SceneChannel(scene=scene, slug=slug, label=label)
    db.session.add(channel)
    db.session.commit()
    return channel


def channel_of(scene: Scene, slug: str) -> SceneChannel:
    for channel in scene.channels:
        if channel.slug == slug:
            return channel
    raise ChannelNotFound(details={"channel": [slug]})


def _printed_channel(scene: Scene, slug: str) -> SceneChannel:
    """A channel a code may be printed for: not ``search``, whose visits come from the search list."""
    if slug == SEARCH_CHANNEL:
        raise SearchChannelNotPrintable(details={"channel": [slug]})
    return channel_of(scene, slug)


def _apply(scene: Scene, data: dict, *, creating: bool) -> None:
    if "project_ids" in data:
        scene.projects = _projects(data.pop("project_ids"))
    if "preset" in data:
        scene.preset = _checked_preset(data.pop("preset"))
    elif creating:
        scene.preset = {"activities": [{"type": kind, "defaults": defaults}
                                       for kind, defaults in DEFAULT_PRESETS[data["kind"]]]}
    for name, value in data.items():
        setattr(scene, name, value)
    if scene.kind == "custom" and not scene.preset["activities"]:
        raise ValidationError(details={"preset": ["自定义场景需提供计算项 / A custom scene needs a preset"]})
    if scene.starts_on and scene.ends_on and scene.ends_on < scene.starts_on:
        raise ValidationError(details={"ends_on": ["结束早于开始 / Ends before it starts"]})


def _checked_preset(preset: dict) -> dict:
    """Every activity type must be one the calculator knows, every default one of its fields."""
    schemas = ACTIVITY_SCHEMAS["event"]
    errors: dict = {}
    for index, item in enumerate(preset["activities"]):
        schema = schemas.get(item["type"])
        if schema is None:
            errors[f"preset.activities.{index}.type"] = [f"需为 / Must be one of: {', '.join(schemas)}"]
            continue
        if item["type"] == "venue_share":
            errors[f"preset.activities.{index}.type"] = [
                ("场馆分摊由场馆用电与预计人数自动加入 / The venue's share is added from the venue's kWh and "
                "expected attendance, not listed in the preset")]
            continue
        for name, value in item.get("defaults", {}).items():
            if name == "type" or name not in schema.fields:
                errors[f"preset.activities.{index}.defaults.{name}"] = ["未知字段 / Unknown field"]
                continue
            try:
                schema.fields[name].deserialize(value)
            except MarshmallowError as exc:
                errors[f"preset.activities.{index}.defaults.{name}"] = exc.messages
    if errors:
        raise ValidationError(details=errors)
    return {"activities": [{"type": item["type"], "defaults": item.get("defaults", {})}
                           for item in preset["activities"]]}


def _projects(public_ids: list[str]) -> list[Project]:
    found = {p.public_id: p for p in db.session.scalars(select(Project).where(Project.public_id.in_(public_ids)))}
    missing = [public_id for public_id in public_ids if public_id not in found]
    if missing:
        raise ValidationError(details={"project_ids": [f"未知项目 / Unknown project: {', '.join(missing)}"]})
    return [found[public_id] for public_id in public_ids]


def _new_code() -> str:
    for _ in range(10):
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(7))
        if db.session.scalar(select(Scene.id).where(Scene.code == code)) is None:
            return code
    raise Conflict(code="scene.code_exhausted")


@contextmanager
def _committed_unique() -> Iterator[None]:
    """The block's changes, committed; a taken code or slug is a 409 naming the field, whether the
    commit or an autoflush inside the block finds it."""
    try:
        yield
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        text = str(exc.orig).lower()  # SQLite: "scenes.code"; PostgreSQL: constraint "uq_scenes_code"
        name = next((field for field in ("code", "slug") if f"scenes.{field}" in text or f"uq_scenes_{field}" in text),
                    None)
        raise Conflict(code=f"scene.{name or 'conflict'}_taken", message="已被占用 / Already taken",
                       details={name or "_schema": ["已被占用 / already taken"]}) from exc


def reindex_search() -> int:
    """Recompute every scene's search text (the model does it on each save); after the normalization changed."""
    scenes = db.session.scalars(select(Scene)).all()
    for scene in scenes:
        flag_modified(scene, "search_text")  # a save: the model's before_update computes it
    db.session.commit()
    return len(scenes)


# --- printed codes ------------------------------------------------------------------------

def wxacode(principal: Principal, public_id: str, slug: str = "", *, regenerate: bool = False,
            **options) -> SceneChannel:
    """The channel's mini-program code: fetched from WeChat once, kept, refetched only when asked."""
    return _fetched(_printed_channel(get_scene(principal, public_id), slug), regenerate=regenerate, **options)


def _fetched(channel: SceneChannel, *, regenerate: bool = False, **options) -> SceneChannel:
    if channel.wxacode_png is not None and not regenerate:
        return channel
    options = {"page": ext.settings().WECHAT_SCENE_PAGE, "width": 430, "env_version": "release",
               "check_path": True, **{key: value for key, value in options.items() if value is not None}}
    scene_text = codes.scene_string(channel.scene.code, channel.slug)
    channel.wxacode_png = ext.wechat().wxa_code(scene_text, **options)
    channel.wxacode_options = {**options, "scene": scene_text}
    channel.wxacode_fetched_at = utcnow()
    db.session.commit()
    return channel


def h5_link(scene: Scene, slug: str = "") -> str:
    return f"{ext.settings().PUBLIC_BASE_URL.rstrip('/')}/s?scene={quote(codes.scene_string(scene.code, slug))}"


def qrcode_png(principal: Principal, public_id: str, slug: str = "") -> bytes:
    """A plain QR code of the scene's H5 link (before the mini-program is published, or for browsers)."""
    scene = get_scene(principal, public_id)
    _printed_channel(scene, slug)
    return qr_png(h5_link(scene, slug))


def poster_file(principal: Principal, public_id: str, slug: str = "", *, source: str = "wxacode",
                fmt: str = "png") -> bytes:
    scene = get_scene(principal, public_id)
    channel = _printed_channel(scene, slug)
    code_png = _fetched(channel).wxacode_png if source == "wxacode" else qr_png(h5_link(scene, slug))
    dates = " – ".join(dict.fromkeys(str(day) for day in (scene.starts_on, scene.ends_on) if day))
    footer = " · ".join(part for part in (scene.city, dates, channel.label if channel.slug else "") if part)
    render = poster.render_poster_pdf if fmt == "pdf" else poster.render_poster_png
    return render(title_zh=scene.name_zh, title_en=scene.name_en or None, code_png=code_png,
                  instructions_zh=INSTRUCTIONS[0], instructions_en=INSTRUCTIONS[1], footer=footer or None)


# --- guests ------------------------------------------------------------------------------

def find_scenes(*, q: str = "", kind: str | None = None, city: str | None = None, day: date | str | None = None,
                lat: Decimal | None = None, lng: Decimal | None = None, page: int = 1, limit: int = 20) -> dict:
    """Live scenes for a guest without a code: every word of ``q`` in the name, organizer or city
    (``carbon.scenes.search``), of a kind, in a city, running on a day (``"today"``: China's);
    nearest first when a location is given (scenes without one after), else newest first."""
    columns = [getattr(Scene, name) for name in dumped_attributes(PublicScene)]  # no ORM objects: a read
    query = (select(*columns, Organization.name.label("organizer"))
             .join(Organization, Organization.id == Scene.organization_id).where(Scene.status == "live"))
    for word in search.query_words(q):
        query = query.where(Scene.search_text.contains(word, autoescape=True))
    if kind:
        query = query.where(Scene.kind == kind)
    if city:
        query = query.where(Scene.search_city == search.city_key(city))
    if day is not None:
        day = stats.today() if day == "today" else day
        query = query.where(or_(Scene.starts_on.is_(None), Scene.starts_on <= day),
                            or_(Scene.ends_on.is_(None), Scene.ends_on >= day))
    located = lat is not None and lng is not None
    if located:
        nearness = haversine_term_sql(Scene.latitude, Scene.longitude, float(lat), float(lng))
        query = query.order_by(nearness.asc().nulls_last(), Scene.id.desc())
    else:
        query = query.order_by(Scene.id.desc())
    rows = db.session.execute(query.offset((page - 1) * limit).limit(limit + 1)).mappings().all()
    items = [{**row, "distance_m": round(great_circle_m(float(lat), float(lng), float(row["latitude"]),
                                                        float(row["longitude"])))
              if located and row["latitude"] is not None and row["longitude"] is not None else None,
              "scene_string": codes.scene_string(row["code"], SEARCH_CHANNEL)} for row in rows[:limit]]
    return {"items": items, "page": page, "limit": limit, "has_more": len(rows) > limit}


def resolve(raw_scene: str, *, count_visit: bool = True) -> dict:
    """The scene a scanned code names, with its preset, offer and live progress.

    A worker reuses a resolved scene for ``SCENE_CACHE_SECONDS`` (organizer edits in the same
    worker apply at once); visits are counted in memory and written in batches.
    """
    code, slug = codes.parse(raw_scene)
    state = runtime()
    ttl = ext.settings().SCENE_CACHE_SECONDS
    now = time.monotonic()
    with state.lock:
        cached = state.cache.get((code, slug))
    if cached is None or cached[0] <= now:
        payload = _public_view(code, slug)
        cached = (now + ttl, payload)
        if ttl > 0:
            with state.lock:
                if len(state.cache) > 10_000:
                    state.cache.clear()
                state.cache[(code, slug)] = cached
    payload = cached[1]
    if count_visit:
        state.visits.count(payload["_scene_id"], slug)
    return payload


def _public_view(code: str, slug: str) -> dict:
    """What resolve answers, as plain values (it is cached across requests); keys starting with
    ``_`` are for the service's own use. Three reads of plain columns on the session's connection
    (no ORM objects, nothing of the session's to flush first): the scene with its channel of that
    slug, the projects it offers, its counters."""
    connection = db.session.connection()
    scene = connection.execute(_SCENE_AND_CHANNEL, {"code": code, "slug": slug}).first()
    if scene is None or scene.status == "draft":
        raise SceneNotFound(details={"scene": [code]})
    if scene.status == "closed":
        raise SceneClosed(details={"scene": [code]})
    if scene.channel_slug is None:
        raise ChannelNotFound(details={"channel": [slug]})
    # The venue's share is the scene's to add (from its venue figures), never a preset's own item.
    preset = [item for item in scene.preset["activities"] if item.get("type") != "venue_share"]
    shared = venue_share_offered(scene)
    if shared:
        preset.append({"type": "venue_share", "defaults": {}})
    return {
        "_scene_id": scene.id,
        "_venue": (scene.venue_kwh, scene.expected_attendance) if shared else (None, None),
        "scene": plain(scene, PublicScene),
        "channel": {"slug": scene.channel_slug, "label": scene.channel_label},
        "preset": {"kind": "event", "activities": preset},
        "offer": [dict(project._mapping) for project in connection.execute(_OFFER_SHOWN, {"scene_id": scene.id})],
        "pledge": {"venue_kwh": scene.venue_kwh, "note": scene.pledge_note} if scene.organizer_pledges_venue
        else None,
        "progress": _shown(stats.totals(scene.id, connection)),
    }


# Built once, compiled once. The scene a code names, with its channel of that slug (None: no such channel).
_SCENE_AND_CHANNEL = (select(*Scene.__table__.c, SceneChannel.slug.label("channel_slug"),
                             SceneChannel.label.label("channel_label"))
                      .outerjoin(SceneChannel, and_(SceneChannel.scene_id == Scene.id,
                                                    SceneChannel.slug == bindparam("slug")))
                      .where(Scene.code == bindparam("code")))


def _offer_query(*columns):
    """The projects a scene offers guests: its active ones, by id."""
    return (select(*columns).join(scene_projects, scene_projects.c.project_id == Project.id)
            .where(scene_projects.c.scene_id == bindparam("scene_id"), Project.status == "active")
            .order_by(Project.id))


_OFFERED_PROJECTS = _offer_query(Project)
_OFFER_SHOWN = _offer_query(*[getattr(Project, name).label(name) for name in dumped_attributes(ProjectBrief)])


def shown_scene(public_id: str) -> Scene:
    """A scene guests may see (live or closed, never a draft), by its public id."""
    scene = db.session.scalar(select(Scene).where(Scene.public_id == public_id))
    if scene is None or scene.status == "draft":
        raise SceneNotFound(details={"scene": [public_id]})
    return scene


def venue_share_offered(scene: Scene) -> bool:
    """Guests share the venue's electricity unless the organizer neutralizes it themselves."""
    return bool(scene.venue_kwh and scene.expected_attendance and not scene.organizer_pledges_venue)


def offered_projects(scene_id: int) -> list[Project]:
    return list(db.session.scalars(_OFFERED_PROJECTS, {"scene_id": scene_id}))


def scene_name(scene_id: int) -> str | None:
    scene = db.session.get(Scene, scene_id)
    return scene.name_zh if scene else None


def footprint_facts(raw_scene: str) -> dict:
    """What a footprint takes from its scene: ids for the counters, province, venue electricity."""
    view = resolve(raw_scene, count_visit=False)
    venue_kwh, attendance = view["_venue"]
    return {"scene_id": view["_scene_id"], "channel": view["channel"]["slug"],
            "province": view["scene"]["province"], "venue_kwh": venue_kwh, "venue_attendance": attendance}


def record_login(raw_scene: str | None) -> None:
    """Count a login that came from a scanned code; a bad or unknown scene is not counted."""
    if not raw_scene:
        return
    try:
        view = resolve(raw_scene, count_visit=False)
    except (NotFound, Gone, ValidationError):
        return
    stats.add(view["_scene_id"], view["channel"]["slug"], logins=1)
    db.session.commit()


# --- statistics --------------------------------------------------------------------------

def scene_stats(principal: Principal, public_id: str) -> dict:
    scene = get_scene(principal, public_id)
    runtime().visits.flush()
    labels = {channel.slug: channel.label for channel in scene.channels}
    by_channel: dict[str, dict] = {slug: _zero() for slug in labels}
    by_day: dict = {}
    total = _zero()
    for row in stats.rows(scene.id):
        for bucket in (by_channel.setdefault(row.channel, _zero()), by_day.setdefault(row.day, _zero()), total):
            for name in stats.COUNTERS:
                bucket[name] += getattr(row, name)
    return {"scene": scene.public_id, "totals": _shown(total),
            "by_channel": [{"channel": slug, "label": labels.get(slug, ""), **_shown(values)}
                           for slug, values in by_channel.items()],
            "by_day": [{"day": day, **_shown(values)} for day, values in sorted(by_day.items())]}


def scene_stats_csv(principal: Principal, public_id: str) -> str:
    scene = get_scene(principal, public_id)
    runtime().visits.flush()
    return csv_text(["day", "channel", "visits", "logins", "footprints", "kg_neutralized", "money_raised_cny"],
                    ([row.day.isoformat(), row.channel or "default", row.visits, row.logins, row.footprints,
                      grams_to_kg(row.grams_neutralized), row.money_raised] for row in stats.rows(scene.id)))


def _zero() -> dict:
    return {name: 0 for name in stats.COUNTERS}


def _shown(values: dict) -> dict:
    return {"visits": values["visits"], "logins": values["logins"], "footprints": values["footprints"],
            "kg_neutralized": grams_to_kg(int(values["grams_neutralized"])),
            "money_raised": Decimal(values["money_raised"])}
