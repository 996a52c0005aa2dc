"""Property: whatever a signed-in organizer's browser sends to any console route (forms with NUL,
lone surrogates, huge numbers, deep JSON in the preset, raw bytes, odd path ids and queries), the
console never answers 5xx."""
from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_fuzz import ANY_TEXT, TEXT
from tests.console.conftest import SCENE_FORM, csrf_of

EXAMPLES = settings(max_examples=15, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FIELDS = [*SCENE_FORM, "code", "slug", "description", "venue_kwh", "pledge_note", "organizer_pledges_venue",
          "project_ids", "preset", "label", "status", "email", "password"]


def _rules() -> list[tuple[str, str]]:
    from app import create_app

    app = create_app({"ENV": "testing", "DATABASE_URL": "sqlite://", "LOG_REQUESTS": False})
    # /console/logout takes nothing but the token and would end the session the examples need
    # (test_console_session covers it).
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/console") and rule.rule != "/console/logout"
                  for method in rule.methods - {"HEAD", "OPTIONS"})


RULES = _rules()
DEEP = st.integers(10, 20_000).map(lambda depth: "[" * depth + "]" * depth)
VALUES = st.one_of(TEXT, DEEP, st.integers(-10**30, 10**30).map(str), st.sampled_from(
    ["2021-09-07", "9999-99-99", "1e400", "NaN", "live", "closed", "draft", "door", "SC", "conference", "custom",
     '{"activities": [{"type": "hotel", "defaults": {"nights": "x"}}]}', '[]', '{"activities": 5}']))

DAYS = st.sampled_from(["0001-01-01", "9999-12-31", "2026-02-30", "2026-12-01"]) | st.dates().map(str)


@st.composite
def requests_for(draw, rule: str, ids: dict):
    def value(match: re.Match) -> str:
        known = ids.get(match.group(1), [])
        if known and draw(st.booleans()):
            return draw(st.sampled_from(known))
        if match.group(0).startswith("<int:"):
            return str(draw(st.integers(0, 10**30)))
        if match.group(0).startswith("<any("):
            return draw(st.sampled_from(["wxacode.png", "qrcode.png", "poster.png", "poster.pdf"]))
        return quote(draw(ANY_TEXT.filter(bool)), safe="", errors="surrogatepass")

    path = re.sub(r"<(?:[^:>]+:|any\([^)]*\):)?([^>]+)>", value, rule)
    query = draw(st.dictionaries(st.sampled_from(["next", "status", "start", "end", "channel", "source"]),
                                 TEXT | DAYS, max_size=3))
    if query:
        path += "?" + "&".join(f"{key}={quote(item, safe='', errors='surrogatepass')}" for key, item in query.items())
    if draw(st.integers(0, 5)) == 0:
        return path, draw(st.binary(max_size=300)), draw(st.sampled_from(
            ["application/x-www-form-urlencoded", "multipart/form-data", "application/json", "text/plain"]))
    form = draw(st.dictionaries(st.sampled_from(FIELDS), VALUES, max_size=8))
    if draw(st.integers(0, 5)):
        form["csrf_token"] = ids["csrf"][0]
    body = "&".join(f"{quote(key)}={quote(item, safe='', errors='surrogatepass')}" for key, item in form.items())
    return path, body.encode(), "application/x-www-form-urlencoded"


@pytest.fixture
def signed_in(app, client, owner_a):
    token = csrf_of(client.get("/console/scenes/new"))
    scene = client.post("/console/scenes/new", data={**SCENE_FORM, "code": "fuzzc1", "csrf_token": token})
    return {"scene_id": [scene.headers["Location"].rsplit("/", 1)[1]], "csrf": [token]}


@pytest.mark.parametrize("method, rule", RULES, ids=[f"{m} {r}" for m, r in RULES])
def test_no_console_input_is_a_5xx(app, client, signed_in, method, rule):
    @EXAMPLES
    @given(requests_for(rule, signed_in))
    def check(request):
        path, body, content_type = request
        response = client.open(path, method=method, data=body, headers={"Content-Type": content_type})
        assert response.status_code < 500, (method, path, body[:300], response.get_data(as_text=True)[:500])

    check()


@pytest.mark.parametrize("query", ["start=0001-01-01&end=0001-01-02", "start=9999-12-31", "end=9999-12-31",
                                   "start=2026-02-30"])
@pytest.mark.parametrize("path", ["/console/settlement", "/console/settlement.csv"])
def test_a_report_day_at_the_calendars_edge_gives_the_default_period(client, signed_in, path, query):
    assert client.get(f"{path}?{query}").status_code == 200
