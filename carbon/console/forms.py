"""HTML form fields → the dicts the scene service takes, checked by the API's own schemas, so a
field error reads the same in the console as in the API (``field → [messages]``)."""
from __future__ import annotations

import json
import re

from marshmallow import ValidationError as MarshmallowError
from werkzeug.datastructures import MultiDict

from carbon.core.errors import ValidationError
from carbon.core.http import flatten_messages
from schemas.organizers import AdminLoginIn
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


def _load(schema, raw: dict) -> dict:
    try:
        return schema().load(raw)
    except MarshmallowError as exc:
        raise ValidationError(details=flatten_messages(exc.messages)) from None


def preset_text(preset: dict | None) -> str:
    return json.dumps(preset, ensure_ascii=False, indent=1) if preset else ""
