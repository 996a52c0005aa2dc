"""The venue big screen in a real browser: a guest's payment shows up (total, participants, the
newest certificate with a masked name) without a reload, and the browser reports no error."""
from __future__ import annotations

import re
import shutil
from decimal import Decimal

import requests

from carbon import demo
from tests.conftest import ROOT
from tests.payments.conftest import guest_token

DOCS_IMAGES = ROOT / "docs" / "images"


def keep(path, name: str) -> None:
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, DOCS_IMAGES / name)


def pay(live_server, code: str, openid: str, name: str) -> dict:
    """A guest of the scene (nickname ``name``) measures a footprint and pays for it through the sandbox."""
    token = guest_token(live_server.url, live_server.sandbox, openid)
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.patch(f"{live_server.url}/api/v1/me", json={"nickname": name}, headers=headers,
                          timeout=10).status_code == 200
    footprint = live_server.post("/api/v1/footprints", headers=headers, json={
        "scene": f"s={code}", "activities": [{"type": "flight", "route": ["PEK", "CTU"], "round_trip": True}]})
    assert footprint.status_code == 201, footprint.text
    created = live_server.post("/api/v1/orders", headers={**headers, "Idempotency-Key": f"screen-{openid}"}, json={
        "footprint_id": footprint.json()["id"], "scene": f"s={code}", "beneficiary_name": name})
    assert created.status_code == 201, created.text
    paid = live_server.post("/simulator/wx/request-payment", json=created.json()["request_payment"])
    assert paid.status_code == 200, paid.text
    return created.json()["order"]


def test_the_big_screen_shows_a_payment_without_a_reload(live_server, page, screenshot):
    from playwright.sync_api import expect

    with live_server.app.app_context():
        list(demo.seed())  # the forum: 500 expected guests, so progress toward neutral shows
    scene_id = demo.FORUM_CODE
    page.set_viewport_size({"width": 1920, "height": 1080})  # a projector
    page.goto(f"/screen/{scene_id}")
    expect(page.locator("#kg")).to_have_text("0.000")
    expect(page.locator("#newest li.empty")).to_be_visible()
    assert page.evaluate("document.getElementById('code').naturalWidth") > 100  # the code to scan loaded
    page.evaluate("window.__loadedOnce = true")  # gone if the page reloaded

    first = pay(live_server, demo.FORUM_CODE, "o_wall_1", "王小明")
    expect(page.locator("#kg")).to_have_text(first["kg"], timeout=15_000)
    expect(page.locator("#participants")).to_have_text("1")
    expect(page.locator("#newest li").first).to_contain_text("王**")
    second = pay(live_server, demo.FORUM_CODE, "o_wall_2", "Alice")
    total = str(Decimal(first["kg"]) + Decimal(second["kg"]))
    expect(page.locator("#kg")).to_have_text(total, timeout=15_000)
    expect(page.locator("#participants")).to_have_text("2")
    expect(page.locator("#newest li").first).to_contain_text("A***")
    expect(page.locator("#top li")).to_have_count(2)
    expect(page.locator("#top li").first).to_contain_text("1. ")
    expect(page.locator("#progress-percent")).to_have_text(re.compile(r"^\d+\.\d%$"))
    assert page.evaluate("window.__loadedOnce") is True
    page.wait_for_timeout(1500)  # the count-up animation settles
    keep(screenshot(page, "screen-live"), "screen-live.png")
