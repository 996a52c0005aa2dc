"""The console's refund button in a real browser: an owner opens a paid order, presses 退款, reads
the confirmation page, gives a reason and confirms; the order is refunded through WeChat Pay's
sandbox and the receipt link stays."""
from __future__ import annotations

from sqlalchemy import select

from carbon.checkout.models import Order, Refund
from carbon.core.db import db
from tests.invoices.conftest import paid_guest_order


def test_an_owner_refunds_a_paid_order_after_confirming(live_server, page, screenshot):
    from playwright.sync_api import expect

    paid = paid_guest_order(live_server, live_server.sandbox, code="brefund", email="refund@forum.example",
                            openid="o_browser_refund")
    order_id = paid["order"]
    page.goto("/console/login")
    page.fill("input[name=email]", "refund@forum.example")
    page.fill("input[name=password]", "long password")
    page.click("#login-form button[type=submit]")
    page.goto("/console/orders")
    page.click(f'[data-refund="{order_id}"]')
    expect(page.locator("h1")).to_contain_text("确认退款")
    expect(page.locator("#confirm-refund")).to_contain_text(f"¥{paid['amount']}")
    with live_server.app.app_context():  # nothing happens before the confirmation
        assert db.session.scalar(select(Order.status).where(Order.public_id == order_id)) == "fulfilled"
    page.fill("textarea[name=reason]", "嘉宾要求退款 / guest asked")
    screenshot(page, "console-refund-confirm")
    page.click("#confirm-refund")
    expect(page.locator(".flash")).to_contain_text("已申请退款")
    expect(page.locator("h1")).to_contain_text(order_id)
    expect(page.locator(".card .status").first).to_have_text("refunded")
    expect(page.locator(f'[data-refund="{order_id}"]')).to_have_count(0)
    with live_server.app.app_context():
        refund = db.session.scalar(select(Refund))
        assert refund.reason == "嘉宾要求退款 / guest asked" and refund.status in ("processing", "succeeded")
