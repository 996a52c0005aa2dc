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
