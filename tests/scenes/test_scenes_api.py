"""Scenes end to end: create through the admin API, print codes, resolve what they carry, count."""
from __future__ import annotations

import csv
import io
from decimal import Decimal
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
import zxingcpp
from PIL import Image
from sqlalchemy import select

from carbon.core.db import db
from carbon.scenes.codes import MAX_SCENE_LENGTH, WECHAT_SCENE_CHARS, wechat_scene_problem
from carbon.scenes.models import SceneChannel
from tests.conftest import make_scene


def go_live(client, admin, scene_id):
    response = client.patch(f"/api/v1/admin/scenes/{scene_id}", json={"status": "live"}, headers=admin)
    assert response.status_code == 200, response.get_json()


def decode_qr(png: bytes) -> str:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(found) == 1
    return found[0].text


def sandbox_calls(sandbox, path):
    return requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": path}, timeout=5).json()["calls"]


def test_mini_program_code_from_wechat_resolves_to_its_scene_and_channel(app, client, admin, sandbox):
    scene = make_scene(client, admin, code="cdcnf21")
    assert client.post(f"/api/v1/admin/scenes/{scene['id']}/channels", json={"slug": "t12", "label": "12号桌"},
                       headers=admin).status_code == 201
    go_live(client, admin, scene["id"])

    fetched = client.post(f"/api/v1/admin/scenes/{scene['id']}/wxacode", json={"channel": "t12"}, headers=admin)
    assert fetched.status_code == 200, fetched.get_json()
    assert fetched.get_json()["scene_string"] == "s=cdcnf21&c=t12"
    png = client.get(f"/api/v1/admin/scenes/{scene['id']}/wxacode.png?channel=t12", headers=admin)
    assert png.status_code == 200 and png.mimetype == "image/png"
    query = parse_qs(urlsplit(decode_qr(png.data)).query)
    assert query["page"] == ["pages/scene/index"] and query["env_version"] == ["release"]
    carried = query["scene"][0]
    # The mini-program reads query.scene URL-encoded; the API takes it that way or decoded.
    for as_received in (quote(carried, safe=""), carried):
        resolved = client.get("/api/v1/scenes/resolve", query_string={"scene": as_received})
        assert resolved.status_code == 200, resolved.get_json()
        body = resolved.get_json()
        assert body["scene"]["id"] == scene["id"] and body["channel"]["slug"] == "t12"
        assert [item["type"] for item in body["preset"]["activities"]] == ["flight", "rail", "hotel", "meal"]


def test_the_code_image_is_fetched_once_and_regenerated_only_when_asked(app, client, admin, sandbox):
    scene = make_scene(client, admin)
    url = f"/api/v1/admin/scenes/{scene['id']}/wxacode"
    first = client.get(f"{url}.png", headers=admin).data
    assert client.get(f"{url}.png", headers=admin).data == first
    assert client.post(url, json={}, headers=admin).status_code == 200
    assert len(sandbox_calls(sandbox, "/wxa/getwxacodeunlimit")) == 1

    again = client.post(url, json={"regenerate": True, "env_version": "trial", "check_path": False, "width": 600},
                        headers=admin)
    assert again.status_code == 200
    assert again.get_json()["wxacode_options"]["env_version"] == "trial"
    assert len(sandbox_calls(sandbox, "/wxa/getwxacodeunlimit")) == 2
    image = client.get(f"{url}.png", headers=admin).data
    assert Image.open(io.BytesIO(image)).size == (600, 600)
    assert parse_qs(urlsplit(decode_qr(image)).query)["env_version"] == ["trial"]
    bad_page = client.post(url, json={"regenerate": True, "page": "pages/nowhere/index"}, headers=admin)
    assert bad_page.status_code == 422 and bad_page.get_json()["error"]["code"] == "wechat.invalid_page"
    with app.app_context():
        kept = db.session.scalar(select(SceneChannel).where(SceneChannel.slug == ""))
        assert kept.wxacode_png == image  # a refused regeneration keeps the last good image


@pytest.mark.parametrize("scene_text", [
    "a" * MAX_SCENE_LENGTH, "a" * (MAX_SCENE_LENGTH + 1), "s=abcd&c=door", "".join(sorted(WECHAT_SCENE_CHARS))[:32],
    "s=abc d", "s=ab%3D", "场景", "s=<x>", "", "a\"b", "s=abcd|x",
])
def test_our_scene_rules_agree_with_the_wechat_sandbox(app, scene_text):
    """Two implementations of WeChat's rules (ours and the sandbox's) accept and refuse the same scenes."""
    from carbon.core import extensions as ext
    from carbon.core.errors import DomainError

    ours = wechat_scene_problem(scene_text) is None
    with app.app_context():
        try:
            ext.wechat().wxa_code(scene_text)
            wechat = True
        except DomainError as exc:
            assert exc.code == "wechat.invalid_scene"
            wechat = False
    assert ours == wechat


@pytest.mark.parametrize(("raw", "status", "code"), [
    ("s=nope99", 404, "scene.not_found"),
    ("s=cdcnf21&c=nope", 404, "scene.channel_not_found"),
    ("s=" + "a" * 31, 422, "scene.malformed_code"),
    ("s=cdcnf21&c=door&x=" + "1" * 20, 422, "scene.malformed_code"),
    ("s%253Dcdcnf21", 422, "scene.malformed_code"),  # encoded twice
    ("s=cdcnf21&c=门口", 422, "scene.malformed_code"),
    ("s=CDCNF21", 422, "scene.malformed_code"),
    ("t=cdcnf21", 422, "scene.malformed_code"),
    ("s=cdcnf21&s=cdcnf21", 422, "scene.malformed_code"),
])
def test_unknown_and_malformed_codes(client, admin, raw, status, code):
    scene = make_scene(client, admin, code="cdcnf21")
    client.post(f"/api/v1/admin/scenes/{scene['id']}/channels", json={"slug": "door"}, headers=admin)
    go_live(client, admin, scene["id"])
    response = client.get("/api/v1/scenes/resolve", query_string={"scene": raw})
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["code"] == code and error["request_id"]


def test_draft_is_not_found_closed_is_gone_reopened_is_back(client, admin):
    scene = make_scene(client, admin, code="forum1")
    resolve = lambda: client.get("/api/v1/scenes/resolve?scene=s%3Dforum1")
    assert resolve().status_code == 404
    go_live(client, admin, scene["id"])
    assert resolve().status_code == 200
    assert client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "closed"},
                        headers=admin).status_code == 200
    gone = resolve()
    assert gone.status_code == 410 and gone.get_json()["error"]["code"] == "scene.closed"
    refused = client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "draft"}, headers=admin)
    assert refused.status_code == 409 and refused.get_json()["error"]["code"] == "scene.status_change_refused"
    go_live(client, admin, scene["id"])
    assert resolve().status_code == 200
    assert client.get("/api/v1/scenes/resolve").status_code == 422  # no scene at all


def test_poster_png_and_pdf_carry_a_scannable_code(client, admin, sandbox):
    scene = make_scene(client, admin, code="poster1", starts_on="2021-09-07", ends_on="2021-09-07")
    poster = client.get(f"/api/v1/admin/scenes/{scene['id']}/poster.png", headers=admin)
    assert poster.status_code == 200 and poster.mimetype == "image/png"
    image = Image.open(io.BytesIO(poster.data))
    assert image.size == (1240, 1754)
    assert parse_qs(urlsplit(decode_qr(poster.data)).query)["scene"] == ["s=poster1"]
    pdf = client.get(f"/api/v1/admin/scenes/{scene['id']}/poster.pdf?source=qrcode", headers=admin)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF") and pdf.mimetype == "application/pdf"


def test_plain_qr_fallback_links_to_the_h5_page(client, admin):
    scene = make_scene(client, admin, code="h5demo")
    go_live(client, admin, scene["id"])
    png = client.get(f"/api/v1/admin/scenes/{scene['id']}/qrcode.png", headers=admin)
    link = decode_qr(png.data)
    assert link == "http://127.0.0.1:8000/s?scene=s%3Dh5demo"
    split = urlsplit(link)
    page = client.get(split.path, query_string=split.query)
    assert page.status_code == 200 and "首届中国数字碳中和高峰论坛" in page.get_data(as_text=True)
    assert client.get("/s?scene=s%3Dnope1").status_code == 404


def test_stats_by_channel_and_day_and_csv(app, client, admin, login, sandbox):
    scene = make_scene(client, admin, code="stats1", venue_kwh="10000", expected_attendance=500)
    client.post(f"/api/v1/admin/scenes/{scene['id']}/channels", json={"slug": "door", "label": "入口"}, headers=admin)
    go_live(client, admin, scene["id"])
    for _ in range(3):
        assert client.get("/api/v1/scenes/resolve?scene=s%3Dstats1%26c%3Ddoor").status_code == 200
    assert client.get("/api/v1/scenes/resolve?scene=s%3Dstats1").status_code == 200

    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_stats"}, timeout=5).json()["code"]
    token = client.post("/api/v1/auth/login", json={"code": code, "scene": "s=stats1&c=door"}).get_json()["token"]
    footprint = client.post("/api/v1/footprints", headers={"Authorization": f"Bearer {token}"}, json={
        "scene": "s%3Dstats1%26c%3Ddoor", "activities": [{"type": "venue_share"}, {"type": "rail", "distance_km": 10}]})
    assert footprint.status_code == 201, footprint.get_json()
    body = footprint.get_json()
    assert body["province"] == "SC" and body["scene"] == "s%3Dstats1%26c%3Ddoor"
    assert Decimal(body["lines"][0]["kg"]) == Decimal(10000) * Decimal("0.1404") / 500

    stats = client.get(f"/api/v1/admin/scenes/{scene['id']}/stats", headers=admin).get_json()
    assert stats["totals"]["visits"] == 4 and stats["totals"]["logins"] == 1 and stats["totals"]["footprints"] == 1
    door = next(row for row in stats["by_channel"] if row["channel"] == "door")
    assert (door["visits"], door["logins"], door["footprints"], door["label"]) == (3, 1, 1, "入口")
    assert len(stats["by_day"]) == 1 and stats["by_day"][0]["visits"] == 4

    exported = client.get(f"/api/v1/admin/scenes/{scene['id']}/stats.csv", headers=admin)
    assert exported.mimetype == "text/csv" and "attachment" in exported.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.get_data(as_text=True).lstrip("\ufeff"))))
    assert {row["channel"]: int(row["visits"]) for row in rows} == {"default": 1, "door": 3}
    resolved = client.get("/api/v1/scenes/resolve?scene=s%3Dstats1").get_json()
    assert resolved["progress"]["footprints"] >= 0  # cached view: within SCENE_CACHE_SECONDS


@pytest.mark.parametrize(("patch", "field"), [
    ({"preset": {"activities": [{"type": "rocket"}]}}, "preset.activities.0.type"),
    ({"preset": {"activities": [{"type": "hotel", "defaults": {"nights": -2}}]}}, "preset.activities.0.defaults.nights"),
    ({"preset": {"activities": [{"type": "hotel", "defaults": {"stars": 5}}]}}, "preset.activities.0.defaults.stars"),
    ({"preset": {"activities": [{"type": "rail"}, {"type": "venue_share"}]}}, "preset.activities.1.type"),
    ({"project_ids": ["prj_unknown"]}, "project_ids"),
    ({"province": "ZZ"}, "province"),
    ({"starts_on": "2021-09-08", "ends_on": "2021-09-07"}, "ends_on"),
    ({"expected_attendance": 0}, "expected_attendance"),
    ({"venue_kwh": "-5"}, "venue_kwh"),
])
def test_scene_validation_names_the_field(client, admin, patch, field):
    scene = make_scene(client, admin)
    response = client.patch(f"/api/v1/admin/scenes/{scene['id']}", json=patch, headers=admin)
    assert response.status_code == 422, response.get_json()
    assert field in response.get_json()["error"]["details"]


def test_the_venue_share_is_offered_once_even_if_a_stored_preset_names_it(app, client, admin):
    """The scene adds the venue's share from its venue figures; a preset stored before such an item
    was refused does not make guests count the venue twice."""
    from sqlalchemy import update

    from carbon.core.db import db
    from carbon.scenes.models import Scene

    scene = make_scene(client, admin, code="venue21", venue_kwh="10000", expected_attendance=100)
    with app.app_context():
        db.session.execute(update(Scene).where(Scene.public_id == scene["id"]).values(preset={"activities": [
            {"type": "rail", "defaults": {}}, {"type": "venue_share", "defaults": {}}]}))
        db.session.commit()
    assert client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "live"}, headers=admin).status_code == 200
    shown = client.get("/api/v1/scenes/resolve", query_string={"scene": "s=venue21"}).get_json()
    assert [item["type"] for item in shown["preset"]["activities"]] == ["rail", "venue_share"]


def test_codes_slugs_and_channels_are_unique_and_within_rules(client, admin):
    make_scene(client, admin, code="taken1", slug="taken-slug")
    for fields, name in (({"code": "taken1"}, "code"), ({"slug": "taken-slug"}, "slug")):
        response = client.post("/api/v1/admin/scenes", json={"kind": "hotel", "name_zh": "酒店", **fields},
                               headers=admin)
        assert response.status_code == 409 and name in response.get_json()["error"]["details"]
    other = make_scene(client, admin)
    assert len(other["code"]) == 7 and other["channels"][0]["scene_string"] == f"s={other['code']}"
    url = f"/api/v1/admin/scenes/{other['id']}/channels"
    assert client.post(url, json={"slug": "door"}, headers=admin).status_code == 201
    assert client.post(url, json={"slug": "door"}, headers=admin).status_code == 409
    for bad in ("Door", "门", "a" * 13, "-x", ""):
        assert client.post(url, json={"slug": bad}, headers=admin).status_code == 422


def test_custom_scene_needs_a_preset(client, admin):
    response = client.post("/api/v1/admin/scenes", json={"kind": "custom", "name_zh": "自定义"}, headers=admin)
    assert response.status_code == 422 and "preset" in response.get_json()["error"]["details"]
    made = make_scene(client, admin, kind="custom", preset={"activities": [{"type": "taxi",
                                                                            "defaults": {"distance_km": 8}}]})
    assert made["preset"] == {"activities": [{"type": "taxi", "defaults": {"distance_km": 8}}]}


def test_buffered_visits_are_written_when_a_worker_exits(app, client, admin, monkeypatch, tmp_path):
    """gunicorn's worker_exit hook (deploy/gunicorn.conf.py) writes what the buffer holds."""
    import importlib.util
    from types import SimpleNamespace

    from carbon.scenes import stats
    from tests.conftest import ROOT

    scene = make_scene(client, admin, code="exit1")
    go_live(client, admin, scene["id"])
    assert client.get("/api/v1/scenes/resolve?scene=s%3Dexit1").status_code == 200
    with app.app_context():
        scene_id = db.session.scalar(select(SceneChannel.scene_id).limit(1))
        assert stats.totals(scene_id)["visits"] == 0  # still in the worker's buffer
    # the config sets PROMETHEUS_MULTIPROC_DIR for gunicorn's workers: not for this test process
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR")
    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "deploy" / "gunicorn.conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    conf.worker_exit(None, SimpleNamespace(wsgi=app))
    with app.app_context():
        assert stats.totals(scene_id)["visits"] == 1


@pytest.mark.parametrize("taken", [{"slug": "taken-slug"}, {"code": "taken1"}])
def test_a_taken_slug_or_code_with_project_ids_is_409(app, client, admin, taken):
    """project_ids is looked up after the slug is set: the lookup's autoflush must not escape as a 500."""
    from tests.payments.conftest import seed_project

    project = seed_project(app)
    make_scene(client, admin, code="taken1", slug="taken-slug")
    scene = make_scene(client, admin)
    if "code" in taken:  # the code is set on create only
        response = client.post("/api/v1/admin/scenes", headers=admin, json={
            "kind": "hotel", "name_zh": "酒店", "project_ids": [project], **taken})
    else:
        response = client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={**taken, "project_ids": [project]},
                                headers=admin)
    assert response.status_code == 409, response.get_data(as_text=True)
    error = response.get_json()["error"]
    name = next(iter(taken))
    assert error["code"] == f"scene.{name}_taken" and name in error["details"]
    unchanged = client.get(f"/api/v1/admin/scenes/{scene['id']}", headers=admin).get_json()
    assert unchanged["slug"] == scene["slug"] and unchanged["projects"] == []


@pytest.mark.parametrize("name", ["第一行\n第二行", "Line one\r\nline two", "\n\n标题\n", "tab\tand\u2028separator"])
def test_a_poster_of_a_name_with_line_breaks_renders(client, admin, name):
    scene = make_scene(client, admin, name_en=name)
    client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"name_zh": name}, headers=admin)
    png = client.get(f"/api/v1/admin/scenes/{scene['id']}/poster.png?source=qrcode", headers=admin)
    assert png.status_code == 200, png.get_data(as_text=True)[:300]
    pdf = client.get(f"/api/v1/admin/scenes/{scene['id']}/poster.pdf?source=qrcode", headers=admin)
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF")
