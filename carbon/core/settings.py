"""Settings: one typed object, from the environment (prefix ``DIANDIAN_``) overlaid
by an explicit mapping (tests), validated at start.

Every key is documented in the README's configuration table.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "DIANDIAN_"
DEFAULT_SECRET_KEY = "dev-only-insecure-secret-key-change-me"
REAL_WECHAT_API_BASE = "https://api.weixin.qq.com"
SANDBOX_APPID = "wxd1a2b3c4d5e6f7a8"
SANDBOX_SECRET = "diandian-sandbox-app-secret-0001"
SANDBOX_APIV3_KEY = "diandian-sandbox-apiv3-key-00001"
SANDBOX_PUBLIC_KEY_ID = "PUB_KEY_ID_0114232020220520000000000000000001"  # the sandbox's WeChat Pay key
REAL_WECHATPAY_API_BASE = "https://api.mch.weixin.qq.com"


class SettingsError(RuntimeError):
    """The configuration cannot run; the message names the setting."""


@dataclass(frozen=True)
class Settings:
    ENV: str = "development"  # development | testing | production
    SECRET_KEY: str = DEFAULT_SECRET_KEY
    DATABASE_URL: str = "sqlite:///var/diandian.sqlite3"
    REDIS_URL: str = ""  # empty: in-process and database fallbacks
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"

    WECHAT_APPID: str = SANDBOX_APPID
    WECHAT_SECRET: str = SANDBOX_SECRET
    WECHAT_API_BASE: str = "http://127.0.0.1:8090"  # the local sandbox
    WECHAT_TOKEN_MODE: str = "stable"  # stable (stable_token) | classic (cgi-bin/token under a lock)
    WECHAT_TIMEOUT_SECONDS: float = 5.0
    ALLOW_SANDBOX: bool = False  # production only: allow a non-WeChat API base

    WECHATPAY_MCHID: str = "1900000109"
    WECHATPAY_SERIAL_NO: str = "5157F09EFDC096DE15EBE81A47057A7232F1B8E1"  # the merchant key's serial
    WECHATPAY_PRIVATE_KEY_PATH: str = ""  # empty: the bundled sandbox key
    WECHATPAY_APIV3_KEY: str = SANDBOX_APIV3_KEY
    WECHATPAY_PUBLIC_KEY_ID: str = SANDBOX_PUBLIC_KEY_ID
    WECHATPAY_PUBLIC_KEY_PATH: str = ""  # empty: the bundled sandbox key
    # a key switch: the APIv3 key and the WeChat Pay public key being replaced, accepted until unset
    WECHATPAY_APIV3_KEY_PREVIOUS: str = ""
    WECHATPAY_PUBLIC_KEY_ID_PREVIOUS: str = ""
    WECHATPAY_PUBLIC_KEY_PATH_PREVIOUS: str = ""
    WECHATPAY_API_BASE: str = "http://127.0.0.1:8090"  # the local sandbox
    WECHATPAY_NOTIFY_URL: str = ""  # empty: PUBLIC_BASE_URL + /api/v1/payments/wechatpay/notify
    ORDER_RESERVATION_MINUTES: int = 15
    MIN_ORDER_AMOUNT: str = "1.00"  # CNY: the smallest charge
    MAX_ORDER_KG: int = 100_000
    PLATFORM_FEE_RATE: str = "0.05"  # share of each payment kept as the platform's fee
    JOBS: str = "inline"  # inline: confirm and run outbox events in the request | workers: `flask worker` does
    MAX_OPEN_ORDERS_PER_GUEST: int = 3  # unpaid orders one guest may hold at once
    MAX_HELD_KG_PER_GUEST: int = 100_000  # kg one guest's unpaid orders may hold at once

    SESSION_TTL_SECONDS: int = 7 * 24 * 3600
    PHONE_KEYS: str = ""  # AES-256 keys (base64 of 32 bytes), comma-separated, the first encrypts; empty: from SECRET_KEY
    ORGANIZER_SESSION_TTL_SECONDS: int = 12 * 3600
    WECHAT_SCENE_PAGE: str = "pages/scene/index"  # the mini-program page a scene's code opens
    WECHAT_CERTIFICATE_PAGE: str = "pages/certificate/index"  # the page a certificate's push opens
    WECHAT_TEMPLATE_CERTIFICATE: str = "TPL_CERT_ISSUED"  # subscribe-message template (empty: no push)
    SCENE_CACHE_SECONDS: float = 5.0  # how long a worker reuses a resolved scene (0: never)
    SCREEN_REFRESH_SECONDS: float = 1.0  # the big screen: at most one read of a scene per process this often
    SCREEN_STREAM_SECONDS: int = 300  # one event stream's life; the browser then reconnects by itself
    LOGIN_RATE_PER_MINUTE_CLIENT: int = 30
    LOGIN_RATE_PER_MINUTE_OPENID: int = 10
    ADMIN_LOGIN_FAILURES_PER_EMAIL: int = 10  # wrong passwords per organizer email per 15 minutes, then locked
    ADMIN_LOGIN_FAILURES_PER_CLIENT: int = 30  # wrong passwords per client address per 15 minutes, then locked
    TRUSTED_PROXIES: int = 0  # proxies in front (nginx: 1) whose X-Forwarded-For/-Proto/-Host are believed
    MAX_CONTENT_LENGTH: int = 64 * 1024
    LOG_LEVEL: str = "INFO"
    LOG_REQUESTS: bool = True
    METRICS_TOKEN: str = ""  # bearer token for /metrics; empty: only direct clients on this machine

    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_production(self) -> bool:
        return self.ENV == "production"

    @property
    def is_testing(self) -> bool:
        return self.ENV == "testing"

    @property
    def phone_keys(self) -> list[bytes]:
        """The phone-number keys, the encrypting one first (undecodable entries come out as b"")."""
        keys = []
        for text in (part.strip() for part in self.PHONE_KEYS.split(",")):
            if text:
                try:
                    keys.append(base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True))
                except (ValueError, binascii.Error):
                    keys.append(b"")
        return keys

    @property
    def notify_url(self) -> str:
        """Where WeChat Pay sends payment and refund notifications."""
        return self.WECHATPAY_NOTIFY_URL or f"{self.PUBLIC_BASE_URL.rstrip('/')}/api/v1/payments/wechatpay/notify"

    @property
    def uses_wechat_sandbox(self) -> bool:
        return self.WECHAT_API_BASE.rstrip("/") != REAL_WECHAT_API_BASE

    def validate(self) -> None:
        """Refuse to start on a configuration that cannot be right."""
        if self.ENV not in {"development", "testing", "production"}:
            raise SettingsError(f"DIANDIAN_ENV must be development, testing or production, not {self.ENV!r}")
        if self.WECHAT_TOKEN_MODE not in {"stable", "classic"}:
            raise SettingsError("DIANDIAN_WECHAT_TOKEN_MODE must be 'stable' or 'classic'")
        if len(self.WECHATPAY_APIV3_KEY.encode()) != 32:
            raise SettingsError("DIANDIAN_WECHATPAY_APIV3_KEY must be 32 bytes")
        if self.WECHATPAY_APIV3_KEY_PREVIOUS and len(self.WECHATPAY_APIV3_KEY_PREVIOUS.encode()) != 32:
            raise SettingsError("DIANDIAN_WECHATPAY_APIV3_KEY_PREVIOUS must be 32 bytes (or empty)")
        if bool(self.WECHATPAY_PUBLIC_KEY_ID_PREVIOUS) != bool(self.WECHATPAY_PUBLIC_KEY_PATH_PREVIOUS):
            raise SettingsError("DIANDIAN_WECHATPAY_PUBLIC_KEY_ID_PREVIOUS and DIANDIAN_WECHATPAY_PUBLIC_KEY_PATH_PREVIOUS "
                                "go together")
        if self.JOBS not in {"inline", "workers"}:
            raise SettingsError("DIANDIAN_JOBS must be 'inline' or 'workers'")
        if self.SESSION_TTL_SECONDS <= 0:
            raise SettingsError("DIANDIAN_SESSION_TTL_SECONDS must be positive")
        if self.SCREEN_REFRESH_SECONDS <= 0 or self.SCREEN_STREAM_SECONDS <= 0:
            raise SettingsError("DIANDIAN_SCREEN_REFRESH_SECONDS and DIANDIAN_SCREEN_STREAM_SECONDS must be positive")
        if self.TRUSTED_PROXIES < 0:
            raise SettingsError("DIANDIAN_TRUSTED_PROXIES must be 0 or more")
        if self.METRICS_TOKEN and len(self.METRICS_TOKEN) < 16:
            raise SettingsError("DIANDIAN_METRICS_TOKEN must be empty or at least 16 characters")
        if any(len(key) != 32 for key in self.phone_keys):
            raise SettingsError("DIANDIAN_PHONE_KEYS must be base64 of 32 bytes each, comma-separated")
        if not self.is_production:
            return
        if not self.SECRET_KEY or self.SECRET_KEY == DEFAULT_SECRET_KEY or len(self.SECRET_KEY) < 32:
            raise SettingsError("DIANDIAN_SECRET_KEY is missing, the default, or shorter than 32 characters")
        if not self.WECHAT_SECRET or self.WECHAT_SECRET == SANDBOX_SECRET:
            raise SettingsError("DIANDIAN_WECHAT_SECRET is missing or the sandbox default")
        if not self.WECHAT_APPID or self.WECHAT_APPID == SANDBOX_APPID:
            raise SettingsError("DIANDIAN_WECHAT_APPID is missing or the sandbox default")
        if not self.WECHATPAY_PRIVATE_KEY_PATH or not self.WECHATPAY_PUBLIC_KEY_PATH:
            raise SettingsError("DIANDIAN_WECHATPAY_PRIVATE_KEY_PATH and DIANDIAN_WECHATPAY_PUBLIC_KEY_PATH must "
                                "name the merchant key and the WeChat Pay public key (not the sandbox's)")
        if self.WECHATPAY_APIV3_KEY == SANDBOX_APIV3_KEY:
            raise SettingsError("DIANDIAN_WECHATPAY_APIV3_KEY is the sandbox default")
        sandbox_pay = self.WECHATPAY_API_BASE.rstrip("/") != REAL_WECHATPAY_API_BASE
        if self.WECHATPAY_PUBLIC_KEY_ID == SANDBOX_PUBLIC_KEY_ID and not sandbox_pay:
            raise SettingsError("DIANDIAN_WECHATPAY_PUBLIC_KEY_ID is the sandbox's: every notification would be "
                                "refused (set the PUB_KEY_ID_… of the merchant console)")
        if sandbox_pay and not self.ALLOW_SANDBOX:
            raise SettingsError(f"DIANDIAN_WECHATPAY_API_BASE points at {self.WECHATPAY_API_BASE}, not WeChat Pay; "
                                "set DIANDIAN_ALLOW_SANDBOX=1 to allow this in production")
        if not self.notify_url.startswith("https://") and not self.ALLOW_SANDBOX:
            raise SettingsError(f"WeChat Pay sends its notifications to https only, not {self.notify_url}: set "
                                "DIANDIAN_PUBLIC_BASE_URL (or DIANDIAN_WECHATPAY_NOTIFY_URL) to the https address")
        if self.uses_wechat_sandbox and not self.ALLOW_SANDBOX:
            raise SettingsError(
                f"DIANDIAN_WECHAT_API_BASE points at {self.WECHAT_API_BASE}, not WeChat; "
                "set DIANDIAN_ALLOW_SANDBOX=1 to allow this in production")
        if not self.PHONE_KEYS.strip():
            raise SettingsError("DIANDIAN_PHONE_KEYS is missing (the key that encrypts phone numbers)")


def _coerce(raw: Any, kind: type, name: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name}={raw!r} is not a valid {kind.__name__}") from exc
    return raw


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Defaults, then ``DIANDIAN_*`` environment variables, then ``overrides``."""
    environ = os.environ if environ is None else environ
    types = {f.name: f.type for f in dataclasses.fields(Settings)}
    kinds = {"str": str, "bool": bool, "int": int, "float": float}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for name, type_name in types.items():
        if name == "extra":
            continue
        if PREFIX + name in environ:
            values[name] = _coerce(environ[PREFIX + name], kinds.get(str(type_name), str), name)
    for key, value in (overrides or {}).items():
        if key in types and key != "extra":
            values[key] = _coerce(value, kinds.get(str(types[key]), str), key)
        else:
            extra[key] = value
    settings = Settings(**values, extra=extra)
    settings.validate()
    return settings
