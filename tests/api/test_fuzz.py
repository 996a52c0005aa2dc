"""Property: whatever a caller sends, no route answers 5xx, and every 4xx of the API is the envelope.

Every rule of ``app.url_map`` is a test of its own (views marked ``provider_format`` excepted: the
WeChat Pay notify answers in WeChat Pay's format and is fuzzed elsewhere), called with the credentials of
its audience: none for public routes, a guest token, an organizer token. Hypothesis throws
arbitrary JSON (with NUL, unpaired surrogates, huge and non-finite numbers), deep nesting,
numbers past Python's 4,300 digits, raw bytes under any content type, odd path ids and query
strings, mixed with the field names and values the schemas know so that bodies get past the first
check. An unexpected exception propagates from the test client (PROPAGATE_UNEXPECTED) and fails
the example.
"""
from __future__ import annotations

import inspect
import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import Schema, validate

import schemas.accounts
import schemas.checkout
import schemas.footprint
import schemas.organizers
import schemas.scenes
from tests.conftest import make_scene
from tests.payments.conftest import seed_project

SKIPPED = {"static"}
EXAMPLES = settings(max_examples=50, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])


def _routes() -> list[tuple[str, str, str, str]]:
    """(method, rule, endpoint, audience) of every route, read off an app that is never served."""
    from app import create_app

    app = create_app({"ENV": "testing", "DATABASE_URL": "sqlite://", "LOG_REQUESTS": False})
    found = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        if rule.endpoint in SKIPPED or getattr(view, "provider_format", False):  # WeChat Pay's notify
            continue
        default = "guest" if rule.rule.startswith("/api/v1/") else "public"
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, rule.rule, rule.endpoint, getattr(view, "_diandian_audience", default)))
    return sorted(found)


ROUTES = _routes()


def _vocabulary() -> tuple[list[str], list]:
    """Field names and enumerated values of every request schema, and values the domain knows."""
    names, values = set(), {"flight", "rail", "PEK", "CTU", "BJS", "ZZQ", "北京", "成都", "s=abcd", "s=fuzz1",
                            "s=fuzz1&c=door", "door", "", "SC", "2021-09-07", "https://img.example/a.png",
                            "owner@forum.example", "correct horse battery", "1E+3", "NaN", "-0", "1" * 30}
    for module in (schemas.accounts, schemas.checkout, schemas.footprint, schemas.organizers, schemas.scenes):
        for _, schema in inspect.getmembers(module, lambda item: inspect.isclass(item) and issubclass(item, Schema)):
            for name, field in schema._declared_fields.items():
                names.add(name)
                for validator in field.validators:
                    if isinstance(validator, validate.OneOf):
                        values.update(validator.choices)
    values.update(schemas.footprint.ACTIVITY_SCHEMAS["event"])
    values.update(schemas.footprint.ACTIVITY_SCHEMAS["life"])
    return sorted(names), sorted(values, key=str)


NAMES, VALUES = _vocabulary()
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)  # NUL and lone surrogates too
TEXT = st.one_of(st.sampled_from(VALUES), ANY_TEXT, st.sampled_from(["\x00", "\ud800", "a\udfffb", "\x07"]))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**40, 10**40), st.floats(allow_nan=True), TEXT,
                    st.sampled_from([0, 1, 20000, 10**12]))
KEYS = st.one_of(st.sampled_from(NAMES), ANY_TEXT)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
                    max_leaves=16)
OBJECTS = st.dictionaries(st.sampled_from(NAMES), JSON, max_size=6)
NASTY = st.sampled_from([[], {}, ["PEK"], {"type": "flight"}, None, True, 0, -1, 10**20, 1.5, float("nan"),
                         float("inf"), "", "\x00", "\ud800", "x" * 300, "1E+3", "s=fuzz1"])
SPOILED = [lambda text: text + "\x00", lambda text: "\x00" + text, lambda text: text[:1] + "\ud800" + text[1:],
           lambda text: text + "\udfff", lambda text: "\x1b" + text, lambda text: text * 60, lambda text: text + "\n",
           lambda text: text.upper(), lambda text: text + "%00", lambda text: " " + text]  # a string gone bad
REPLACEMENTS = [NASTY, NASTY, st.lists(SCALARS, max_size=3), st.dictionaries(KEYS, SCALARS, max_size=3), SCALARS,
                TEXT]


# A valid request per endpoint, (query, body): most examples change one value of it, so that they get
# past the first check and into the service. "$name" is one of the real ids the fixture made.
FOOTPRINT = {"kind": "event", "scene": "s=fuzz1", "activities": [
    {"type": "flight", "route": ["PEK", "CTU"], "round_trip": True}, {"type": "rail", "from_city": "北京",
                                                                       "to_city": "成都"},
    {"type": "hotel", "nights": 2}, {"type": "meal", "count": 3}]}
POSTER = ({"channel": "door", "source": "qrcode"}, None)
TEMPLATES = {
    "accounts.login": ({}, {"code": "fuzz-code", "scene": "s=fuzz1&c=door"}),
    "accounts.update_me": ({}, {"nickname": "点点", "avatar_url": "https://img.example/a.png"}),
    "accounts.bind_phone": ({}, {"code": "fuzz-code"}),
    "footprints.preview": ({}, FOOTPRINT),
    "footprints.create": ({}, {**FOOTPRINT, "kind": "life", "activities": [
        {"type": "electricity", "kwh_per_month": 200}, {"type": "car", "km_per_year": 1000, "fuel": "electric"},
        {"type": "flights", "round_trips_per_year": 2}]}),
    "footprints.history": ({"kind": "event", "limit": "5"}, None),
    "scenes.resolve": ({"scene": "s=fuzz1&c=door"}, None),
    "scenes.find_scenes": ({"q": "碳中和 lt", "kind": "conference", "city": "成都", "date": "2021-09-07",
                            "lat": "30.5", "lng": "104.0", "page": "1", "limit": "5"}, None),
    "h5.scene_page": ({"scene": "s=fuzz1"}, None),
    "admin.login": ({}, {"email": "owner@forum.example", "password": "correct horse battery"}),
    "admin.add_member": ({}, {"email": "m@forum.example", "password": "long enough pw", "display_name": "M"}),
    "admin.create_api_key": ({}, {"name": "k", "role": "staff"}),
    "admin_scenes.create_scene": ({}, {"kind": "conference", "name_zh": "论坛", "city": "成都", "province": "SC",
                                       "preset": {"activities": [{"type": "hotel", "defaults": {"nights": 2}}]}}),
    "admin_scenes.update_scene": ({}, {"name_en": "x", "slug": "fuzz-slug", "status": "live", "venue_kwh": "100",
                                       "expected_attendance": 10, "starts_on": "2021-09-07", "project_ids": []}),
    "admin_scenes.add_channel": ({}, {"slug": "t1", "label": "一号桌"}),
    "admin_scenes.fetch_wxacode": ({}, {"channel": "door", "width": 430, "env_version": "trial"}),
    "admin_scenes.poster_png": POSTER, "admin_scenes.poster_pdf": POSTER, "admin_scenes.qrcode_png": POSTER,
    "admin_scenes.wxacode_png": POSTER,
    "orders.create_order": ({}, {"footprint_id": "$footprint_id", "scene": "s=fuzz1"}),
    "simulator.wx_login": ({}, {"openid": "o_fuzz"}),
    "simulator.wx_request_payment": ({}, {"appId": "wxd1a2b3c4d5e6f7a8", "timeStamp": "1700000000", "nonceStr": "n",
                                          "package": "prepay_id=wx1", "signType": "RSA", "paySign": "x"}),
}


def _paths(value, prefix=()) -> list[tuple]:
    """Every place in a template a value sits (keys of objects, items of lists)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _placed(value, ids: dict[str, list[str]]):
    if isinstance(value, dict):
        return {key: _placed(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [_placed(item, ids) for item in value]
    if isinstance(value, str) and value.startswith("$"):
        return ids[value[1:]][0]
    return value


@st.composite
def changed(draw, template):
    """The template with one value replaced (now and then two, or a key added), or as it is."""
    value = json.loads(json.dumps(template))
    places = _paths(value)
    pick = draw(st.randoms(use_true_random=True))  # uniform choices: Hypothesis leans to the first and to 0
    if not places or pick.random() < 0.1:
        return value
    leaves = [where for where in places if not any(other[:len(where)] == where for other in places if other != where)]
    for _ in range(1 if pick.random() < 0.85 else 2):
        where = pick.choice(leaves if pick.random() < 0.75 else places)  # mostly a value, not a container
        parent = value
        try:
            for step in where[:-1]:
                parent = parent[step]
            if isinstance(parent, dict) and pick.random() < 0.2:
                parent[draw(KEYS)] = draw(JSON)
            elif isinstance(parent[where[-1]], str) and pick.random() < 0.5:
                parent[where[-1]] = pick.choice(SPOILED)(parent[where[-1]])
            else:
                parent[where[-1]] = draw(pick.choice(REPLACEMENTS))
        except (KeyError, IndexError, TypeError):  # an earlier change replaced what held this place
            continue
    return value


@st.composite
def bodies(draw, template=None) -> tuple[bytes, str | None]:
    kind = draw(st.randoms(use_true_random=True)).choice(["template"] * 8 + ["object", "json", "deep", "digits",
                                                                             "bytes"])
    if kind == "bytes":
        return draw(st.binary(max_size=200)), draw(st.sampled_from(
            ["application/json", "text/plain", "application/x-www-form-urlencoded", "application/json; charset=x",
             None]))
    if kind == "deep":
        depth = draw(st.integers(15, 3000))
        text = json.dumps({draw(st.sampled_from(NAMES)): 0}).replace("0", "[" * depth + "]" * depth)
    elif kind == "digits":
        text = json.dumps({draw(st.sampled_from(NAMES)): 0}).replace("0", "-" * draw(st.integers(0, 1))
                                                                      + "7" * draw(st.integers(4290, 6000)))
    elif kind == "template" and template is not None:
        text = json.dumps(draw(changed(template)))
    else:
        text = json.dumps(draw(OBJECTS if kind == "object" else JSON))
    return text.encode(), "application/json"


def encoded(text) -> str:
    return quote(text if isinstance(text, str) else json.dumps(text), safe="", errors="surrogatepass")


@st.composite
def calls(draw, rule: str, endpoint: str, ids: dict[str, list[str]]):
    def value(match: re.Match) -> str:
        known = ids.get(match.group(1), [])
        return encoded(draw(st.sampled_from(known) if known and draw(st.booleans()) else ANY_TEXT.filter(bool)))

    path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", value, rule)
    query_template, body_template = _placed(TEMPLATES.get(endpoint, ({}, None)), ids)
    if query_template and draw(st.integers(0, 3)):
        query = draw(changed(query_template))
    else:
        query = draw(st.dictionaries(st.sampled_from(NAMES), TEXT, max_size=3))
    if query:
        path += "?" + "&".join(f"{encoded(key)}={encoded(item)}" for key, item in query.items())
    body, content_type = draw(bodies(body_template))
    headers = {"Content-Type": content_type} if content_type else {}
    if draw(st.integers(0, 3)):
        headers["Idempotency-Key"] = draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=70))
    return path, body, headers


@pytest.fixture
def callers(app, client, login, admin):
    """Credentials per audience, and real ids to put in paths now and then."""
    token, _ = login("o_fuzz")
    guest = {"Authorization": f"Bearer {token}"}
    scene = make_scene(client, admin, code="fuzz1", project_ids=[seed_project(app, units=1000)])
    client.post(f"/api/v1/admin/scenes/{scene['id']}/channels", json={"slug": "door"}, headers=admin)
    client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "live"}, headers=admin)
    footprint = client.post("/api/v1/footprints", json={"activities": [{"type": "meal", "count": 1}]},
                            headers=guest).get_json()
    key = client.post("/api/v1/admin/api-keys", json={"name": "fuzz"}, headers=admin).get_json()
    ids = {"scene_id": [scene["id"]], "footprint_id": [footprint["id"]], "key_id": [key["id"]],
           "key": ["fuzz1", scene["id"]]}  # the big screen's /screen/<key>
    return {"public": {}, "guest": guest, "organizer": admin}, ids


def test_every_route_is_fuzzed_and_every_template_is_a_route():
    assert len(ROUTES) >= 35 and {audience for *_, audience in ROUTES} == {"public", "guest", "organizer"}
    assert set(TEMPLATES) <= {endpoint for _, _, endpoint, _ in ROUTES}


@pytest.mark.parametrize("method, rule, endpoint, audience", ROUTES, ids=[f"{m} {r}" for m, r, *_ in ROUTES])
def test_no_input_is_a_5xx(app, client, callers, method, rule, endpoint, audience):
    credentials, ids = callers

    @EXAMPLES
    @given(calls(rule, endpoint, ids))
    def check(request):
        path, body, headers = request
        response = client.open(path, method=method, data=body, headers={**headers, **credentials[audience]})
        assert response.status_code < 500, (method, path, body[:200], response.get_data(as_text=True)[:500])
        if response.status_code >= 400 and rule.startswith("/api/"):
            error = response.get_json()["error"]
            assert set(error) == {"code", "message", "details", "request_id"}
            assert error["request_id"] == response.headers["X-Request-ID"]

    check()
