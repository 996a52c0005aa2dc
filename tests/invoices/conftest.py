"""Invoice and receipt helpers: a guest's order paid for real through WeChat Pay's sandbox, and an
organization's own paid order."""
from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import requests
from pypdf import PdfReader
from sqlalchemy import select, update

from tests.console.conftest import live, owner_a  # noqa: F401 - the service on a port; a signed-in owner
from tests.payments.conftest import guest_token, live_scene, seed_project


def paid_guest_order(service, sandbox, *, code: str, email: str, openid: str, kg: str = "50", **body) -> dict:
    """A live scene of a new organization (owner ``email``, password "long password") offering a
    project it owns, and a guest's order paid through the sandbox; returns ids and the guest's token."""
    from carbon.core.db import db
    from carbon.credits.models import Project

    project_id = seed_project(service.app, units=10_000, price="60.00")
    with service.app.app_context():
        owner, scene_id = live_scene(project_id, code, email)
        db.session.execute(update(Project).where(Project.public_id == project_id)
                           .values(owner_organization_id=owner.organization_id))
        db.session.commit()
    token = guest_token(service.url, sandbox, openid)
    created = service.post("/api/v1/orders", json={"kg": kg, "scene": f"s%3D{code}%26c%3Ddoor", **body},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": f"k-{openid}"})
    assert created.status_code == 201, created.text
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created.json()["request_payment"],
                         timeout=30).json()
    assert paid["notify"]["acknowledged"], paid
    return {"order": created.json()["order"]["id"], "token": token, "project": project_id, "scene": scene_id,
            "transaction_id": paid["transaction_id"], "amount": created.json()["order"]["amount"]}


def organization_paid_order(organization_public_id: str, amount: str = "120.00", kg: str = "2000") -> str:
    """An order the organization bought and paid (the rows a confirmed payment leaves: a paid order
    with its buyer, a confirmed payment with WeChat Pay's transaction id). Call in an app context."""
    from carbon.checkout.models import Order, Payment
    from carbon.checkout.states import OrderStatus, PaymentStatus
    from carbon.core.clock import utcnow
    from carbon.core.db import db
    from carbon.core.ids import new_public_id
    from carbon.credits.models import Project
    from carbon.organizers.models import Organization

    organization = db.session.scalar(select(Organization).where(Organization.public_id == organization_public_id))
    project = db.session.scalar(select(Project).order_by(Project.id).limit(1))
    now = utcnow()
    order = Order(organization_id=organization.id, project_id=project.id, units=int(Decimal(kg)), kg=Decimal(kg),
                  amount=Decimal(amount), status=OrderStatus.PAID, beneficiary_name=organization.name,
                  purpose="活动碳中和 / event footprint", expires_at=now + timedelta(minutes=15), paid_at=now)
    db.session.add(order)
    db.session.flush()
    trade = new_public_id("T")[-30:]
    db.session.add(Payment(order_id=order.id, provider="wechatpay", out_trade_no=trade, amount=order.amount,
                           status=PaymentStatus.CONFIRMED, transaction_id="42" + trade[-20:], confirmed_at=now))
    db.session.commit()
    return order.public_id


def pdf_text_and_fonts(data: bytes) -> tuple[str, list[dict]]:
    """The text of every page and, per font used, its name and whether its program is embedded."""
    reader = PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    fonts = []
    for page in reader.pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            descendant = font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
            descriptor = descendant["/FontDescriptor"].get_object()
            program = next((descriptor[key].get_object() for key in ("/FontFile2", "/FontFile3", "/FontFile")
                            if key in descriptor), None)
            fonts.append({"name": str(font["/BaseFont"]), "embedded_bytes": len(program.get_data()) if program else 0})
    return text, fonts
