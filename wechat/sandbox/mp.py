"""The mini-program side of api.weixin.qq.com, as described in WECHAT_PROTOCOLS.md §1–5.

Every call is recorded, and may be answered by an injected failure, before its view runs.
Views raise ``WeChatError``; the blueprint turns it into WeChat's HTTP 200 error body.
"""
from __future__ import annotations

import base64
import math
import re
import secrets
from collections import deque
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, request

from wechat.sandbox.errors import WeChatError, error_response, json_response, ok_response, request_id
from wechat.sandbox.keywords import KEYWORD_RULES
from wechat.sandbox.state import MiniProgramState, SandboxState, Token, User, sandbox_state
from wechat.sandbox.wxacode import AUTO_LINE_COLOR, render_png, wxacode_text

bp = Blueprint("wechat_sandbox_mp", __name__)

CLASSIC, STABLE = "classic", "stable"
SCENE_RE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+")
SCENE_MAX = 32
ENV_VERSIONS = ("release", "trial", "develop")
WXACODE_FIELDS = {"scene", "page", "check_path", "env_version", "width", "auto_color", "line_color", "is_hyaline"}
WXACODE_WIDTH = (280, 1280)
DEFAULT_PAGE = "pages/index/index"
MINIPROGRAM_STATES = ("developer", "trial", "formal")
LANGS = ("zh_CN", "en_US", "zh_HK", "zh_TW")
SEC_CHECK_SCENES = (1, 2, 3, 4)
SEC_CHECK_MAX_CHARS = 2500
SEC_CHECK_PROB = 90
LABEL_NORMAL, LABEL_REVIEW = 100, 21000
MINUTE = 60


@bp.before_request
def record_call_and_inject_failure() -> Response | None:
    state = sandbox_state()
    state.record_request()
    state.wait_delay(request.path)
    failure = state.take_failure(request.path)
    return None if failure is None else error_response(WeChatError(failure["errcode"]))


@bp.errorhandler(WeChatError)
def answer_wechat_error(error: WeChatError) -> Response:
    return error_response(error)


# ---- helpers ------------------------------------------------------------------------------


def json_body(errcode: int) -> dict[str, Any]:
    """The body parsed as a JSON object whatever the Content-Type, else ``errcode``."""
    body = request.get_json(force=True, silent=True)
    if not isinstance(body, dict):
        raise WeChatError(errcode)
    return body


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_app_credentials(state: SandboxState, appid: str | None, secret: str | None) -> None:
    apps = state.config["APPS"]
    if not isinstance(appid, str) or not appid:
        raise WeChatError(41002)
    if appid not in apps:
        raise WeChatError(40013)
    if not isinstance(secret, str) or not secret:
        raise WeChatError(41004)
    if secret != apps[appid]:
        raise WeChatError(40125)


def token_problem(token: Token, now: float) -> int | None:
    """40001 when superseded or invalidated, 42001 when past its lifetime, else None."""
    if token.revoked_at is not None and now >= token.revoked_at:
        return 40001
    if now >= token.expires_at:
        return 42001
    return None


def issue_token(state: SandboxState, appid: str, pool: str) -> Token:
    mp = state.mp
    token = Token(
        value=secrets.token_urlsafe(96),
        appid=appid,
        pool=pool,
        expires_at=state.now() + state.config["TOKEN_TTL"],
    )
    mp.tokens[token.value] = token
    mp.latest_token[(pool, appid)] = token.value
    return token


def latest_token(mp: MiniProgramState, pool: str, appid: str) -> Token | None:
    value = mp.latest_token.get((pool, appid))
    return None if value is None else mp.tokens[value]


def requires_access_token(view: Callable[..., Response]) -> Callable[..., Response]:
    """Check ``?access_token=`` and pass the token's appid to the view."""

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Response:
        value = request.args.get("access_token")
        if not value:
            raise WeChatError(41001)
        state = sandbox_state()
        with state.lock:
            token = state.mp.tokens.get(value)
            problem = 40001 if token is None else token_problem(token, state.now())
        if problem:
            raise WeChatError(problem)
        return view(token.appid, *args, **kwargs)

    return checked


def within_rate(call_times: deque[float], now: float, limit: int) -> bool:
    """Count this call in a one-minute sliding window unless the window is full."""
    while call_times and call_times[0] <= now - MINUTE:
        call_times.popleft()
    if len(call_times) >= limit:
        return False
    call_times.append(now)
    return True


def logged_in_user(state: SandboxState, appid: str, openid: Any) -> User:
    """A user of ``appid`` who has logged in at least once, else 40003."""
    user = state.mp.users.get(openid) if isinstance(openid, str) else None
    if user is None or user.appid != appid or user.last_login_at is None:
        raise WeChatError(40003)
    return user


# ---- access_token -------------------------------------------------------------------------


@bp.get("/cgi-bin/token")
def get_access_token() -> Response:
    """Classic token: every call issues a new one; the previous one lives TOKEN_OVERLAP more."""
    state = sandbox_state()
    config = state.config
    if request.args.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    appid = request.args.get("appid")
    check_app_credentials(state, appid, request.args.get("secret"))
    with state.lock:
        mp = state.mp
        quota_key = (appid, state.today())
        if mp.token_fetches.get(quota_key, 0) >= config["TOKEN_DAILY_QUOTA"]:
            raise WeChatError(
                45009, "reach max api daily quota limit, could get access_token by getStableAccessToken"
            )
        mp.token_fetches[quota_key] = mp.token_fetches.get(quota_key, 0) + 1
        previous = latest_token(mp, CLASSIC, appid)
        if previous is not None:
            overlap_end = state.now() + config["TOKEN_OVERLAP"]
            previous.revoked_at = min(previous.revoked_at or math.inf, overlap_end)
        token = issue_token(state, appid, CLASSIC)
        mp.token_issued += 1
    return json_response({"access_token": token.value, "expires_in": config["TOKEN_TTL"]})


@bp.post("/cgi-bin/stable_token")
def get_stable_access_token() -> Response:
    """Stable token: the same one while it has more than TOKEN_OVERLAP left.

    ``force_refresh`` revokes the current one at once and issues another, at most
    STABLE_FORCE_DAILY_LIMIT times a day and STABLE_FORCE_MIN_INTERVAL seconds apart.
    """
    state = sandbox_state()
    config = state.config
    body = json_body(47001)
    if body.get("grant_type") != "client_credential":
        raise WeChatError(40002)
    appid = body.get("appid")
    check_app_credentials(state, appid, body.get("secret"))
    force_refresh = body.get("force_refresh", False)
    if not isinstance(force_refresh, bool):
        raise WeChatError(47001, "data format error hint: force_refresh must be a boolean")
    with state.lock:
        mp = state.mp
        now = state.now()
        current = latest_token(mp, STABLE, appid)
        usable = current is not None and token_problem(current, now) is None
        if not force_refresh and usable and current.expires_at - now > config["TOKEN_OVERLAP"]:
            token = current
        else:
            if force_refresh:
                register_forced_refresh(state, appid)
                if usable:
                    current.revoked_at = now
            token = issue_token(state, appid, STABLE)
            mp.stable_token_issued += 1
        expires_in = round(token.expires_at - now)
    return json_response({"access_token": token.value, "expires_in": expires_in})


def register_forced_refresh(state: SandboxState, appid: str) -> None:
    config = state.config
    mp = state.mp
    now = state.now()
    quota_key = (appid, state.today())
    if mp.stable_forces.get(quota_key, 0) >= config["STABLE_FORCE_DAILY_LIMIT"]:
        raise WeChatError(45009, "reach max api daily quota limit (force_refresh)")
    last = mp.last_stable_force_at.get(appid)
    if last is not None and now - last < config["STABLE_FORCE_MIN_INTERVAL"]:
        raise WeChatError(45009, "api freq out of limit: force_refresh at most every 30 seconds")
    mp.stable_forces[quota_key] = mp.stable_forces.get(quota_key, 0) + 1
    mp.last_stable_force_at[appid] = now


# ---- login and phone number ---------------------------------------------------------------


@bp.get("/sns/jscode2session")
def code_to_session() -> Response:
    """Exchange a ``wx.login`` code; any ``access_token`` parameter is ignored."""
    state = sandbox_state()
    config = state.config
    args = request.args
    if args.get("grant_type") != "authorization_code":
        raise WeChatError(40002)
    appid = args.get("appid")
    check_app_credentials(state, appid, args.get("secret"))
    js_code = args.get("js_code")
    if not js_code:
        raise WeChatError(41008)
    with state.lock:
        mp = state.mp
        now = state.now()
        code = mp.login_codes.get(js_code)
        if code is None or code.appid != appid:
            raise WeChatError(40029)
        if code.used:
            raise WeChatError(40163)
        if now - code.issued_at >= config["CODE_TTL"]:
            raise WeChatError(40029)
        user = mp.users[code.openid]
        if not within_rate(user.login_call_times, now, config["LOGIN_PER_MINUTE"]):
            raise WeChatError(45011)
        code.used = True
        if user.blocked:
            raise WeChatError(40226)
        user.session_key = base64.b64encode(secrets.token_bytes(16)).decode()
        user.last_login_at = now
        session = {"openid": user.openid, "session_key": user.session_key}
        if user.unionid:
            session["unionid"] = user.unionid
    return json_response(session)


@bp.post("/wxa/business/getuserphonenumber")
@requires_access_token
def get_user_phone_number(appid: str) -> Response:
    """Exchange a ``getPhoneNumber`` button code (single use, CODE_TTL seconds)."""
    state = sandbox_state()
    value = json_body(47001).get("code")
    if not isinstance(value, str) or not value:
        raise WeChatError(47001, "data format error hint: code is required")
    with state.lock:
        now = state.now()
        code = state.mp.phone_codes.get(value)
        if (
            code is None
            or code.appid != appid
            or code.used
            or now - code.issued_at >= state.config["CODE_TTL"]
        ):
            raise WeChatError(40029)
        code.used = True
    foreign = code.country_code != "86"
    phone_info = {
        # Doc: only foreign numbers carry the country code in phoneNumber.
        "phoneNumber": f"+{code.country_code}{code.phone_number}" if foreign else code.phone_number,
        "purePhoneNumber": code.phone_number,
        "countryCode": code.country_code,
        "watermark": {"timestamp": int(now), "appid": appid},
    }
    return ok_response(phone_info=phone_info)


# ---- mini-program codes -------------------------------------------------------------------


@bp.post("/wxa/getwxacodeunlimit")
@requires_access_token
def get_wxacode_unlimited(appid: str) -> Response:
    """A PNG whose QR text names appid, page, scene and env_version."""
    state = sandbox_state()
    with state.lock:
        call_times = state.mp.wxacode_call_times.setdefault(appid, deque())
        if not within_rate(call_times, state.now(), state.config["WXACODE_PER_MINUTE"]):
            raise WeChatError(45009, "reach max api minute quota limit")
    body = json_body(40169)
    unknown = sorted(set(body) - WXACODE_FIELDS)
    if unknown:
        raise WeChatError(47001, f"data format error hint: unknown field {unknown[0]}")
    scene = valid_scene(body.get("scene"))
    env_version = body.get("env_version", "release")
    if env_version not in ENV_VERSIONS:
        raise WeChatError(47001, "data format error hint: env_version must be release, trial or develop")
    check_path = bool_field(body, "check_path", True)
    page = valid_page(state, body.get("page"), check_path, env_version)
    width = body.get("width", 430)
    if not is_int(width) or not WXACODE_WIDTH[0] <= width <= WXACODE_WIDTH[1]:
        raise WeChatError(47001, "data format error hint: width must be an integer from 280 to 1280")
    auto_color = bool_field(body, "auto_color", False)
    is_hyaline = bool_field(body, "is_hyaline", False)
    line_color = AUTO_LINE_COLOR if auto_color else rgb(body.get("line_color", {"r": 0, "g": 0, "b": 0}))

    with state.lock:
        state.mp.wxacodes.append({
            "appid": appid,
            "scene": scene,
            "page": page,
            "env_version": env_version,
            "width": width,
            "at": state.now(),
        })
    png = render_png(wxacode_text(appid, page, scene, env_version), width, line_color, is_hyaline)
    return Response(png, status=200, content_type="image/png")


def valid_scene(scene: Any) -> str:
    if not isinstance(scene, str) or not 1 <= len(scene) <= SCENE_MAX:
        raise WeChatError(40169)
    if not SCENE_RE.fullmatch(scene):
        raise WeChatError(40129)
    return scene


def valid_page(state: SandboxState, page: Any, check_path: bool, env_version: str) -> str:
    """The page to open; it must exist in the build the code opens (41030)."""
    if page is None or page == "":
        page = DEFAULT_PAGE
    if not isinstance(page, str) or page.startswith("/") or "?" in page:
        raise WeChatError(41030, "invalid page hint: no leading '/' and no query string")
    published_only = check_path or env_version == "release"
    pages = state.config["PUBLISHED_PAGES"] if published_only else state.config["ALL_PAGES"]
    if page not in pages:
        raise WeChatError(41030, f"invalid page hint: {page} is not in the {env_version} build")
    return page


def bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise WeChatError(47001, f"data format error hint: {name} must be a boolean")
    return value


def rgb(color: Any) -> tuple[int, int, int]:
    """``{"r","g","b"}`` as ints 0-255; wechatpy sends the numbers as strings."""
    try:
        channels = tuple(int(color[key]) for key in ("r", "g", "b"))
    except (KeyError, TypeError, ValueError):
        channels = ()
    if len(channels) != 3 or not all(0 <= channel <= 255 for channel in channels):
        raise WeChatError(47001, "data format error hint: line_color needs r, g, b from 0 to 255")
    return channels


# ---- subscribe messages -------------------------------------------------------------------


@bp.post("/cgi-bin/message/subscribe/send")
@requires_access_token
def send_subscribe_message(appid: str) -> Response:
    """Send one message; it uses up one acceptance of (touser, template_id)."""
    state = sandbox_state()
    config = state.config
    body = json_body(47001)
    with state.lock:
        user = logged_in_user(state, appid, body.get("touser"))
        template_id = body.get("template_id")
        keywords = config["TEMPLATES"].get(template_id) if isinstance(template_id, str) else None
        if keywords is None:
            raise WeChatError(40037)
        check_message_data(body.get("data"), keywords)
        miniprogram_state = body.get("miniprogram_state", "formal")
        if miniprogram_state not in MINIPROGRAM_STATES:
            raise WeChatError(47003, "argument invalid! miniprogram_state must be developer, trial or formal")
        page = body.get("page") or None
        pages = config["PUBLISHED_PAGES"] if miniprogram_state == "formal" else config["ALL_PAGES"]
        if page is not None and (not isinstance(page, str) or page.split("?", 1)[0] not in pages):
            raise WeChatError(41030)  # formal: a page of the released version
        lang = body.get("lang", "zh_CN")
        if lang not in LANGS:
            raise WeChatError(47003, "argument invalid! lang is invalid")
        if user.accepted.get(template_id, 0) <= 0:
            raise WeChatError(43101)
        user.accepted[template_id] -= 1
        msgid = secrets.randbelow(10**18)
        state.mp.messages.append({
            "msgid": msgid,
            "appid": appid,
            "touser": user.openid,
            "template_id": template_id,
            "page": page,
            "data": body["data"],
            "miniprogram_state": miniprogram_state,
            "lang": lang,
            "at": state.now(),
        })
    return ok_response(msgid=msgid)


def check_message_data(data: Any, keywords: dict[str, str]) -> None:
    """Every template keyword present with a value valid for its type, nothing else."""
    if not isinstance(data, dict) or not data:
        raise WeChatError(47003, "argument invalid! data is empty")
    for key in data:
        if key not in keywords:
            raise WeChatError(47003, f"argument invalid! data.{key} is not a keyword of the template")
    for key, kind in keywords.items():
        entry = data.get(key)
        value = entry.get("value") if isinstance(entry, dict) else None
        if value is None or value == "":
            raise WeChatError(47003, f"argument invalid! data.{key}.value is empty")
        if not isinstance(value, str):
            raise WeChatError(47003, f"argument invalid! data.{key}.value must be a string")
        reason = KEYWORD_RULES[kind](value)
        if reason:
            raise WeChatError(47003, f"argument invalid! data.{key}.value {reason} ({kind})")


# ---- content security ---------------------------------------------------------------------


@bp.post("/wxa/msg_sec_check")
@requires_access_token
def check_text_security(appid: str) -> Response:
    """v2 (``version: 2``) returns a verdict; v1 answers 0 or 87014."""
    body = json_body(47001)
    if body.get("version") in (2, "2"):
        return check_text_security_v2(appid, body)
    content = body.get("content")
    if not isinstance(content, str) or not content:
        raise WeChatError(44002)
    suggest, _, _ = classify_text(sandbox_state(), [content])
    if suggest == "risky":
        raise WeChatError(87014)
    return ok_response()


def check_text_security_v2(appid: str, body: dict[str, Any]) -> Response:
    state = sandbox_state()
    with state.lock:
        user = logged_in_user(state, appid, body.get("openid"))
        if state.now() - user.last_login_at > state.config["VISIT_WINDOW"]:
            raise WeChatError(
                40003, "invalid openid hint: the user has not visited the mini-program in the last 2 hours"
            )
    scene = body.get("scene")
    if not is_int(scene) or scene not in SEC_CHECK_SCENES:
        raise WeChatError(40129)
    content = body.get("content")
    if not isinstance(content, str) or not content:
        raise WeChatError(44002)
    if len(content) > SEC_CHECK_MAX_CHARS:
        raise WeChatError(47001, "data format error hint: content is longer than 2500 characters")
    texts = [body.get(name) for name in ("content", "nickname", "title", "signature")]
    suggest, label, keyword = classify_text(state, [text for text in texts if isinstance(text, str)])
    detail: dict[str, Any] = {
        "strategy": "content_model",
        "errcode": 0,
        "suggest": suggest,
        "label": label,
        "prob": SEC_CHECK_PROB,
    }
    if keyword:
        detail["keyword"] = keyword
    return ok_response(trace_id=request_id(), result={"suggest": suggest, "label": label}, detail=[detail])


def classify_text(state: SandboxState, texts: list[str]) -> tuple[str, int, str | None]:
    """(suggest, label, keyword): risky on a blocklist word, review on a review word."""
    with state.lock:
        blocklist = dict(state.mp.blocklist)
    for word, label in blocklist.items():
        if any(word in text for text in texts):
            return "risky", label, word
    for word in state.config["REVIEW_WORDS"]:
        if any(word in text for text in texts):
            return "review", LABEL_REVIEW, word
    return "pass", LABEL_NORMAL, None
