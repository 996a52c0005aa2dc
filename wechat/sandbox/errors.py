"""WeChat-style errors: HTTP 200 with ``{"errcode": N, "errmsg": "<text> rid: <hex>"}``."""
from __future__ import annotations

import json
import secrets
from typing import Any

from flask import Response

JSON_CONTENT_TYPE = "application/json; encoding=utf-8"  # what api.weixin.qq.com sends

ERRMSGS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    40129: "invalid scene",
    40163: "code been used",
    40169: "invalid length for scene, or the data is not json string",
    40226: "code blocked",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
    87014: "risky content",
}


class WeChatError(Exception):
    """Raised by a view to answer with a WeChat error body."""

    def __init__(self, errcode: int, text: str | None = None) -> None:
        super().__init__(errcode, text)
        self.errcode = errcode
        self.text = text or ERRMSGS.get(errcode, "sandbox error")


def request_id() -> str:
    """A rid like WeChat's: three groups of hex digits."""
    return "-".join(secrets.token_hex(4) for _ in range(3))


def json_response(body: dict[str, Any]) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=200, content_type=JSON_CONTENT_TYPE)


def error_response(error: WeChatError) -> Response:
    return json_response({"errcode": error.errcode, "errmsg": f"{error.text} rid: {request_id()}"})


def ok_response(**fields: Any) -> Response:
    return json_response({"errcode": 0, "errmsg": "ok", **fields})
