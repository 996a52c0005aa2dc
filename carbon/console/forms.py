"""HTML form fields → the dicts the scene service takes, checked by the API's own schemas, so a
field error reads the same in the console as in the API (``field → [messages]``)."""
from __future__ import annotations

import json
import re

from marshmallow import ValidationError as MarshmallowError
from werkzeug.datastructures import MultiDict

from carbon.core.errors import ValidationError
from carbon.core.http import flatten_messages
from schemas.footprint import HostFootprintIn
from schemas.organizers import AdminLoginIn
from schemas.purchases import PurchaseIn
from schemas.scenes import ChannelIn, SceneCreateIn, ScenePatchIn

TEXT = ("name_zh", "name_en", "description", "city", "pledge_note")
OPTIONAL = ("province", "starts_on", "ends_on", "expected_attendance", "venue_kwh")  # empty: none
_INTEGER = re.compile(r"^-?\d{1,12}$")


def scene_data(form: MultiDict, *, creating: bool) -> dict:
    """The scene fields the form gives, loaded by ``SceneCreateIn`` or ``ScenePatchIn``;
    ``ValidationError`` with the schema's field messages otherwise."""
    raw: dict = {name: form.get(name, "").strip() for name in TEXT if name in form}
    for name in OPTIONAL:
        value = form.get(name, "").strip()
        if value:
            raw[name] = int(value) if name == "expected_attendance" and _INTEGER.match(value) else value
        elif not creating:
            raw[name] = None
    if form.get("slug", "").strip():
        raw["slug"] = form["slug"].strip()
    raw["organizer_pledges_venue"] = form.get("organizer_pledges_venue") == "on"
    raw["project_ids"] = form.getlist("project_ids")
    if creating:
        raw["kind"] = form.get("kind", "")
        if form.get("code", "").strip():
            raw["code"] = form["code"].strip()
    preset = form.get("preset", "").strip()
    if preset:
        try:
            raw["preset"] = json.loads(preset)
        except (ValueError, RecursionError):  # RecursionError: nested past what the parser takes
            raise ValidationError(details={"preset": ["不是有效的 JSON / Not valid JSON"]}) from None
    return _load(SceneCreateIn if creating else ScenePatchIn, raw)


def login_data(form: MultiDict) -> dict:
    """Email and password as the API's login takes them (no NUL or controls reach the database)."""
    return _load(AdminLoginIn, {"email": form.get("email", "").strip(), "password": form.get("password", "")})


def channel_data(form: MultiDict) -> dict:
    return _load(ChannelIn, {"slug": form.get("slug", "").strip(), "label": form.get("label", "").strip()})


TRAVEL_MODES = ("rail", "flight", "coach", "car")
TRAVEL_ROWS = 3


def host_footprint_data(form: MultiDict) -> dict:
    """The event's own footprint form → ``HostFootprintIn``: venue kWh, meals, paper and plastic kg,
    up to three staff travel rows and hotel nights (empty fields: not part of the event)."""
    text = {name: form.get(name, "").strip() for name in form}
    activities: list[dict] = []
    if text.get("kwh"):
        activities.append({"type": "venue_electricity", "kwh": text["kwh"]})
    if text.get("meals"):
        activities.append({"type": "catering", "count": _number(text["meals"]), "diet": text.get("diet") or "medium_meat"})
    for material in ("paper", "plastic"):
        if text.get(f"{material}_kg"):
            activities.append({"type": "material", "material": material, "kg": text[f"{material}_kg"]})
    for row in range(1, TRAVEL_ROWS + 1):
        if text.get(f"travel_km_{row}"):
            mode = text.get(f"travel_mode_{row}") if text.get(f"travel_mode_{row}") in TRAVEL_MODES else "rail"
            activities.append({"type": mode, "distance_km": text[f"travel_km_{row}"],
                               "passengers": _number(text.get(f"travel_people_{row}") or "1"),
                               "round_trip": form.get(f"travel_round_{row}") == "on"})
    if text.get("hotel_nights"):
        activities.append({"type": "hotel", "nights": _number(text["hotel_nights"]),
                           "rooms": _number(text.get("hotel_rooms") or "1")})
    raw = {"activities": activities, **{name: text[name] for name in ("scene", "event_name", "province")
                                        if text.get(name)}}
    return _load(HostFootprintIn, raw)


def purchase_data(form: MultiDict) -> dict:
    raw = {name: form.get(name, "").strip() for name in ("kind", "footprint_id", "scene", "attendees", "project_id")
           if form.get(name, "").strip()}
    if "attendees" in raw:
        raw["attendees"] = _number(raw["attendees"])
    return _load(PurchaseIn, raw)


def _number(value: str):
    """An integer field as typed: an int when it is one (the schema says what is wrong otherwise)."""
    return int(value) if _INTEGER.match(value) else value


def _load(schema, raw: dict) -> dict:
    try:
        return schema().load(raw)
    except MarshmallowError as exc:
        raise ValidationError(details=flatten_messages(exc.messages)) from None


def preset_text(preset: dict | None) -> str:
    return json.dumps(preset, ensure_ascii=False, indent=1) if preset else ""
