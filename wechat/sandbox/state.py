"""All sandbox state, in memory, in one object guarded by one re-entrant lock.

Each emulated area (``mp`` = api.weixin.qq.com; later ``pay``) keeps its data in its own
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

from flask import current_app

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


AREA_FACTORIES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "mp": MiniProgramState.from_config,
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
            self.failures: dict[str, dict[str, int]] = {}
            self.areas = {name: make(self.config) for name, make in AREA_FACTORIES.items()}

    @property
    def mp(self) -> MiniProgramState:
        return self.areas["mp"]

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

    def arm_failure(self, path: str, errcode: int, count: int) -> None:
        with self.lock:
            self.failures[path] = {"errcode": errcode, "remaining": count}

    def take_failure(self, path: str) -> int | None:
        """The errcode to answer for this call to ``path``, if a failure is armed."""
        with self.lock:
            failure = self.failures.get(path)
            if failure is None:
                return None
            failure["remaining"] -= 1
            if failure["remaining"] <= 0:
                del self.failures[path]
            return failure["errcode"]


def sandbox_state() -> SandboxState:
    """The state of the sandbox app serving the current request."""
    return current_app.extensions[EXTENSION_KEY]
