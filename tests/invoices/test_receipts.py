"""Receipts: a PDF per paid order with the order's facts in Chinese and English, the CJK font
embedded; the guest's own through the API, the organization's through the console; and the
console's refund button (owners only, CSRF, a confirmation page) through the one refund operation."""
from __future__ import annotations

import requests
from sqlalchemy import select

from carbon.certificates.models import Certificate
from carbon.checkout.models import Order, Refund
from carbon.core.clock import CHINA_TZ
from carbon.core.db import db
from tests.console.conftest import csrf_of, organization, sign_in
from tests.invoices.conftest import paid_guest_order, pdf_text_and_fonts
from tests.payments.conftest import guest_token


def test_the_guest_gets_the_receipt_of_their_paid_order_and_nobody_else_does(live, sandbox):
    paid = paid_guest_order(live, sandbox, code="rcpt1", email="r1@x.example", openid="o_receipt",
                            beneficiary_name="王小明")
    auth = {"Authorization": f"Bearer {paid['token']}"}
    answer = live.get(f"/api/v1/orders/{paid['order']}/receipt.pdf", headers=auth)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/pdf" and answer.content.startswith(b"%PDF-")
    text, fonts = pdf_text_and_fonts(answer.content)
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == paid["order"]))
        number = db.session.scalar(select(Certificate.number).where(Certificate.order_id == order.id))
        paid_day = order.paid_at.astimezone(CHINA_TZ)
        assert order.beneficiary_name == "王小明"
    assert text.index("收据") < text.index("Receipt")  # Chinese first
    for seen in (paid["order"], f"¥{paid['amount']}", "50.000 kg", "¥60.00 / 吨", paid["transaction_id"], number,
                 "测试项目", paid_day.strftime("%Y-%m-%d %H:%M"), "王小明"):
        assert seen in text, seen
    assert "退款 Refund" not in text.replace("\n", " ")
    assert fonts and all("KurintoSansSC" in font["name"] and font["embedded_bytes"] > 1000 for font in fonts)

    other = guest_token(live.url, sandbox, "o_other_receipt")
    refused = live.get(f"/api/v1/orders/{paid['order']}/receipt.pdf", headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "order.not_found"
    assert live.get(f"/api/v1/orders/{paid['order']}/receipt.pdf").status_code == 401


def test_an_unpaid_order_has_no_receipt(live, sandbox):
    from tests.payments.conftest import live_scene, seed_project

    project = seed_project(live.app)
    with live.app.app_context():
        live_scene(project, "rcpt2", "r2@x.example")
    token = guest_token(live.url, sandbox, "o_unpaid")
    created = live.post("/api/v1/orders", json={"kg": "10", "scene": "s%3Drcpt2%26c%3Ddoor"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "unpaid-1"})
    assert created.status_code == 201
    answer = live.get(f"/api/v1/orders/{created.json()['order']['id']}/receipt.pdf",
                      headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "order.not_paid"
    assert answer.json()["error"]["details"] == {"status": ["awaiting_payment"]}


def test_the_console_refunds_through_a_confirmation_and_the_receipt_then_says_so(live, sandbox):
    paid = paid_guest_order(live, sandbox, code="rcpt3", email="r3@x.example", openid="o_refund_button")
    organization(live.app, "乙组委会", "b3@x.example")
    with live.app.app_context():
        from carbon.organizers import service as organizers
        from carbon.organizers.models import Organizer

        owner = db.session.scalar(select(Organizer).where(Organizer.email == "r3@x.example"))
        organizers.add_member(owner.organization, email="staff3@x.example", password="long password",
                              display_name="员工", role="staff")
    a, b, staff = live.app.test_client(), live.app.test_client(), live.app.test_client()
    assert sign_in(a, "r3@x.example", "long password").status_code == 302
    assert sign_in(b, "b3@x.example").status_code == 302
    assert sign_in(staff, "staff3@x.example", "long password").status_code == 302
    order_id = paid["order"]

    listing = a.get("/console/orders").get_data(as_text=True)
    assert f'data-refund="{order_id}"' in listing and f"/console/orders/{order_id}/receipt.pdf" in listing
    assert f'data-refund="{order_id}"' not in staff.get("/console/orders").get_data(as_text=True)
    receipt = a.get(f"/console/orders/{order_id}/receipt.pdf")
    assert receipt.status_code == 200 and order_id in pdf_text_and_fonts(receipt.data)[0]
    assert b.get(f"/console/orders/{order_id}/receipt.pdf").status_code == 404  # another organization's
    assert b.get(f"/console/orders/{order_id}/refund").status_code == 404

    confirm = a.get(f"/console/orders/{order_id}/refund")
    page = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and "确认退款" in page and f"¥{paid['amount']}" in page
    assert staff.get(f"/console/orders/{order_id}/refund").status_code == 403
    assert staff.post(f"/console/orders/{order_id}/refund", data={
        "csrf_token": csrf_of(staff.get("/console/orders")), "reason": "x"}).status_code == 403
    assert a.post(f"/console/orders/{order_id}/refund", data={"reason": "no token"}).status_code == 400  # CSRF
    empty = a.post(f"/console/orders/{order_id}/refund", data={"csrf_token": csrf_of(confirm), "reason": "  "})
    assert empty.status_code == 200 and 'data-field="reason"' in empty.get_data(as_text=True)
    with live.app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.public_id == order_id)) == "fulfilled"

    done = a.post(f"/console/orders/{order_id}/refund",
                  data={"csrf_token": csrf_of(confirm), "reason": "嘉宾要求退款 / guest asked"}, follow_redirects=True)
    assert done.status_code == 200 and "已申请退款" in done.get_data(as_text=True)
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == order_id))
        [refund] = db.session.scalars(select(Refund)).all()
        assert order.status == "refunded" and refund.reason == "嘉宾要求退款 / guest asked"
        assert refund.amount == order.amount and refund.status in ("processing", "succeeded")  # WeChat Pay asked
    assert f'data-refund="{order_id}"' not in a.get("/console/orders").get_data(as_text=True)
    again = a.post(f"/console/orders/{order_id}/refund", data={"csrf_token": csrf_of(confirm), "reason": "again"},
                   follow_redirects=True)
    assert "状态不允许此操作" in again.get_data(as_text=True)
    with live.app.app_context():
        assert len(db.session.scalars(select(Refund)).all()) == 1

    text, _ = pdf_text_and_fonts(requests.get(f"{live.url}/api/v1/orders/{order_id}/receipt.pdf", timeout=30,
                                              headers={"Authorization": f"Bearer {paid['token']}"}).content)
    assert "退款" in text and f"¥{paid['amount']}" in text and ("已退款" in text or "退款处理中" in text)


def test_the_receipts_unit_price_is_rounded_half_up_as_every_amount_is(app):
    """1.00 CNY for 64 kg is 15.625 CNY a tonne: the receipt said 15.62 (the Decimal context's
    half-even), where every other amount of the service is rounded half-up (units.cny)."""
    from decimal import Decimal

    from carbon.core.units import cny
    from carbon.invoices.service import receipt_facts
    from carbon.organizers import service as organizers
    from tests.invoices.conftest import organization_paid_order
    from tests.payments.conftest import seed_project

    seed_project(app)
    with app.app_context():
        owner = organizers.create_organization("甲", owner_email="unit@price.example", owner_password="long password",
                                               owner_name="o")
        public_id = organization_paid_order(owner.organization.public_id, amount="1.00", kg="64")
        facts = receipt_facts(db.session.scalar(select(Order).where(Order.public_id == public_id)))
    assert facts.unit_price_per_tonne == cny(Decimal("15.625")) == Decimal("15.63")
