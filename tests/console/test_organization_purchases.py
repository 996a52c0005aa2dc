"""Organizations buy (issue 15): the event's own footprint from the factor dataset, a top-up quoted
from the scene's estimate and progress, organization orders paid by WeChat Pay Native through the
same checkout (the service on a port, the sandbox scanning the code and notifying it), the
certificate on the chain, the organization's board apart from the guests', and permissions."""
from __future__ import annotations

import base64
import csv
import re
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from carbon.checkout.operations import refund_order
from carbon.core.db import db
from tests.console.conftest import PASSWORD, csrf_of, organization, sign_in
from tests.payments.conftest import guest_token, live_scene, seed_project

FACTORS = Path(__file__).parents[2] / "carbon" / "footprint" / "data" / "cn-2025.1" / "factors.csv"
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
_CODE_URL = re.compile(r'data-code-url="([^"]*)"')
_QR = re.compile(r'src="data:image/png;base64,([^"]+)"')
EVENT_FORM = {"province": "SC", "kwh": "1200", "meals": "300", "diet": "vegetarian", "paper_kg": "25.5",
              "plastic_kg": "4", "travel_mode_1": "rail", "travel_km_1": "1500", "travel_people_1": "4",
              "travel_round_1": "on", "hotel_nights": "2", "hotel_rooms": "3"}


def factor(key: str) -> Decimal:
    with FACTORS.open(encoding="utf-8") as handle:
        return next(Decimal(row["value"]) for row in csv.DictReader(handle) if row["key"] == key)


def test_the_event_footprint_is_quantities_times_the_dataset_factors():
    from carbon.footprint import dataset
    from carbon.footprint.activities import Context
    from carbon.footprint.calculator import calculate
    from schemas.footprint import HostFootprintIn

    body = HostFootprintIn().load({"event_name": "年会", "province": "SC", "activities": [
        {"type": "venue_electricity", "kwh": 1200}, {"type": "catering", "count": 300, "diet": "vegetarian"},
        {"type": "material", "material": "paper", "kg": "25.5"}, {"type": "material", "material": "plastic", "kg": 4},
        {"type": "rail", "distance_km": 1500, "passengers": 4, "round_trip": True},
        {"type": "hotel", "nights": 2, "rooms": 3}]})
    result = calculate("host", body["activities"], Context(province="SC"), dataset.load())
    expected = (1200 * factor("grid.cn.province.sichuan") + 300 * factor("meal.vegetarian")
                + Decimal("25.5") * factor("paper.mixed.primary") + 4 * factor("plastic.avg.primary")
                + 1500 * 2 * 4 * factor("rail.cn.hsr.full_process") + 2 * 3 * factor("hotel.cn.room_night"))
    assert result["total_exact"] == expected
    assert [line["factor"].key for line in result["lines"]] == [
        "grid.cn.province.sichuan", "meal.vegetarian", "paper.mixed.primary", "plastic.avg.primary",
        "rail.cn.hsr.full_process", "hotel.cn.room_night"]
    with pytest.raises(Exception, match="material"):  # only materials the dataset has a factor for
        HostFootprintIn().load({"event_name": "x", "activities": [{"type": "material", "material": "steel", "kg": 1}]})


def warm_access_token(app) -> None:
    """SQLite: the access-token store writes on its own connection, so take the token before the
    inline outbox batch (which renders the poster, fetching a mini-program code) holds the write lock."""
    from carbon.core import extensions as ext

    with app.app_context():
        assert ext.wechat().wxa_code("warm-up")


def _quote_form(page: str) -> dict:
    return dict(_HIDDEN.findall(page))


def _buy(client, quote_page: str):
    """Press the quote's pay button; returns the payment page."""
    form = _quote_form(quote_page)
    bought = client.post("/console/buy/orders", data=form)
    assert bought.status_code == 302, bought.get_data(as_text=True)[:500]
    return client.get(bought.headers["Location"]).get_data(as_text=True), form


def _scan_and_pay(sandbox, pay_page: str) -> dict:
    from carbon.rendering import qr_png

    code_url = _CODE_URL.search(pay_page).group(1)
    assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
    assert base64.b64decode(_QR.search(pay_page).group(1)) == qr_png(code_url)  # the QR code is the code_url
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": code_url}, timeout=30).json()
    assert paid["notify"]["acknowledged"], paid
    return paid


def test_an_organizer_buys_the_event_footprint_and_a_top_up_by_native(live, sandbox):
    from carbon.leaderboards import service as leaderboards
    from carbon.ledger import service as ledger
    from carbon.ledger import settlement
    from carbon.scenes.models import Scene

    project_id = seed_project(live.app, units=100_000, price="60.00")
    with live.app.app_context():
        owner, scene_id = live_scene(project_id, "orgbuy1", "owner@forum.example")
        db.session.execute(update(Scene).where(Scene.public_id == scene_id).values(expected_attendance=200))
        db.session.commit()
        organization_id, organization_name = owner.organization.id, owner.organization.name
    for openid, km in (("o_guest_1", 300), ("o_guest_2", 500)):
        token = guest_token(live.url, sandbox, openid)
        saved = live.post("/api/v1/footprints", json={"kind": "event", "scene": "s%3Dorgbuy1%26c%3Ddoor",
                                                      "activities": [{"type": "rail", "distance_km": km}]},
                          headers={"Authorization": f"Bearer {token}"})
        assert saved.status_code == 201, saved.text
    paid_by_guest = live.post("/api/v1/orders", json={"kg": "20", "scene": "s%3Dorgbuy1%26c%3Ddoor"},
                              headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "guest-orgbuy-1"})
    assert paid_by_guest.status_code == 201, paid_by_guest.text
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment",
                         json=paid_by_guest.json()["request_payment"], timeout=30).json()["notify"]["acknowledged"]

    console = live.app.test_client()
    assert sign_in(console, "owner@forum.example", "long password").status_code == 302
    buy_page = console.get("/console/buy")
    saved = console.post("/console/buy/event", data={**EVENT_FORM, "scene": scene_id,
                                                    "csrf_token": csrf_of(buy_page)})
    assert saved.status_code == 302, saved.get_data(as_text=True)[:800]
    quote_page = console.get(saved.headers["Location"]).get_data(as_text=True)
    assert "grid.cn.province.sichuan" in quote_page and "paper.mixed.primary" in quote_page
    pay_page, _ = _buy(console, quote_page)
    _scan_and_pay(sandbox, pay_page)
    order_id = re.search(r"<code>(ord_[^<]+)</code>", pay_page).group(1)
    state = console.get(f"/console/buy/orders/{order_id}/state.json").get_json()
    assert (state["status"], state["paid"], state["code_url"]) == ("fulfilled", True, None)
    number = state["certificate"]
    verified = live.get(f"/api/v1/certificates/{number}/verify").json()
    assert verified["valid"] and all(verified["checks"].values()), verified
    shown = live.get(f"/api/v1/certificates/{number}").json()
    assert shown["beneficiary"] == organization_name and "order_id" not in shown
    assert shown["record"]["scene"]["id"] == scene_id

    # the top-up: the scene's estimate minus what guests and organizations neutralized, shown first
    with live.app.app_context():
        progress = leaderboards.progress(db.session.get(Scene, db.session.scalar(
            select(Scene.id).where(Scene.public_id == scene_id))))
    quote = console.get(f"/console/buy/quote?kind=top_up&scene={scene_id}")
    quote_page = quote.get_data(as_text=True)
    remaining = progress["estimated_kg"] - progress["neutralized_kg"]
    assert remaining > 0
    assert f'data-kg="{remaining}"' in quote_page
    assert f'data-quote="estimated_kg">{progress["estimated_kg"]}<' in quote_page
    pay_page, form = _buy(console, quote_page)
    replay = console.post("/console/buy/orders", data=form)  # the same key again: the same order
    assert replay.headers["Location"].endswith(re.search(r"<code>(ord_[^<]+)</code>", pay_page).group(1))
    _scan_and_pay(sandbox, pay_page)

    with live.app.app_context():
        scene = db.session.scalar(select(Scene).where(Scene.public_id == scene_id))
        after = leaderboards.progress(scene)
        assert after["neutralized_kg"] >= after["estimated_kg"] and after["percent"] >= Decimal("100.0")
        retired = ledger.balance(f"retired:organization:{organization_id}", "kg")
        owed = -ledger.balance(settlement.payable_account(project_id), "CNY")
        from carbon.checkout.models import Order

        bought = db.session.scalars(select(Order).where(Order.organization_id == organization_id)).all()
        guest_paid = db.session.scalar(select(Order.amount).where(Order.user_id.is_not(None)))
    assert len(bought) == 2 and all(order.user_id is None for order in bought)
    assert retired == sum(order.kg for order in bought)
    fee_rate = Decimal(live.app.config.get("PLATFORM_FEE_RATE", "0.05"))
    from carbon.core.units import cny
    assert owed == sum(amount - cny(amount * fee_rate) for amount in [guest_paid, *(o.amount for o in bought)])

    # ranked apart: the organization on its board, the guests on theirs
    orgs = live.get(f"/api/v1/leaderboards?scene={scene_id}&board=organizations").json()
    guests = live.get(f"/api/v1/leaderboards?scene={scene_id}").json()
    assert [(e["name"], e["kg"]) for e in orgs["entries"]] == [(organization_name, str(retired))]
    assert orgs["board"] == {**orgs["board"], "kind": "organizations", "participants": 1}
    assert organization_name not in [e["name"] for e in guests["entries"]] and len(guests["entries"]) == 1
    assert guests["progress"] == orgs["progress"]

    orders_page = console.get("/console/orders").get_data(as_text=True)
    assert orders_page.count("组织 / Organization ·") == 2


def test_another_organization_cannot_see_or_buy_for_the_scene_and_staff_cannot_pay(live, sandbox):
    from carbon.organizers import service as organizers

    project_id = seed_project(live.app)
    with live.app.app_context():
        owner, scene_id = live_scene(project_id, "orgbuy2", "a2@forum.example")
        organizers.add_member(owner.organization, email="staff2@forum.example", password=PASSWORD,
                              display_name="staff", role="staff")
        db.session.commit()
    organization(live.app, "乙公司", "b2@corp.example")
    a, b, staff = (live.app.test_client() for _ in range(3))
    assert sign_in(a, "a2@forum.example", "long password").status_code == 302
    assert sign_in(b, "b2@corp.example").status_code == 302
    assert sign_in(staff, "staff2@forum.example").status_code == 302

    assert scene_id not in b.get("/console/buy").get_data(as_text=True)
    assert b.get(f"/console/buy/quote?kind=top_up&scene={scene_id}").status_code == 404
    assert b.get(f"/console/buy/quote?kind=group&scene={scene_id}&attendees=5").status_code == 404
    token = csrf_of(b.get("/console/buy"))
    assert b.post("/console/buy/orders", data={"kind": "group", "scene": scene_id, "attendees": "5",
                                               "idempotency_key": "b-steals-1", "csrf_token": token}).status_code == 404
    saved = b.post("/console/buy/event", data={**EVENT_FORM, "scene": scene_id, "csrf_token": token})
    assert saved.status_code == 404

    saved = a.post("/console/buy/event", data={**EVENT_FORM, "csrf_token": csrf_of(a.get("/console/buy")),
                                               "event_name": "甲年会"})
    footprint_id = parse_qs(urlsplit(saved.headers["Location"]).query)["footprint_id"][0]
    assert b.get(f"/console/buy/quote?kind=host&footprint_id={footprint_id}").status_code == 404
    quote_page = staff.get(f"/console/buy/quote?kind=host&footprint_id={footprint_id}").get_data(as_text=True)
    assert "仅组织所有者可以付款" in quote_page and 'id="pay-native"' not in quote_page
    form = {**_quote_form(a.get(f"/console/buy/quote?kind=host&footprint_id={footprint_id}").get_data(as_text=True))}
    assert staff.post("/console/buy/orders", data={**form, "csrf_token": csrf_of(staff.get("/console/buy"))}
                      ).status_code == 403
    pay_page, _ = _buy(a, a.get(f"/console/buy/quote?kind=host&footprint_id={footprint_id}").get_data(as_text=True))
    order_id = re.search(r"<code>(ord_[^<]+)</code>", pay_page).group(1)
    assert b.get(f"/console/buy/orders/{order_id}").status_code == 404
    assert b.get(f"/console/buy/orders/{order_id}/state.json").status_code == 404
    assert order_id not in b.get("/console/orders").get_data(as_text=True)
    assert staff.get(f"/console/buy/orders/{order_id}/state.json").get_json()["status"] == "awaiting_payment"


def test_a_company_without_scenes_buys_for_a_named_event(live, sandbox):
    from carbon.certificates import cards
    seed_project(live.app)
    organization(live.app, "丙科技有限公司", "c3@corp.example")
    warm_access_token(live.app)
    console = live.app.test_client()
    assert sign_in(console, "c3@corp.example").status_code == 302
    saved = console.post("/console/buy/event", data={"event_name": "2026 年度客户大会", "province": "BJ", "kwh": "800",
                                                    "meals": "120", "csrf_token": csrf_of(console.get("/console/buy"))})
    assert saved.status_code == 302
    pay_page, _ = _buy(console, console.get(saved.headers["Location"]).get_data(as_text=True))
    _scan_and_pay(sandbox, pay_page)
    order_id = re.search(r"<code>(ord_[^<]+)</code>", pay_page).group(1)
    number = console.get(f"/console/buy/orders/{order_id}/state.json").get_json()["certificate"]
    shown = live.get(f"/api/v1/certificates/{number}").json()
    assert (shown["beneficiary"], shown["record"]["event"], shown["record"]["scene"]) == \
        ("丙科技有限公司", "2026 年度客户大会", None)
    assert live.get(f"/api/v1/certificates/{number}/verify").json()["valid"]
    card = live.get(f"/api/v1/certificates/{number}/card.jpg")
    assert card.headers["Content-Type"] == "image/jpeg" and card.content[:3] == b"\xff\xd8\xff"
    assert cards.facts({**shown["record"], "beneficiary": shown["beneficiary"]})["where"] == "2026 年度客户大会"
    page = live.get(f"/c/{number}").text  # the page names the event too, as the card does
    assert "（<bdi>2026 年度客户大会</bdi>）" in page and "at <bdi>2026 年度客户大会</bdi>" in page
    listed = console.get("/console/buy").get_data(as_text=True)
    assert number in listed and "已撤销" not in listed
    with live.app.app_context():
        refund_order(order_id, "活动取消 / event canceled")
    assert re.search(rf"{number}</code></a> · 丙科技有限公司 · <span class=\"revoked\">已撤销 / Revoked</span>",
                     console.get("/console/buy").get_data(as_text=True))  # its list says so, as the page does


def test_an_order_has_exactly_one_buyer(app):
    from carbon.checkout.models import Order
    from carbon.core.clock import utcnow

    project_id = seed_project(app)
    with app.app_context():
        from carbon.credits.models import Project

        project = db.session.scalar(select(Project.id).where(Project.public_id == project_id))
        row = {"public_id": "ord_nobody", "project_id": project, "units": 1, "kg": 1, "amount": 1, "currency": "CNY",
               "status": "created", "beneficiary_name": "x", "purpose": "x", "created_at": utcnow(),
               "expires_at": utcnow()}
        with pytest.raises(IntegrityError):
            db.session.execute(insert(Order.__table__).values(**row))
        db.session.rollback()


def test_the_admin_api_buys_the_same_way_with_an_owner_key(live, sandbox):
    """For machines: a host footprint, its quote, the order (an owner's key; the same key again is
    the same order; a staff key is refused), the sandbox paying the code_url, the state with the
    certificate, another organization's order not found."""
    project_id = seed_project(live.app)
    with live.app.app_context():
        from carbon.organizers import service as organizers

        owner, scene_id = live_scene(project_id, "orgbuy4", "a4@forum.example")
        _, owner_key = organizers.create_api_key(owner.organization, "finance", "owner")
        _, staff_key = organizers.create_api_key(owner.organization, "ops", "staff")
        other = organizers.create_organization("丁", owner_email="d4@corp.example", owner_password=PASSWORD,
                                               owner_name="d")
        _, other_key = organizers.create_api_key(other.organization, "x", "owner")
        db.session.commit()
    warm_access_token(live.app)
    auth = {"Authorization": f"Bearer {owner_key}"}
    made = live.post("/api/v1/admin/footprints", headers=auth, json={"scene": scene_id, "province": "SC", "activities": [
        {"type": "venue_electricity", "kwh": 500}, {"type": "material", "material": "paper", "kg": 10}]})
    assert made.status_code == 201, made.text
    assert (made.json()["kind"], made.json()["event_name"]) == ("host", "论坛")
    expected = 500 * factor("grid.cn.province.sichuan") + 10 * factor("paper.mixed.primary")
    assert Decimal(made.json()["total_kg"]) == expected.quantize(Decimal("0.001"))
    body = {"kind": "host", "footprint_id": made.json()["id"]}
    quoted = live.post("/api/v1/admin/purchases/quote", headers=auth, json=body).json()
    assert (quoted["kg"], quoted["footprint_id"], quoted["scene"]) == (made.json()["total_kg"], made.json()["id"], scene_id)
    refused = live.post("/api/v1/admin/purchases", json=body,
                        headers={"Authorization": f"Bearer {staff_key}", "Idempotency-Key": "api-1"})
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "auth.owner_required")
    bought = live.post("/api/v1/admin/purchases", json=body, headers={**auth, "Idempotency-Key": "api-1"})
    assert bought.status_code == 201, bought.text
    again = live.post("/api/v1/admin/purchases", json=body, headers={**auth, "Idempotency-Key": "api-1"})
    assert again.json()["order"] == bought.json()["order"] and again.json()["code_url"] == bought.json()["code_url"]
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": bought.json()["code_url"]},
                         timeout=30).json()
    assert paid["notify"]["acknowledged"]
    state = live.get(f"/api/v1/admin/purchases/{bought.json()['order']}", headers=auth).json()
    assert (state["status"], state["paid"], state["code_url"]) == ("fulfilled", True, None)
    assert live.get(f"/api/v1/certificates/{state['certificate']}/verify").json()["valid"]
    hidden = live.get(f"/api/v1/admin/purchases/{bought.json()['order']}",
                      headers={"Authorization": f"Bearer {other_key}"})
    assert (hidden.status_code, hidden.json()["error"]["code"]) == (404, "order.not_found")
    stolen = live.post("/api/v1/admin/purchases/quote", json=body, headers={"Authorization": f"Bearer {other_key}"})
    assert (stolen.status_code, stolen.json()["error"]["code"]) == (404, "footprint.not_found")
