"""What the WeChat app does for a mini-program, played by the sandbox: ``wx.login`` and ``wx.requestPayment``.

The simulator's page calls these two instead of the WeChat client; everything else it does goes
through the public API, as the real mini-program's would. The sandbox hooks answer on the sandbox's
own address (another origin), so the service passes the two calls on.
"""
from __future__ import annotations

import json
import re
from typing import Any

import requests

from carbon.core import extensions as ext
from carbon.core.errors import DomainError, UpstreamError, ValidationError

MAX_BODY = 4096
OPENID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PAYMENT_FIELDS = ("appId", "timeStamp", "nonceStr", "package", "signType", "paySign")


class Refused(DomainError):
    """What a ``wx.*`` call's ``fail`` callback gets: the sandbox refused (e.g. a bad paySign, an order paid)."""

    http_status = 400
    code = "simulator.refused"
    message = "微信未完成该操作 / WeChat did not do this"


class SandboxUnavailable(UpstreamError):
    code = "simulator.sandbox_unavailable"
    message = "微信沙箱无法访问 / The WeChat sandbox cannot be reached"


def body_of(raw: bytes) -> dict:
    """A small JSON object, or a 4xx."""
    if len(raw) > MAX_BODY:
        raise DomainError(code="request.too_large", http_status=413,
                          message=f"请求体超过 {MAX_BODY} 字节 / The body is over {MAX_BODY} bytes")
    try:
        value = json.loads(raw or b"null")
    except (ValueError, RecursionError, UnicodeDecodeError):
        value = None
    if not isinstance(value, dict):
        raise ValidationError(details={"_schema": ["需为 JSON 对象 / Must be a JSON object"]})
    return value


def login_code(body: dict) -> dict:
    """``wx.login()``: a one-time code for the simulated guest ``openid``."""
    openid = body.get("openid")
    if not isinstance(openid, str) or not OPENID.match(openid):
        raise ValidationError(details={"openid": ["需为 1-64 个字母、数字、_ 或 - / 1-64 of A-Z a-z 0-9 _ -"]})
    answer = _hook(ext.settings().WECHAT_API_BASE, "/__sandbox__/login-code", {"openid": openid})
    return {"code": answer["code"]}


def request_payment(body: dict) -> dict:
    """``wx.requestPayment(params)``: the sandbox checks paySign and the prepay id, pays, and notifies."""
    params: dict[str, Any] = {}
    errors = {}
    for name in PAYMENT_FIELDS:
        value = body.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 1024:
            errors[name] = ["需为 1-1024 个字符 / 1-1024 characters"]
        params[name] = value
    if errors:
        raise ValidationError(details=errors)
    answer = _hook(ext.settings().WECHATPAY_API_BASE, "/__sandbox__/pay/request-payment", params)
    return {"trade_state": answer.get("trade_state"), "transaction_id": answer.get("transaction_id")}


def _hook(base: str, path: str, payload: dict) -> dict:
    try:
        response = requests.post(base.rstrip("/") + path, json=payload,
                                 timeout=ext.settings().WECHAT_TIMEOUT_SECONDS * 2)
        answer = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise SandboxUnavailable() from exc
    if response.status_code >= 500 or not isinstance(answer, dict):
        raise SandboxUnavailable()
    if response.status_code >= 400:
        reason = str(answer.get("message") or answer.get("error") or "")[:200]
        raise Refused(details={"reason": [reason], "code": [str(answer.get("code", ""))[:64]]})
    return answer
