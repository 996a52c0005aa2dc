"""End to end (issue 15's acceptance): a company buys its event's footprint in the console, paid by
WeChat Pay Native against the sandbox; its receipt names it, its invoice request is made, issued
and appears in the finance export; a refund afterwards shows on the request."""
from __future__ import annotations

import csv
import io
import re

from sqlalchemy import select

from carbon.core.db import db
from tests.console.conftest import csrf_of, organization, sign_in
from tests.console.test_organization_purchases import _buy, _scan_and_pay
from tests.invoices.conftest import pdf_text_and_fonts
from tests.payments.conftest import seed_project


def test_a_company_buys_gets_its_receipt_and_its_fapiao_request_reaches_finance(live, sandbox):
    from carbon.checkout.models import Order
    from carbon.core import extensions as ext

    seed_project(live.app)
    organization(live.app, "丙科技有限公司", "c@corp.example")
    with live.app.app_context():  # SQLite: take WeChat's token before the inline outbox holds the write lock
        assert ext.wechat().wxa_code("warm-up")
    console = live.app.test_client()
    assert sign_in(console, "c@corp.example").status_code == 302
    saved = console.post("/console/buy/event", data={"event_name": "2026 年度客户大会", "province": "BJ", "kwh": "800",
                                                    "meals": "120", "csrf_token": csrf_of(console.get("/console/buy"))})
    assert saved.status_code == 302
    pay_page, _ = _buy(console, console.get(saved.headers["Location"]).get_data(as_text=True))
    order_id = re.search(r"<code>(ord_[^<]+)</code>", pay_page).group(1)
    assert order_id not in console.get("/console/invoices").get_data(as_text=True)  # not paid yet
    assert console.get(f"/console/orders/{order_id}/receipt.pdf").status_code == 409
    paid = _scan_and_pay(sandbox, pay_page)
    state = console.get(f"/console/buy/orders/{order_id}/state.json").get_json()
    assert state["status"] == "fulfilled"

    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == order_id))
        amount = f"{order.amount:f}"
    text, fonts = pdf_text_and_fonts(console.get(f"/console/orders/{order_id}/receipt.pdf").data)
    for seen in ("丙科技有限公司", order_id, f"¥{order.amount:,.2f}", state["certificate"], paid["transaction_id"]):
        assert seen in text, seen
    assert fonts and all(font["embedded_bytes"] > 1000 for font in fonts)

    token = csrf_of(console.get("/console/invoices"))
    console.post("/console/invoices/profile", data={"csrf_token": token, "title": "丙科技有限公司",
                                                    "tax_id": "91350100M000100Y43"})
    assert order_id in console.get("/console/invoices").get_data(as_text=True)
    console.post("/console/invoices/request", data={"csrf_token": token, "order": order_id})
    from carbon.invoices.models import InvoiceRequest

    with live.app.app_context():
        request_id = db.session.scalar(select(InvoiceRequest.public_id))
    console.post(f"/console/invoices/{request_id}/issue", data={"csrf_token": token,
                                                                "fapiao_number": "26110000000000000042"})

    from carbon.checkout.operations import refund_order

    with live.app.app_context():
        refund_order(order_id, "活动取消 / event cancelled")
    rows = list(csv.DictReader(io.StringIO(console.get("/console/invoices.csv").data.decode("utf-8-sig"))))
    assert [(row["订单 / order"], row["金额 / amount (CNY)"], row["状态 / status"], row["发票号码 / fapiao number"],
             row["已退款 / refunded"]) for row in rows] == [
        (order_id, amount, "已开具 / Issued", "26110000000000000042", "是 / yes")]
    refunded = pdf_text_and_fonts(console.get(f"/console/orders/{order_id}/receipt.pdf").data)[0]
    assert "已退款" in refunded or "退款处理中" in refunded
