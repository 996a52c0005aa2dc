"""Test hooks under ``/__sandbox__/``: play the user's and WeChat's part, inspect, reset.

JSON in, JSON out. A bad hook request answers 4xx ``{"error": "..."}`` (hooks are not
WeChat APIs, so they do not use errcodes).
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import string
from collections import Counter
from typing import Any

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from flask import Blueprint, Response, jsonify, request

from wechat.sandbox.state import LoginCode, PhoneCode, SandboxState, User, sandbox_state

bp = Blueprint("wechat_sandbox_hooks", __name__, url_prefix="/__sandbox__")

CODE_ALPHABET = string.ascii_letters + string.digits
CODE_LENGTH = 32


class HookError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@bp.errorhandler(HookError)
def answer_hook_error(error: HookError) -> tuple[Response, int]:
    return jsonify(error=error.message), error.status


def payload() -> dict[str, Any]:
    body = request.get_json(force=True, silent=True)
    if body is None and request.get_data():
        raise HookError(400, "body is not JSON")
    if body is not None and not isinstance(body, dict):
        raise HookError(400, "body must be a JSON object")
    return body or {}


def required_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise HookError(400, f"{name} is required")
    return value


def positive_int(body: dict[str, Any], name: str, default: int) -> int:
    value = body.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise HookError(400, f"{name} must be a positive integer")
    return value


def known_user(state: SandboxState, openid: str) -> User:
    user = state.mp.users.get(openid)
    if user is None:
        raise HookError(404, f"unknown openid {openid}")
    return user


def new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


# ---- playing the user ---------------------------------------------------------------------


@bp.post("/login-code")
def issue_login_code() -> Response:
    """``wx.login``: a code for ``openid`` (the user is created on first use)."""
    state = sandbox_state()
    body = payload()
    openid = required_str(body, "openid")
    appid = body.get("appid") or state.config["DEFAULT_APPID"]
    if appid not in state.config["APPS"]:
        raise HookError(400, f"unknown appid {appid}")
    unionid = body.get("unionid")
    with state.lock:
        mp = state.mp
        user = mp.users.setdefault(openid, User(openid=openid, appid=appid))
        if user.appid != appid:
            raise HookError(409, f"openid {openid} belongs to appid {user.appid}")
        if unionid:
            user.unionid = unionid
        code = new_code()
        mp.login_codes[code] = LoginCode(appid=appid, openid=openid, issued_at=state.now())
    return jsonify(code=code, openid=openid)


@bp.post("/phone-code")
def issue_phone_code() -> Response:
    """``<button open-type="getPhoneNumber">``: a code for a phone number."""
    state = sandbox_state()
    body = payload()
    phone_number = str(body.get("phone_number", "13800138000"))
    country_code = str(body.get("country_code", "86"))
    if not phone_number.isdigit() or not country_code.isdigit():
        raise HookError(400, "phone_number and country_code must be digits")
    with state.lock:
        openid = body.get("openid")
        default_appid = known_user(state, openid).appid if openid else state.config["DEFAULT_APPID"]
        appid = body.get("appid") or default_appid
        if appid not in state.config["APPS"]:
            raise HookError(400, f"unknown appid {appid}")
        code = new_code()
        state.mp.phone_codes[code] = PhoneCode(
            appid=appid, phone_number=phone_number, country_code=country_code, issued_at=state.now()
        )
    return jsonify(code=code)


@bp.post("/subscriptions")
def accept_subscription() -> Response:
    """``wx.requestSubscribeMessage`` accepted ``count`` times."""
    state = sandbox_state()
    body = payload()
    openid = required_str(body, "openid")
    template_id = required_str(body, "template_id")
    count = positive_int(body, "count", 1)
    if template_id not in state.config["TEMPLATES"]:
        raise HookError(400, f"unknown template_id {template_id}")
    with state.lock:
        user = known_user(state, openid)
        user.accepted[template_id] = user.accepted.get(template_id, 0) + count
        remaining = user.accepted[template_id]
    return jsonify(remaining=remaining)


@bp.post("/users/<openid>/block")
def block_user(openid: str) -> Response:
    return set_blocked(openid, True)


@bp.post("/users/<openid>/unblock")
def unblock_user(openid: str) -> Response:
    return set_blocked(openid, False)


def set_blocked(openid: str, blocked: bool) -> Response:
    state = sandbox_state()
    with state.lock:
        known_user(state, openid).blocked = blocked
    return jsonify(openid=openid, blocked=blocked)


@bp.post("/encrypted-data")
def encrypt_open_data() -> Response:
    """What ``wx.getUserInfo`` & co. return: ``data`` + watermark, AES-128-CBC with the session_key."""
    state = sandbox_state()
    body = payload()
    openid = required_str(body, "openid")
    data = body.get("data")
    if not isinstance(data, dict):
        raise HookError(400, "data must be a JSON object")
    with state.lock:
        user = known_user(state, openid)
        if user.session_key is None:
            raise HookError(409, f"{openid} has no session_key yet: log in first")
        session_key = user.session_key
        watermark = {"appid": body.get("appid") or user.appid, "timestamp": int(state.now())}
    plaintext = json.dumps({**data, "watermark": watermark}, ensure_ascii=False).encode("utf-8")
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext) + padder.finalize()
    iv = os.urandom(16)
    encryptor = Cipher(algorithms.AES(base64.b64decode(session_key)), modes.CBC(iv)).encryptor()
    encrypted = encryptor.update(padded) + encryptor.finalize()
    return jsonify(encryptedData=base64.b64encode(encrypted).decode(), iv=base64.b64encode(iv).decode())


# ---- playing WeChat -----------------------------------------------------------------------


@bp.post("/failures")
def arm_failure() -> Response:
    """The next ``count`` calls to ``path`` answer ``errcode`` (-1 = system busy); a WeChat Pay path
    answers ``status`` and ``code`` (default 500 SYSTEM_ERROR; e.g. 429 FREQUENCY_LIMITED, 403 NOT_ENOUGH)."""
    body = payload()
    path = required_str(body, "path")
    if not path.startswith("/"):
        raise HookError(400, "path must start with /")
    errcode = body.get("errcode", -1)
    if not isinstance(errcode, int) or isinstance(errcode, bool):
        raise HookError(400, "errcode must be an integer")
    status, code = body.get("status", 500), body.get("code", "SYSTEM_ERROR")
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise HookError(400, "status must be an HTTP error status (400-599)")
    if not isinstance(code, str) or not code.isascii() or not 1 <= len(code) <= 32:
        raise HookError(400, "code must be a WeChat Pay error code (1-32 ASCII characters)")
    count = positive_int(body, "count", 1)
    sandbox_state().arm_failure(path, errcode, count, pay_error=(status, code))
    played = {"status": status, "code": code} if path.startswith("/v3/") else {"errcode": errcode}
    return jsonify(path=path, **played, remaining=count)


@bp.delete("/failures")
def clear_failures() -> Response:
    state = sandbox_state()
    with state.lock:
        state.failures.clear()
    return jsonify(cleared=True)


MAX_DELAY_SECONDS = 60


@bp.post("/delay")
def arm_delay() -> Response:
    """A slow WeChat: every API call whose path starts with ``prefix`` (``/`` = all; hooks never)
    waits ``seconds`` before it is served (and is then served as usual). 0 clears that prefix."""
    body = payload()
    prefix = body.get("prefix", "/")
    if not isinstance(prefix, str) or not prefix.startswith("/") or prefix.startswith("/__sandbox__"):
        raise HookError(400, "prefix must start with / and not be a hook path")
    seconds = body.get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_DELAY_SECONDS:
        raise HookError(400, f"seconds must be a number from 0 to {MAX_DELAY_SECONDS}")
    state = sandbox_state()
    state.set_delay(prefix, float(seconds))
    with state.lock:
        delays = dict(state.delays)
    return jsonify(delays=delays)


@bp.delete("/delay")
def clear_delays() -> Response:
    state = sandbox_state()
    with state.lock:
        state.delays.clear()
    return jsonify(delays={})


@bp.post("/tokens/invalidate")
def invalidate_tokens() -> Response:
    """Every access_token issued so far (both pools) stops working now."""
    state = sandbox_state()
    with state.lock:
        now = state.now()
        for token in state.mp.tokens.values():
            token.revoked_at = now
        count = len(state.mp.tokens)
    return jsonify(invalidated=count)


@bp.post("/clock/advance")
def advance_clock() -> Response:
    seconds = payload().get("seconds")
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or seconds < 0:
        raise HookError(400, "seconds must be a number >= 0")
    return jsonify(now=sandbox_state().advance(seconds))


@bp.post("/content/blocklist")
def replace_blocklist() -> Response:
    words = payload().get("words")
    valid = isinstance(words, dict) and all(
        isinstance(word, str) and word and isinstance(label, int) and not isinstance(label, bool)
        for word, label in words.items()
    )
    if not valid:
        raise HookError(400, "words must map words to integer labels")
    state = sandbox_state()
    with state.lock:
        state.mp.blocklist = dict(words)
    return jsonify(words=words)


@bp.post("/reset")
def reset() -> Response:
    sandbox_state().reset()
    return jsonify(reset=True)


# ---- inspecting ---------------------------------------------------------------------------


@bp.get("/calls")
def list_calls() -> Response:
    """Every API call recorded, optionally only those to ``?path=``."""
    path = request.args.get("path")
    state = sandbox_state()
    with state.lock:
        calls = [call for call in state.calls if path is None or call["path"] == path]
    return jsonify(calls=calls)


@bp.get("/messages")
def list_messages() -> Response:
    state = sandbox_state()
    with state.lock:
        messages = list(state.mp.messages)
    return jsonify(messages=messages)


@bp.get("/wxacodes")
def list_wxacodes() -> Response:
    state = sandbox_state()
    with state.lock:
        wxacodes = list(state.mp.wxacodes)
    return jsonify(wxacodes=wxacodes)


@bp.get("/stats")
def stats() -> Response:
    state = sandbox_state()
    with state.lock:
        body = {
            "token_issued": state.mp.token_issued,
            "stable_token_issued": state.mp.stable_token_issued,
            "calls_by_path": dict(Counter(call["path"] for call in state.calls)),
        }
    return jsonify(body)
