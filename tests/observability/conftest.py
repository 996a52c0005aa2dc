"""A guest's whole walk over HTTP against a live service: login (with a scene) → phone → footprint
→ order → pay through the sandbox → certificate, its page and card."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

import requests

from tests.payments.conftest import live, seed_project  # noqa: F401 - the live service fixture


@dataclass
class Walk:
    openid: str
    token: str
    session_key: str
    phone: str
    order_id: str
    certificate: str


def guest_walk(service, sandbox) -> Walk:
    """Walk the guest path once with a fresh openid and phone number; asserts each step worked."""
    seed_project(service.app, units=1000)
    openid = f"o_walk_{secrets.token_hex(6)}"
    phone = f"139{secrets.randbelow(10**8):08d}"
    code = sandbox.hook("login-code", {"openid": openid})["code"]
    login = service.post("/api/v1/auth/login", json={"code": code})
    assert login.status_code == 200, login.text
    token = login.json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    phone_code = sandbox.hook("phone-code", {"openid": openid, "phone_number": phone})["code"]
    bound = service.post("/api/v1/me/phone", json={"code": phone_code}, headers=auth)
    assert bound.status_code == 200, bound.text
    footprint = service.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 1000}]},
                             headers=auth)
    assert footprint.status_code == 201, footprint.text
    created = service.post("/api/v1/orders", json={"footprint_id": footprint.json()["id"], "beneficiary_name": "李四"},
                           headers={**auth, "Idempotency-Key": f"walk-{openid}"})
    assert created.status_code == 201, created.text
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created.json()["request_payment"],
                         timeout=30)
    assert paid.status_code == 200 and paid.json()["notify"]["acknowledged"], paid.text
    order_id = created.json()["order"]["id"]
    assert service.get(f"/api/v1/orders/{order_id}", headers=auth).json()["order"]["status"] == "fulfilled"
    [certificate] = service.get("/api/v1/certificates", headers=auth).json()["items"]
    number = certificate["number"]
    assert service.get(f"/api/v1/certificates/{number}/verify").json()["valid"]
    card = service.get(f"/api/v1/certificates/{number}/card.jpg")
    assert card.status_code == 200 and card.content[:3] == b"\xff\xd8\xff"
    assert service.get(f"/c/{number}").status_code == 200
    session_key = sandbox.state.mp.users[openid].session_key
    assert session_key
    return Walk(openid, token, session_key, phone, order_id, number)
