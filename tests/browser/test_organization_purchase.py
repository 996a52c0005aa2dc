"""An organizer buys in a real browser, for the event's own footprint and to top a scene up: the
quote, the WeChat Pay Native QR code, the sandbox's scan-and-pay page (what the payer's phone
shows), and the console page turning to paid with the organization's certificate, without a reload."""
from __future__ import annotations

import base64
import re
from decimal import Decimal

from sqlalchemy import select, update

from carbon.core.db import db
from carbon.scenes.models import Scene
from tests.browser.test_console import keep
from tests.console.test_organization_purchases import warm_access_token
from tests.payments.conftest import guest_token, live_scene, seed_project

EMAIL, PASSWORD = "buyer@forum.example", "long password"  # live_scene's owner password


def test_an_organizer_buys_a_top_up_with_a_qr_code_and_sees_it_paid(live_server, page, browser, screenshot):
    from playwright.sync_api import expect

    from carbon.rendering import qr_png

    project_id = seed_project(live_server.app, price="60.00", name="龙泉山城市森林碳汇")
    with live_server.app.app_context():
        owner, scene_id = live_scene(project_id, "topup1", EMAIL)
        db.session.execute(update(Scene).where(Scene.public_id == scene_id).values(expected_attendance=50))
        db.session.commit()
        organization_name = owner.organization.name
    token = guest_token(live_server.url, live_server.sandbox, "o_topup_guest")
    measured = live_server.post("/api/v1/footprints", headers={"Authorization": f"Bearer {token}"}, json={
        "scene": "s=topup1", "activities": [{"type": "rail", "distance_km": 1000, "round_trip": True}]})
    assert measured.status_code == 201, measured.text

    page.goto("/console/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.click("text=组织购买 / Buy")
    page.select_option("#buy-top-up select[name=scene]", scene_id)
    page.click("#buy-top-up button[type=submit]")
    quote = page.locator("#quote")
    expect(quote).to_contain_text("补足全场")
    estimated = 50 * float(measured.json()["total_kg"])
    assert abs(float(quote.get_attribute("data-kg")) - estimated) < 0.01  # nothing neutralized yet
    keep(screenshot(page, "console-top-up-quote"), "console-top-up-quote.png")

    page.click("#pay-native")
    qr = page.locator("#native-qr")
    expect(qr).to_be_visible()
    code_url = page.locator("#native-pay").get_attribute("data-code-url")
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert base64.b64decode(qr.get_attribute("src").split(",", 1)[1]) == qr_png(code_url)
    expect(page.locator("[data-state=status]")).to_have_text("awaiting_payment")
    keep(screenshot(page, "console-native-qr"), "console-native-qr.png")

    scan_and_pay(browser, live_server, code_url)

    # no reload: console.js polls the order until it is paid and its certificate issued
    expect(page.locator("#paid")).to_be_visible(timeout=15_000)
    expect(page.locator("[data-state=status]")).to_have_text("fulfilled")
    certificate = page.locator("[data-state=certificate]")
    expect(certificate).to_have_text(re.compile(r"^DD-\d{4}-\d{6}$"))
    expect(qr).to_be_hidden()
    keep(screenshot(page, "console-native-paid"), "console-native-paid.png")
    number = certificate.inner_text()
    card = page.locator("[data-state=card-link]")
    expect(card).to_be_visible()
    picture = live_server.get(card.get_attribute("href"))
    assert picture.headers["Content-Type"] == "image/jpeg" and picture.content[:3] == b"\xff\xd8\xff"
    shown = live_server.get(f"/api/v1/certificates/{number}").json()
    assert shown["beneficiary"] == organization_name and shown["record"]["scene"]["id"] == scene_id
    with live_server.app.app_context():
        from carbon.leaderboards import service as leaderboards

        progress = leaderboards.progress(db.session.scalar(select(Scene).where(Scene.public_id == scene_id)))
        assert progress["percent"] >= 100


def scan_and_pay(browser, live_server, code_url: str) -> None:
    """The payer's phone, having scanned the code: the sandbox's page pays and WeChat Pay notifies."""
    from playwright.sync_api import expect

    phone = browser.new_page()
    phone.goto(f"{live_server.sandbox.url}/__sandbox__/pay/scan?code_url={code_url}")
    phone.click("#pay")
    expect(phone.locator("#paid")).to_contain_text("支付成功")
    expect(phone.locator("#notify")).to_have_text("204")
    phone.close()


def test_an_organizer_buys_the_event_footprint_with_a_qr_code(live_server, page, browser):
    """The event's own footprint typed into the console (venue kWh, meals, paper), its quote (the
    dataset's factors, as the API computes them), paid by Native: the organization's certificate."""
    from playwright.sync_api import expect

    project_id = seed_project(live_server.app, price="60.00", name="龙泉山城市森林碳汇")
    with live_server.app.app_context():
        owner, scene_id = live_scene(project_id, "hostfp1", EMAIL)
        organization_name = owner.organization.name
    warm_access_token(live_server.app)  # SQLite: before the inline outbox batch holds the write lock
    page.goto("/console/login")
    page.fill("input[name=email]", EMAIL)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.click("text=组织购买 / Buy")
    form = page.locator("#buy-event form")
    form.locator("select[name=scene]").select_option(scene_id)
    form.locator("select[name=province]").select_option("SC")
    form.locator("input[name=kwh]").fill("1200")
    form.locator("input[name=meals]").fill("300")
    form.locator("input[name=paper_kg]").fill("40")
    form.locator("button[type=submit]").click()
    quote = page.locator("#quote")
    expect(quote).to_have_attribute("data-kind", "host")
    with live_server.app.app_context():
        from carbon.footprint.models import Footprint

        footprint = db.session.scalars(select(Footprint).where(Footprint.organization_id.is_not(None))).one()
        assert footprint.kind == "host" and footprint.total_grams > 0
        assert Decimal(quote.get_attribute("data-kg")) == Decimal(footprint.total_grams) / 1000  # what it costs
    page.click("#pay-native")
    code_url = page.locator("#native-pay").get_attribute("data-code-url")
    expect(page.locator("[data-state=status]")).to_have_text("awaiting_payment")
    scan_and_pay(browser, live_server, code_url)
    expect(page.locator("#paid")).to_be_visible(timeout=15_000)
    expect(page.locator("[data-state=status]")).to_have_text("fulfilled")
    number = page.locator("[data-state=certificate]").inner_text()
    shown = live_server.get(f"/api/v1/certificates/{number}").json()
    assert shown["beneficiary"] == organization_name
    assert live_server.get(f"/api/v1/certificates/{number}/verify").json()["valid"]
