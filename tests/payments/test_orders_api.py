"""Order creation rules: idempotency, minimum charge, validation, scene counters after payment."""
from __future__ import annotations

from decimal import Decimal

from sqlalchemy import func, select

from carbon.accounts.models import User
from carbon.checkout.models import IdempotencyKey, Order, Payment
from carbon.checkout.orders import request_fingerprint
from carbon.core.db import db
from carbon.credits.models import Reservation
from schemas.checkout import OrderIn
from tests.payments.conftest import guest_token, live_scene, seed_project
from tests.payments.test_checkout_e2e import bearer, hook, place_order


def test_minimum_charge_and_price_by_block(live, sandbox):
    seed_project(live.app, price="60.00")
    token = guest_token(live.url, sandbox, "o_small")
    small = place_order(live, token, {"kg": "3"}).json()["order"]  # 3 kg × 60/t = 0.18 → the minimum
    assert (small["kg"], small["amount"]) == ("3.000", "1.00")
    large = place_order(live, token, {"kg": "100.4"}, key="k2").json()["order"]  # 101 units × 0.06
    assert (small["units"], large["units"], large["amount"]) == (3, 101, "6.06")


def test_a_key_still_being_processed_is_409_and_a_failed_attempt_frees_the_key(live, sandbox):
    seed_project(live.app, units=10)
    token = guest_token(live.url, sandbox, "o_keys")
    with live.app.app_context():  # as if a first request with this key and body were still running
        user = db.session.scalar(select(User).where(User.openid == "o_keys"))
        fingerprint = request_fingerprint(OrderIn().load({"kg": "1"}))
        db.session.add(IdempotencyKey(user_id=user.id, key="busy", request_hash=fingerprint))
        db.session.commit()
    busy = place_order(live, token, {"kg": "1"}, key="busy")
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "order.in_progress"

    sold_out = place_order(live, token, {"kg": "11"}, key="retry-me")
    assert sold_out.status_code == 409 and sold_out.json()["error"]["code"] == "credits.sold_out"
    retried = place_order(live, token, {"kg": "11"}, key="retry-me")
    assert retried.status_code == 409 and retried.json()["error"]["code"] == "credits.sold_out"  # not "in progress"
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0
        assert db.session.scalar(select(func.count()).select_from(Reservation)) == 0


def test_a_key_whose_request_died_before_its_order_is_taken_over_by_a_retry(live, sandbox):
    """A server killed between the key's claim and the order's commit leaves a claim with no order
    (tests/reliability/test_scale_out.py found it): the guest's retries answered 409 forever. Once
    the first request is surely over, one retry takes the key and makes the one order."""
    from carbon.checkout.orders import RESUME_AFTER_SECONDS
    from carbon.core.clock import clock

    seed_project(live.app, units=10)
    token = guest_token(live.url, sandbox, "o_dead_claim")
    with live.app.app_context():  # the claim the killed request committed; its order never was
        user = db.session.scalar(select(User).where(User.openid == "o_dead_claim"))
        fingerprint = request_fingerprint(OrderIn().load({"kg": "2"}))
        db.session.add(IdempotencyKey(user_id=user.id, key="orphan", request_hash=fingerprint))
        db.session.add(IdempotencyKey(user_id=user.id, key="other-body", request_hash="0" * 64))
        db.session.commit()
    soon = place_order(live, token, {"kg": "2"}, key="orphan")
    assert soon.status_code == 409 and soon.json()["error"]["code"] == "order.in_progress"
    clock.advance(RESUME_AFTER_SECONDS + 1)
    taken = place_order(live, token, {"kg": "2"}, key="orphan")
    assert taken.status_code == 201, taken.text
    again = place_order(live, token, {"kg": "2"}, key="orphan")
    assert again.status_code == 201 and again.json()["order"]["id"] == taken.json()["order"]["id"]
    reused = place_order(live, token, {"kg": "2"}, key="other-body")  # another body's key is not taken
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "order.idempotency_key_reused"
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1
        assert db.session.scalar(select(func.count()).select_from(IdempotencyKey)
                                 .where(IdempotencyKey.key == "orphan")) == 1


def test_a_request_outlived_by_a_takeover_of_its_key_answers_in_progress(live, sandbox, monkeypatch):
    """The other side: a first request so slow that a retry took its key over makes no order (the
    retry makes it) and answers 409, never 500."""
    from sqlalchemy import delete

    from carbon.checkout import orders

    seed_project(live.app, units=10)
    token = guest_token(live.url, sandbox, "o_outlived")

    def taken_over_meanwhile(user, name):
        with db.engine.begin() as other:  # the retry's commit, on a connection of its own
            other.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == user.id))

    monkeypatch.setattr(orders, "_check_beneficiary", taken_over_meanwhile)
    outlived = place_order(live, token, {"kg": "2"}, key="slow-first")
    assert outlived.status_code == 409 and outlived.json()["error"]["code"] == "order.in_progress", outlived.text
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0
        assert db.session.scalar(select(func.count()).select_from(Reservation)) == 0


def test_order_validation(live, sandbox):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_valid")
    no_key = live.post("/api/v1/orders", json={"kg": "1"}, headers=bearer(token))
    assert no_key.status_code == 422 and no_key.json()["error"]["code"] == "order.idempotency_key_required"
    for body, field in (({}, "kg"), ({"kg": "1", "footprint_id": "fp_x"}, "kg"), ({"kg": "-1"}, "kg"),
                        ({"kg": "1.0001"}, "kg"), ({"kg": "1", "project_id": "prj_none"}, "project_id"),
                        ({"footprint_id": "fp_unknown"}, "footprint_id")):
        response = place_order(live, token, body, key=f"v-{field}-{len(body)}")
        assert response.status_code == 422, (body, response.text)
        assert field in response.json()["error"]["details"]
    assert live.post("/api/v1/orders", json={"kg": "1"}, headers={"Idempotency-Key": "x"}).status_code == 401
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_a_paid_order_from_a_scene_counts_kg_and_money_for_the_organizer(live, sandbox):
    from carbon.organizers.service import Principal
    from carbon.scenes import service as scenes

    project_id = seed_project(live.app, price="60.00")
    with live.app.app_context():
        member, scene_id = live_scene(project_id, "paid1", "o@x.example")
    token = guest_token(live.url, sandbox, "o_scene_payer")
    created = place_order(live, token, {"kg": "50", "scene": "s%3Dpaid1%26c%3Ddoor"}).json()
    assert created["order"]["purpose"].startswith("论坛")
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    with live.app.app_context():
        member = db.session.merge(member)
        stats = scenes.scene_stats(Principal(member.organization, "owner", organizer=member), scene_id)
    door = next(row for row in stats["by_channel"] if row["channel"] == "door")
    assert (door["kg_neutralized"], door["money_raised"]) == (Decimal("50.000"), Decimal("3.00"))
    assert stats["totals"]["money_raised"] == Decimal("3.00")


def test_the_status_a_guest_polls_turns_fulfilled_with_the_certificate_number(live, sandbox):
    """``GET /orders/<id>/status``: what the mini-program polls after paying, one read; the number
    it gives once fulfilled is the order's certificate, and nobody else's order is found."""
    from carbon.certificates.models import Certificate

    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_poller")
    created = place_order(live, token, {"kg": "12"}).json()
    path = f"/api/v1/orders/{created['order']['id']}/status"
    waiting = live.get(path, headers=bearer(token))
    assert waiting.status_code == 200
    assert waiting.json() == {"id": created["order"]["id"], "status": "awaiting_payment", "paid_at": None,
                              "certificate_number": None}

    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    done = live.get(path, headers=bearer(token)).json()
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        number = db.session.scalar(select(Certificate.number).where(Certificate.order_id == order.id))
    assert done["status"] == "fulfilled" and done["certificate_number"] == number and done["paid_at"]
    whole = live.get(f"/api/v1/orders/{created['order']['id']}", headers=bearer(token)).json()["order"]
    assert (whole["status"], whole["paid_at"]) == (done["status"], done["paid_at"])
    certificate = live.get(f"/api/v1/certificates/{number}", headers=bearer(token)).json()
    assert certificate["order_id"] == created["order"]["id"]

    stranger = guest_token(live.url, sandbox, "o_stranger")
    for other in (path, "/api/v1/orders/ord_000000000000/status"):
        refused = live.get(other, headers=bearer(stranger))
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "order.not_found"
    assert live.get(path).status_code == 401


METRO_4_00042_KG = [{"type": "metro", "distance_km": "143.9"}]  # 143.9 × 0.0278 = 4.00042 kg: 4.000 shown


def host_footprint(owner_email: str, request: dict):
    """A new organization's owner (as a principal) and the event footprint it enters (``request``
    without the event's name); in the caller's app context."""
    from carbon.footprint import service as footprints
    from carbon.organizers import service as organizers
    from carbon.organizers.service import Principal
    from schemas.footprint import HostFootprintIn

    owner = organizers.create_organization("组委会", owner_email=owner_email, owner_password="long password",
                                           owner_name="o")
    principal = Principal(owner.organization, "owner", organizer=owner)
    return principal, footprints.create_host(principal, HostFootprintIn().load({"event_name": "年会", **request}))


def test_an_organization_buys_for_its_event_what_the_footprint_says_to_neutralize(app):
    """The host footprint's result says to neutralize 5 kg (4.00042 rounded up); the quote, and the
    order made from it, took 4 units from the total shown to the gram: less than the footprint,
    and not what a guest buying the same footprint pays for."""
    from carbon.checkout import purchases

    seed_project(app)
    with app.app_context():
        principal, footprint = host_footprint("host@forum.example", {"activities": METRO_4_00042_KG})
        assert (footprint.result["total_kg"], footprint.result["neutralize_kg"]) == ("4.000", "5")
        body = {"kind": "host", "footprint_id": footprint.public_id}
        found = purchases.quote(principal, body)
        assert (found.kg, found.units, found.estimated_amount) == (Decimal("4.000"), 5, Decimal("1.00"))
        order, _ = purchases.buy(principal, body, "host-sub-gram")
        assert (order.units, order.kg) == (5, Decimal("5.000"))
        assert order.kg >= sum(Decimal(line["kg"]) for line in footprint.result["lines"])


def test_a_guest_buys_what_the_footprint_says_to_neutralize(live, sandbox):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_sub_gram")
    footprint = live.post("/api/v1/footprints", json={"activities": METRO_4_00042_KG}, headers=bearer(token)).json()
    assert (footprint["total_kg"], footprint["neutralize_kg"]) == ("4.000", "5")
    order = place_order(live, token, {"footprint_id": footprint["id"]}).json()["order"]
    assert (order["kg"], order["units"]) == ("5.000", 5)


def test_the_limits_the_description_gives_for_kg_are_the_ones_an_order_takes(client):
    """OrderIn.kg was described as a bare number: nothing said 0 and 100,000.001 are refused."""
    from marshmallow import ValidationError

    described = client.get("/api/openapi.json").get_json()["components"]["schemas"]["OrderIn"]["properties"]["kg"]
    assert (described["minimum"], described.get("exclusiveMinimum"), described["maximum"]) == (0, True, 100_000)
    assert OrderIn().load({"kg": described["maximum"]})["kg"] == Decimal(100_000)
    for beyond in (described["maximum"] + Decimal("0.001"), described["minimum"]):
        try:
            OrderIn().load({"kg": str(beyond)})
        except ValidationError as refused:
            assert "kg" in refused.messages
        else:
            raise AssertionError(f"{beyond} kg was taken")


def test_an_idempotency_key_with_a_nul_or_control_character_is_refused_naming_the_header(app, client, sandbox):
    """SQLite stored a NUL key and made the order (201); PostgreSQL refused it only when inserting
    (a 422 that named no field). The key is text the service keeps: the text rule applies."""
    seed_project(app)
    token = guest_token(client, sandbox, "o_nul_key")
    for key in ("a\x00b", "a\x07b"):
        refused = client.post("/api/v1/orders", json={"kg": "1"},
                              headers={**bearer(token), "Idempotency-Key": key})
        assert refused.status_code == 422, refused.get_data(as_text=True)
        assert refused.get_json()["error"]["code"] == "order.idempotency_key_required"
        assert "Idempotency-Key" in refused.get_json()["error"]["details"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def test_a_quote_for_more_than_one_order_can_hold_is_refused_as_its_order_would_be(app):
    """A 1,404,000 kg event was quoted (200, an amount to pay) though its order is refused: at most
    MAX_ORDER_KG per order. The quote now answers what the order would."""
    from carbon.checkout import purchases
    from carbon.core.errors import ValidationError

    seed_project(app)
    with app.app_context():
        principal, footprint = host_footprint("big@forum.example", {
            "province": "SC", "activities": [{"type": "venue_electricity", "kwh": 10_000_000}]})
        body = {"kind": "host", "footprint_id": footprint.public_id}
        refused = []
        for attempt in (lambda: purchases.quote(principal, body), lambda: purchases.buy(principal, body, "too-big")):
            try:
                attempt()
            except ValidationError as error:
                refused.append((error.code, error.details))
        assert refused == [("order.too_large", {"kg": ["单笔最多 / At most 100000 kg per order"]})] * 2
        assert db.session.scalar(select(func.count()).select_from(Order)) == 0


def half_kilogram_project(app) -> str:
    """A project sold in 0.5-kg units (``unit_kg`` is the project's), 10,000 of them at 60.00 a tonne."""
    from carbon.credits import service as credits
    from carbon.credits.models import Project

    with app.app_context():
        project = Project(registry_name="CDCER", name_zh="半公斤项目", name_en="Half-kg units", methodology="test",
                          location="成都", price_per_tonne=Decimal("60.00"), unit_kg=Decimal("0.5"))
        db.session.add(project)
        db.session.commit()
        credits.add_block(project.public_id, "2021", 1, 10_000, Decimal("60.00"))
        return project.public_id


def test_a_footprint_is_rounded_up_once_to_the_projects_unit(app, client, sandbox):
    """30.48 kg in 0.5-kg units is 61 units (30.5 kg). Orders and quotes rounded the footprint up to
    whole kilograms first (neutralize_kg, 31) and then to the unit: 62 units, 0.5 kg more than it needs."""
    from carbon.checkout import purchases
    from carbon.footprint import service as footprints
    from carbon.organizers import service as organizers
    from carbon.organizers.service import Principal
    from schemas.footprint import HostFootprintIn

    project_id = half_kilogram_project(app)
    rail = [{"type": "rail", "distance_km": 1000}]  # 30.48 kg
    token = guest_token(client, sandbox, "o_half_kg")
    footprint = client.post("/api/v1/footprints", json={"activities": rail}, headers=bearer(token)).get_json()
    created = client.post("/api/v1/orders", json={"footprint_id": footprint["id"], "project_id": project_id},
                          headers={**bearer(token), "Idempotency-Key": "half-kg"})
    assert created.status_code == 201, created.get_data(as_text=True)
    assert (created.get_json()["order"]["units"], created.get_json()["order"]["kg"]) == (61, "30.500")
    with app.app_context():
        owner = organizers.create_organization("组委会", owner_email="half@forum.example",
                                               owner_password="long password", owner_name="o")
        principal = Principal(owner.organization, "owner", organizer=owner)
        host = footprints.create_host(principal, HostFootprintIn().load({"event_name": "年会", "activities": rail}))
        found = purchases.quote(principal, {"kind": "host", "footprint_id": host.public_id, "project_id": project_id})
        assert (found.units, found.units * found.unit_kg) == (61, Decimal("30.5"))
