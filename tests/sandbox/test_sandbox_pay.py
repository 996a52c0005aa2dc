"""WeChat Pay API v3 side of the sandbox, driven by a tiny client written here from the protocol.

The client signs with the merchant's private key and checks every answer with the WeChat Pay
public key (both read from payments/wechatpay/sandbox_keys/ as plain files). Notifications go to a
small HTTP receiver run by the test.
"""
from __future__ import annotations

import base64
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from werkzeug.serving import make_server
from werkzeug.wrappers import Request as WsgiRequest
from werkzeug.wrappers import Response as WsgiResponse

import wechat.sandbox
from wechat.sandbox.config import DEFAULT_CONFIG
from wechat.sandbox.testing import LiveSandbox, QuietRequestHandler

REPO_ROOT = Path(wechat.sandbox.__file__).resolve().parent.parent.parent
CLIENT_KEYS = REPO_ROOT / "payments" / "wechatpay" / "sandbox_keys"
MERCHANT_KEY = serialization.load_pem_private_key((CLIENT_KEYS / "merchant_private_key.pem").read_bytes(), None)
WECHATPAY_PUBLIC_KEY = serialization.load_pem_public_key((CLIENT_KEYS / "wechatpay_public_key.pem").read_bytes())
FORGER_KEY = serialization.load_pem_private_key(
    (Path(wechat.sandbox.__file__).parent / "keys" / "forger_private_key.pem").read_bytes(), None
)
MCHID, MERCHANT = next(iter(DEFAULT_CONFIG["PAY_MERCHANTS"].items()))
APPID, SERIAL, APIV3_KEY = MERCHANT["appid"], MERCHANT["serial_no"], MERCHANT["apiv3_key"]
PUBLIC_KEY_ID = DEFAULT_CONFIG["PAY_PUBLIC_KEY_ID"]
SCHEME = "WECHATPAY2-SHA256-RSA2048"
JSAPI = "/v3/pay/transactions/jsapi"
REFUNDS = "/v3/refund/domestic/refunds"
RFC3339_BEIJING = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00")
SCHEDULE = DEFAULT_CONFIG["PAY_RETRY_SCHEDULE"]


# ---- the tiny client ----------------------------------------------------------------------


def rsa_sign(key: Any, message: bytes) -> str:
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verifies(signature: str, message: bytes, key: Any = WECHATPAY_PUBLIC_KEY) -> bool:
    try:
        key.verify(base64.b64decode(signature), message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_ok(headers: Any, body: bytes, key: Any = WECHATPAY_PUBLIC_KEY) -> bool:
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    return verifies(headers["Wechatpay-Signature"], message, key)


def decrypt(resource: dict[str, Any]) -> dict[str, Any]:
    plaintext = AESGCM(APIV3_KEY.encode()).decrypt(
        resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode()
    )
    return json.loads(plaintext)


def check_signed(response: requests.Response) -> requests.Response:
    """Every answer of WeChat Pay is signed with its key over TS\\nNONCE\\nBODY\\n."""
    headers = response.headers
    assert headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert headers["Wechatpay-Signature-Type"] == SCHEME
    assert headers["Request-ID"]
    assert len(headers["Wechatpay-Nonce"]) == 32
    assert signature_ok(headers, response.content), response.text
    return response


class PayClient:
    def __init__(self, server: LiveSandbox, http: requests.Session) -> None:
        self.server = server
        self.url = server.url
        self.http = http

    def now(self) -> int:
        return int(self.server.state.now())

    def authorization(
        self, method: str, uri: str, body: bytes, *, timestamp: int | None = None, key: Any = MERCHANT_KEY,
        mchid: str = MCHID, serial: str = SERIAL, nonce: str | None = None,
    ) -> str:
        timestamp = self.now() if timestamp is None else timestamp
        nonce = nonce or secrets.token_hex(16)
        signature = rsa_sign(key, f"{method}\n{uri}\n{timestamp}\n{nonce}\n".encode() + body + b"\n")
        return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
                f'timestamp="{timestamp}",serial_no="{serial}"')

    def call(
        self, method: str, uri: str, body: Any = None, *, raw: bytes | None = None,
        content_type: str = "application/json", authorization: str | None = None, **auth: Any,
    ) -> requests.Response:
        data = raw if raw is not None else b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
        if authorization is None:
            authorization = self.authorization(method, uri, data, **auth)
        headers = {"Accept": "application/json"}
        if authorization:  # "" sends none
            headers["Authorization"] = authorization
        if data:
            headers["Content-Type"] = content_type
        response = self.http.request(method, self.url + uri, data=data or None, headers=headers, timeout=10)
        return check_signed(response)

    def order_body(self, out_trade_no: str, notify_url: str = "https://example.com/pay/notify", **fields: Any) -> dict:
        return {
            "appid": APPID,
            "mchid": MCHID,
            "description": "点点碳中和-植树一棵",
            "out_trade_no": out_trade_no,
            "notify_url": notify_url,
            "amount": {"total": 100, "currency": "CNY"},
            "payer": {"openid": "o-guest"},
            **fields,
        }

    def order(self, out_trade_no: str, **fields: Any) -> requests.Response:
        return self.call("POST", JSAPI, self.order_body(out_trade_no, **fields))

    def prepay(self, out_trade_no: str, **fields: Any) -> str:
        response = self.order(out_trade_no, **fields)
        assert response.status_code == 200, response.text
        return response.json()["prepay_id"]

    def query(self, out_trade_no: str, mchid: str = MCHID) -> requests.Response:
        return self.call("GET", f"/v3/pay/transactions/out-trade-no/{out_trade_no}?mchid={mchid}")

    def close(self, out_trade_no: str) -> requests.Response:
        return self.call("POST", f"/v3/pay/transactions/out-trade-no/{out_trade_no}/close", {"mchid": MCHID})

    def refund(self, out_refund_no: str, refund: int, total: int = 100, **fields: Any) -> requests.Response:
        body = {"out_refund_no": out_refund_no, "amount": {"refund": refund, "total": total, "currency": "CNY"}}
        return self.call("POST", REFUNDS, body | fields)

    def hook(self, name: str, body: Any = None, method: str = "POST") -> requests.Response:
        return self.http.request(method, f"{self.url}/__sandbox__/{name}", json=body, timeout=30)

    def advance(self, seconds: float) -> None:
        assert self.hook("clock/advance", {"seconds": seconds}).status_code == 200

    def payment_params(self, prepay_id: str, *, key: Any = MERCHANT_KEY, app_id: str = APPID) -> dict[str, Any]:
        """What the backend hands to wx.requestPayment (v3: RSA paySign)."""
        timestamp, nonce, package = str(self.now()), secrets.token_hex(16), f"prepay_id={prepay_id}"
        pay_sign = rsa_sign(key, f"{app_id}\n{timestamp}\n{nonce}\n{package}\n".encode())
        return {"appId": app_id, "timeStamp": timestamp, "nonceStr": nonce, "package": package,
                "signType": "RSA", "paySign": pay_sign}

    def request_payment(self, prepay_id: str, **extra: Any) -> requests.Response:
        return self.hook("pay/request-payment", self.payment_params(prepay_id) | extra)

    def pay(self, out_trade_no: str, deliver: bool = True, **fields: Any) -> dict[str, Any]:
        response = self.request_payment(self.prepay(out_trade_no, **fields), deliver=deliver)
        assert response.status_code == 200, response.text
        return response.json()

    def notifications(self) -> list[dict[str, Any]]:
        return self.hook("pay/notifications", method="GET").json()["notifications"]

    def run_due(self) -> list[dict[str, Any]]:
        return self.hook("pay/notifications/run-due").json()


# ---- the notification receiver ------------------------------------------------------------


class Receiver:
    """A merchant notify endpoint: records what arrives, answers ``statuses`` then ``default``."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=QuietRequestHandler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/pay/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.received: list[dict[str, Any]] = []
            self.statuses: list[int] = []
            self.default = 204
            self.delay = 0.0
            self.on_request: Any = None  # called before answering

    def app(self, environ: dict, start_response: Any) -> Any:
        request = WsgiRequest(environ)
        body = request.get_data()
        with self.lock:
            self.received.append({"path": request.path, "headers": dict(request.headers), "body": body,
                                  "arrived": time.monotonic()})
            status = self.statuses.pop(0) if self.statuses else self.default
            delay, on_request = self.delay, self.on_request
        time.sleep(delay)
        if on_request is not None:
            on_request()
        answer = b"" if status in (200, 204) else json.dumps({"code": "FAIL", "message": "失败"}).encode()
        return WsgiResponse(answer, status=status, content_type="application/json")(environ, start_response)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def unused_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/pay/notify"


@pytest.fixture(scope="module")
def receiver_server() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.stop()


@pytest.fixture
def receiver(receiver_server: Receiver) -> Receiver:
    receiver_server.reset()
    return receiver_server


@pytest.fixture
def pay(sandbox_server: LiveSandbox, http: requests.Session) -> PayClient:
    return PayClient(sandbox_server, http)


@pytest.fixture(scope="module")
def impatient_server() -> Iterator[LiveSandbox]:
    with LiveSandbox({"PAY_NOTIFY_TIMEOUT_SECONDS": 0.3}) as server:
        yield server


# ---- authentication and signed answers ----------------------------------------------------


def test_a_signed_order_gets_a_signed_prepay_id(pay):
    response = pay.order("ORDER-0001")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert re.fullmatch(r"wx[0-9A-Za-z]{26}", response.json()["prepay_id"])
    assert abs(int(response.headers["Wechatpay-Timestamp"]) - pay.now()) <= 2


@pytest.mark.parametrize(
    "auth",
    [
        {"key": FORGER_KEY},
        {"mchid": "1900009999"},
        {"serial": "0123456789ABCDEF0123456789ABCDEF01234567"},
        {"timestamp": -301},
        {"timestamp": 301},
        {"timestamp": "ms"},
    ],
    ids=["other-key", "unknown-mchid", "wrong-serial", "stale", "future", "milliseconds"],
)
def test_bad_authorization_is_401_sign_error(pay, auth):
    if auth.get("timestamp") == "ms":
        auth = {"timestamp": pay.now() * 1000}
    elif "timestamp" in auth:
        auth = {"timestamp": pay.now() + auth["timestamp"]}
    response = pay.call("POST", JSAPI, pay.order_body("ORDER-0002"), **auth)
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"
    assert pay.query("ORDER-0002").status_code == 404  # nothing was created


def test_the_signature_covers_method_uri_query_and_body(pay):
    body = json.dumps(pay.order_body("ORDER-0003")).encode()
    signed_other_body = pay.authorization("POST", JSAPI, body.replace(b"100", b"1"))
    assert pay.call("POST", JSAPI, raw=body, authorization=signed_other_body).status_code == 401
    assert pay.call("POST", JSAPI, raw=body, authorization=pay.authorization("GET", JSAPI, body)).status_code == 401
    pay.prepay("ORDER-0003")
    uri = f"/v3/pay/transactions/out-trade-no/ORDER-0003?mchid={MCHID}"
    no_query = pay.authorization("GET", "/v3/pay/transactions/out-trade-no/ORDER-0003", b"")
    assert pay.call("GET", uri, authorization=no_query).status_code == 401
    assert pay.call("GET", uri).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer abc", 'WECHATPAY2-SHA256-RSA2048 mchid="1900000109"', "WECHATPAY2-SHA256-RSA2048 garbage"],
)
def test_malformed_or_missing_authorization_is_401(pay, authorization):
    response = pay.call("GET", f"/v3/pay/transactions/out-trade-no/ORDER-0004?mchid={MCHID}",
                        authorization=authorization)
    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"


def test_the_timestamp_is_checked_against_the_virtual_clock(pay):
    real_now = int(time.time())
    pay.advance(3600)
    assert pay.call("POST", JSAPI, pay.order_body("ORDER-0005"), timestamp=real_now).status_code == 401
    assert pay.order("ORDER-0005").status_code == 200


def test_the_body_is_json_whatever_the_content_type(pay):
    response = pay.call("POST", JSAPI, pay.order_body("ORDER-0006"), content_type="text/plain")
    assert response.status_code == 200
    bad = pay.call("POST", JSAPI, raw=b"not json")
    assert bad.status_code == 400 and bad.json()["code"] == "PARAM_ERROR"


def test_204_and_errors_are_signed_too(pay):
    pay.prepay("ORDER-0007")
    pay.advance(300)
    response = pay.close("ORDER-0007")  # check_signed ran over the empty body
    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response.headers
    missing = pay.call("GET", "/v3/no/such/api")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"


def test_calls_are_recorded_and_failures_can_be_injected(pay):
    pay.hook("failures", {"path": JSAPI, "errcode": -1, "count": 1})
    failed = pay.order("ORDER-0008")
    assert failed.status_code == 500 and failed.json()["code"] == "SYSTEM_ERROR"
    assert pay.order("ORDER-0008").status_code == 200
    calls = pay.hook(f"calls?path={JSAPI}", method="GET").json()["calls"]
    assert len(calls) == 2 and calls[0]["json"]["out_trade_no"] == "ORDER-0008"


# ---- ordering -----------------------------------------------------------------------------


def beijing(seconds_from_now: float, pay: PayClient) -> str:
    from wechat.sandbox.state import CHINA_TZ

    return datetime.fromtimestamp(pay.now() + seconds_from_now, CHINA_TZ).isoformat(timespec="seconds")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"description": None}, "/description"),
        ({"description": ""}, "/description"),
        ({"description": "树" * 128}, "/description"),
        ({"out_trade_no": "ab12"}, "/out_trade_no"),
        ({"out_trade_no": "ORDER 0010"}, "/out_trade_no"),
        ({"out_trade_no": "O" * 33}, "/out_trade_no"),
        ({"attach": "a" * 129}, "/attach"),
        ({"notify_url": "ftp://example.com/notify"}, "/notify_url"),
        ({"notify_url": "http://pay.example.com:8000/notify"}, "/notify_url"),  # https only, but on loopback
        ({"notify_url": "https://example.com/notify?order=1"}, "/notify_url"),
        ({"notify_url": None}, "/notify_url"),
        ({"amount": {"total": 0, "currency": "CNY"}}, "/amount/total"),
        ({"amount": {"total": "100", "currency": "CNY"}}, "/amount/total"),
        ({"amount": {"total": 1.5, "currency": "CNY"}}, "/amount/total"),
        ({"amount": {"total": True}}, "/amount/total"),
        ({"amount": {"total": 100, "currency": "USD"}}, "/amount/currency"),
        ({"amount": None}, "/amount"),
        ({"payer": {}}, "/payer/openid"),
        ({"payer": None}, "/payer/openid"),
        ({"time_expire": "2030-01-01 00:00:00"}, "/time_expire"),
        ({"time_expire": "2030-01-01T00:00:00"}, "/time_expire"),
        ({"time_expire": 1893456000}, "/time_expire"),
        ({"mchid": "1900009999"}, "/mchid"),
        ({"mchid": None}, "/mchid"),
    ],
)
def test_order_validation(pay, fields, field):
    body = pay.order_body("ORDER-0010") | fields
    body = {key: value for key, value in body.items() if value is not None}
    response = pay.call("POST", JSAPI, body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == "PARAM_ERROR"
    assert answer["message"]
    assert answer["detail"]["field"] == field
    assert answer["detail"]["location"] == "body"
    assert set(answer["detail"]) == {"field", "value", "issue", "location"}


def test_time_expire_must_be_a_minute_ahead_and_within_90_days(pay):
    for seconds, ok in [(30, False), (61, True), (90 * 86400 + 60, False)]:
        response = pay.order(f"ORDER-0011-{seconds}", time_expire=beijing(seconds, pay))
        assert (response.status_code == 200) is ok, (seconds, response.text)


def test_the_appid_must_belong_to_the_merchant(pay):
    response = pay.order("ORDER-0012", appid="wx0f1e2d3c4b5a6978")
    assert response.status_code == 400
    assert response.json()["code"] == "APPID_MCHID_NOT_MATCH"


def test_reordering_with_the_same_parameters_returns_the_latest_prepay_id(pay):
    first = pay.prepay("ORDER-0013", attach="tree")
    assert pay.prepay("ORDER-0013", attach="tree") == first
    pay.advance(7190)
    assert pay.prepay("ORDER-0013", attach="tree") == first
    pay.advance(11)
    second = pay.prepay("ORDER-0013", attach="tree")
    assert second != first
    assert pay.prepay("ORDER-0013", attach="tree") == second
    refused = pay.request_payment(first)
    assert refused.status_code == 400 and refused.json()["code"] == "PREPAY_EXPIRED"


@pytest.mark.parametrize(
    "changed",
    [
        {"description": "另一件商品"},
        {"amount": {"total": 101, "currency": "CNY"}},
        {"payer": {"openid": "o-someone-else"}},
        {"attach": "x"},
        {"notify_url": "https://example.com/other"},
    ],
)
def test_reordering_with_other_parameters_is_out_trade_no_used(pay, changed):
    pay.prepay("ORDER-0014")
    response = pay.order("ORDER-0014", **changed)
    assert response.status_code == 403
    assert response.json()["code"] == "OUT_TRADE_NO_USED"


def test_reordering_a_paid_closed_or_expired_order(pay, receiver):
    pay.pay("ORDER-0015", notify_url=receiver.url)
    paid = pay.order("ORDER-0015", notify_url=receiver.url)
    assert (paid.status_code, paid.json()["code"]) == (403, "ORDERPAID")
    assert pay.order("ORDER-0015", description="changed").json()["code"] == "ORDERPAID"

    pay.prepay("ORDER-0016")
    pay.advance(300)
    assert pay.close("ORDER-0016").status_code == 204
    closed = pay.order("ORDER-0016")
    assert (closed.status_code, closed.json()["code"]) == (403, "ORDER_CLOSED")

    expire = beijing(120, pay)
    pay.prepay("ORDER-0017", time_expire=expire)
    pay.advance(121)
    expired = pay.order("ORDER-0017", time_expire=expire)
    assert (expired.status_code, expired.json()["code"]) == (403, "OUT_TRADE_NO_USED")


# ---- querying -----------------------------------------------------------------------------


def test_query_an_unpaid_then_a_paid_order(pay, receiver):
    pay.prepay("ORDER-0020", attach="plot-7", notify_url=receiver.url)
    unpaid = pay.query("ORDER-0020").json()
    assert unpaid == {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "ORDER-0020",
        "trade_type": "JSAPI",
        "trade_state": "NOTPAY",
        "trade_state_desc": "订单未支付",
        "attach": "plot-7",
        "payer": {"openid": "o-guest"},
        "amount": {"total": 100, "currency": "CNY", "payer_currency": "CNY"},
    }
    paid = pay.request_payment(pay.prepay("ORDER-0020", attach="plot-7", notify_url=receiver.url)).json()
    transaction = pay.query("ORDER-0020").json()
    assert transaction["trade_state"] == "SUCCESS"
    assert transaction["trade_state_desc"] == "支付成功"
    assert transaction["transaction_id"] == paid["transaction_id"]
    assert re.fullmatch(r"42000\d{23}", transaction["transaction_id"])
    assert RFC3339_BEIJING.fullmatch(transaction["success_time"])
    assert transaction["bank_type"]
    assert transaction["amount"] == {"total": 100, "payer_total": 100, "currency": "CNY", "payer_currency": "CNY"}
    by_id = pay.call("GET", f"/v3/pay/transactions/id/{paid['transaction_id']}?mchid={MCHID}")
    assert by_id.status_code == 200 and by_id.json() == transaction


def test_query_errors(pay):
    for uri in (f"/v3/pay/transactions/out-trade-no/ORDER-NONE?mchid={MCHID}",
                f"/v3/pay/transactions/id/4200000000000000000000000000?mchid={MCHID}"):
        response = pay.call("GET", uri)
        assert (response.status_code, response.json()["code"]) == (404, "ORDER_NOT_EXIST")
    pay.prepay("ORDER-0021")
    missing_mchid = pay.call("GET", "/v3/pay/transactions/out-trade-no/ORDER-0021")
    assert missing_mchid.status_code == 400
    assert missing_mchid.json()["detail"]["location"] == "query"
    assert pay.query("ORDER-0021", mchid="1900009999").status_code == 400


# ---- closing ------------------------------------------------------------------------------


def test_close_rules(pay, receiver):
    pay.prepay("ORDER-0030")
    young = pay.close("ORDER-0030")
    assert (young.status_code, young.json()["code"]) == (400, "INVALID_REQUEST")
    pay.advance(299)
    assert pay.close("ORDER-0030").status_code == 400
    pay.advance(1)
    assert pay.close("ORDER-0030").status_code == 204
    assert pay.close("ORDER-0030").status_code == 204  # closing twice is harmless
    assert pay.query("ORDER-0030").json()["trade_state"] == "CLOSED"
    assert pay.query("ORDER-0030").json()["trade_state_desc"] == "订单已关闭"

    unknown = pay.close("ORDER-NONE")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "ORDER_NOT_EXIST")
    pay.pay("ORDER-0031", notify_url=receiver.url)
    pay.advance(300)
    paid = pay.close("ORDER-0031")
    assert (paid.status_code, paid.json()["code"]) == (403, "ORDERPAID")
    wrong_mchid = pay.call("POST", "/v3/pay/transactions/out-trade-no/ORDER-0031/close", {"mchid": "1"})
    assert wrong_mchid.status_code == 400


def test_a_closed_order_cannot_be_paid(pay):
    prepay_id = pay.prepay("ORDER-0032")
    pay.advance(300)
    pay.close("ORDER-0032")
    refused = pay.request_payment(prepay_id)
    assert refused.json() == {"code": "ORDER_CLOSED", "message": refused.json()["message"]}


# ---- paying (wx.requestPayment) -----------------------------------------------------------


def test_request_payment_pays_and_notifies(pay, receiver):
    prepay_id = pay.prepay("ORDER-0040", notify_url=receiver.url)
    response = pay.request_payment(prepay_id)
    assert response.status_code == 200
    answer = response.json()
    assert answer["out_trade_no"] == "ORDER-0040"
    assert answer["trade_state"] == "SUCCESS"
    assert re.fullmatch(r"42000\d{23}", answer["transaction_id"])
    assert answer["notify"] | {"event_id": None} == {
        "event_id": None, "attempt": 1, "status": 204, "error": None, "acknowledged": True,
    }
    order = pay.hook("pay/orders/ORDER-0040", method="GET").json()
    assert order["trade_state"] == "SUCCESS"
    assert order["prepay_ids"] == [prepay_id]
    assert order["transaction"] == pay.query("ORDER-0040").json()


@pytest.mark.parametrize(
    ("tamper", "code"),
    [
        (lambda p: p | {"paySign": rsa_sign(FORGER_KEY, b"x")}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"nonceStr": p["nonceStr"] + "x"}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"timeStamp": str(int(p["timeStamp"]) + 1)}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"timeStamp": p["timeStamp"] + "000"}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"signType": "MD5"}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"paySign": "not base64!"}, "PAY_SIGN_INVALID"),
        (lambda p: {k: v for k, v in p.items() if k != "paySign"}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"appId": "wx0f1e2d3c4b5a6978"}, "PAY_SIGN_INVALID"),
        (lambda p: p | {"package": "prepay_id=wx00000000000000000000000000"}, "PREPAY_NOT_FOUND"),
        (lambda p: p | {"package": p["package"].removeprefix("prepay_id=")}, "PREPAY_NOT_FOUND"),
    ],
)
def test_request_payment_refusals(pay, tamper, code):
    params = pay.payment_params(pay.prepay("ORDER-0041"))
    response = pay.hook("pay/request-payment", tamper(params))
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert pay.query("ORDER-0041").json()["trade_state"] == "NOTPAY"


def test_pay_sign_for_another_appid_is_refused_even_if_signed(pay):
    params = pay.payment_params(pay.prepay("ORDER-0042"), app_id="wx0f1e2d3c4b5a6978")
    assert pay.hook("pay/request-payment", params).json()["code"] == "PAY_SIGN_INVALID"


def test_appid_may_be_left_out_like_in_a_mini_program(pay, receiver):
    params = pay.payment_params(pay.prepay("ORDER-0043", notify_url=receiver.url))
    del params["appId"]
    assert pay.hook("pay/request-payment", params).json()["trade_state"] == "SUCCESS"


def test_paying_twice_and_paying_late(pay, receiver):
    prepay_id = pay.prepay("ORDER-0044", notify_url=receiver.url)
    assert pay.request_payment(prepay_id).status_code == 200
    assert pay.request_payment(prepay_id).json()["code"] == "ORDER_PAID"

    prepay_id = pay.prepay("ORDER-0045", time_expire=beijing(600, pay))
    pay.advance(600)
    assert pay.request_payment(prepay_id).json()["code"] == "ORDER_EXPIRED"
    assert pay.query("ORDER-0045").json()["trade_state"] == "NOTPAY"  # not closed by itself

    prepay_id = pay.prepay("ORDER-0046")
    pay.advance(7201)
    assert pay.request_payment(prepay_id).json()["code"] == "PREPAY_EXPIRED"


def test_the_payer_can_be_checked(pay):
    response = pay.request_payment(pay.prepay("ORDER-0047"), openid="o-intruder")
    assert response.json()["code"] == "PAYER_MISMATCH"


# ---- notifications ------------------------------------------------------------------------


def test_the_notification_is_signed_and_decrypts_to_the_transaction(pay, receiver):
    pay.advance(1000)
    pay.pay("ORDER-0050", notify_url=receiver.url, attach="a&b")
    (arrived,) = receiver.received
    headers, body = arrived["headers"], arrived["body"]
    assert arrived["path"] == "/pay/notify"
    assert headers["Content-Type"] == "application/json"
    assert headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert headers["Wechatpay-Signature-Type"] == SCHEME
    assert signature_ok(headers, body)
    assert abs(int(headers["Wechatpay-Timestamp"]) - pay.now()) <= 2  # the virtual clock
    notification = json.loads(body)
    assert re.fullmatch(r"EV-\d+", notification["id"])
    assert RFC3339_BEIJING.fullmatch(notification["create_time"])
    assert notification["resource_type"] == "encrypt-resource"
    assert notification["event_type"] == "TRANSACTION.SUCCESS"
    assert notification["summary"] == "支付成功"
    resource = notification["resource"]
    assert resource["original_type"] == "transaction"
    assert resource["algorithm"] == "AEAD_AES_256_GCM"
    assert resource["associated_data"] == "transaction"
    assert len(resource["nonce"]) == 12
    assert decrypt(resource) == pay.query("ORDER-0050").json()
    (delivery,) = pay.notifications()
    assert delivery | {"due_at": 0, "sent_at": 0} == {
        "kind": "scheduled", "event_id": notification["id"], "event_type": "TRANSACTION.SUCCESS",
        "out_trade_no": "ORDER-0050", "url": receiver.url, "attempt": 1, "due_at": 0, "sent_at": 0,
        "status": 204, "error": None, "response": "", "acknowledged": True, "next_due_at": None, "given_up": False,
    }


def test_200_with_a_fail_body_still_counts_as_acknowledged(pay, receiver):
    receiver.default = 200
    assert pay.pay("ORDER-0051", notify_url=receiver.url)["notify"]["acknowledged"] is True
    assert pay.run_due() == []


def test_failed_notifications_are_retried_on_the_schedule(pay, receiver):
    receiver.default = 500
    answer = pay.pay("ORDER-0052", notify_url=receiver.url)
    assert answer["notify"]["status"] == 500 and answer["notify"]["acknowledged"] is False
    (first,) = pay.notifications()
    assert first["next_due_at"] == pytest.approx(first["sent_at"] + 15)
    assert pay.run_due() == []
    for attempt, interval in enumerate(SCHEDULE, start=2):
        pay.advance(interval - 1)
        assert pay.run_due() == [], attempt
        pay.advance(1.5)
        (delivery,) = pay.run_due()
        assert (delivery["attempt"], delivery["status"], delivery["acknowledged"]) == (attempt, 500, False)
        assert delivery["event_id"] == first["event_id"]
    assert delivery["attempt"] == 16 and delivery["given_up"] is True and delivery["next_due_at"] is None
    pay.advance(86400)
    assert pay.run_due() == []
    assert len(receiver.received) == 16
    assert len({json.loads(item["body"])["id"] for item in receiver.received}) == 1
    assert len({item["headers"]["Wechatpay-Nonce"] for item in receiver.received}) == 16  # signed afresh
    assert all(signature_ok(item["headers"], item["body"]) for item in receiver.received)
    timestamps = [int(item["headers"]["Wechatpay-Timestamp"]) for item in receiver.received]
    gaps = [later - earlier for earlier, later in pairwise(timestamps)]
    assert all(abs(gap - step) <= 3 for gap, step in zip(gaps, SCHEDULE))


def test_a_retry_that_succeeds_ends_the_retries(pay, receiver):
    receiver.statuses = [503, 404]
    pay.pay("ORDER-0053", notify_url=receiver.url)
    pay.advance(15)
    assert [d["status"] for d in pay.run_due()] == [404]
    pay.advance(15)
    (third,) = pay.run_due()
    assert (third["attempt"], third["status"], third["acknowledged"]) == (3, 204, True)
    pay.advance(86400)
    assert pay.run_due() == []
    assert [d["attempt"] for d in pay.notifications()] == [1, 2, 3]


def test_run_due_sends_every_due_attempt_in_due_order(pay, receiver):
    receiver.default = 500
    pay.pay("ORDER-0054", notify_url=receiver.url)
    pay.advance(5)
    pay.pay("ORDER-0055", notify_url=receiver.url)
    pay.advance(3600)
    assert [d["out_trade_no"] for d in pay.run_due()] == ["ORDER-0054", "ORDER-0055"]
    assert pay.run_due() == []


def test_connection_errors_are_retried(pay):
    url = unused_port_url()
    answer = pay.pay("ORDER-0056", notify_url=url)
    assert answer["notify"]["status"] is None
    assert answer["notify"]["error"]
    pay.advance(15)
    (retry,) = pay.run_due()
    assert retry["attempt"] == 2 and retry["error"] and retry["acknowledged"] is False


def test_a_slow_receiver_times_out_and_is_retried(impatient_server, http, receiver):
    impatient_server.reset()
    pay = PayClient(impatient_server, http)
    receiver.delay = 1.0
    answer = pay.pay("ORDER-0057", notify_url=receiver.url)
    assert answer["notify"]["error"] == "timeout"
    assert answer["notify"]["acknowledged"] is False
    assert pay.notifications()[0]["next_due_at"] is not None


def test_deliver_false_leaves_attempt_one_to_run_due(pay, receiver):
    answer = pay.pay("ORDER-0058", notify_url=receiver.url, deliver=False)
    assert answer["notify"] is None
    assert receiver.received == []
    (delivery,) = pay.run_due()
    assert delivery["attempt"] == 1 and delivery["acknowledged"] is True
    assert len(receiver.received) == 1


def test_the_receiver_may_call_the_sandbox_back(pay, receiver):
    """No lock is held while a notification is sent: the merchant can query the order meanwhile."""
    seen = {}
    receiver.on_request = lambda: seen.setdefault("state", pay.query("ORDER-0059").json()["trade_state"])
    assert pay.pay("ORDER-0059", notify_url=receiver.url)["notify"]["acknowledged"] is True
    assert seen == {"state": "SUCCESS"}


# ---- crafted notifications ----------------------------------------------------------------


def crafted(pay, receiver, variant, out_trade_no="ORDER-0060", **fields):
    response = pay.hook("pay/notify", {"out_trade_no": out_trade_no, "variant": variant, **fields})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def paid_order(pay, receiver):
    pay.pay("ORDER-0060", notify_url=receiver.url, attach="plot-9")
    receiver.reset()
    return pay.query("ORDER-0060").json()


def test_normal_duplicates_arrive_together_with_one_event_id(pay, receiver, paid_order):
    receiver.delay = 0.3
    answers = crafted(pay, receiver, "normal", count=4, concurrency=4)
    assert [answer["status"] for answer in answers] == [204] * 4
    assert {answer["event_id"] for answer in answers} == {json.loads(receiver.received[0]["body"])["id"]}
    arrivals = [item["arrived"] for item in receiver.received]
    assert max(arrivals) - min(arrivals) < 0.25  # concurrent, not one after the other
    for item in receiver.received:
        assert signature_ok(item["headers"], item["body"])
        assert decrypt(json.loads(item["body"])["resource"]) == paid_order
    assert pay.run_due() == []  # crafted sends are never retried
    assert [d["kind"] for d in pay.notifications()] == ["scheduled"] + ["crafted"] * 4


def test_distinct_events_get_their_own_ids(pay, receiver, paid_order):
    answers = crafted(pay, receiver, "normal", count=3, distinct_events=True)
    assert len({answer["event_id"] for answer in answers}) == 3


def test_the_answers_carry_the_receivers_status_and_body(pay, receiver, paid_order):
    receiver.statuses = [500]
    (answer,) = crafted(pay, receiver, "normal")
    assert answer["status"] == 500
    assert json.loads(answer["body"]) == {"code": "FAIL", "message": "失败"}
    other_url = crafted(pay, receiver, "normal", url=unused_port_url())
    assert other_url[0]["status"] is None and other_url[0]["error"]


def only_arrival(receiver):
    (item,) = receiver.received
    return item["headers"], item["body"], json.loads(item["body"])


def test_stale_is_signed_six_minutes_ago(pay, receiver, paid_order):
    crafted(pay, receiver, "stale")
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    assert abs(pay.now() - 360 - int(headers["Wechatpay-Timestamp"])) <= 2
    assert decrypt(notification["resource"]) == paid_order


def test_tampered_ciphertext_is_signed_but_does_not_decrypt(pay, receiver, paid_order):
    crafted(pay, receiver, "tampered_ciphertext")
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    with pytest.raises(InvalidTag):
        decrypt(notification["resource"])


def test_tampered_body_fails_the_signature(pay, receiver, paid_order):
    crafted(pay, receiver, "tampered_body")
    headers, body, notification = only_arrival(receiver)
    assert not signature_ok(headers, body)
    assert headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert decrypt(notification["resource"]) == paid_order  # only the envelope changed


def test_signtest_probe(pay, receiver, paid_order):
    crafted(pay, receiver, "signtest")
    headers, body, _ = only_arrival(receiver)
    assert headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    assert not signature_ok(headers, body)


def test_other_key_is_signed_by_a_forger_under_the_real_serial(pay, receiver, paid_order):
    crafted(pay, receiver, "other_key")
    headers, body, _ = only_arrival(receiver)
    assert headers["Wechatpay-Serial"] == PUBLIC_KEY_ID
    assert not signature_ok(headers, body)
    assert signature_ok(headers, body, FORGER_KEY.public_key())


def test_bad_serial_is_validly_signed_under_an_unknown_serial(pay, receiver, paid_order):
    crafted(pay, receiver, "bad_serial")
    headers, body, _ = only_arrival(receiver)
    assert headers["Wechatpay-Serial"] == "PUB_KEY_ID_UNKNOWN"
    assert signature_ok(headers, body)


@pytest.mark.parametrize("variant", ["wrong_amount", "wrong_appid", "wrong_mchid"])
def test_wrong_fields_are_encrypted_and_signed_validly(pay, receiver, paid_order, variant):
    crafted(pay, receiver, variant)
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    transaction = decrypt(notification["resource"])
    differences = {key for key in paid_order if transaction[key] != paid_order[key]}
    expected = {"wrong_amount": "amount", "wrong_appid": "appid", "wrong_mchid": "mchid"}[variant]
    assert differences == {expected}
    if variant == "wrong_amount":
        assert transaction["amount"]["total"] == paid_order["amount"]["total"] + 1
    else:
        assert transaction[expected] not in (APPID, MCHID)


def test_wrong_amount_also_works_for_an_unpaid_order(pay, receiver):
    pay.prepay("ORDER-0061", notify_url=receiver.url)
    crafted(pay, receiver, "wrong_amount", out_trade_no="ORDER-0061")
    transaction = decrypt(only_arrival(receiver)[2]["resource"])
    assert transaction["trade_state"] == "SUCCESS" and transaction["amount"]["total"] == 101
    assert pay.query("ORDER-0061").json()["trade_state"] == "NOTPAY"


def test_unknown_order(pay, receiver):
    answers = pay.hook("pay/notify", {"variant": "unknown_order", "url": receiver.url}).json()
    assert answers[0]["status"] == 204
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    transaction = decrypt(notification["resource"])
    assert transaction["trade_state"] == "SUCCESS"
    assert transaction["mchid"] == MCHID and transaction["appid"] == APPID
    assert pay.query(transaction["out_trade_no"]).status_code == 404
    named = pay.hook("pay/notify", {"variant": "unknown_order", "url": receiver.url, "out_trade_no": "NEVER-SEEN"})
    assert named.status_code == 200
    pay.prepay("ORDER-0062")
    known = pay.hook("pay/notify", {"variant": "unknown_order", "url": receiver.url, "out_trade_no": "ORDER-0062"})
    assert known.status_code == 409


def test_refund_event(pay, receiver, paid_order):
    crafted(pay, receiver, "refund_event")
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    assert notification["event_type"] == "REFUND.SUCCESS"
    assert notification["resource"]["original_type"] == "refund"
    assert notification["resource"]["associated_data"] == "refund"
    refund = decrypt(notification["resource"])
    assert refund["refund_status"] == "SUCCESS"
    assert refund["out_trade_no"] == "ORDER-0060"
    assert refund["transaction_id"] == paid_order["transaction_id"]


def test_notify_hook_errors(pay, receiver):
    pay.prepay("ORDER-0063", notify_url=receiver.url)
    unpaid = pay.hook("pay/notify", {"out_trade_no": "ORDER-0063", "variant": "normal"})
    assert unpaid.status_code == 409
    assert pay.hook("pay/notify", {"out_trade_no": "ORDER-NONE"}).status_code == 404
    assert pay.hook("pay/notify", {"out_trade_no": "ORDER-0063", "variant": "weird"}).status_code == 400
    assert pay.hook("pay/notify", {"out_trade_no": "ORDER-0063", "count": 0}).status_code == 400
    assert pay.hook("pay/notify", {"variant": "normal"}).status_code == 400
    assert receiver.received == []


# ---- refunds ------------------------------------------------------------------------------


def test_refunds(pay, receiver):
    paid = pay.pay("ORDER-0070", notify_url=receiver.url)
    response = pay.refund("REFUND-0070-1", 30, out_trade_no="ORDER-0070", reason="活动取消")
    assert response.status_code == 200, response.text
    refund = response.json()
    assert refund["status"] == "SUCCESS"
    assert refund["out_refund_no"] == "REFUND-0070-1"
    assert refund["out_trade_no"] == "ORDER-0070"
    assert refund["transaction_id"] == paid["transaction_id"]
    assert refund["refund_id"].isdigit()
    assert RFC3339_BEIJING.fullmatch(refund["success_time"])
    assert refund["amount"]["refund"] == 30 and refund["amount"]["total"] == 100
    assert refund["amount"]["currency"] == "CNY"
    query = pay.call("GET", f"{REFUNDS}/REFUND-0070-1")
    assert query.status_code == 200 and query.json() == refund
    assert pay.query("ORDER-0070").json()["trade_state"] == "REFUND"

    again = pay.refund("REFUND-0070-1", 30, out_trade_no="ORDER-0070", reason="活动取消")
    assert again.json()["refund_id"] == refund["refund_id"]  # idempotent
    clash = pay.refund("REFUND-0070-1", 31, out_trade_no="ORDER-0070")
    assert (clash.status_code, clash.json()["code"]) == (400, "INVALID_REQUEST")

    second = pay.refund("REFUND-0070-2", 70, transaction_id=paid["transaction_id"])
    assert second.status_code == 200 and second.json()["out_trade_no"] == "ORDER-0070"
    beyond = pay.refund("REFUND-0070-3", 1, out_trade_no="ORDER-0070")
    assert (beyond.status_code, beyond.json()["code"]) == (403, "NOT_ENOUGH")
    order = pay.hook("pay/orders/ORDER-0070", method="GET").json()
    assert order["amount"]["refunded"] == 100
    assert [r["out_refund_no"] for r in order["refunds"]] == ["REFUND-0070-1", "REFUND-0070-2"]


def test_a_refund_made_by_hand_at_the_merchant_platform_is_notified_signed_and_encrypted(pay, receiver):
    paid = pay.pay("ORDER-0073", notify_url=receiver.url)
    receiver.reset()
    made = pay.hook("pay/orders/ORDER-0073/merchant-refund", {"refund": 40})
    assert made.status_code == 200, made.text
    refund = made.json()
    assert refund["notify"]["status"] == 204 and refund["status"] == "SUCCESS"
    assert refund["out_refund_no"].isdigit()  # WeChat Pay numbers it: the merchant never asked
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body) and notification["event_type"] == "REFUND.SUCCESS"
    resource = decrypt(notification["resource"])
    assert (resource["out_refund_no"], resource["transaction_id"], resource["refund_status"]) == \
        (refund["out_refund_no"], paid["transaction_id"], "SUCCESS")
    assert resource["amount"]["refund"] == 40 and resource["amount"]["total"] == 100
    assert pay.query("ORDER-0073").json()["trade_state"] == "REFUND"
    queued = pay.hook("pay/orders/ORDER-0073/merchant-refund", {"status": "ABNORMAL", "deliver": False})
    assert queued.status_code == 200 and queued.json()["notify"] is None
    assert queued.json()["amount"]["refund"] == 60  # what was left
    assert [d["event_type"] for d in pay.hook("pay/notifications/run-due", {}).json()] == ["REFUND.ABNORMAL"]
    assert pay.hook("pay/orders/ORDER-0073/merchant-refund", {"refund": 1}).status_code == 409  # nothing left
    beyond = pay.refund("REFUND-0073-1", 1, out_trade_no="ORDER-0073")
    assert (beyond.status_code, beyond.json()["code"]) == (403, "NOT_ENOUGH")
    pay.prepay("ORDER-0074", notify_url=receiver.url)
    assert pay.hook("pay/orders/ORDER-0074/merchant-refund", {}).status_code == 409  # not paid
    assert pay.hook("pay/orders/ORDER-0074/merchant-refund", {"status": "PROCESSING"}).status_code == 400
    assert pay.hook("pay/orders/ORDER-NONE/merchant-refund", {}).status_code == 404


def test_refund_errors(pay, receiver):
    pay.pay("ORDER-0071", notify_url=receiver.url)
    more_than_total = pay.refund("REFUND-0071-1", 101, out_trade_no="ORDER-0071")
    assert (more_than_total.status_code, more_than_total.json()["code"]) == (400, "PARAM_ERROR")
    wrong_total = pay.refund("REFUND-0071-2", 10, total=200, out_trade_no="ORDER-0071")
    assert (wrong_total.status_code, wrong_total.json()["code"]) == (400, "PARAM_ERROR")
    neither = pay.refund("REFUND-0071-3", 10)
    assert neither.status_code == 400
    unknown = pay.refund("REFUND-0071-4", 10, out_trade_no="ORDER-NONE")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")
    pay.prepay("ORDER-0072")
    unpaid = pay.refund("REFUND-0072-1", 10, out_trade_no="ORDER-0072")
    assert (unpaid.status_code, unpaid.json()["code"]) == (400, "INVALID_REQUEST")
    missing = pay.call("GET", f"{REFUNDS}/REFUND-NONE")
    assert (missing.status_code, missing.json()["code"]) == (404, "RESOURCE_NOT_EXISTS")


def test_a_refund_with_a_notify_url_is_notified_by_run_due(pay, receiver):
    pay.pay("ORDER-0073", notify_url=receiver.url)
    receiver.reset()
    refund = pay.refund("REFUND-0073", 100, out_trade_no="ORDER-0073", notify_url=receiver.url).json()
    assert receiver.received == []  # never while the merchant waits for its answer
    (delivery,) = pay.run_due()
    assert delivery["event_type"] == "REFUND.SUCCESS" and delivery["acknowledged"] is True
    headers, body, notification = only_arrival(receiver)
    assert signature_ok(headers, body)
    decrypted = decrypt(notification["resource"])
    assert decrypted["refund_id"] == refund["refund_id"]
    assert decrypted["amount"] == {"total": 100, "refund": 100, "payer_total": 100, "payer_refund": 100}


# ---- hooks --------------------------------------------------------------------------------


def test_order_hook(pay):
    pay.prepay("ORDER-0080")
    order = pay.hook("pay/orders/ORDER-0080", method="GET").json()
    assert order["trade_state"] == "NOTPAY"
    assert order["amount"] == {"total": 100, "currency": "CNY", "refunded": 0}
    assert order["time_expire"] == pytest.approx(order["created_at"] + 7 * 86400)
    assert pay.hook("pay/orders/ORDER-NONE", method="GET").status_code == 404


def test_reset_clears_pay_state(pay, receiver):
    pay.pay("ORDER-0081", notify_url=receiver.url)
    assert pay.hook("reset").json() == {"reset": True}
    assert pay.query("ORDER-0081").status_code == 404
    assert pay.notifications() == []
    assert pay.hook("pay/orders/ORDER-0081", method="GET").status_code == 404


# ---- the real wechatpayv3 client ----------------------------------------------------------


@pytest.fixture(scope="module")
def quick_close_server() -> Iterator[LiveSandbox]:
    with LiveSandbox({"PAY_CLOSE_MIN_AGE_SECONDS": 0}) as server:
        yield server


def test_the_wechatpayv3_client_works_against_the_sandbox(quick_close_server, http, receiver):
    """wechatpayv3 in public-key mode verifies every answer (204 included) and decrypts the notify."""
    from wechatpayv3 import WeChatPay, WeChatPayType

    quick_close_server.reset()
    wxpay = WeChatPay(
        wechatpay_type=WeChatPayType.MINIPROG, mchid=MCHID, appid=APPID, apiv3_key=APIV3_KEY,
        private_key=(CLIENT_KEYS / "merchant_private_key.pem").read_text(), cert_serial_no=SERIAL,
        public_key=(CLIENT_KEYS / "wechatpay_public_key.pem").read_text(), public_key_id=PUBLIC_KEY_ID,
        notify_url=receiver.url,
    )
    wxpay._core._gate_way = quick_close_server.url
    status, text = wxpay.pay(description="植树", out_trade_no="V3LIB-0001", amount={"total": 9},
                             payer={"openid": "o-lib"})
    assert status == 200, text
    prepay_id = json.loads(text)["prepay_id"]
    timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
    params = {"appId": APPID, "timeStamp": timestamp, "nonceStr": nonce, "package": f"prepay_id={prepay_id}",
              "signType": "RSA", "paySign": wxpay.sign([APPID, timestamp, nonce, f"prepay_id={prepay_id}"])}
    paid = http.post(f"{quick_close_server.url}/__sandbox__/pay/request-payment", json=params, timeout=30).json()
    (arrived,) = receiver.received
    notification = wxpay.callback(arrived["headers"], arrived["body"])
    assert notification["resource"]["transaction_id"] == paid["transaction_id"]
    status, text = wxpay.query(out_trade_no="V3LIB-0001")
    assert status == 200 and json.loads(text)["trade_state"] == "SUCCESS"
    assert wxpay.pay(description="植树", out_trade_no="V3LIB-0002", amount={"total": 9},
                     payer={"openid": "o-lib"})[0] == 200
    assert wxpay.close(out_trade_no="V3LIB-0002")[0] == 204  # it verified the signature over the empty body
    status, text = wxpay.refund(out_refund_no="V3LIB-R1", out_trade_no="V3LIB-0001",
                                amount={"refund": 9, "total": 9, "currency": "CNY"})
    assert status == 200 and json.loads(text)["status"] == "SUCCESS"
