"""The mini-program simulator in a real browser: a guest scans the demo forum's door code, logs in,
works out a footprint (a field error first, next to its field), pays through the sandbox, gets the
certificate card, shares it, finds their rank and saves a life footprint — while the big screen,
open in another window, takes the payment without a reload. No console errors besides the
field error's own 422."""
from __future__ import annotations

import re
import shutil

from sqlalchemy import select

from carbon import demo
from carbon.accounts.models import User
from carbon.certificates.models import Certificate
from carbon.checkout.models import Order
from carbon.core.db import db
from carbon.footprint.models import Footprint
from tests.browser.conftest import SCREENSHOTS
from tests.conftest import ROOT

DOCS_IMAGES = ROOT / "docs" / "images"


def keep(phone, name: str) -> None:
    """The phone's screen (not the page around it) into the screenshots and docs/images."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    DOCS_IMAGES.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    phone.locator(".phone").screenshot(path=str(path))
    shutil.copyfile(path, DOCS_IMAGES / f"{name}.png")


def test_a_guest_walks_the_whole_path_to_a_certificate_and_a_rank(live_server, page, phone_page):
    from playwright.sync_api import expect

    with live_server.app.app_context():
        list(demo.seed())
    wall = page
    wall.set_viewport_size({"width": 1920, "height": 1080})
    wall.goto(f"/screen/{demo.FORUM_CODE}")
    expect(wall.locator("#kg")).to_have_text("0.000")
    wall.evaluate("window.__loadedOnce = true")

    phone = phone_page
    phone.goto("/simulator")
    phone.fill("#openid", "o_sim_walker")
    phone.fill("#nickname", "李雷")
    keep(phone, "simulator-scan")
    phone.click('button.code[data-scene="s=cdcnf21&c=door"]')
    expect(phone.locator("#scene-name")).to_have_text("首届中国数字碳中和高峰论坛")
    expect(phone.locator("#offer li")).to_have_count(3)
    keep(phone, "simulator-scene")

    phone.click('[data-page="scene"] button[data-go="calculator"]')
    fieldsets = phone.locator("#activities fieldset")
    expect(fieldsets).to_have_count(5)  # the conference preset (flight, rail, hotel, meals) and the venue share
    expect(phone.locator("#preview-total")).not_to_have_text("—")
    nights = phone.locator('fieldset[data-type="hotel"] input[name="nights"]')
    nights.fill("两晚")  # not a number: the API's field error shows next to the field
    expect(phone.locator('fieldset[data-type="hotel"] [data-field="nights"]')).to_contain_text("Not a valid integer")
    expect(nights).to_have_class("invalid")
    phone.console_errors[:] = [e for e in phone.console_errors if "status of 422" not in e]  # that 422, expected
    nights.fill("2")
    expect(phone.locator('fieldset[data-type="hotel"] [data-field="nights"]')).to_be_empty()
    expect(phone.locator("#preview-total")).not_to_have_text("—")
    with_rail = phone.locator("#preview-total").inner_text()
    phone.locator('fieldset[data-type="rail"] input[name="include"]').uncheck()  # flew in, no train
    expect(phone.locator("#preview-total")).not_to_have_text(with_rail)
    preview = phone.locator("#preview-total").inner_text()
    keep(phone, "simulator-calculator")

    phone.click("#calculate")
    expect(phone.locator("#result-total")).to_have_text(preview)  # saved as previewed
    expect(phone.locator("#lines tr")).to_have_count(5)  # two flight legs, hotel, meals, venue share
    expect(phone.locator("#lines .source").first).to_contain_text("来源 / Source")
    keep(phone, "simulator-result")

    phone.fill("#beneficiary", "李雷")
    phone.click("#order")
    expect(phone.locator("#pay-amount")).to_have_text(re.compile(r"^\d+\.\d\d$"))
    amount = phone.locator("#pay-amount").inner_text()
    keep(phone, "simulator-pay")
    phone.click("#pay")
    expect(phone.locator('[data-page="certificate"]')).to_be_visible(timeout=20_000)
    number = phone.locator("#cert-number").inner_text()
    assert number.startswith("DD-")
    expect(phone.locator("#cert-line")).to_contain_text("李雷")
    # a property read, polled by Playwright: a string predicate would be eval'd, which the page's CSP refuses
    expect(phone.locator("#card")).to_have_js_property("naturalWidth", 1000, timeout=20_000)
    keep(phone, "simulator-certificate")

    phone.click('[data-page="certificate"] button[data-go="share"]')
    expect(phone.locator("#share-title")).to_contain_text("首届中国数字碳中和高峰论坛")
    expect(phone.locator("#share-image")).to_have_js_property("naturalWidth", 1000, timeout=20_000)
    keep(phone, "simulator-share")

    phone.click('[data-page="share"] button[data-go="leaderboard"]')
    expect(phone.locator("#my-rank")).to_have_text("1")
    expect(phone.locator("#board li.me")).to_contain_text("1. 李雷")
    expect(phone.locator("#my-kg")).to_have_text(re.compile(r"^\d+\.000 kg$"))
    keep(phone, "simulator-leaderboard")

    phone.click('[data-page="leaderboard"] button[data-go="life"]')
    expect(phone.locator("#life-preview")).not_to_have_text("—")
    phone.fill('input[name="electricity.kwh_per_month"]', "300")
    phone.click("#life-save")
    expect(phone.locator("#life-result")).to_be_visible()
    expect(phone.locator("#life-china")).not_to_be_empty()
    keep(phone, "simulator-life")

    with live_server.app.app_context():  # what the walk left in the database
        user = db.session.scalar(select(User).where(User.openid == "o_sim_walker"))
        order = db.session.scalar(select(Order).where(Order.user_id == user.id))
        certificate = db.session.scalar(select(Certificate).where(Certificate.user_id == user.id))
        kinds = sorted(db.session.scalars(select(Footprint.kind).where(Footprint.user_id == user.id)))
    assert order.status == "fulfilled" and str(order.amount) == amount and order.beneficiary_name == "李雷"
    assert certificate.number == number and certificate.order_id == order.id
    assert kinds == ["event", "life"]

    expect(wall.locator("#kg")).to_have_text(f"{order.kg:.3f}", timeout=15_000)  # the wall, never reloaded
    expect(wall.locator("#newest li").first).to_contain_text("李*")
    assert wall.evaluate("window.__loadedOnce") is True
