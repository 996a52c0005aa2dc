"""The organizer API's receipts and invoices: the same rules as the console, in the error envelope."""
from __future__ import annotations

import csv
import io

from carbon.organizers import service as organizers
from tests.invoices.conftest import organization_paid_order, pdf_text_and_fonts
from tests.payments.conftest import seed_project

ADMIN = "/api/v1/admin"
PASSWORD = "correct horse battery staple"
USCC = "91350100M000100Y43"


def _org(app, client, tag: str) -> dict:
    with app.app_context():
        owner = organizers.create_organization(f"{tag}科技有限公司", owner_email=f"owner@{tag}.test",
                                               owner_password=PASSWORD, owner_name="o")
        public_id = owner.organization.public_id
    token = client.post(f"{ADMIN}/auth/login", json={"email": f"owner@{tag}.test", "password": PASSWORD}
                        ).get_json()["token"]
    owner_headers = {"Authorization": f"Bearer {token}"}
    key = client.post(f"{ADMIN}/api-keys", json={"name": "finance", "role": "staff"}, headers=owner_headers).get_json()
    return {"id": public_id, "owner": owner_headers, "staff": {"Authorization": f"Bearer {key['key']}"}}


def _error(response) -> tuple[int, str]:
    return response.status_code, response.get_json()["error"]["code"]


def test_profile_requests_outcomes_export_and_receipts_through_the_api(app, client):
    seed_project(app)
    a, b = _org(app, client, "甲"), _org(app, client, "乙")
    with app.app_context():
        order = organization_paid_order(a["id"], amount="88.80")
        other = organization_paid_order(a["id"], amount="10.00")

    assert _error(client.get(f"{ADMIN}/invoice-profile", headers=a["owner"])) == (404, "invoice.profile_not_found")
    bad = client.put(f"{ADMIN}/invoice-profile", json={"title": "甲科技有限公司", "tax_id": "91350100M000100Y44"},
                     headers=a["owner"])
    assert _error(bad) == (422, "validation_error") and "校验位" in bad.get_json()["error"]["details"]["tax_id"][0]
    assert _error(client.put(f"{ADMIN}/invoice-profile", json={"title": "甲科技有限公司", "tax_id": USCC},
                             headers=a["staff"])) == (403, "auth.owner_required")
    assert _error(client.post(f"{ADMIN}/invoice-requests", json={"order_id": order}, headers=a["staff"])) == (
        409, "invoice.profile_missing")
    saved = client.put(f"{ADMIN}/invoice-profile", json={"title": "甲科技有限公司", "tax_id": USCC.lower()},
                       headers=a["owner"])
    assert saved.status_code == 200 and saved.get_json()["tax_id"] == USCC

    made = client.post(f"{ADMIN}/invoice-requests", json={"order_id": order}, headers=a["staff"])
    assert made.status_code == 201, made.get_json()
    request = made.get_json()
    assert (request["order_id"], request["amount"], request["status"], request["title"], request["refunded"]) == (
        order, "88.80", "requested", "甲科技有限公司", False)
    assert _error(client.post(f"{ADMIN}/invoice-requests", json={"order_id": order}, headers=a["owner"])) == (
        409, "invoice.already_requested")
    assert _error(client.post(f"{ADMIN}/invoice-requests", json={"order_id": order}, headers=b["owner"])) == (
        404, "order.not_found")

    issue = f"{ADMIN}/invoice-requests/{request['id']}/issue"
    assert _error(client.post(issue, json={"fapiao_number": "12345678"}, headers=a["staff"])) == (
        403, "auth.owner_required")
    assert _error(client.post(issue, json={"fapiao_number": "12345678"}, headers=b["owner"])) == (
        404, "invoice.not_found")
    future = client.post(issue, json={"fapiao_number": "12345678", "issued_on": "2999-01-01"}, headers=a["owner"])
    assert _error(future) == (422, "validation_error") and "issued_on" in future.get_json()["error"]["details"]
    issued = client.post(issue, json={"fapiao_number": "12345678", "issued_on": "2026-11-30"}, headers=a["owner"])
    assert issued.status_code == 200 and (issued.get_json()["status"], issued.get_json()["issued_on"]) == (
        "issued", "2026-11-30")
    assert _error(client.post(f"{ADMIN}/invoice-requests/{request['id']}/reject", json={"reason": "晚了"},
                              headers=a["owner"])) == (409, "invoice.transition_refused")

    client.post(f"{ADMIN}/invoice-requests", json={"order_id": other}, headers=a["owner"])
    listed = client.get(f"{ADMIN}/invoice-requests?status=issued", headers=a["staff"]).get_json()["items"]
    assert [item["id"] for item in listed] == [request["id"]]
    assert len(client.get(f"{ADMIN}/invoice-requests", headers=a["staff"]).get_json()["items"]) == 2
    assert client.get(f"{ADMIN}/invoice-requests", headers=b["owner"]).get_json()["items"] == []
    assert _error(client.get(f"{ADMIN}/invoice-requests?status=paid", headers=a["owner"])) == (422, "validation_error")
    exported = client.get(f"{ADMIN}/invoice-requests.csv", headers=a["staff"])
    assert exported.mimetype == "text/csv" and exported.data.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(exported.data.decode("utf-8-sig"))))
    assert [(row["订单 / order"], row["金额 / amount (CNY)"], row["发票号码 / fapiao number"]) for row in rows] == [
        (order, "88.80", "12345678"), (other, "10.00", "")]
    assert client.get(f"{ADMIN}/invoice-requests.csv", headers=b["owner"]).data.decode("utf-8-sig").count("\n") == 1

    receipt = client.get(f"{ADMIN}/purchases/{order}/receipt.pdf", headers=a["staff"])
    assert receipt.status_code == 200 and receipt.mimetype == "application/pdf"
    text, fonts = pdf_text_and_fonts(receipt.data)
    assert "甲科技有限公司" in text and order in text and "¥88.80" in text and fonts
    assert _error(client.get(f"{ADMIN}/purchases/{order}/receipt.pdf", headers=b["owner"])) == (
        404, "order.not_found")
