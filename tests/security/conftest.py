"""One world for the security matrix: two organizations (owner and staff each, a live scene each),
two guests with footprints, orders, payments, a refund and a certificate, a failed background event.

It is built once per backend (module scope: the matrix sends a few thousand requests and most of
them write nothing) on the live service of the payment tests, since WeChat Pay's sandbox must
notify a real URL. Tests that end a session or an account make their own guest or member.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import select, update

from tests.conftest import TEST_REDIS_URL
from tests.payments.conftest import guest_token, live_scene, seed_project, serve

PASSWORD = "long password"  # what live_scene gives the owners
METRICS_TOKEN = "metrics-token-for-the-security-matrix"
FAILING_KIND = "test.security"


@dataclass
class Org:
    tag: str
    id: str = ""
    owner: str = ""
    staff: str = ""
    scene: str = ""
    code: str = ""
    key_id: str = ""
    api_key: str = ""
    host_footprint: str = ""  # the organization's own purchase (A only): its host footprint,
    purchase: str = ""  # the paid Native order for it,
    invoice_request: str = ""  # and the fapiao request on that order


@dataclass
class Guest:
    openid: str
    token: str = ""
    user_id: str = ""
    footprint: str = ""
    orders: list[str] = field(default_factory=list)
    trade_nos: list[str] = field(default_factory=list)
    certificate: str = ""
    awaiting: str = ""  # an order awaiting payment, and its wx.requestPayment package (prepay_id=...)
    package: str = ""
    refund: str = ""  # the refund of the second order


@dataclass
class World:
    url: str
    app: object
    sandbox: object
    a: Org
    b: Org
    alice: Guest  # a guest of A's scene: two paid orders (one refunded) and a certificate
    bob: Guest  # a guest with a footprint of his own
    project: str = ""
    event: int = 0  # a failed outbox event about alice's first order

    def client(self):
        return self.app.test_client()

    def scene_string(self, org: Org, channel: str = "door") -> str:
        return f"s%3D{org.code}%26c%3D{channel}"


@pytest.fixture(scope="module")
def world(database_url, sandbox):
    from carbon import jobs

    redis_url = TEST_REDIS_URL
    _flush(redis_url)
    with pytest.MonkeyPatch.context() as patch, \
            serve(database_url, sandbox, METRICS_TOKEN=METRICS_TOKEN, REDIS_URL=redis_url,
                  SCREEN_STREAM_SECONDS=1) as live:
        patch.setitem(jobs.HANDLERS, FAILING_KIND, {"tests.always_fails": _always_fails})
        yield _build(live, sandbox)
    _flush(redis_url)


def _flush(redis_url: str) -> None:
    if redis_url:
        import redis

        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        client.close()


def _always_fails(payload) -> None:
    raise RuntimeError("registry unreachable")


def _build(live, sandbox) -> World:
    from carbon import jobs
    from carbon.checkout.models import Order, Payment, Refund
    from carbon.checkout.operations import refund_order
    from carbon.core.db import db
    from carbon.credits.models import Project
    from carbon.jobs.models import OutboxEvent
    from carbon.organizers import service as organizers
    from carbon.organizers.models import Organizer

    world = World(live.url, live.app, sandbox, Org("a"), Org("b"), Guest("o_sec_alice"), Guest("o_sec_bob"))
    world.project = seed_project(live.app, units=10_000, price="60.00")
    with live.app.app_context():
        for org in (world.a, world.b):
            org.code = f"sec{org.tag}1"
            org.owner, org.staff = f"owner@{org.tag}.sec.test", f"staff@{org.tag}.sec.test"
            owner, org.scene = live_scene(world.project, org.code, org.owner)
            organizers.add_member(owner.organization, email=org.staff, password=PASSWORD,
                                  display_name=f"Staff {org.tag}", role="staff")
            org.id = owner.organization.public_id
            key, org.api_key = organizers.create_api_key(owner.organization, f"key {org.tag}", "owner")
            org.key_id = key.public_id
        first = db.session.scalar(select(Organizer).where(Organizer.email == world.a.owner))
        db.session.execute(update(Project).where(Project.public_id == world.project)
                           .values(owner_organization_id=first.organization_id))
        db.session.commit()

    client = live.app.test_client()
    for guest in (world.alice, world.bob):
        guest.token = guest_token(client, sandbox, guest.openid)
        headers = {"Authorization": f"Bearer {guest.token}"}
        guest.user_id = client.get("/api/v1/me", headers=headers).get_json()["id"]
        created = client.post("/api/v1/footprints", headers=headers, json={
            "kind": "event", "scene": world.scene_string(world.a),
            "activities": [{"type": "rail", "distance_km": 1000}]})
        assert created.status_code == 201, created.get_json()
        guest.footprint = created.get_json()["id"]
    alice = {"Authorization": f"Bearer {world.alice.token}"}
    for n, body in enumerate(({"footprint_id": world.alice.footprint, "scene": world.scene_string(world.a)},
                              {"kg": "20", "scene": world.scene_string(world.a)})):
        created = client.post("/api/v1/orders", json=body, headers={**alice, "Idempotency-Key": f"sec-{n}"})
        assert created.status_code == 201, created.get_json()
        world.alice.orders.append(created.get_json()["order"]["id"])
        paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment",
                             json=created.get_json()["request_payment"], timeout=30).json()
        assert paid["notify"]["acknowledged"], paid
    unpaid = client.post("/api/v1/orders", json={"kg": "10", "scene": world.scene_string(world.a)},
                         headers={**alice, "Idempotency-Key": "sec-unpaid"})
    assert unpaid.status_code == 201, unpaid.get_json()
    world.alice.awaiting = unpaid.get_json()["order"]["id"]
    world.alice.package = unpaid.get_json()["request_payment"]["package"]
    certificates = client.get("/api/v1/certificates", headers=alice).get_json()["items"]
    assert len(certificates) == 2, certificates
    world.alice.certificate = next(c["number"] for c in certificates if c["order_id"] == world.alice.orders[0])
    with live.app.app_context():
        refund_order(world.alice.orders[1], "安全测试退款 / security matrix refund")
        world.alice.refund = db.session.scalar(select(Refund.public_id))
        world.alice.trade_nos = list(db.session.scalars(
            select(Payment.out_trade_no).join(Order).where(
                Order.public_id.in_([*world.alice.orders, world.alice.awaiting]))))
        [world.event] = jobs.emit(FAILING_KIND, {"order": world.alice.orders[0]})
        db.session.commit()
        db.session.execute(update(OutboxEvent).where(OutboxEvent.id == world.event)
                           .values(status="failed", attempts=jobs.MAX_ATTEMPTS, last_error="RuntimeError: boom"))
        db.session.commit()
    _buy_for_a(client, sandbox, world.a)
    return world


def _buy_for_a(client, sandbox, org: Org) -> None:
    """A buys its own host footprint through the admin API (owner key), the sandbox pays the
    Native code, and A asks for a fapiao on it."""
    auth = {"Authorization": f"Bearer {org.api_key}"}
    made = client.post("/api/v1/admin/footprints", headers=auth, json={
        "scene": org.scene, "province": "SC", "activities": [{"type": "venue_electricity", "kwh": 100}]})
    assert made.status_code == 201, made.get_json()
    org.host_footprint = made.get_json()["id"]
    bought = client.post("/api/v1/admin/purchases", json={"kind": "host", "footprint_id": org.host_footprint},
                         headers={**auth, "Idempotency-Key": "sec-purchase"})
    assert bought.status_code == 201, bought.get_json()
    org.purchase = bought.get_json()["order"]
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": bought.get_json()["code_url"]},
                         timeout=30).json()
    assert paid["notify"]["acknowledged"], paid
    profile = client.put("/api/v1/admin/invoice-profile", headers=auth,
                         json={"title": "甲组委会", "tax_id": "91350100M000100Y43"})
    assert profile.status_code == 200, profile.get_json()
    asked = client.post("/api/v1/admin/invoice-requests", headers=auth, json={"order_id": org.purchase})
    assert asked.status_code == 201, asked.get_json()
    org.invoice_request = asked.get_json()["id"]
