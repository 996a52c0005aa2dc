"""The console's money pages on a real paid order (the service on a port, WeChat Pay's sandbox
notifying it): orders with their state history, refunds with reasons, inventory, settlement per
project owner with CSV, failed background events and their replay, each for its organization only."""
from __future__ import annotations

import csv
import io

import requests
from sqlalchemy import func, select, update

from carbon import jobs
from carbon.core.db import db
from carbon.credits.models import Project
from carbon.jobs.models import OutboxEvent
from tests.console.conftest import csrf_of, organization, sign_in
from tests.payments.conftest import guest_token, live_scene, seed_project


def test_orders_refunds_inventory_settlement_and_events_belong_to_their_organization(live, sandbox, monkeypatch):
    project_id = seed_project(live.app, units=10_000, price="60.00")
    with live.app.app_context():
        owner, _ = live_scene(project_id, "money1", "a@x.example")
        db.session.execute(update(Project).where(Project.public_id == project_id)
                           .values(owner_organization_id=owner.organization_id))
        db.session.commit()
    organization(live.app, "乙组委会", "b@x.example")
    token = guest_token(live.url, sandbox, "o_money")
    created = live.post("/api/v1/orders", json={"kg": "50", "scene": "s%3Dmoney1%26c%3Ddoor"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "money-1"})
    assert created.status_code == 201, created.text
    order_id = created.json()["order"]["id"]
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created.json()["request_payment"],
                         timeout=30).json()
    assert paid["notify"]["acknowledged"]

    a, b = live.app.test_client(), live.app.test_client()
    assert sign_in(a, "a@x.example", "long password").status_code == 302
    assert sign_in(b, "b@x.example").status_code == 302

    assert order_id in a.get("/console/orders").get_data(as_text=True)
    assert order_id not in b.get("/console/orders").get_data(as_text=True)
    assert b.get(f"/console/orders/{order_id}").status_code == 404
    history = a.get(f"/console/orders/{order_id}").get_data(as_text=True)
    for seen in ("fulfilled", "→ <span class=\"state\">paid</span>", "→ <span class=\"state\">payment</span>",
                 "→ <span class=\"state\">confirmed</span>", paid["transaction_id"]):
        assert seen in history, seen

    projects = a.get("/console/projects").get_data(as_text=True)
    assert f'data-remaining="{project_id}">9950<' in projects

    settlement = a.get("/console/settlement").get_data(as_text=True)
    assert project_id in settlement and "¥2.85" in settlement  # 3.00 less the 5 % platform fee
    rows = list(csv.DictReader(io.StringIO(a.get("/console/settlement.csv").get_data(as_text=True).lstrip("\ufeff"))))
    assert [(row["project"], row["earned"], row["closing_owed"]) for row in rows] == [(project_id, "2.85", "2.85")]
    assert project_id not in b.get("/console/settlement").get_data(as_text=True)
    assert b.get("/console/settlement.csv").get_data(as_text=True).strip("\ufeff").count("\n") == 1  # header only

    from carbon.checkout.operations import refund_order

    with live.app.app_context():
        refund_order(order_id, "嘉宾要求退款 / guest asked")
    refunds = a.get("/console/refunds").get_data(as_text=True)
    assert "嘉宾要求退款 / guest asked" in refunds and order_id in refunds
    assert order_id not in b.get("/console/refunds").get_data(as_text=True)
    assert "退款 / refund" in a.get(f"/console/orders/{order_id}").get_data(as_text=True)

    failing = {"on": True}

    def flaky(payload):
        if failing["on"]:
            raise RuntimeError("registry unreachable")

    monkeypatch.setitem(jobs.HANDLERS, "test.console", {"tests.flaky": flaky})
    with live.app.app_context():
        [ours] = jobs.emit("test.console", {"order": order_id})
        [nobodys] = jobs.emit("test.console", {"order": "ord_nobody"})
        db.session.commit()
        db.session.execute(update(OutboxEvent).where(OutboxEvent.id.in_([ours, nobodys]))
                           .values(status="failed", attempts=jobs.MAX_ATTEMPTS, last_error="RuntimeError: boom"))
        db.session.commit()
    listed = a.get("/console/events").get_data(as_text=True)
    assert f"/console/events/{ours}/replay" in listed and f"/console/events/{nobodys}/replay" not in listed
    assert "/replay" not in b.get("/console/events").get_data(as_text=True)
    refused = b.post(f"/console/events/{ours}/replay", data={"csrf_token": csrf_of(b.get("/console/events"))},
                     follow_redirects=True)
    assert "没有这个失败事件" in refused.get_data(as_text=True)
    failing["on"] = False
    replayed = a.post(f"/console/events/{ours}/replay", data={"csrf_token": csrf_of(a.get("/console/events"))},
                      follow_redirects=True)
    assert f"event {ours}: done" in replayed.get_data(as_text=True)
    with live.app.app_context():
        assert db.session.get(OutboxEvent, ours).status == "done"
        assert db.session.scalar(select(OutboxEvent.status).where(OutboxEvent.id == nobodys)) == "failed"


def test_an_owner_retries_a_refund_wechat_pay_closed_from_the_console(live, sandbox):
    """A failed refund shows a retry button to its organization's owner; the retry is the one rule
    (operations.retry_refund); another organization can neither see nor retry it."""
    from carbon.checkout.models import Refund
    from carbon.checkout.operations import refund_order

    project_id = seed_project(live.app, units=1000, price="60.00")
    with live.app.app_context():
        live_scene(project_id, "retry1", "a@x.example")
    organization(live.app, "乙组委会", "b@x.example")
    token = guest_token(live.url, sandbox, "o_console_retry")
    created = live.post("/api/v1/orders", json={"kg": "50", "scene": "s%3Dretry1%26c%3Ddoor"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "retry-1"})
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created.json()["request_payment"],
                         timeout=30).json()["notify"]["acknowledged"]
    pay_hook = f"{sandbox.url}/__sandbox__/pay"
    assert requests.post(f"{pay_hook}/refund-outcome", json={"status": "CLOSED"}, timeout=5).status_code == 200
    with live.app.app_context():
        refund_order(created.json()["order"]["id"], "买错了")
    requests.post(f"{pay_hook}/notifications/run-due", json={}, timeout=30)
    requests.post(f"{pay_hook}/refund-outcome", json={"status": "SUCCESS"}, timeout=5)
    with live.app.app_context():
        failed = db.session.scalar(select(Refund))
        assert failed.status == "failed"
        failed_id = failed.public_id

    a, b = live.app.test_client(), live.app.test_client()
    assert sign_in(a, "a@x.example", "long password").status_code == 302
    assert sign_in(b, "b@x.example").status_code == 302
    listed = a.get("/console/refunds")
    assert f"/console/refunds/{failed_id}/retry" in listed.get_data(as_text=True)
    other = b.get("/console/refunds")
    assert failed_id not in other.get_data(as_text=True)
    refused = b.post(f"/console/refunds/{failed_id}/retry", data={"csrf_token": csrf_of(other)})
    assert refused.status_code == 302
    assert a.post(f"/console/refunds/{failed_id}/retry", data={}).status_code in (400, 403)  # no form token
    with live.app.app_context():
        assert db.session.scalars(select(Refund.status)).all() == ["failed"]
    retried = a.post(f"/console/refunds/{failed_id}/retry", data={"csrf_token": csrf_of(listed)})
    assert retried.status_code == 302
    assert "已重新发起退款" in a.get("/console/refunds").get_data(as_text=True)
    with live.app.app_context():
        assert db.session.scalars(select(Refund.status).order_by(Refund.id)).all() == ["retried", "processing"]
    again = a.post(f"/console/refunds/{failed_id}/retry", data={"csrf_token": csrf_of(a.get("/console/refunds"))})
    assert again.status_code == 302
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Refund)) == 2


def test_a_project_owner_sees_another_organizations_orders_for_its_credits_but_refunds_none(live, sandbox):
    """The organization owning a project sees the orders placed for its credits through another's
    scene (its settlement), but only the organization the order was placed through may refund it or
    retry its refund: no button, and a forged form changes nothing."""
    from carbon.checkout.models import Order, Refund
    from carbon.checkout.operations import refund_order
    from carbon.invoices.models import InvoiceRequest
    from carbon.organizers.models import Organization, Organizer

    project_id = seed_project(live.app, units=1000, price="60.00")
    with live.app.app_context():
        live_scene(project_id, "owned1", "a@x.example")
    owner_b = organization(live.app, "项目方乙", "b@x.example")
    with live.app.app_context():
        b_id = db.session.scalar(select(Organizer.organization_id).where(Organizer.public_id == owner_b))
        db.session.execute(update(Project).where(Project.public_id == project_id).values(owner_organization_id=b_id))
        db.session.commit()
    token = guest_token(live.url, sandbox, "o_owned")
    created = live.post("/api/v1/orders", json={"kg": "50", "scene": "s%3Downed1%26c%3Ddoor"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "owned-1"})
    order_id = created.json()["order"]["id"]
    assert requests.post(f"{sandbox.url}/__sandbox__/pay/request-payment", json=created.json()["request_payment"],
                         timeout=30).json()["notify"]["acknowledged"]

    a, b = live.app.test_client(), live.app.test_client()
    assert sign_in(a, "a@x.example", "long password").status_code == 302
    assert sign_in(b, "b@x.example").status_code == 302
    refund_path = f"/console/orders/{order_id}/refund"
    assert refund_path in a.get(f"/console/orders/{order_id}").get_data(as_text=True)
    seen_by_b = b.get(f"/console/orders/{order_id}")
    assert seen_by_b.status_code == 200 and refund_path not in seen_by_b.get_data(as_text=True)
    assert refund_path in a.get("/console/orders").get_data(as_text=True)
    listed_for_b = b.get("/console/orders").get_data(as_text=True)
    assert order_id in listed_for_b and refund_path not in listed_for_b
    receipt = b.get(f"/console/orders/{order_id}/receipt.pdf")  # read-only, as the order page
    assert receipt.status_code == 200 and receipt.data.startswith(b"%PDF")
    assert order_id not in b.get("/console/invoices").get_data(as_text=True)  # not B's purchase
    asked = b.post("/console/invoices/request", data={"csrf_token": csrf_of(seen_by_b), "order": order_id})
    assert asked.status_code == 404 and 'data-code="order.not_found"' in asked.get_data(as_text=True)
    with live.app.app_context():
        from carbon.organizers import service as organizers

        b_key = organizers.create_api_key(db.session.get(Organization, b_id), "b owner key", "owner")[1]
    for path in (f"/api/v1/admin/purchases/{order_id}", f"/api/v1/admin/purchases/{order_id}/receipt.pdf"):
        answer = b.get(path, headers={"Authorization": f"Bearer {b_key}"})
        assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "order.not_found"), path
    answer = b.post("/api/v1/admin/invoice-requests", json={"order_id": order_id},
                    headers={"Authorization": f"Bearer {b_key}"})
    assert (answer.status_code, answer.get_json()["error"]["code"]) == (404, "order.not_found")
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(InvoiceRequest)) == 0
    assert b.get(refund_path).status_code == 302
    refused = b.post(refund_path, data={"csrf_token": csrf_of(seen_by_b), "reason": "项目方想退"}, follow_redirects=True)
    assert "只有下单所经的组织可以退款" in refused.get_data(as_text=True)
    with live.app.app_context():
        assert db.session.scalar(select(Order.status).where(Order.public_id == order_id)) == "fulfilled"
        assert db.session.scalar(select(func.count()).select_from(Refund)) == 0

    pay_hook = f"{sandbox.url}/__sandbox__/pay"
    assert requests.post(f"{pay_hook}/refund-outcome", json={"status": "CLOSED"}, timeout=5).status_code == 200
    with live.app.app_context():
        refund_order(order_id, "嘉宾要求退款")
    requests.post(f"{pay_hook}/notifications/run-due", json={}, timeout=30)
    requests.post(f"{pay_hook}/refund-outcome", json={"status": "SUCCESS"}, timeout=5)
    with live.app.app_context():
        failed_id = db.session.scalar(select(Refund.public_id).where(Refund.status == "failed"))
    assert failed_id
    retry_path = f"/console/refunds/{failed_id}/retry"
    assert retry_path in a.get("/console/refunds").get_data(as_text=True)
    listed_for_b = b.get("/console/refunds")
    assert failed_id in listed_for_b.get_data(as_text=True) and retry_path not in listed_for_b.get_data(as_text=True)
    # The reason A typed is A's: B sees the refund, not its reason (neither listed nor in the order's history).
    assert "嘉宾要求退款" in a.get("/console/refunds").get_data(as_text=True)
    assert "嘉宾要求退款" in a.get(f"/console/orders/{order_id}").get_data(as_text=True)
    assert "嘉宾要求退款" not in listed_for_b.get_data(as_text=True)
    seen_again_by_b = b.get(f"/console/orders/{order_id}").get_data(as_text=True)
    assert failed_id in seen_again_by_b and "嘉宾要求退款" not in seen_again_by_b
    assert b.post(retry_path, data={"csrf_token": csrf_of(listed_for_b)}).status_code == 302
    with live.app.app_context():
        assert db.session.scalars(select(Refund.status)).all() == ["failed"]


def test_a_project_owner_neither_lists_nor_replays_failed_events_of_another_organizations_orders(
        live, sandbox, monkeypatch):
    """A failed background event about an order for B's credits placed through A's scene is A's to
    replay: B (the project's owner, who sees the order for its settlement) does not list it, and a
    forged replay is "no such failed event", the event still failed and its handler not run."""
    from carbon.organizers.models import Organizer

    project_id = seed_project(live.app, units=1000, price="60.00")
    with live.app.app_context():
        live_scene(project_id, "evented1", "a@x.example")
    owner_b = organization(live.app, "项目方乙", "b@x.example")
    with live.app.app_context():
        b_id = db.session.scalar(select(Organizer.organization_id).where(Organizer.public_id == owner_b))
        db.session.execute(update(Project).where(Project.public_id == project_id).values(owner_organization_id=b_id))
        db.session.commit()
    token = guest_token(live.url, sandbox, "o_evented")
    created = live.post("/api/v1/orders", json={"kg": "50", "scene": "s%3Devented1%26c%3Ddoor"},
                        headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "evented-1"})
    assert created.status_code == 201, created.text
    order_id = created.json()["order"]["id"]
    ran = []
    monkeypatch.setitem(jobs.HANDLERS, "test.console", {"tests.records": ran.append})
    with live.app.app_context():
        [event] = jobs.emit("test.console", {"order": order_id})
        db.session.commit()
        db.session.execute(update(OutboxEvent).where(OutboxEvent.id == event)
                           .values(status="failed", attempts=jobs.MAX_ATTEMPTS, last_error="RuntimeError: boom"))
        db.session.commit()

    a, b = live.app.test_client(), live.app.test_client()
    assert sign_in(a, "a@x.example", "long password").status_code == 302
    assert sign_in(b, "b@x.example").status_code == 302
    replay_path = f"/console/events/{event}/replay"
    assert b.get(f"/console/orders/{order_id}").status_code == 200  # B sees the order for its credits
    assert replay_path in a.get("/console/events").get_data(as_text=True)
    listed_for_b = b.get("/console/events")
    assert replay_path not in listed_for_b.get_data(as_text=True)
    refused = b.post(replay_path, data={"csrf_token": csrf_of(listed_for_b)}, follow_redirects=True)
    assert "没有这个失败事件" in refused.get_data(as_text=True)
    with live.app.app_context():
        assert db.session.get(OutboxEvent, event).status == "failed"
    assert ran == []
    replayed = a.post(replay_path, data={"csrf_token": csrf_of(a.get("/console/events"))}, follow_redirects=True)
    assert f"event {event}: done" in replayed.get_data(as_text=True)
    assert ran == [{"order": order_id}]
