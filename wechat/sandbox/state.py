"""All sandbox state, in memory, in one object guarded by one re-entrant lock.

Each emulated area (``mp`` = api.weixin.qq.com, ``pay`` = api.mch.weixin.qq.com) keeps its data in its own
object under ``SandboxState.areas``; what every area shares (virtual clock, recorded calls,
injected failures) lives on ``SandboxState`` itself. Callers hold ``state.lock`` while they
read or change anything.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from flask import current_app, request

from wechat.sandbox.pay_crypto import load_private_key, load_public_key

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")
EXTENSION_KEY = "wechat_sandbox"


@dataclass
class User:
    """A WeChat user of one mini-program (openids are per appid)."""

    openid: str
    appid: str
    unionid: str | None = None
    session_key: str | None = None
    last_login_at: float | None = None
    blocked: bool = False
    login_call_times: deque[float] = field(default_factory=deque)
    accepted: dict[str, int] = field(default_factory=dict)  # template_id -> sends left


@dataclass
class LoginCode:
    """A ``wx.login`` code."""

    appid: str
    openid: str
    issued_at: float
    used: bool = False


@dataclass
class PhoneCode:
    """A ``getPhoneNumber`` button code."""

    appid: str
    phone_number: str
    country_code: str
    issued_at: float
    used: bool = False


@dataclass
class Token:
    """An access_token of the classic (/cgi-bin/token) or the stable pool."""

    value: str
    appid: str
    pool: str
    expires_at: float
    revoked_at: float | None = None  # superseded or invalidated: unusable from then on


@dataclass
class MiniProgramState:
    """State of the api.weixin.qq.com emulation."""

    blocklist: dict[str, int]
    users: dict[str, User] = field(default_factory=dict)
    login_codes: dict[str, LoginCode] = field(default_factory=dict)
    phone_codes: dict[str, PhoneCode] = field(default_factory=dict)
    tokens: dict[str, Token] = field(default_factory=dict)
    latest_token: dict[tuple[str, str], str] = field(default_factory=dict)  # (pool, appid)
    token_fetches: dict[tuple[str, date], int] = field(default_factory=dict)  # (appid, day)
    stable_forces: dict[tuple[str, date], int] = field(default_factory=dict)  # (appid, day)
    last_stable_force_at: dict[str, float] = field(default_factory=dict)
    wxacode_call_times: dict[str, deque[float]] = field(default_factory=dict)
    wxacodes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    token_issued: int = 0
    stable_token_issued: int = 0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MiniProgramState:
        return cls(blocklist=dict(config["BLOCKLIST"]))


@dataclass
class Merchant:
    """A WeChat Pay merchant (direct mode): its appid, API certificate serial, public key, APIv3 key."""

    mchid: str
    appid: str
    serial_no: str
    public_key: Any  # cryptography RSAPublicKey: verifies request signatures and paySign
    apiv3_key: str


@dataclass
class PayOrder:
    """A JSAPI or Native order of one merchant, with what it was created with and what happened to
    it. A Native order has no payer until its ``code_url`` is scanned and paid."""

    mchid: str
    appid: str
    out_trade_no: str
    description: str
    attach: str | None
    notify_url: str
    total: int
    currency: str
    openid: str | None
    time_expire: float
    params: dict[str, Any]  # the validated create parameters: a re-order must repeat them
    created_at: float
    prepay_ids: list[str] = field(default_factory=list)  # oldest first; only the last one can pay
    trade_state: str = "NOTPAY"
    transaction_id: str | None = None
    success_time: float | None = None
    closed_at: float | None = None
    refunded: int = 0
    refund_nos: list[str] = field(default_factory=list)
    trade_type: str = "JSAPI"  # or NATIVE
    code_url: str | None = None  # NATIVE: what the merchant shows as a QR code


@dataclass
class Prepay:
    prepay_id: str
    mchid: str
    out_trade_no: str
    issued_at: float


@dataclass
class PayRefund:
    mchid: str
    out_refund_no: str
    refund_id: str
    out_trade_no: str
    transaction_id: str
    reason: str | None
    notify_url: str | None
    refund: int
    total: int
    currency: str
    created_at: float
    success_time: float
    params: dict[str, Any]
    status: str = "SUCCESS"  # SUCCESS, ABNORMAL (not final: ended by a hook), CLOSED


@dataclass
class PayEvent:
    """One notification (same id and body on every attempt) and where its retries stand."""

    event_id: str
    event_type: str
    mchid: str
    out_trade_no: str
    url: str
    body: bytes
    attempts: int = 0
    next_due: float | None = None  # None: delivered, given up, or being sent right now
    acknowledged: bool = False
    given_up: bool = False


@dataclass
class PayState:
    """State of the api.mch.weixin.qq.com emulation (WeChat Pay API v3)."""

    merchants: dict[str, Merchant]
    private_key: Any  # cryptography RSAPrivateKey: the "WeChat Pay" key behind PAY_PUBLIC_KEY_ID
    orders: dict[tuple[str, str], PayOrder] = field(default_factory=dict)  # (mchid, out_trade_no)
    transactions: dict[str, tuple[str, str]] = field(default_factory=dict)  # transaction_id -> order key
    prepays: dict[str, Prepay] = field(default_factory=dict)
    code_urls: dict[str, tuple[str, str]] = field(default_factory=dict)  # NATIVE code_url -> order key
    refunds: dict[tuple[str, str], PayRefund] = field(default_factory=dict)  # (mchid, out_refund_no)
    next_refund_status: str = "SUCCESS"  # what refunds created from now on end in (a hook sets ABNORMAL)
    events: list[PayEvent] = field(default_factory=list)
    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> PayState:
        merchants = {
            mchid: Merchant(
                mchid=mchid,
                appid=merchant["appid"],
                serial_no=merchant["serial_no"],
                public_key=load_public_key(merchant["public_key_pem"]),
                apiv3_key=merchant["apiv3_key"],
            )
            for mchid, merchant in config["PAY_MERCHANTS"].items()
        }
        return cls(merchants=merchants, private_key=load_private_key(config["PAY_PRIVATE_KEY_PEM"]))


AREA_FACTORIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "mp": MiniProgramState.from_config,
    "pay": PayState.from_config,
}


class SandboxState:
    """The whole sandbox: config, lock, virtual clock, call log, failures and areas."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Back to the state right after start-up."""
        with self.lock:
            self.clock_offset = 0.0
            self.calls: list[dict[str, Any]] = []
            self.failures: dict[str, dict[str, Any]] = {}
            self.delays: dict[str, float] = {}  # path prefix -> seconds every emulated API call waits
            self.areas = {name: make(self.config) for name, make in AREA_FACTORIES.items()}

    @property
    def mp(self) -> MiniProgramState:
        return self.areas["mp"]

    @property
    def pay(self) -> PayState:
        return self.areas["pay"]

    def now(self) -> float:
        """Sandbox time: real time plus the offset moved by the clock hook."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> float:
        with self.lock:
            self.clock_offset += seconds
            return self.now()

    def today(self) -> date:
        """The sandbox date in Beijing, which is when WeChat's daily quotas roll over."""
        return datetime.fromtimestamp(self.now(), CHINA_TZ).date()

    def record_call(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append({**call, "at": self.now()})

    def record_request(self) -> None:
        """Record the API call being served (every emulated area does, before anything else)."""
        self.record_call({
            "method": request.method,
            "path": request.path,
            "query": request.args.to_dict(),
            "json": request.get_json(force=True, silent=True),
            "content_type": request.content_type,
        })

    def arm_failure(self, path: str, errcode: int, count: int, pay_error: tuple[int, str] = (500, "SYSTEM_ERROR")
                    ) -> None:
        """The next ``count`` calls to ``path`` fail: a WeChat API answers ``errcode``, a WeChat Pay
        one ``pay_error`` (HTTP status, code)."""
        with self.lock:
            self.failures[path] = {"errcode": errcode, "pay_error": pay_error, "remaining": count}

    def set_delay(self, prefix: str, seconds: float) -> None:
        with self.lock:
            if seconds > 0:
                self.delays[prefix] = seconds
            else:
                self.delays.pop(prefix, None)

    def wait_delay(self, path: str) -> float:
        """A slow WeChat: sleep (no lock held) as long as the longest delay armed for a prefix of
        ``path``; the call is then served as usual, after its caller may have given up."""
        with self.lock:
            seconds = max((s for prefix, s in self.delays.items() if path.startswith(prefix)), default=0.0)
        if seconds:
            time.sleep(seconds)
        return seconds

    def take_failure(self, path: str) -> dict[str, Any] | None:
        """The failure armed for this call to ``path`` (``errcode``, ``pay_error``), if any."""
        with self.lock:
            failure = self.failures.get(path)
            if failure is None:
                return None
            failure["remaining"] -= 1
            if failure["remaining"] <= 0:
                del self.failures[path]
            return failure


def sandbox_state() -> SandboxState:
    """The state of the sandbox app serving the current request."""
    return current_app.extensions[EXTENSION_KEY]
