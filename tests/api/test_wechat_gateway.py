"""The typed WeChat calls, through the real wechatpy client, against the live sandbox."""
from __future__ import annotations

import io
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import zxingcpp
from PIL import Image

from carbon.core import extensions as ext
from carbon.core.errors import DomainError
from carbon.core.settings import SANDBOX_APPID, SANDBOX_SECRET


def hook(sandbox, name: str, payload: dict) -> dict:
    return requests.post(f"{sandbox.url}/__sandbox__/{name}", json=payload, timeout=5).json()


@pytest.fixture
def gateway(app):
    with app.app_context():
        yield ext.wechat()


def test_wxa_code_is_an_image_carrying_the_scene(gateway):
    png = gateway.wxa_code("s=cdf21&c=door", page="pages/scene/index", width=430)
    decoded = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    assert len(decoded) == 1
    query = parse_qs(urlsplit(decoded[0].text).query)
    assert query["scene"] == ["s=cdf21&c=door"] and query["page"] == ["pages/scene/index"]


def test_wxa_code_refusals_name_the_cause(gateway):
    with pytest.raises(DomainError) as info:
        gateway.wxa_code("x" * 33)
    assert info.value.http_status == 422 and info.value.code == "wechat.invalid_scene"
    with pytest.raises(DomainError) as info:
        gateway.wxa_code("s=abcd", page="pages/nowhere/index")
    assert info.value.http_status == 422 and info.value.code == "wechat.invalid_page"


def test_wxa_code_upstream_failure_is_502(gateway, sandbox):
    hook(sandbox, "failures", {"path": "/wxa/getwxacodeunlimit", "errcode": -1, "count": 1})
    with pytest.raises(DomainError) as info:
        gateway.wxa_code("s=abcd")
    assert info.value.http_status == 502 and info.value.code == "wechat.busy"


def test_subscribe_message_needs_an_acceptance(gateway, sandbox):
    hook(sandbox, "login-code", {"openid": "o_sub"})
    gateway.exchange_code(hook(sandbox, "login-code", {"openid": "o_sub"})["code"])
    data = {"thing1": "首届数字碳中和论坛", "number2": "31", "date3": "2021年9月7日",
            "amount4": "¥1.55", "character_string5": "CERT-0001"}
    with pytest.raises(DomainError) as info:
        gateway.send_subscribe_message("o_sub", "TPL_CERT_ISSUED", data, page="pages/certificate/index")
    assert info.value.code == "wechat.subscription_refused"
    hook(sandbox, "subscriptions", {"openid": "o_sub", "template_id": "TPL_CERT_ISSUED"})
    gateway.send_subscribe_message("o_sub", "TPL_CERT_ISSUED", data, page="pages/certificate/index")
    sent = requests.get(f"{sandbox.url}/__sandbox__/messages", timeout=5).json()
    messages = sent.get("messages", sent)
    assert messages[-1]["data"]["thing1"]["value"] == "首届数字碳中和论坛"


def test_check_text_verdicts(gateway, sandbox):
    gateway.exchange_code(hook(sandbox, "login-code", {"openid": "o_text"})["code"])
    assert gateway.check_text("绿色出行", openid="o_text").passed
    risky = gateway.check_text("赌博", openid="o_text")
    assert (risky.suggest, risky.label) == ("risky", 20006)


def test_phone_number(gateway, sandbox):
    code = hook(sandbox, "phone-code", {"phone_number": "13912345678"})["code"]
    phone = gateway.phone_number(code)
    assert phone.pure_phone_number == "13912345678" and phone.country_code == "86"


def sandbox_calls(sandbox) -> list[dict]:
    return requests.get(f"{sandbox.url}/__sandbox__/calls", timeout=5).json()["calls"]


TOKEN_PATHS = ("/cgi-bin/token", "/cgi-bin/stable_token")


@pytest.mark.parametrize("errcode", [45009, 40164, -1])
def test_login_needs_no_access_token(app, client, sandbox, errcode):
    """jscode2session takes appid+secret only (WECHAT_PROTOCOLS.md §1.1): a failing token endpoint
    (daily quota 45009, IP not whitelisted 40164, busy -1) must not stop a first login, and the
    call on the wire carries no access_token."""
    for path in TOKEN_PATHS:
        hook(sandbox, "failures", {"path": path, "errcode": errcode, "count": 5})
    try:
        code = hook(sandbox, "login-code", {"openid": "o_no_token"})["code"]
        response = client.post("/api/v1/auth/login", json={"code": code})
    finally:
        requests.delete(f"{sandbox.url}/__sandbox__/failures", timeout=5)
    assert response.status_code == 200, (response.status_code, response.get_json())
    calls = [call for call in sandbox_calls(sandbox) if not call["path"].startswith("/__sandbox__")]
    assert [call["path"] for call in calls] == ["/sns/jscode2session"]
    assert calls[0]["method"] == "GET"
    assert calls[0]["query"] == {"appid": SANDBOX_APPID, "secret": SANDBOX_SECRET, "js_code": code,
                                 "grant_type": "authorization_code"}


@pytest.mark.parametrize(("errcode", "status", "code"), [
    (40029, 400, "auth.invalid_code"), (40163, 400, "auth.invalid_code"), (40226, 403, "auth.user_blocked"),
    (45011, 429, "wechat.rate_limited"), (-1, 502, "wechat.busy"), (40125, 502, "wechat.rejected"),
    (40001, 502, "wechat.rejected")])  # no token was sent: a 40001 is not a stale token to retry
def test_login_errors_keep_their_meaning(gateway, sandbox, errcode, status, code):
    hook(sandbox, "failures", {"path": "/sns/jscode2session", "errcode": errcode, "count": 1})
    with pytest.raises(DomainError) as info:
        gateway.exchange_code(hook(sandbox, "login-code", {"openid": "o_refused"})["code"])
    assert (info.value.http_status, info.value.code) == (status, code)
    calls = [call["path"] for call in sandbox_calls(sandbox) if not call["path"].startswith("/__sandbox__")]
    assert calls == ["/sns/jscode2session"]  # one call, no token fetched, no retry


def test_login_keeps_the_client_timeout(app_config, sandbox):
    from app import create_app
    from tests.conftest import dispose_app

    sandbox.reset()
    slow_app = create_app({**app_config, "WECHAT_TIMEOUT_SECONDS": 0.3})
    hook(sandbox, "delay", {"prefix": "/sns/jscode2session", "seconds": 1})
    try:
        with slow_app.app_context(), pytest.raises(DomainError) as info:
            ext.wechat().exchange_code(hook(sandbox, "login-code", {"openid": "o_slow"})["code"])
    finally:
        requests.delete(f"{sandbox.url}/__sandbox__/delay", timeout=5)
        dispose_app(slow_app)
    assert (info.value.http_status, info.value.code) == (502, "wechat.unavailable")


def test_calls_that_need_a_token_still_fetch_and_share_it(gateway, sandbox):
    gateway.exchange_code(hook(sandbox, "login-code", {"openid": "o_then_text"})["code"])
    assert gateway.check_text("绿色出行", openid="o_then_text").passed
    assert gateway.check_text("低碳生活", openid="o_then_text").passed
    calls = [call for call in sandbox_calls(sandbox) if not call["path"].startswith("/__sandbox__")]
    fetched = [call for call in calls if call["path"] in TOKEN_PATHS]
    checks = [call for call in calls if call["path"] == "/wxa/msg_sec_check"]
    assert len(fetched) == 1 and len(checks) == 2
    assert checks[0]["query"]["access_token"] == checks[1]["query"]["access_token"]


def test_a_token_refreshed_inside_a_write_transaction_does_not_wait_on_it(app, sandbox):
    """An outbox handler sends a push (a token refresh) while its transaction holds writes: the
    token store must not wait on them (on SQLite, one writer per file: the store has its own)."""
    from sqlalchemy import text

    from carbon.core import extensions as ext
    from carbon.core.db import db

    with app.app_context():
        db.session.execute(text("INSERT INTO users (public_id, openid, created_at, leaderboard_hidden) "
                                "VALUES ('usr_writer', 'o_writer', CURRENT_TIMESTAMP, false)"))
        # None cached yet: fetched and stored now (sharing the caller's file, SQLite's lease would
        # wait out its busy timeout and fail with "database is locked").
        token = ext.wechat().client.access_token
        db.session.commit()
        assert token and ext.wechat().client.access_token == token
