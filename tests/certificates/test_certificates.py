"""Certificates: issued once by the order.paid handler on one hash chain, revoked by a refund,
verifiable by anyone — and tampering, deleting or reordering entries is caught."""
from __future__ import annotations

import io
import json
from datetime import datetime

import pytest
from sqlalchemy import func, select, text

from carbon.certificates import service as certificates
from carbon.certificates.models import ChainEntry
from carbon.checkout.models import Order, Refund
from carbon.checkout.operations import refund_order
from carbon.core.db import db
from tests.payments.conftest import guest_token, seed_project
from tests.payments.test_checkout_e2e import bearer, hook, place_order


def paid_order(live, sandbox, openid: str, body: dict) -> tuple[str, dict]:
    token = guest_token(live.url, sandbox, openid)
    created = place_order(live, token, body, key=f"cert-{openid}").json()
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    return token, created["order"]


def tamper(statement: str, params: dict) -> None:
    """Change the chain in SQL, as someone with database access could (on PostgreSQL past its trigger)."""
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text("SET LOCAL session_replication_role = replica"))
    db.session.execute(text(statement), params)
    db.session.commit()


def exported() -> list[str]:
    return list(certificates.chain())


def test_a_paid_order_gets_one_certificate_that_anyone_can_check(live, sandbox):
    project_id = seed_project(live.app, units=1000)
    token = guest_token(live.url, sandbox, "o_cert")
    footprint = live.post("/api/v1/footprints", json={"activities": [{"type": "rail", "distance_km": 1000}]},
                          headers=bearer(token)).json()
    created = place_order(live, token, {"footprint_id": footprint["id"], "beneficiary_name": "张三"}).json()
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    mine = live.get("/api/v1/certificates", headers=bearer(token)).json()["items"]
    assert len(mine) == 1 and mine[0]["order_id"] == created["order"]["id"]
    number = mine[0]["number"]
    assert number == f"DD-{datetime.now().year}-000001"
    record = mine[0]["record"]
    assert (record["kind"], record["kg"], record["prev"]) == ("issue", "31.000", "0" * 64)
    assert mine[0]["beneficiary"] == "张三" and "张三" not in json.dumps(record, ensure_ascii=False)  # off the chain
    assert record["beneficiary_sha256"] == certificates.name_commitment(mine[0]["beneficiary_salt"], "张三")
    assert record["dataset_version"] == footprint["dataset_version"]
    [project] = record["projects"]
    assert (project["id"], project["registry"]) == (project_id, "CDCER")
    assert [(r["vintage"], r["serials"], r["kg"]) for r in project["retirements"]] == [("2021", ["1", "31"], "31.000")]
    assert record["issued_at"].endswith("Z")
    public = live.get(f"/api/v1/certificates/{number}").json()  # no token: the public fields only
    assert public["record"] == record and "order_id" not in public and "o_cert" not in json.dumps(public)
    assert public["hash"] == certificates.digest(record)
    verified = live.get(f"/api/v1/certificates/{number}/verify").json()
    assert verified["valid"] and all(verified["checks"].values())
    page = live.get(f"/c/{number}")
    assert page.status_code == 200 and number in page.text and "张三" in page.text and "链校验通过" in page.text
    assert "1–31" in page.text
    with live.app.app_context():
        order = db.session.scalar(select(Order).where(Order.public_id == created["order"]["id"]))
        assert order.status == "fulfilled"
        assert certificates.check_chain(exported()) is None
    again = hook(sandbox, "notify", {"out_trade_no": created["order"]["payments"][0]["out_trade_no"],
                                     "variant": "normal"}).json()
    assert again[0]["status"] == 204  # a duplicate notify issues nothing
    assert len(live.get("/api/v1/certificates", headers=bearer(token)).json()["items"]) == 1
    assert live.get("/api/v1/certificates/DD-1999-000001").status_code == 404
    assert live.get("/c/DD-1999-000001").status_code == 404


def test_a_refund_revokes_the_certificate_on_the_chain(live, sandbox):
    seed_project(live.app, units=1000)
    _, order = paid_order(live, sandbox, "o_revoked", {"kg": "5"})
    with live.app.app_context():
        number = certificates.mine(db.session.scalar(select(Order.user_id)))[0].number
    card_before = live.get(f"/api/v1/certificates/{number}/card.jpg")
    typed = "买错了，嘉宾电话 13800138000 / bought by mistake"
    with live.app.app_context():
        refund_order(order["id"], typed)
        lines = exported()
        assert [json.loads(json.loads(line)["record"])["kind"] for line in lines] == ["issue", "revoke"]
        assert certificates.check_chain(lines) is None
        # What the operator typed stays with the refund, in private; the public chain never holds it.
        assert db.session.scalar(select(Refund.reason)) == typed[:80]
    assert all("13800138000" not in line and "买错了" not in line for line in lines)
    verified = live.get(f"/api/v1/certificates/{number}/verify").json()
    assert verified["status"] == "revoked" and verified["valid"] is False and all(verified["checks"].values())
    shown = live.get(f"/api/v1/certificates/{number}").json()
    assert shown["status"] == "revoked" and shown["revocation"]["reason"] == "订单已退款 / the order was refunded"
    page = live.get(f"/c/{number}").text
    assert "已撤销" in page and "13800138000" not in page
    # A card shared before the refund must not go on looking valid: it is drawn again, stamped.
    live.app.extensions.pop("diandian.certificate_pictures", None)  # (a process keeps what it read a while)
    card_after = live.get(f"/api/v1/certificates/{number}/card.jpg")
    assert card_after.status_code == 200 and card_after.headers["ETag"] != card_before.headers["ETag"]

    def header_colour(response) -> tuple:
        from PIL import Image

        with Image.open(io.BytesIO(response.content)) as picture:
            return picture.convert("RGB").getpixel((12, 12))

    before, after = header_colour(card_before), header_colour(card_after)
    assert before[1] > before[0] + 60 and after[0] > after[1] + 60  # the green header is now red


def test_a_card_never_draws_a_character_the_font_lacks_from_a_scene_event_or_project_name():
    """A scene, an organization's event or a project may be named with emoji (only the beneficiary's
    name is refused when the font cannot draw it): the card and poster leave them out rather than
    draw boxes, and a name of nothing but emoji gives way to the next one."""
    from carbon.certificates import cards
    from carbon.rendering import unprintable

    record = {"number": "DD-2026-000001", "beneficiary": "嘉宾🎉", "kg": "2.000", "issued_at": "2026-12-01T01:00:00Z",
              "scene": {"name": "🌳绿色论坛🌳", "date": "2026-12-01"},
              "projects": [{"name": "熊猫🐼碳汇", "registry": "CDCER"}]}
    said = cards.facts(record)
    assert unprintable("".join(said.values())) == ""
    assert (said["who"], said["where"], said["project"]) == ("嘉宾", "绿色论坛", "熊猫碳汇（CDCER）")
    only_emoji = cards.facts({**record, "scene": {"name": "🌳🌳", "date": "2026-12-01"}, "event": "年会🎊"})
    assert only_emoji["where"] == "年会"
    assert cards.facts({**record, "scene": None, "event": "🎊"})["where"] == "点点碳中和"


def test_the_page_isolates_a_name_so_its_direction_marks_cannot_reorder_the_claim(live, sandbox):
    """A beneficiary may type a right-to-left override (U+202E: printable, storable); without
    isolation it would turn the rest of the sentence around, the kilograms included ("31.000" read
    "000.13"). The page sets each name (beneficiary, scene, project) in its own <bdi>."""
    seed_project(live.app, units=1000)
    paid_order(live, sandbox, "o_bidi", {"kg": "31", "beneficiary_name": "张三\u202e"})
    with live.app.app_context():
        number = db.session.scalar(select(ChainEntry.number))
    page = live.get(f"/c/{number}").text
    assert page.count("<bdi>张三\u202e</bdi>") == 2  # the Chinese sentence and the English one
    assert "<bdi>测试项目</bdi>" in page and "31.000 kg" in page.split("</bdi>", 1)[1]


@pytest.fixture
def three_certificates(live, sandbox):
    seed_project(live.app, units=1000)
    numbers = []
    for n in range(3):
        paid_order(live, sandbox, f"o_chain_{n}", {"kg": "2"})
    with live.app.app_context():
        numbers = list(db.session.scalars(select(ChainEntry.number).order_by(ChainEntry.seq)))
    return numbers


def test_changing_any_field_is_caught(live, three_certificates):
    with live.app.app_context():
        entry = db.session.get(ChainEntry, 2)
        record = json.loads(entry.record)
        record["kg"] = "200.000"
        tamper("UPDATE certificate_chain SET record = :r WHERE seq = 2",
               {"r": json.dumps(record, ensure_ascii=False, separators=(",", ":"))})
        assert certificates.verify(three_certificates[1])["checks"]["hash"] is False
        assert certificates.check_chain(exported()).startswith(f"entry 2 ({three_certificates[1]})")
        # A forger who also recomputes the hash breaks the next entry's link instead.
        tamper("UPDATE certificate_chain SET hash = :h WHERE seq = 2", {"h": certificates.digest(record)})
        assert certificates.verify(three_certificates[1])["checks"]["next_link"] is False
        assert "entry 3" in certificates.check_chain(exported())


def test_a_record_changed_into_text_that_is_not_json_is_named_not_a_crash(live, three_certificates, tmp_path):
    """A stored record cut short (or otherwise no longer JSON) is a change like any other: verify,
    the page, check_chain and the offline verifier name it, none of them fails with a 500 or a traceback."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    with live.app.app_context():
        tamper("UPDATE certificate_chain SET record = :r WHERE seq = 2",
               {"r": db.session.get(ChainEntry, 2).record[:40]})
        assert certificates.verify(three_certificates[1])["checks"]["hash"] is False
        assert certificates.verify(three_certificates[0])["checks"]["next_link"] is False
        lines = exported()
        assert certificates.check_chain(lines).startswith("entry 2")
    assert live.get(f"/api/v1/certificates/{three_certificates[1]}/verify").json()["valid"] is False
    page = live.get(f"/c/{three_certificates[1]}")
    assert page.status_code == 200 and "链校验失败" in page.text
    export = tmp_path / "chain.jsonl"
    export.write_text("".join(lines), encoding="utf-8")
    checked = subprocess.run([sys.executable, str(ROOT / "docs" / "verify_chain.py"), str(export)], check=False,
                             capture_output=True, text=True)
    assert checked.returncode == 1 and checked.stderr.startswith("line 2") and "Traceback" not in checked.stderr, \
        checked


@pytest.mark.parametrize("shape", ['[1, 2]', '{"projects": 5}', '{"projects": [{"retirements": [{"id": [1]}]}]}',
                                   '{"kind": "issue", "scene": "here", "kg": {"a": 1}, "projects": [7]}'])
def test_a_record_changed_into_json_of_another_shape_is_named_not_a_crash(live, three_certificates, shape):
    """A record rewritten as valid JSON of the wrong shape (a list, a number where a list was, an id
    that is a list) is a change like any other: every reader of it answers, none with a 500; the page
    says the chain fails and shows none of its claims, and no picture is drawn of it."""
    number = three_certificates[1]
    with live.app.app_context():
        tamper("UPDATE certificate_chain SET record = :r WHERE seq = 2", {"r": shape})
        assert certificates.check_chain(exported()).startswith("entry 2")
    verified = live.get(f"/api/v1/certificates/{number}/verify")
    assert verified.status_code == 200 and verified.json()["valid"] is False
    assert verified.json()["checks"]["hash"] is False
    page = live.get(f"/c/{number}")
    assert page.status_code == 200 and "链校验失败" in page.text
    assert live.get(f"/api/v1/certificates/{number}").status_code == 200
    card = live.get(f"/api/v1/certificates/{number}/card.jpg")  # no picture of what it now claims
    assert card.status_code == 409 and card.json()["error"]["code"] == "certificate.record_changed"


def test_deleting_or_reordering_entries_is_caught(live, three_certificates):
    with live.app.app_context():
        lines = exported()
        assert certificates.check_chain(lines) is None
        assert certificates.check_chain([lines[0], lines[2]]).startswith("entry 3 where entry 2 should be")
        assert certificates.check_chain([lines[1], lines[0], lines[2]]) is not None  # two swapped
        tamper("DELETE FROM certificates WHERE number = :n", {"n": three_certificates[1]})
        tamper("DELETE FROM certificate_chain WHERE seq = 2", {})
        assert certificates.verify(three_certificates[2])["checks"]["previous_link"] is False
        assert certificates.check_chain(exported()) is not None


def test_deleting_the_entry_after_a_certificate_is_caught_by_its_next_link(live, three_certificates):
    """The head says the chain goes on past the second entry: with the third deleted, the second's
    verification names its missing next link (not "no next entry yet")."""
    with live.app.app_context():
        assert certificates.verify(three_certificates[1])["valid"] is True
        tamper("DELETE FROM certificates WHERE number = :n", {"n": three_certificates[2]})
        tamper("DELETE FROM certificate_chain WHERE seq = 3", {})
        checks = certificates.verify(three_certificates[1])["checks"]
        assert checks["next_link"] is False and checks["previous_link"] is True and checks["hash"] is True


def test_a_changed_revocation_is_caught_by_verify_and_the_page(live, sandbox):
    """A revocation is an entry of the chain too: its reason rewritten in SQL, verify (and the page)
    no longer say every check passed."""
    seed_project(live.app, units=1000)
    _, order = paid_order(live, sandbox, "o_revocation_changed", {"kg": "2"})
    with live.app.app_context():
        number = db.session.scalar(select(ChainEntry.number))
        refund_order(order["id"], "买错了 / bought by mistake")
        assert all(certificates.verify(number)["checks"].values())
        entry = db.session.get(ChainEntry, 2)
        record = json.loads(entry.record)
        record["reason"] = "伪造 / forged"
        tamper("UPDATE certificate_chain SET record = :r WHERE seq = 2",
               {"r": json.dumps(record, ensure_ascii=False, separators=(",", ":"))})
        verified = certificates.verify(number)
        assert verified["status"] == "revoked" and verified["checks"]["revocation"] is False
        assert "链校验失败" in live.get(f"/c/{number}").text
        # A forger who also recomputes its hash breaks the link of the entry after it instead.
        paid_order(live, sandbox, "o_after_revocation", {"kg": "2"})
        tamper("UPDATE certificate_chain SET hash = :h WHERE seq = 2", {"h": certificates.digest(record)})
        assert certificates.verify(number)["checks"]["revocation"] is False


def test_the_chain_is_append_only_on_postgresql(live, three_certificates, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the append-only trigger guards PostgreSQL")
    from sqlalchemy.exc import DBAPIError

    with live.app.app_context():
        with pytest.raises(DBAPIError, match="append-only"):
            db.session.execute(text("UPDATE certificate_chain SET number = 'x' WHERE seq = 1"))
        db.session.rollback()


def test_the_export_served_in_pages_joins_up(live, three_certificates, monkeypatch):
    import requests

    with live.app.app_context():
        lines = exported()
    monkeypatch.setattr(certificates, "CHAIN_PAGE", 2)  # three entries: a full page, then a short one
    served = requests.get(f"{live.url}/api/v1/certificates/chain.jsonl", timeout=10)
    assert served.status_code == 200 and served.text == "".join(lines) and len(lines) == 3
    monkeypatch.setattr(certificates, "CHAIN_PAGE", 3)  # a full last page: one more read finds none
    assert requests.get(f"{live.url}/api/v1/certificates/chain.jsonl", timeout=10).text == "".join(lines)


def test_the_offline_verifier_in_the_docs_checks_an_export(live, three_certificates, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    with live.app.app_context():
        lines = exported()
    good, bad = tmp_path / "chain.jsonl", tmp_path / "tampered.jsonl"
    good.write_text("".join(lines), encoding="utf-8")
    changed = json.loads(lines[1])
    changed["record"] = changed["record"].replace('"kg":"2.000"', '"kg":"20.000"')
    bad.write_text("".join([lines[0], json.dumps(changed, ensure_ascii=False) + "\n", lines[2]]), encoding="utf-8")
    script = str(ROOT / "docs" / "verify_chain.py")
    ok = subprocess.run([sys.executable, script, str(good)], check=False, capture_output=True, text=True)
    assert ok.returncode == 0 and ok.stdout.startswith("3 entries"), ok
    broken = subprocess.run([sys.executable, script, str(bad)], check=False, capture_output=True, text=True)
    assert broken.returncode != 0 and "line 2" in broken.stderr and "changed" in broken.stderr


def test_the_offline_verifier_says_a_named_certificate_was_revoked_or_is_not_in_the_export(live, sandbox, tmp_path):
    """A stranger checking one certificate (number, name, salt) against an export taken after its refund
    is told it was revoked, not only that it was issued to that name; a number the export does not hold
    is not passed over in silence either."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    seed_project(live.app, units=1000)
    token, order = paid_order(live, sandbox, "o_offline_revoked", {"kg": "2", "beneficiary_name": "李四"})
    paid_order(live, sandbox, "o_offline_after", {"kg": "2"})
    shown = live.get("/api/v1/certificates", headers=bearer(token)).json()["items"][0]
    with live.app.app_context():
        refund_order(order["id"], "活动取消 / event canceled")
        export = tmp_path / "chain.jsonl"
        export.write_text("".join(exported()), encoding="utf-8")
    script = str(ROOT / "docs" / "verify_chain.py")

    def run(*named: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, str(export), *named], check=False, capture_output=True,
                              text=True)

    assert run().returncode == 0  # the chain itself is whole: issue, issue, revoke
    revoked = run(shown["number"], "李四", shown["beneficiary_salt"])
    assert revoked.returncode != 0 and "revoked" in revoked.stderr and "订单已退款 / the order was refunded" in revoked.stderr, \
        revoked
    absent = run(f"DD-{datetime.now().year}-999999", "李四", shown["beneficiary_salt"])
    assert absent.returncode != 0 and "DD-" in absent.stderr and "not in" in absent.stderr, absent


def test_the_guest_is_told_once_when_they_accepted_the_template(live, sandbox):
    import requests
    from sqlalchemy import func

    from carbon.certificates.models import Certificate
    from carbon.jobs.models import OutboxEvent

    seed_project(live.app, units=1000)
    guest_token(live.url, sandbox, "o_pushed")
    requests.post(f"{sandbox.url}/__sandbox__/subscriptions", json={"openid": "o_pushed",
                                                                   "template_id": "TPL_CERT_ISSUED"}, timeout=5)
    paid_order(live, sandbox, "o_pushed", {"kg": "3"})
    paid_order(live, sandbox, "o_silent", {"kg": "3"})  # never accepted: WeChat answers 43101
    messages = requests.get(f"{sandbox.url}/__sandbox__/messages", timeout=5).json()["messages"]
    assert len(messages) == 1
    [message] = messages
    assert (message["touser"], message["template_id"]) == ("o_pushed", "TPL_CERT_ISSUED")
    with live.app.app_context():
        pushed, silent = db.session.scalars(select(Certificate).order_by(Certificate.id)).all()
        assert message["page"] == f"pages/certificate/index?no={pushed.number}"
        assert message["data"]["character_string5"] == {"value": pushed.number}
        assert message["data"]["number2"] == {"value": "3.000"} and message["data"]["amount4"] == {"value": "¥1.00"}
        assert (pushed.push, silent.push) == ("sent", "refused")
        events = db.session.scalars(select(OutboxEvent).where(OutboxEvent.kind == "certificate.issued",
                                                              OutboxEvent.handler.contains("push"))).all()
        assert [(e.status, e.attempts) for e in events] == [("done", 1), ("done", 1)]  # 43101: not retried
        from carbon import jobs

        assert jobs.run_due() == {}
        assert db.session.scalar(select(func.count()).select_from(Certificate)) == 2


def test_the_share_card_and_poster_render_once_with_chinese_text_and_a_code_that_opens_the_certificate(
        live, sandbox):
    import io
    from urllib.parse import parse_qs, urlsplit

    import zxingcpp
    from PIL import Image

    from carbon.certificates.models import CertificateImage

    seed_project(live.app, units=1000, name="成都市大熊猫栖息地碳汇项目")
    paid_order(live, sandbox, "o_card", {"kg": "12", "beneficiary_name": "欧阳娜娜和她的一大家子亲朋好友们一起来"})
    with live.app.app_context():
        number = db.session.scalar(select(ChainEntry.number))
        assert db.session.scalar(select(func.count()).select_from(CertificateImage)) == 0  # none drawn ahead
    card = live.get(f"/api/v1/certificates/{number}/card.jpg")
    assert card.status_code == 200 and card.headers["Content-Type"] == "image/jpeg"
    assert card.headers["Cache-Control"] == "public, max-age=86400" and card.headers["ETag"]
    assert Image.open(io.BytesIO(card.content)).size == (1000, 800)  # 5:4, as onShareAppMessage shows it
    again = live.get(f"/api/v1/certificates/{number}/card.jpg", headers={"If-None-Match": card.headers["ETag"]})
    assert again.status_code == 304 and not again.content
    refused = live.get(f"/api/v1/certificates/{number}/card.jpg", headers={"If-Match": '"another"'})
    assert refused.status_code == 412 and refused.json()["error"]["code"] == "request.precondition_failed"
    assert "public" not in refused.headers.get("Cache-Control", "")  # neither the picture nor cacheable
    poster = live.get(f"/api/v1/certificates/{number}/poster.png")
    image = Image.open(io.BytesIO(poster.content))
    assert poster.status_code == 200 and image.size == (750, 1334)
    [code] = zxingcpp.read_barcodes(image)
    query = parse_qs(urlsplit(code.text).query)
    assert query["scene"] == [number] and query["page"] == ["pages/certificate/index"]
    with live.app.app_context():  # each drawn by its first request, and stored: it is not drawn again
        stored = {row.kind: row for row in db.session.scalars(select(CertificateImage))}
        assert stored["card"].content == card.content and card.headers["ETag"].strip('"') == stored["card"].etag
        assert stored["poster"].content == poster.content and poster.headers["ETag"].strip('"') == stored["poster"].etag
    assert live.get("/api/v1/certificates/DD-1999-000001/card.jpg").status_code == 404


def test_long_names_are_cut_cleanly_and_the_font_draws_them():
    from carbon.certificates import cards
    from carbon.rendering import fit, font_covers

    name = "欧阳娜娜和她的一大家子亲朋好友们一起来" * 3
    face, lines = fit(name, range(64, 35, -4), 1, 840, bold=True)
    assert len(lines) == 1 and lines[0].endswith("…") and face.getlength(lines[0]) <= 840
    assert font_covers(name) and font_covers("碳中和荣誉证书 12.000 kg CO2e · DD-2026-000001（CDCER）")
    record = {"number": "DD-2026-000001", "beneficiary": name, "kg": "12.000", "issued_at": "2026-12-01T01:00:00Z",
              "scene": {"name": "首届中国数字碳中和高峰论坛", "date": "2026-12-01"},
              "projects": [{"name": "成都市大熊猫栖息地碳汇项目", "registry": "CDCER"}]}
    assert cards.render_card(record)[:3] == b"\xff\xd8\xff"  # a JPEG (the layout: docs/images, by eye)


def test_the_kilograms_of_a_large_order_stay_within_the_cards_and_posters_margins(monkeypatch):
    """An organization's top-up runs to five or six digits of kg (MAX_ORDER_KG is 100 000): its
    figure is fitted to the text width like every other line, not drawn past the margins."""
    from carbon.certificates import cards

    drawn: list[tuple] = []
    text_block = cards.text_block

    def measured(draw, x, y, face, lines, fill, anchor="ma"):
        drawn.extend((face, line) for line in lines)
        return text_block(draw, x, y, face, lines, fill, anchor=anchor)

    monkeypatch.setattr(cards, "text_block", measured)
    record = {"number": "DD-2026-000001", "beneficiary": "丙科技有限公司", "kg": "100000.000",
              "issued_at": "2026-12-01T01:00:00Z", "event": "2026 年度客户大会"}
    from carbon.rendering import qr_png

    for render, width in ((cards.render_card, cards.CARD_SIZE[0] - 160),
                          (lambda r: cards.render_poster(r, qr_png("https://example.com/c/x")), cards.POSTER_SIZE[0] - 100)):
        drawn.clear()
        render(record)
        [(face, line)] = [(face, line) for face, line in drawn if "kg CO2e" in line]
        assert line == "100000.000 kg CO2e" and face.getlength(line) <= width, (face.size, face.getlength(line), width)


def test_a_process_draws_one_picture_at_a_time(monkeypatch):
    """Four request threads asking for cards and posters at once: the drawings run one after another
    (each holds a few MB of pixels), and every one is drawn."""
    import threading
    import time

    from carbon.certificates import cards
    from carbon.scenes import poster

    inside, most, lock = [0], [0], threading.Lock()
    text_block = cards.text_block

    def counted(*args, **kwargs):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        time.sleep(0.002)  # long enough for another thread to come in, were it let in
        try:
            return text_block(*args, **kwargs)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(cards, "text_block", counted)
    monkeypatch.setattr(poster, "text_block", counted)
    record = {"number": "DD-2026-000001", "beneficiary": "论坛嘉宾", "kg": "2.000", "issued_at": "2026-12-01T01:00:00Z"}
    from carbon.rendering import qr_png

    png = qr_png("https://example.com/c/DD-2026-000001")
    drawn: list[bytes] = []
    jobs = [lambda: cards.render_card(record), lambda: cards.render_poster(record, png),
            lambda: poster.render_poster_png(title_zh="论坛", title_en=None, code_png=png, instructions_zh="扫码",
                                             instructions_en=None)] * 3
    threads = [threading.Thread(target=lambda job=job: drawn.append(job())) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(drawn) == len(jobs) and all(drawn)
    assert most[0] == 1


def test_the_owner_sees_the_order_behind_a_certificate_and_others_only_the_record(live, sandbox):
    seed_project(live.app, units=100)
    token, order = paid_order(live, sandbox, "o_owner_view", {"kg": "2"})
    other = guest_token(live.url, sandbox, "o_stranger")
    number = live.get("/api/v1/certificates", headers=bearer(token)).json()["items"][0]["number"]
    mine = live.get(f"/api/v1/certificates/{number}", headers=bearer(token)).json()
    assert (mine["order_id"], mine["amount"]) == (order["id"], order["amount"])
    for headers in (bearer(other), {"Authorization": "Bearer forged"}, {}):
        shown = live.get(f"/api/v1/certificates/{number}", headers=headers)
        assert shown.status_code == 200 and {"order_id", "amount", "push"}.isdisjoint(shown.json())


def test_a_card_drawn_meanwhile_by_another_process_is_kept_not_a_500(live, sandbox, monkeypatch):
    """Two first looks at a card (a guest, and a friend it was shared with, on another worker) may
    draw it at once (the forum bench saw 500s): the one stored second keeps the first one's row, once."""
    from sqlalchemy import create_engine

    from carbon.certificates import cards
    from carbon.certificates.models import CertificateImage

    seed_project(live.app, units=1000)
    paid_order(live, sandbox, "o_race", {"kg": "3"})
    with live.app.app_context():
        number = db.session.scalar(select(ChainEntry.number))
    assert live.get(f"/api/v1/certificates/{number}/card.jpg").status_code == 200  # the other one's drawing
    with live.app.app_context():
        theirs = db.session.scalar(select(CertificateImage).where(CertificateImage.kind == "card"))
        row = {c: getattr(theirs, c) for c in ("number", "kind", "etag", "media_type", "content", "created_at")}
        db.session.delete(theirs)
        db.session.commit()
        other = create_engine(live.app.config["SQLALCHEMY_DATABASE_URI"])
        drawn = cards.render_card

        def render_while_another_stores(record):
            with other.begin() as connection:  # the other worker commits its picture first
                connection.execute(CertificateImage.__table__.insert().values(**row))
            return drawn(record)

        monkeypatch.setattr(cards, "render_card", render_while_another_stores)
        live.app.extensions.pop("diandian.certificate_pictures", None)  # nothing kept from before
        etag, media_type, content = certificates.picture(number, "card")
        other.dispose()
        assert (etag, media_type, content) == (row["etag"], "image/jpeg", row["content"])
        assert db.session.scalar(select(func.count()).select_from(CertificateImage)
                                 .where(CertificateImage.kind == "card")) == 1


def test_a_poster_drawn_while_wechat_refused_its_code_gets_the_code_once_wechat_answers(live, sandbox, monkeypatch):
    """A stand-in QR code (WeChat refusing, e.g. 45009 in a burst) is not kept for good: the poster is
    drawn again on a later look, with the mini-program code."""
    import io

    import zxingcpp
    from PIL import Image

    from carbon.core import extensions as ext
    from carbon.core.errors import DomainError

    def codes_in(png: bytes) -> list[str]:
        return [found.text for found in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]

    seed_project(live.app, units=1000)
    paid_order(live, sandbox, "o_poster_later", {"kg": "5"})
    with live.app.app_context():
        number = db.session.scalar(select(ChainEntry.number))
        gateway = type(ext.wechat())
        answering = gateway.wxa_code

        def refusing(self, *args, **kwargs):
            raise DomainError(code="wechat.rate_limited", message="45009")

        monkeypatch.setattr(gateway, "wxa_code", refusing)
        first = certificates.image(number, "poster")
        db.session.commit()
        assert codes_in(first.content) == [f"{ext.settings().PUBLIC_BASE_URL.rstrip('/')}/c/{number}"]
        monkeypatch.setattr(gateway, "wxa_code", answering)
        later = certificates.image(number, "poster")
        db.session.commit()
        [code] = codes_in(later.content)
        assert "wxacode" in code and f"scene={number}" in code
        assert certificates.image(number, "poster").etag == later.etag  # current now: not drawn again
