"""Personal data (PIPL, decision 0014): a guest exports everything held about them and deletes their
account; certificates, retirements, the chain and the ledger keep their integrity; phone numbers are
encrypted at rest and the key rotates; retention periods are enforced by the purge."""
from __future__ import annotations

import base64
import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import func, select, text

from carbon.accounts import phones, privacy
from carbon.accounts.models import AuthSession, User
from carbon.certificates import service as certificates
from carbon.certificates.models import Certificate
from carbon.checkout.models import InboxEntry, Order, Payment
from carbon.checkout.operations import refund_order
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.credits.models import Retirement
from carbon.footprint.models import Footprint
from carbon.ledger import service as ledger
from tests.conftest import ROOT
from tests.payments.conftest import guest_token, seed_project
from tests.payments.test_checkout_e2e import bearer, hook, place_order

KEY_1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="  # base64 of 32 bytes
KEY_2 = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
CONFIRM = {"confirm": "注销账号"}


def bind_phone(service, sandbox, token: str, openid: str, number: str):
    code = requests.post(f"{sandbox.url}/__sandbox__/phone-code", json={"openid": openid, "phone_number": number},
                         timeout=5).json()["code"]
    return service.post("/api/v1/me/phone", json={"code": code}, headers=bearer(token))


def paid_order(live, sandbox, token: str, body: dict, key: str) -> dict:
    created = place_order(live, token, body, key=key).json()
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    return created["order"]


def a_guest_with_everything(live, sandbox, openid: str, name: str) -> dict:
    """A guest with a phone, a footprint and a paid order (its certificate issued) in ``name``."""
    token = guest_token(live.url, sandbox, openid)
    assert bind_phone(live, sandbox, token, openid, "13800138000").status_code == 200
    footprint = live.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 300}]},
                          headers=bearer(token)).json()
    order = paid_order(live, sandbox, token, {"footprint_id": footprint["id"], "beneficiary_name": name},
                       key=f"k-{openid}")
    number = live.get("/api/v1/certificates", headers=bearer(token)).json()["items"][0]["number"]
    return {"token": token, "footprint": footprint["id"], "order": order["id"], "number": number,
            "out_trade_no": order["payments"][0]["out_trade_no"]}


def test_the_export_holds_the_guests_data_and_nothing_of_another(live, sandbox):
    seed_project(live.app, units=1000)
    mine = a_guest_with_everything(live, sandbox, "o_pipl_export", "李四")
    refunded = paid_order(live, sandbox, mine["token"], {"kg": "2"}, key="second")
    with live.app.app_context():
        refund_order(refunded["id"], "买错了")
    other = a_guest_with_everything(live, sandbox, "o_pipl_other", "王五")

    response = live.get("/api/v1/me/export", headers=bearer(mine["token"]))
    assert response.status_code == 200
    exported = response.json()
    assert exported["profile"]["openid"] == "o_pipl_export" and exported["profile"]["phone_number"] == "138****8000"
    assert [f["id"] for f in exported["footprints"]] == [mine["footprint"]]
    assert [o["id"] for o in exported["orders"]] == [mine["order"], refunded["id"]]
    with live.app.app_context():
        project = db.session.scalar(select(Order.project_id).limit(1))
        project_id = db.session.scalar(text("SELECT public_id FROM projects WHERE id = :i"), {"i": project})
    assert [(o["footprint_id"], o["project_id"], o["scene_code"], o["channel"]) for o in exported["orders"]] == [
        (mine["footprint"], project_id, None, None), (None, project_id, None, None)]
    assert all(o["expires_at"] > o["created_at"] for o in exported["orders"])
    assert {p["out_trade_no"] for p in exported["payments"]} == {
        mine["out_trade_no"], refunded["payments"][0]["out_trade_no"]}
    assert [(r["out_trade_no"], r["amount"]) for r in exported["refunds"]] == [
        (refunded["payments"][0]["out_trade_no"], refunded["amount"])]
    assert {r["order_id"] for r in exported["retirements"]} == {mine["order"], refunded["id"]}
    assert [c["number"] for c in exported["certificates"]] == [mine["number"], exported["certificates"][1]["number"]]
    assert exported["certificates"][0]["beneficiary"] == "李四" and exported["certificates"][1]["status"] == "revoked"
    assert len(exported["sessions"]) == 1 and exported["sessions"][0]["client_ip"] == "127.0.0.1"
    text_of = json.dumps(exported, ensure_ascii=False)
    for theirs in ("o_pipl_other", "王五", other["order"], other["footprint"], other["number"], other["out_trade_no"]):
        assert theirs not in text_of  # nothing of the other guest
    with live.app.app_context():
        session = db.session.scalar(select(AuthSession).join(User).where(User.openid == "o_pipl_export"))
        user = db.session.get(User, session.user_id)
        for secret in (session.token_id, mine["token"], user.session_key, user.phone_ciphertext, "13800138000"):
            assert secret not in text_of  # no credential, no full number
    assert live.get("/api/v1/me/export").status_code == 401


def test_deleting_the_account_erases_the_person_and_keeps_the_certificate(live, sandbox, tmp_path):
    seed_project(live.app, units=1000)
    guest = a_guest_with_everything(live, sandbox, "o_pipl_gone", "张三丰")
    second = guest_token(live.url, sandbox, "o_pipl_gone")  # a second device
    number = guest["number"]
    assert requests.patch(f"{live.url}/api/v1/me", json={"nickname": "丰哥"}, headers=bearer(second),
                          timeout=10).status_code == 200
    assert [e["name"] for e in live.get("/api/v1/leaderboards?period=all").json()["entries"]] == ["丰哥"]
    page = live.get(f"/c/{number}")
    card = live.get(f"/api/v1/certificates/{number}/card.jpg")
    assert "张三丰" in page.text and card.status_code == 200
    with live.app.app_context():
        balances = ledger.balances()
        old = db.session.scalar(select(User).where(User.openid == "o_pipl_gone"))
        old_id, old_public_id = old.id, old.public_id
        serials = [(r.first_serial, r.last_serial, r.kg) for r in db.session.scalars(select(Retirement))]

    for body in ({}, {"confirm": "yes"}, {"confirm": "注销"}):
        refused = requests.delete(f"{live.url}/api/v1/me", json=body, headers=bearer(guest["token"]), timeout=10)
        assert refused.status_code == 422 and "confirm" in refused.json()["error"]["details"]
    deleted = requests.delete(f"{live.url}/api/v1/me", json=CONFIRM, headers=bearer(guest["token"]), timeout=10)
    assert deleted.status_code == 204, deleted.text
    for token in (guest["token"], second):  # every session revoked
        assert live.get("/api/v1/me", headers=bearer(token)).status_code == 401

    with live.app.app_context():
        user = db.session.get(User, old_id)
        assert user.openid.startswith("deleted:") and user.deleted_at is not None
        assert (user.unionid, user.session_key, user.nickname, user.avatar_url, user.phone_ciphertext,
                user.phone_country_code) == (None,) * 6
        sessions = list(db.session.scalars(select(AuthSession).where(AuthSession.user_id == old_id)))
        assert len(sessions) == 2 and all(s.revoked_at is not None and s.client_ip is None for s in sessions)
        assert db.session.scalar(select(Footprint).where(Footprint.user_id == old_id)) is None
        order = db.session.scalar(select(Order).where(Order.public_id == guest["order"]))
        assert order.status == "fulfilled" and order.beneficiary_name == "已注销用户" and order.footprint_id is None
        retirements = list(db.session.scalars(select(Retirement)))
        assert [(r.first_serial, r.last_serial, r.kg) for r in retirements] == serials
        assert all(r.beneficiary_name == "已注销用户" and r.beneficiary_user_id == old_id for r in retirements)
        certificate = db.session.scalar(select(Certificate).where(Certificate.number == number))
        assert (certificate.beneficiary_name, certificate.beneficiary_salt, certificate.user_id) == (None, None, old_id)
        assert db.session.scalar(select(Payment.provider_data)) is None
        inbox = [entry.payload for entry in db.session.scalars(select(InboxEntry))]
        assert inbox and "o_pipl_gone" not in json.dumps(inbox)  # WeChat Pay's bodies named the payer
        rows = db.session.execute(text("SELECT * FROM users")).all()
        assert "o_pipl_gone" not in repr(rows) and "张三丰" not in repr(db.session.execute(
            text("SELECT * FROM certificates")).all() + db.session.execute(text("SELECT * FROM orders")).all())
        assert ledger.balances() == balances and ledger.unbalanced_transactions() == []
        chain = list(certificates.chain())
        assert certificates.check_chain(chain) is None and "张三丰" not in "".join(chain)

    verified = live.get(f"/api/v1/certificates/{number}/verify").json()
    assert verified["valid"] and set(verified["checks"]) == {"hash", "previous_link", "next_link", "serials"}
    shown = live.get(f"/api/v1/certificates/{number}")
    assert shown.json()["beneficiary"] == "已注销用户" and shown.json()["beneficiary_salt"] is None
    page = live.get(f"/c/{number}")
    assert page.status_code == 200 and "已注销用户" in page.text and "链校验通过" in page.text
    for public in (shown.text, page.text):
        assert "张三丰" not in public and "o_pipl_gone" not in public
    board = live.get("/api/v1/leaderboards?period=all").json()["entries"]
    assert len(board) == 1 and "丰哥" not in json.dumps(board, ensure_ascii=False)  # the kg stay, the nickname goes
    again = live.get(f"/api/v1/certificates/{number}/card.jpg")
    assert again.status_code == 200 and again.headers["ETag"] != card.headers["ETag"]  # drawn again, without the name

    checked = verify_chain(live, tmp_path)
    assert checked.returncode == 0 and "1 entries, every hash and link checks out" in checked.stdout, checked.stderr

    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_pipl_gone"}, timeout=5).json()
    login = live.post("/api/v1/auth/login", json={"code": code["code"]}).json()
    assert login["created"] is True and login["user"]["id"] != old_public_id  # a new guest, not the old one
    assert live.get("/api/v1/certificates", headers=bearer(login["token"])).json()["items"] == []
    assert live.get("/api/v1/me/export", headers=bearer(login["token"])).json()["orders"] == []


def verify_chain(live, tmp_path, *args: str) -> subprocess.CompletedProcess:
    """docs/verify_chain.py, as a stranger runs it, on the chain the service exports."""
    exported = tmp_path / "chain.jsonl"
    exported.write_bytes(live.get("/api/v1/certificates/chain.jsonl").content)
    return subprocess.run([sys.executable, str(ROOT / "docs" / "verify_chain.py"), str(exported), *args],
                          check=False, capture_output=True, text=True, timeout=60)


def test_the_name_shown_is_checked_against_the_chain(live, sandbox, tmp_path):
    seed_project(live.app, units=1000)
    guest = a_guest_with_everything(live, sandbox, "o_pipl_named", "赵六")
    shown = live.get(f"/api/v1/certificates/{guest['number']}").json()
    assert shown["record"]["beneficiary_sha256"] == certificates.name_commitment(shown["beneficiary_salt"], "赵六")
    checked = verify_chain(live, tmp_path, guest["number"], "赵六", shown["beneficiary_salt"])
    assert checked.returncode == 0 and f"{guest['number']} was issued to 赵六" in checked.stdout, checked.stderr
    forged = verify_chain(live, tmp_path, guest["number"], "赵七", shown["beneficiary_salt"])
    assert forged.returncode != 0 and "is not the name" in forged.stderr
    assert live.get(f"/api/v1/certificates/{guest['number']}/verify").json()["checks"]["beneficiary"] is True
    with live.app.app_context():
        db.session.execute(text("UPDATE certificates SET beneficiary_name = '冒名'"))
        db.session.commit()
    verified = live.get(f"/api/v1/certificates/{guest['number']}/verify").json()
    assert verified["checks"]["beneficiary"] is False and verified["valid"] is False


def test_an_account_with_an_open_order_is_not_deleted(live, sandbox):
    seed_project(live.app, units=1000)
    token = guest_token(live.url, sandbox, "o_pipl_open")
    order = place_order(live, token, {"kg": "3"}, key="open").json()["order"]
    refused = requests.delete(f"{live.url}/api/v1/me", json=CONFIRM, headers=bearer(token), timeout=10)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "account.orders_open"
    assert refused.json()["error"]["details"]["orders"] == [order["id"]]
    assert live.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with live.app.app_context():
        assert db.session.scalar(select(User.deleted_at).where(User.openid == "o_pipl_open")) is None


def test_an_order_in_flight_while_the_account_is_deleted_is_not_made(live, sandbox, monkeypatch):
    """The order request authenticated before the deletion committed; the deletion found no open order
    and erased the account. The order must not be made then (its payer's openid is erased: the money
    would arrive for nobody): the buyer's lock re-reads the account and answers 401."""
    import threading

    from carbon.checkout import orders as orders_module

    seed_project(live.app, units=1000)
    token = guest_token(live.url, sandbox, "o_leaving")
    authenticated, deleted = threading.Event(), threading.Event()
    fingerprint = orders_module.request_fingerprint

    def slow_after_auth(body):  # past authentication, nothing written yet: the deletion commits now
        authenticated.set()
        assert deleted.wait(10)
        return fingerprint(body)

    monkeypatch.setattr(orders_module, "request_fingerprint", slow_after_auth)
    answer = {}
    buyer = threading.Thread(target=lambda: answer.setdefault("order", live.post(
        "/api/v1/orders", json={"kg": "5"}, headers={**bearer(token), "Idempotency-Key": "k1"})))
    buyer.start()
    assert authenticated.wait(10)
    gone = requests.delete(live.url + "/api/v1/me", json=CONFIRM, headers=bearer(token), timeout=10)
    deleted.set()
    buyer.join(20)
    assert gone.status_code == 204, gone.text
    refused = answer["order"]
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "auth.invalid_token", refused.text
    with live.app.app_context():
        user_id = db.session.scalar(select(User.id).where(User.deleted_at.is_not(None)))
        assert db.session.scalar(select(func.count()).select_from(Order).where(Order.user_id == user_id)) == 0
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 0
        assert ledger.unbalanced_transactions() == []


@pytest.fixture
def app_config(database_url, sandbox):
    from tests.conftest import make_config

    return make_config(database_url, sandbox.url, PHONE_KEYS=KEY_1)


def raw_phone(openid: str) -> str:
    return db.session.execute(text("SELECT phone_ciphertext FROM users WHERE openid = :o"), {"o": openid}).scalar()


def test_phone_numbers_are_encrypted_at_rest_never_logged_and_the_key_rotates(app, app_config, client, login,
                                                                               sandbox, caplog):
    from app import create_app

    caplog.set_level(logging.DEBUG)
    token, _ = login("o_pipl_phone")
    bound = bind_phone(client, sandbox, token, "o_pipl_phone", "13912345678")
    assert bound.status_code == 200 and bound.get_json()["phone_number"] == "139****5678"
    with app.app_context():
        stored = raw_phone("o_pipl_phone")
        user = db.session.scalar(select(User).where(User.openid == "o_pipl_phone"))
        assert stored.startswith(f"v1.{phones.key_id(base64.b64decode(KEY_1))}.")
        assert "13912345678" not in stored and phones.unseal(stored, user.public_id) == "13912345678"
        with pytest.raises(phones.PhoneUnreadable):  # bound to its row: copied to another user, it does not open
            phones.unseal(stored, "usr_someone_else")
    assert "13912345678" not in caplog.text

    rotated = create_app({**app_config, "PHONE_KEYS": f"{KEY_2},{KEY_1}"})
    try:
        rotated_client = rotated.test_client()
        assert rotated_client.get("/api/v1/me", headers=bearer(token)).get_json()["phone_number"] == "139****5678"
        result = rotated.test_cli_runner().invoke(args=["pii", "rotate"])
        assert result.exit_code == 0 and "1 re-encrypted" in result.output, result.output
        with rotated.app_context():
            again = raw_phone("o_pipl_phone")
            assert again.startswith(f"v1.{phones.key_id(base64.b64decode(KEY_2))}.") and again != stored
            assert phones.rotate() == {"rotated": 0, "current": 1, "failed": 0, "changed": 0}
    finally:
        with rotated.app_context():
            db.session.remove()
            db.engine.dispose()
    only_new = create_app({**app_config, "PHONE_KEYS": KEY_2})  # the old key dropped: the number still opens
    try:
        assert only_new.test_client().get("/api/v1/me", headers=bearer(token)).get_json()["phone_number"] == \
            "139****5678"
    finally:
        with only_new.app_context():
            db.session.remove()
            db.engine.dispose()


def test_a_number_under_a_dropped_key_reads_as_none_and_the_guest_keeps_working(app, app_config, client, login,
                                                                                sandbox, caplog):
    """The old key dropped before ``pii rotate`` ran (or the row altered): /me, a fresh login and the
    export still answer 200, the number reads as none, and the log names the account, never a number."""
    import requests

    from app import create_app

    token, _ = login("o_pipl_lost_key")
    assert bind_phone(client, sandbox, token, "o_pipl_lost_key", "13912345678").status_code == 200
    caplog.set_level(logging.INFO)
    only_new = create_app({**app_config, "PHONE_KEYS": KEY_2})
    try:
        served = only_new.test_client()
        me = served.get("/api/v1/me", headers=bearer(token))
        assert me.status_code == 200 and me.get_json()["phone_number"] is None and me.get_json()["has_phone"]
        code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_pipl_lost_key"},
                             timeout=5).json()["code"]
        again = served.post("/api/v1/auth/login", json={"code": code})
        assert again.status_code == 200 and again.get_json()["user"]["phone_number"] is None
        exported = served.get("/api/v1/me/export", headers=bearer(token))
        assert exported.status_code == 200 and exported.get_json()["profile"]["phone_number"] is None
        with only_new.app_context():
            assert phones.rotate() == {"rotated": 0, "current": 0, "failed": 1, "changed": 0}
            db.session.execute(text("UPDATE users SET phone_ciphertext = 'v1' WHERE openid = 'o_pipl_lost_key'"))
            db.session.commit()
            assert phones.rotate() == {"rotated": 0, "current": 0, "failed": 1, "changed": 0}
        assert served.get("/api/v1/me", headers=bearer(token)).get_json()["phone_number"] is None
    finally:
        with only_new.app_context():
            db.session.remove()
            db.engine.dispose()
    unreadable = [r for r in caplog.records if r.getMessage() == "phone number unreadable"]
    assert len(unreadable) >= 4 and all(r.levelno == logging.ERROR for r in unreadable)
    assert {r.fields["reason"] for r in unreadable} == {"PhoneKeyMissing", "PhoneUnreadable"}
    assert "13912345678" not in caplog.text and "5678" not in caplog.text


def test_rotation_never_writes_back_a_number_erased_or_bound_again_meanwhile(app, app_config, monkeypatch):
    """``pii rotate`` reads a batch, then re-encrypts: an account deleted (its number erased) between
    the two keeps no number; only rows still holding what was read are written."""
    import threading

    from app import create_app

    with app.app_context():
        user = User(openid="o_rotate_race")
        db.session.add(user)
        db.session.flush()
        user.phone_ciphertext, user.phone_country_code = phones.seal("13912345678", user.public_id), "86"
        db.session.commit()
        user_id = user.id
    rotated = create_app({**app_config, "PHONE_KEYS": f"{KEY_2},{KEY_1}"})
    unseal = phones.unseal

    def delete_meanwhile(stored, owner):  # DELETE /me, served by another worker while the batch is open
        monkeypatch.setattr(phones, "unseal", unseal)

        def delete() -> None:
            with rotated.app_context():
                privacy.delete_account(db.session.get(User, user_id))
                db.session.remove()
        worker = threading.Thread(target=delete)
        worker.start()
        worker.join(30)
        return unseal(stored, owner)

    monkeypatch.setattr(phones, "unseal", delete_meanwhile)
    try:
        with rotated.app_context():
            assert phones.rotate() == {"rotated": 0, "current": 0, "failed": 0, "changed": 1}
            db.session.remove()
            deleted_at, stored = db.session.execute(text("SELECT deleted_at, phone_ciphertext FROM users WHERE id = :i"),
                                                    {"i": user_id}).one()
            assert deleted_at is not None and stored is None
    finally:
        with rotated.app_context():
            db.session.remove()
            db.engine.dispose()


def test_existing_plain_numbers_are_encrypted_by_the_migration(tmp_path):
    from flask_migrate import downgrade, upgrade

    from app import create_app

    app = create_app({"ENV": "testing", "DATABASE_URL": f"sqlite:///{tmp_path}/m.sqlite3", "LOG_REQUESTS": False,
                      "PHONE_KEYS": KEY_1})
    with app.app_context():
        upgrade(revision="9e86211314dc")
        db.session.execute(text("INSERT INTO users (public_id, openid, phone_number, created_at) "
                                "VALUES ('usr_m1', 'o_m1', '13700001111', '2026-11-30 00:00:00')"))
        db.session.commit()
        upgrade(revision="3b9f6c1e2d8a")
        stored = db.session.execute(text("SELECT phone_ciphertext FROM users")).scalar()
        assert "13700001111" not in stored and phones.unseal(stored, "usr_m1") == "13700001111"
        downgrade(revision="9e86211314dc")
        assert db.session.execute(text("SELECT phone_number FROM users")).scalar() == "13700001111"
        db.engine.dispose()


def test_the_purge_removes_exactly_what_is_past_its_retention(app):
    from carbon.organizers.models import OrganizerSession
    from carbon.organizers.service import create_organization

    now = datetime(2027, 6, 1, 4, 0, tzinfo=UTC)
    day, second = timedelta(days=1), timedelta(seconds=1)
    past_sessions = now - privacy.SESSION_DAYS * day
    past_bodies = now - privacy.PROVIDER_BODY_DAYS * day
    past_failed = now - privacy.FAILED_PROVIDER_BODY_DAYS * day
    with app.app_context():
        project_id = seed_project(app, units=10)
        from carbon.credits.models import Project

        user = User(openid="o_pipl_purge")
        organizer = create_organization("组委会", owner_email="p@forum.example", owner_password="long password",
                                        owner_name="p")
        db.session.add(user)
        db.session.flush()
        sessions = {  # name: (expires_at, revoked_at)
            "expired_past": (past_sessions - second, None), "expired_within": (past_sessions + second, None),
            "revoked_past": (now + day, past_sessions - second), "revoked_within": (now + day, past_sessions + second),
            "live": (now + day, None)}
        for name, (expires, revoked) in sessions.items():
            db.session.add(AuthSession(token_id=f"g-{name}", user_id=user.id, created_at=expires - 7 * day,
                                       expires_at=expires, revoked_at=revoked, client_ip="10.0.0.1"))
            db.session.add(OrganizerSession(token_id=f"o-{name}", organizer_id=organizer.id,
                                            created_at=expires - day, expires_at=expires, revoked_at=revoked))
        project = db.session.scalar(select(Project).where(Project.public_id == project_id))
        confirmed = {"paid_past": past_bodies - second, "paid_within": past_bodies + second}
        for n, (name, at) in enumerate(confirmed.items()):
            order = Order(project=project, user_id=user.id, units=1, kg=Decimal(1), amount=Decimal("1.00"),
                          beneficiary_name="x", purpose="x", expires_at=at, status="fulfilled")
            db.session.add(Payment(order=order, provider="wechatpay", out_trade_no=name, amount=Decimal("1.00"),
                                   status="confirmed", transaction_id=f"t{n}", confirmed_at=at,
                                   provider_data={"payer": {"openid": "o_pipl_purge"}}))
        entries = {"done_past": ("done", past_bodies - second), "done_within": ("done", past_bodies + second),
                   "failed_within": ("failed", past_bodies - day), "failed_past": ("failed", past_failed - second),
                   "pending_old": ("pending", past_failed - day)}
        for name, (status, received) in entries.items():
            db.session.add(InboxEntry(provider="wechatpay", kind="transaction", event_id=name, external_id=name,
                                      out_trade_no="paid_past", source="notify", status=status, received_at=received,
                                      payload={"payer_openid": "o_pipl_purge"}))
        db.session.commit()

        clock.set(now)
        result = app.test_cli_runner().invoke(args=["pii", "purge"])
        assert result.exit_code == 0, result.output
        assert result.output.strip() == "purged: 2 guest sessions, 2 organizer sessions, 3 WeChat Pay bodies"
        assert sorted(db.session.scalars(select(AuthSession.token_id))) == [
            "g-expired_within", "g-live", "g-revoked_within"]
        assert sorted(db.session.scalars(select(OrganizerSession.token_id))) == [
            "o-expired_within", "o-live", "o-revoked_within"]
        kept = dict(db.session.execute(select(Payment.out_trade_no, Payment.provider_data)).all())
        assert kept == {"paid_past": None, "paid_within": {"payer": {"openid": "o_pipl_purge"}}}
        assert sorted(db.session.scalars(select(InboxEntry.event_id))) == ["done_within", "failed_within",
                                                                           "pending_old"]
        assert str(privacy.purge()) == "purged: 0 guest sessions, 0 organizer sessions, 0 WeChat Pay bodies"
