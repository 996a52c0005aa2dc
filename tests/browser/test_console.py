"""The organizer console in a real browser: sign in, create a scene (a field error first), take it
live, download its poster, and watch the dashboard take a guest's payment without a reload."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import requests
from PIL import Image
from sqlalchemy import select

from carbon.core.db import db
from carbon.scenes.models import Scene
from tests.conftest import ROOT
from tests.payments.conftest import guest_token, seed_project

EMAIL, PASSWORD = "console@forum.example", "correct horse battery"
DOCS_IMAGES = ROOT / "docs" / "images"


def organizer(app) -> None:
    from carbon.organizers import service as organizers

    with app.app_context():
        organizers.create_organization("成都论坛组委会", owner_email=EMAIL, owner_password=PASSWORD,
                                       owner_name="王组委")


def pay_as_guest(live_server, code: str, kg: str) -> dict:
    """A guest scans the scene's code, measures a footprint there and pays for ``kg`` through the sandbox."""
    token = guest_token(live_server.url, live_server.sandbox, "o_console_guest")
    headers = {"Authorization": f"Bearer {token}"}
    footprint = live_server.post("/api/v1/footprints", headers=headers, json={
        "scene": f"s={code}", "activities": [{"type": "rail", "distance_km": 1000, "round_trip": True}]})
    assert footprint.status_code == 201, footprint.text
    created = live_server.post("/api/v1/orders", json={"kg": kg, "scene": f"s%3D{code}"},
                               headers={**headers, "Idempotency-Key": "console-browser-1"})
    assert created.status_code == 201, created.text
    paid = requests.post(f"{live_server.sandbox.url}/__sandbox__/pay/request-payment",
                         json=created.json()["request_payment"], timeout=30)
    assert paid.status_code == 200 and paid.json()["notify"]["acknowledged"], paid.text
    return created.json()["order"]


def keep(path, name: str) -> None:
    """A key screen, copied to docs/images when DIANDIAN_DOC_IMAGES=1 (else only in the screenshots folder)."""
    if os.environ.get("DIANDIAN_DOC_IMAGES") == "1":
        shutil.copyfile(path, DOCS_IMAGES / name)


def test_an_organizer_creates_a_scene_takes_it_live_prints_its_poster_and_watches_the_total(
        live_server, page, screenshot):
    from playwright.sync_api import expect

    organizer(live_server.app)
    project_id = seed_project(live_server.app, price="60.00", name="龙泉山城市森林碳汇")

    page.goto("/console/")
    expect(page).to_have_url(f"{live_server.url}/console/login?next=/console/")
    keep(screenshot(page, "console-login"), "console-login.png")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", "wrong password")
    page.click("#login-form button[type=submit]")
    expect(page.locator(".field-error")).to_contain_text("邮箱或密码错误")
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    expect(page.locator("h1")).to_contain_text("场景")

    page.click("text=新建场景 / New scene")
    page.select_option("select[name=kind]", "conference")
    page.fill("input[name=name_zh]", "首届中国数字碳中和高峰论坛")
    page.fill("input[name=name_en]", "First China Digital Carbon Neutrality Forum")
    page.fill("input[name=city]", "成都")
    page.select_option("select[name=province]", "SC")
    page.fill("input[name=starts_on]", "2021-09-07")
    page.fill("input[name=ends_on]", "2021-09-06")  # before it starts: the service refuses it
    page.fill("input[name=code]", "cdcnf21")
    page.fill("input[name=expected_attendance]", "2")
    page.check(f"input[name=project_ids][value={project_id}]")
    page.click("#scene-form button[type=submit]")
    error = page.locator(".field-error[data-field=ends_on]")
    expect(error).to_contain_text("结束早于开始")
    keep(screenshot(page, "console-scene-form-errors"), "console-scene-form-errors.png")
    assert page.input_value("input[name=name_zh]") == "首届中国数字碳中和高峰论坛"  # what was typed stays
    page.fill("input[name=ends_on]", "2021-09-08")
    page.click("#scene-form button[type=submit]")
    expect(page.locator("#scene-status")).to_contain_text("草稿")
    with live_server.app.app_context():
        scene = db.session.scalar(select(Scene).where(Scene.code == "cdcnf21"))
        assert (scene.status, str(scene.ends_on), [p.public_id for p in scene.projects]) == \
            ("draft", "2021-09-08", [project_id])

    page.click("#go-live")
    expect(page.locator("#scene-status")).to_contain_text("进行中 / Live")
    with live_server.app.app_context():
        assert db.session.scalar(select(Scene.status).where(Scene.code == "cdcnf21")) == "live"

    with page.expect_download() as download:
        page.click("a.poster-png")
    poster = download.value
    data = Path(poster.path()).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert Image.open(io.BytesIO(data)).size == (1240, 1754)  # A4 at 150 dpi
    assert poster.suggested_filename.endswith("-default-poster-wxacode.png")

    kg = page.locator("[data-stat=kg_neutralized]")
    expect(kg).to_have_text("0.000")
    pay_as_guest(live_server, "cdcnf21", "50")
    # No reload: console.js polls the scene's figures every 5 s.
    expect(kg).to_have_text("50.000", timeout=15_000)
    expect(page.locator("[data-stat=money_raised]")).to_have_text("3.00")
    expect(page.locator("[data-stat=participants]")).to_have_text("1")
    # progress: 50 kg over 2 expected guests × the 60.96 kg footprint measured here
    expect(page.locator("[data-stat=percent]")).to_have_text("41.0")
    page.reload()  # the charts are drawn on the server
    expect(page.locator("svg.chart rect.bar").first).to_be_visible()
    expect(page.locator("#leaderboard tbody td").nth(2)).to_have_text("50.000")
    keep(screenshot(page, "console-dashboard"), "console-dashboard.png")
    page.set_viewport_size({"width": 390, "height": 844})
    keep(screenshot(page, "console-dashboard-phone"), "console-dashboard-phone.png")

    page.set_viewport_size({"width": 1280, "height": 900})
    page.click("text=订单 / Orders")
    page.click("table.list a >> nth=0")
    expect(page.locator(".timeline")).to_contain_text("paid")
    keep(screenshot(page, "console-order"), "console-order.png")
