"""Small typed calls to WeChat's mini-program APIs; WeChat errors become our errors."""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.exceptions import WeChatClientException

from wechat.client import WECHAT_ORIGIN, DiandianWeChatClient
from wechat.errors import (
    InvalidCode,
    InvalidPage,
    InvalidPhoneCode,
    InvalidScene,
    OpenDataInvalid,
    SubscriptionRefused,
    UserBlocked,
    WeChatBusy,
    WeChatRateLimited,
    WeChatRejected,
    WeChatUnavailable,
)
from wechat.tokens import LockTimeout

log = logging.getLogger(__name__)
T = TypeVar("T")
TOKEN_REJECTED = {40001, 40014, 42001}


@dataclass(frozen=True)
class WeChatSession:
    openid: str
    session_key: str
    unionid: str | None = None


@dataclass(frozen=True)
class PhoneNumber:
    phone_number: str
    pure_phone_number: str
    country_code: str


@dataclass(frozen=True)
class TextCheck:
    suggest: str  # pass | review | risky
    label: int
    trace_id: str | None = None

    @property
    def passed(self) -> bool:
        return self.suggest == "pass"


class WeChatGateway:
    """What the rest of the service may ask of WeChat."""

    def __init__(self, client: DiandianWeChatClient) -> None:
        self.client = client
        self.appid = client.appid

    def _call(self, fn: Callable[[], T], *, on_error: dict[int, type[Exception]] | None = None,
              uses_token: bool = True) -> T:
        """Run one wechatpy call; retry once if WeChat says the token is stale (a call that
        sends no token, ``uses_token=False``, is never retried for that)."""
        on_error = on_error or {}
        for attempt in (1, 2):
            try:
                return fn()
            except WeChatClientException as exc:
                errcode = _int_or_none(exc.errcode)
                if uses_token and errcode in TOKEN_REJECTED and attempt == 1:
                    self.client.tokens.invalidate(_token_of(exc))
                    continue
                if errcode in on_error:
                    raise on_error[errcode]() from exc
                raise _upstream(errcode, exc.errmsg) from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise WeChatUnavailable() from exc
            except requests.RequestException as exc:
                raise WeChatUnavailable(details={"reason": type(exc).__name__}) from exc
            except LockTimeout as exc:
                raise WeChatBusy(details={"reason": "access token refresh lock timed out"}) from exc
        raise AssertionError("unreachable")

    def exchange_code(self, code: str) -> WeChatSession:
        """``wx.login`` code → openid and session_key (jscode2session: appid and secret, no access token)."""
        result = self._call(lambda: self.client.code_to_session(code), uses_token=False, on_error={
            40029: InvalidCode, 40163: InvalidCode, 40226: UserBlocked, 45011: WeChatRateLimited})
        if not isinstance(result, dict) or not result.get("openid") or not result.get("session_key"):
            raise WeChatRejected(details={"reason": "jscode2session returned no openid"})
        return WeChatSession(result["openid"], result["session_key"], result.get("unionid"))

    def phone_number(self, code: str) -> PhoneNumber:
        """``getPhoneNumber`` button code → the user's phone number."""
        result = self._call(lambda: self.client.post(
            f"{WECHAT_ORIGIN}/wxa/business/getuserphonenumber", data={"code": code}),
            on_error={40029: InvalidPhoneCode, 40163: InvalidPhoneCode})
        info = result.get("phone_info") or {}
        watermark = info.get("watermark") or {}
        if watermark.get("appid") not in (None, self.appid) or not info.get("purePhoneNumber"):
            raise WeChatRejected(details={"reason": "phone_info missing or for another app"})
        return PhoneNumber(info.get("phoneNumber", ""), info["purePhoneNumber"],
                           str(info.get("countryCode", "86")))

    def wxa_code(self, scene: str, *, page: str | None = None, width: int = 430,
                 env_version: str = "release", check_path: bool = True) -> bytes:
        """An unlimited mini-program code image carrying ``scene`` (getwxacodeunlimit)."""
        body: dict[str, Any] = {"scene": scene, "width": width, "env_version": env_version,
                                "check_path": check_path}
        if page:
            body["page"] = page
        result = self._call(lambda: self.client.post(f"{WECHAT_ORIGIN}/wxa/getwxacodeunlimit", data=body),
                            on_error={41030: InvalidPage, 40169: InvalidScene, 40129: InvalidScene})
        if isinstance(result, dict):
            raise WeChatRejected(details={"reason": "no image returned"})
        return result.content

    def send_subscribe_message(self, openid: str, template_id: str, data: dict[str, str], *,
                               page: str | None = None, state: str = "formal", lang: str = "zh_CN") -> None:
        body: dict[str, Any] = {"touser": openid, "template_id": template_id,
                                "data": {key: {"value": value} for key, value in data.items()},
                                "miniprogram_state": state, "lang": lang}
        if page:
            body["page"] = page
        self._call(lambda: self.client.post(f"{WECHAT_ORIGIN}/cgi-bin/message/subscribe/send", data=body),
                   on_error={43101: SubscriptionRefused})

    def check_text(self, content: str, *, openid: str, scene: int = 1, nickname: str | None = None) -> TextCheck:
        """msgSecCheck v2. errcode 0 does not mean clean: the verdict is ``result.suggest``."""
        body: dict[str, Any] = {"content": content, "version": 2, "scene": scene, "openid": openid}
        if nickname:
            body["nickname"] = nickname
        result = self._call(lambda: self.client.post(f"{WECHAT_ORIGIN}/wxa/msg_sec_check", data=body))
        verdict = result.get("result") or {}
        return TextCheck(verdict.get("suggest", "review"), int(verdict.get("label", 21000)), result.get("trace_id"))


def decrypt_open_data(appid: str, session_key: str, encrypted_data: str, iv: str) -> dict[str, Any]:
    """Decrypt ``encryptedData`` (AES-128-CBC, PKCS#7) and check its watermark is ours."""
    try:
        key = base64.b64decode(session_key, validate=True)
        iv_bytes = base64.b64decode(iv, validate=True)
        data = base64.b64decode(encrypted_data, validate=True)
        decryptor = Cipher(algorithms.AES(key), modes.CBC(iv_bytes)).decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        plain = json.loads(unpadder.update(padded) + unpadder.finalize())
    except (ValueError, TypeError) as exc:
        raise OpenDataInvalid() from exc
    watermark = plain.get("watermark") if isinstance(plain, dict) else None
    if not isinstance(watermark, dict) or watermark.get("appid") != appid:
        raise OpenDataInvalid(details={"watermark": ["数据不属于本小程序 / data belongs to another app"]})
    return plain


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _token_of(exc: WeChatClientException) -> str:
    request = getattr(exc, "request", None)
    url = getattr(request, "url", "") or ""
    from urllib.parse import parse_qs, urlsplit
    return (parse_qs(urlsplit(url).query).get("access_token") or [""])[0]


def _upstream(errcode: int | None, errmsg: Any) -> Exception:
    details = {"errcode": errcode, "errmsg": str(errmsg)[:200] if errmsg else None}
    if errcode == -1:
        return WeChatBusy(details=details)
    if errcode in (45009, 45011):
        return WeChatRateLimited(details=details)
    if errcode is None:
        return WeChatUnavailable(details=details)
    return WeChatRejected(details=details)
