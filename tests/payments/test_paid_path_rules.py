"""Payment rules found missing when the service was tried from outside: the payer is checked, a
second charge is refunded, bodies that are not text and odd timestamps are 4xx in WeChat Pay's
format, an unverifiable answer from WeChat Pay says so; and limits on what one guest may hold."""
from __future__ import annotations

import base64
import logging
import secrets
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from carbon.checkout.models import InboxEntry, Payment, Refund
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.credits.models import Retirement
from carbon.jobs.models import OutboxEvent
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction
from tests.conftest import ROOT, dispose_app, make_config
from tests.payments.conftest import guest_token, seed_project
from tests.payments.test_checkout_e2e import bearer, counts, hook, place_order

NOTIFY = "/api/v1/payments/wechatpay/notify"
SANDBOX_KEYS = ROOT / "wechat" / "sandbox" / "keys"
PUBLIC_KEY_ID = "PUB_KEY_ID_0114232020220520000000000000000001"


@pytest.fixture
def recorded_logs():
    """What the service logs under ``diandian`` (it does not propagate to the root logger)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    root = logging.getLogger("diandian")
    root.addHandler(handler)
    yield records
    root.removeHandler(handler)


def _paid(live, sandbox, openid: str, kg: str = "10") -> dict:
    token = guest_token(live.url, sandbox, openid)
    created = place_order(live, token, {"kg": kg}, key=f"k-{openid}").json()
    assert hook(sandbox, "request-payment", created["request_payment"]).json()["notify"]["acknowledged"]
    return created


def test_a_second_charge_of_a_paid_order_is_booked_alerted_and_queued_for_refund(live, sandbox, recorded_logs):
    seed_project(live.app)
    created = _paid(live, sandbox, "o_twice")
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    with live.app.app_context():
        first = db.session.scalar(select(Payment.transaction_id).where(Payment.out_trade_no == out_trade_no))
    sent = hook(sandbox, "notify", {"out_trade_no": out_trade_no, "variant": "second_charge"}).json()
    assert sent[0]["status"] == 204  # acknowledged: WeChat Pay must not keep sending it
    with live.app.app_context():
        payment = db.session.scalar(select(Payment).where(Payment.out_trade_no == out_trade_no))
        assert payment.status == "confirmed" and payment.transaction_id == first  # the order's own charge stays
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 10  # nothing retired twice
        refund = db.session.scalar(select(Refund))
        assert refund.cause == "double_charge" and refund.charge_transaction_id != first
        assert refund.amount == Decimal("1.00")
        booked = db.session.scalar(select(LedgerTransaction).where(LedgerTransaction.kind == "double_charge"))
        assert booked.reference == refund.charge_transaction_id
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-1.00")
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("2.00")
        assert db.session.scalar(select(OutboxEvent.payload).where(OutboxEvent.kind == "payment.needs_refund")) == \
            {"refund": refund.public_id}
        assert ledger.unbalanced_transactions() == []
    alerts = [r for r in recorded_logs if r.levelno == logging.ERROR and r.getMessage() == "payment to refund"]
    assert [a.fields["cause"] for a in alerts] == ["double_charge"]


def test_a_second_charge_after_the_guest_deleted_their_account_is_still_booked_and_refunded(live, sandbox):
    """The deleted account's openid is erased, so its payer cannot be compared: the money is booked
    for refund (to whoever paid it) all the same, never left unbooked as a mismatch."""
    seed_project(live.app)
    created = _paid(live, sandbox, "o_twice_gone")
    out_trade_no = created["order"]["payments"][0]["out_trade_no"]
    token = guest_token(live.url, sandbox, "o_twice_gone")
    gone = live.app.test_client().delete("/api/v1/me", json={"confirm": "注销账号"},
                                         headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 204, gone.get_json()
    sent = hook(sandbox, "notify", {"out_trade_no": out_trade_no, "variant": "second_charge"}).json()
    assert sent[0]["status"] == 204
    with live.app.app_context():
        refund = db.session.scalar(select(Refund))
        assert (refund.cause, refund.amount) == ("double_charge", Decimal("1.00"))
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("2.00")
        assert ledger.balance("refund_due:wechatpay", "CNY") == Decimal("-1.00")
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 10
        assert ledger.unbalanced_transactions() == []


def test_a_payment_by_someone_other_than_the_orders_guest_is_refused(live, sandbox):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_owner")
    created = place_order(live, token, {"kg": "3"}).json()
    before = counts(live.app)
    answer = hook(sandbox, "notify", {"out_trade_no": created["order"]["payments"][0]["out_trade_no"],
                                      "variant": "wrong_payer"}).json()[0]
    assert answer["status"] == 400 and "payer" in answer["body"]
    assert counts(live.app) == {**before, "InboxEntry": before["InboxEntry"] + 1}  # kept, failed, for operators


def _signed(body: bytes, timestamp: str | None = None) -> dict[str, str]:
    key = serialization.load_pem_private_key((SANDBOX_KEYS / "wechatpay_private_key.pem").read_bytes(), None)
    timestamp = timestamp or str(int(clock.timestamp()))
    nonce = secrets.token_hex(16)
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {"Content-Type": "application/json", "Wechatpay-Timestamp": timestamp, "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature, "Wechatpay-Serial": PUBLIC_KEY_ID,
            "Wechatpay-Signature-Type": "WECHATPAY2-SHA256-RSA2048"}


def test_a_notify_body_that_is_not_utf8_is_a_400_in_wechat_pays_format(client, recorded_logs):
    body = b'{"id": "\xff\xfe not text"}'
    response = client.post(NOTIFY, data=body, headers=_signed(body))
    assert response.status_code == 400
    assert response.get_json()["code"] == "FAIL" and "error" not in response.get_json()
    lines = [r for r in recorded_logs if r.name.startswith("diandian")]
    assert [(r.getMessage(), r.fields["reason"], r.exc_info) for r in lines] == \
        [("notify rejected", "notify.not_utf8", None)]  # one line, no traceback


def test_notify_answers_are_wechat_pays_format_even_for_size_and_content_type(client):
    huge = b"{" + b" " * (70 * 1024) + b"}"
    too_large = client.post(NOTIFY, data=huge, headers=_signed(huge))
    assert too_large.status_code == 413 and too_large.get_json()["code"] == "FAIL"
    body = b'{"id": "x"}'
    as_text = client.post(NOTIFY, data=body, headers={**_signed(body), "Content-Type": "text/plain"})
    assert as_text.status_code == 401 and as_text.get_json()["code"] == "FAIL"  # checked like any other


@pytest.mark.parametrize("timestamp", ["１７９６１１４０２３", "١٧٩٦١١٤٠٢٣", "²", "-1", "1e9", "", "9" * 5000])
def test_a_timestamp_of_other_digits_is_rejected_not_a_500(client, timestamp):
    body = b'{"id": "x"}'
    response = client.post(NOTIFY, data=body, headers={**_signed(body), "Wechatpay-Timestamp": timestamp})
    assert response.status_code == 401 and response.get_json()["code"] == "FAIL"


HEADER_NAMES = ["Wechatpay-Timestamp", "Wechatpay-Nonce", "Wechatpay-Signature", "Wechatpay-Serial",
                "Wechatpay-Signature-Type", "Content-Type"]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=2048), headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_text))
def test_arbitrary_bytes_and_headers_never_make_the_notify_route_fail(client, body, headers):
    response = client.post(NOTIFY, data=body, headers=headers)
    assert response.status_code in (204, 400, 401), response.data
    if response.status_code != 204:
        assert response.get_json()["code"] == "FAIL"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                       max_size=4), max_leaves=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(envelope=st.dictionaries(st.sampled_from(["id", "event_type", "resource", "resource_type", "summary"]),
                                json_values) | json_values)
def test_properly_signed_nonsense_is_rejected_in_wechat_pays_format(client, envelope):
    import json

    body = json.dumps(envelope).encode()
    response = client.post(NOTIFY, data=body, headers=_signed(body))
    assert response.status_code in (204, 400, 401), response.data
    if response.status_code != 204:
        assert response.get_json()["code"] == "FAIL"
    with client.application.app_context():
        assert db.session.scalar(select(func.count()).select_from(InboxEntry)) == 0


def _sealed(resource: dict, event_type: str = "TRANSACTION.SUCCESS") -> bytes:
    """A notification as WeChat Pay builds it (signed, the resource encrypted with the APIv3 key)."""
    import json

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from carbon.core.settings import SANDBOX_APIV3_KEY

    nonce = secrets.token_hex(6)
    sealed = AESGCM(SANDBOX_APIV3_KEY.encode()).encrypt(nonce.encode(), json.dumps(resource).encode(), b"transaction")
    return json.dumps({"id": f"EV-{secrets.token_hex(8)}", "event_type": event_type, "resource_type": "encrypt-resource",
                       "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext": base64.b64encode(sealed).decode(),
                                    "associated_data": "transaction", "nonce": nonce}}).encode()


field_values = json_values | st.floats(allow_nan=True, allow_infinity=True) | st.text(min_size=300, max_size=400)
PLAUSIBLE = {"out_trade_no": "DD20261202X", "transaction_id": "4200000000000000000000000001", "trade_state": "SUCCESS",
             "appid": "wxd1a2b3c4d5e6f7a8", "mchid": "1900000109", "payer": {"openid": "o_x"},
             "success_time": "2026-12-02T10:00:00+08:00", "out_refund_no": "R1", "refund_id": "5030000001",
             "refund_status": "SUCCESS"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.fixed_dictionaries({name: st.just(value) | field_values for name, value in PLAUSIBLE.items()}),
       total=st.just(100) | field_values,
       event_type=st.sampled_from(["TRANSACTION.SUCCESS", "REFUND.SUCCESS", "REFUND.ABNORMAL"]))
@example(fields=PLAUSIBLE, total=float("inf"), event_type="TRANSACTION.SUCCESS")
@example(fields={**PLAUSIBLE, "out_trade_no": ["DD1"]}, total=100, event_type="TRANSACTION.SUCCESS")
@example(fields={**PLAUSIBLE, "refund_id": {"a": 1}}, total=100, event_type="REFUND.SUCCESS")
def test_signed_and_sealed_nonsense_is_rejected_in_wechat_pays_format(client, fields, total, event_type):
    """Even what only WeChat Pay could send (signed, encrypted) is checked field by field: a 4xx in its
    format, never a 500 (e.g. an amount of 1e999, an order number that is a list)."""
    body = _sealed({**fields, "amount": {"total": total, "refund": total}}, event_type)
    response = client.post(NOTIFY, data=body, headers=_signed(body))
    assert response.status_code in (204, 400, 401), response.data
    if response.status_code != 204:
        assert response.get_json()["code"] == "FAIL"


def test_an_answer_from_wechat_pay_that_fails_its_check_is_named_as_such(database_url, sandbox, tmp_path):
    """Our copy of WeChat Pay's public key is not the key that signs its answers."""
    from app import create_app
    from carbon.checkout.models import Order

    forger = serialization.load_pem_private_key((SANDBOX_KEYS / "forger_private_key.pem").read_bytes(), None)
    wrong_public = tmp_path / "wrong_public.pem"
    wrong_public.write_bytes(forger.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    sandbox.reset()
    app = create_app(make_config(database_url, sandbox.url, WECHATPAY_PUBLIC_KEY_PATH=str(wrong_public)))
    try:
        seed_project(app)
        client = app.test_client()
        token = guest_token(client, sandbox, "o_unverified")
        response = client.post("/api/v1/orders", json={"kg": "2"}, headers={**bearer(token), "Idempotency-Key": "u"})
        assert response.status_code == 502
        error = response.get_json()["error"]
        assert error["code"] == "payment.unavailable"
        assert error["details"] == {"provider": "RESPONSE_UNVERIFIED", "check": "response.bad_signature"}
        with app.app_context():
            payment = db.session.scalar(select(Payment))
            assert payment.status == "failed" and payment.provider_data == {"error": "response.bad_signature"}
            assert db.session.scalar(select(Order.status)) == "canceled"
    finally:
        dispose_app(app)


def test_one_guest_cannot_hold_more_than_a_few_orders_or_too_many_kg(database_url, sandbox):
    from app import create_app

    sandbox.reset()
    app = create_app(make_config(database_url, sandbox.url, MAX_OPEN_ORDERS_PER_GUEST=2, MAX_HELD_KG_PER_GUEST=100))
    try:
        seed_project(app, units=1000)
        client = app.test_client()
        token = guest_token(client, sandbox, "o_hoarder")

        def order(kg: str, key: str):
            return client.post("/api/v1/orders", json={"kg": kg}, headers={**bearer(token), "Idempotency-Key": key})

        assert order("60", "a").status_code == 201
        too_much = order("41", "b")  # 60 + 41 > 100 kg held
        assert too_much.status_code == 409 and too_much.get_json()["error"]["code"] == "order.hold_limit"
        assert too_much.get_json()["error"]["details"]["held_kg"] == "60.000"
        assert order("40", "c").status_code == 201
        third = order("1", "d")  # two open orders already
        assert third.status_code == 409 and third.get_json()["error"]["details"]["open_orders"] == 2
        other = guest_token(client, sandbox, "o_other_guest")
        assert client.post("/api/v1/orders", json={"kg": "1"},
                           headers={**bearer(other), "Idempotency-Key": "e"}).status_code == 201
        clock.advance(16 * 60)  # the holds expired: they count no more, even before the expiry job runs
        requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 16 * 60}, timeout=5)
        assert order("1", "f").status_code == 201
    finally:
        dispose_app(app)


def test_an_expired_hold_never_blocks_another_guest(live, sandbox):
    seed_project(live.app, units=10)
    first = guest_token(live.url, sandbox, "o_first")
    assert place_order(live, first, {"kg": "10"}).status_code == 201
    second = guest_token(live.url, sandbox, "o_second")
    assert place_order(live, second, {"kg": "10"}).json()["error"]["code"] == "credits.sold_out"
    clock.advance(16 * 60)  # nobody ran `flask expire-orders`
    requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 16 * 60}, timeout=5)
    again = place_order(live, second, {"kg": "10"}, key="again")
    assert again.status_code == 201, again.text
    paid = hook(sandbox, "request-payment", again.json()["request_payment"]).json()["notify"]
    assert paid["acknowledged"]
    with live.app.app_context():
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 10


def test_nothing_to_neutralize_cannot_be_ordered(live, sandbox):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_zero")
    footprint = live.post("/api/v1/footprints", headers=bearer(token), json={
        "kind": "life", "province": "SC", "activities": [{"type": "electricity", "kwh_per_month": 0}]}).json()
    assert footprint["neutralize_kg"] == "0", footprint
    refused = place_order(live, token, {"footprint_id": footprint["id"]})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "order.nothing_to_neutralize"
    with live.app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Payment)) == 0


def test_a_beneficiary_name_must_pass_wechats_content_check(live, sandbox):
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_named")
    refused = place_order(live, token, {"kg": "2", "beneficiary_name": "来赌博吧"}, key="bad-name")
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "order.beneficiary_name_rejected"
    fine = place_order(live, token, {"kg": "2", "beneficiary_name": "张三一家"}, key="fine-name")
    assert fine.status_code == 201 and fine.json()["order"]["beneficiary_name"] == "张三一家"


def test_a_certificate_name_is_one_its_pictures_and_receipt_can_print(live, sandbox):
    """Emoji or CJK Extension B in a name would be boxes on the card and missing from the receipt: a
    name given is refused (naming the characters); a nickname taken as the name loses them."""
    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_emoji")
    refused = place_order(live, token, {"kg": "2", "beneficiary_name": "绿色小王🌱 𠮷野家"}, key="emoji")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "order.beneficiary_name_unprintable"
    assert refused.json()["error"]["details"]["beneficiary_name"] == ["🌱𠮷"]
    assert requests.patch(f"{live.url}/api/v1/me", json={"nickname": "绿色小王🌱"}, headers=bearer(token),
                          timeout=30).status_code == 200
    by_nickname = place_order(live, token, {"kg": "2"}, key="nickname")
    assert by_nickname.status_code == 201 and by_nickname.json()["order"]["beneficiary_name"] == "绿色小王"



def test_one_bad_entry_never_blocks_the_rest_of_a_batch(live, sandbox, monkeypatch):
    import dataclasses

    from carbon.checkout import confirmation, inbox
    from carbon.core import extensions as ext

    seed_project(live.app)
    numbers = []
    for n in range(3):
        token = guest_token(live.url, sandbox, f"o_batch_{n}")
        created = place_order(live, token, {"kg": "2"}, key=f"batch-{n}").json()
        assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
        numbers.append(created["order"]["payments"][0]["out_trade_no"])
    real_confirm = confirmation.confirm_many

    def confirm(transactions):
        if any(transaction.out_trade_no == numbers[1] for transaction in transactions):
            raise RuntimeError("a bug in one entry")
        return real_confirm(transactions)

    with live.app.app_context():
        for number in numbers:  # recorded, as workers find them
            transaction = ext.payments().query(number)
            inbox.record("transaction", transaction.transaction_id, number, None, "query",
                         dataclasses.asdict(transaction))
        monkeypatch.setattr(confirmation, "confirm_many", confirm)
        outcomes = inbox.process()
        assert sorted(receipt.outcome for receipt in outcomes.values()) == ["confirmed", "confirmed", "failed"]
        entries = {e.out_trade_no: e for e in db.session.scalars(select(InboxEntry))}
        assert [entries[n].status for n in numbers] == ["done", "pending", "done"]
        assert entries[numbers[1]].last_error == "RuntimeError: a bug in one entry"
        monkeypatch.setattr(confirmation, "confirm_many", real_confirm)
        assert [receipt.outcome for receipt in inbox.process().values()] == ["confirmed"]
        assert db.session.scalar(select(func.count()).select_from(Payment).where(Payment.status == "confirmed")) == 3


def test_one_batch_confirms_refuses_and_books_each_entry_as_if_alone(live, sandbox):
    """A batch mixing a payment, its second charge, a payment for a given-up order and a duplicate:
    each gets the outcome it would get alone (decisions run in the batch's order)."""
    import dataclasses

    from carbon.checkout import inbox
    from carbon.checkout.models import Order
    from carbon.core import extensions as ext

    seed_project(live.app)
    numbers = []
    for n in range(2):
        token = guest_token(live.url, sandbox, f"o_mixed_{n}")
        created = place_order(live, token, {"kg": "2"}, key=f"mixed-{n}").json()
        assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
        numbers.append(created["order"]["payments"][0]["out_trade_no"])
    with live.app.app_context():
        given_up = db.session.scalar(select(Order).join(Payment).where(Payment.out_trade_no == numbers[1]))
        given_up.status, given_up.payments[0].status = "expired", "canceled"
        db.session.commit()
        first, late = (ext.payments().query(number) for number in numbers)
        second = dataclasses.replace(first, transaction_id="4200000000000000000000000001")
        for transaction in (first, second, late):
            inbox.record("transaction", transaction.transaction_id, transaction.out_trade_no, None, "query",
                         dataclasses.asdict(transaction))
        outcomes = inbox.process()
        assert sorted(receipt.outcome for receipt in outcomes.values()) == ["confirmed", "double_charge", "orphaned"]
        assert db.session.scalar(select(func.sum(Retirement.quantity))) == 2
        assert sorted(db.session.scalars(select(Refund.cause))) == ["double_charge", "late_payment"]
        assert ledger.unbalanced_transactions() == []


def test_an_entry_that_did_not_match_is_tried_again_when_delivered_again(live, sandbox):
    import dataclasses

    from carbon.checkout import inbox
    from carbon.core import extensions as ext

    seed_project(live.app)
    token = guest_token(live.url, sandbox, "o_again")
    created = place_order(live, token, {"kg": "2"}).json()
    assert hook(sandbox, "request-payment", {**created["request_payment"], "deliver": False}).status_code == 200
    number = created["order"]["payments"][0]["out_trade_no"]
    with live.app.app_context():
        real = ext.payments().query(number)
        wrong = dataclasses.replace(real, payer_openid="o-someone-else")
        receipt = inbox.receive(wrong, event_id=None, source="query")
        assert (receipt.outcome, receipt.detail) == ("mismatch", "payer")
        entry = db.session.scalar(select(InboxEntry))
        assert (entry.status, entry.last_error) == ("failed", "payer")
        assert inbox.receive(real, event_id=None, source="query").outcome == "confirmed"
        db.session.expire_all()
        assert db.session.scalar(select(func.count()).select_from(InboxEntry)) == 1
        assert db.session.scalar(select(InboxEntry.status)) == "done"
        assert db.session.scalar(select(Payment.status)) == "confirmed"


def test_a_signed_answer_is_verified_over_its_bytes_as_utf8_whatever_its_content_type():
    """WeChat Pay signs the body's bytes. A signed Chinese refusal served as text/plain (which requests
    would decode as ISO-8859-1) is still verified, and reaches the caller as the refusal it is."""
    import json

    import requests as rq
    from requests.adapters import BaseAdapter

    from carbon.core.clock import clock
    from payments.provider import ProviderRefused
    from payments.wechatpay.provider import WeChatPayConfig, WeChatPayV3, sandbox_key
    from wechat.sandbox.config import DEFAULT_CONFIG
    from wechat.sandbox.pay_crypto import load_private_key, signed_headers

    wechat_key = load_private_key(DEFAULT_CONFIG["PAY_PRIVATE_KEY_PEM"])
    key_id = DEFAULT_CONFIG["PAY_PUBLIC_KEY_ID"]
    body = json.dumps({"code": "ORDERPAID", "message": "该订单已支付"}, ensure_ascii=False).encode()

    class Answer(BaseAdapter):
        def send(self, request, **kwargs):
            response = rq.Response()
            response.status_code, response._content, response.url = 403, body, request.url
            response.headers.update({"Content-Type": "text/plain",
                                     **signed_headers(wechat_key, key_id, body, clock.timestamp())})
            response.encoding = rq.utils.get_encoding_from_headers(response.headers)  # as HTTPAdapter does
            response.request = request
            return response

        def close(self):
            pass

    session = rq.Session()
    session.mount("https://", Answer())
    config = WeChatPayConfig(mchid="1900000109", appid="wxd1a2b3c4d5e6f7a8",
                             serial_no="5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
                             private_key_pem=sandbox_key("merchant_private_key.pem"),
                             apiv3_key="diandian-sandbox-apiv3-key-00001", public_key_id=key_id,
                             public_key_pem=sandbox_key("wechatpay_public_key.pem"),
                             api_base="https://api.mch.weixin.qq.com", notify_url="https://x.example/n")
    with pytest.raises(ProviderRefused) as refused:
        WeChatPayV3(config, session=session).close("DD0000000001")
    assert (refused.value.code, refused.value.status, str(refused.value)) == ("ORDERPAID", 403, "该订单已支付")
