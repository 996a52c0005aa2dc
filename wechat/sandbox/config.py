"""Sandbox configuration: defaults and the check of a caller's overrides."""
from __future__ import annotations

import copy
from typing import Any

from wechat.sandbox.keywords import KEYWORD_RULES
from wechat.sandbox.pay_crypto import read_key_file

APIV3_KEY_LENGTH = 32
MERCHANT_FIELDS = ("appid", "serial_no", "public_key_pem", "apiv3_key")

DEFAULT_CONFIG: dict[str, Any] = {
    "APPS": {"wxd1a2b3c4d5e6f7a8": "diandian-sandbox-app-secret-0001"},
    "PUBLISHED_PAGES": [
        "pages/index/index",
        "pages/scene/index",
        "pages/footprint/index",
        "pages/certificate/index",
        "pages/leaderboard/index",
    ],
    "UNPUBLISHED_PAGES": ["pages/dev/index"],
    "TEMPLATES": {
        "TPL_CERT_ISSUED": {
            "thing1": "thing",
            "number2": "number",
            "date3": "date",
            "amount4": "amount",
            "character_string5": "character_string",
        },
        "TPL_ORDER_PAID": {
            "thing1": "thing",
            "amount2": "amount",
            "time3": "time",
            "phrase4": "phrase",
            "name5": "name",
        },
    },
    "TOKEN_TTL": 7200,
    "TOKEN_OVERLAP": 300,
    "TOKEN_DAILY_QUOTA": 2000,
    "STABLE_FORCE_DAILY_LIMIT": 20,
    "STABLE_FORCE_MIN_INTERVAL": 30,
    "CODE_TTL": 300,
    "LOGIN_PER_MINUTE": 100,
    "WXACODE_PER_MINUTE": 5000,
    "VISIT_WINDOW": 7200,
    "BLOCKLIST": {"赌博": 20006, "色情": 20002, "法轮": 20001, "傻逼": 20003},
    "REVIEW_WORDS": ["代开发票"],
    # WeChat Pay API v3 (api.mch.weixin.qq.com), direct merchants in public-key mode.
    "PAY_MERCHANTS": {
        "1900000109": {
            "appid": "wxd1a2b3c4d5e6f7a8",
            "serial_no": "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
            "public_key_pem": read_key_file("merchant_public_key.pem"),
            "apiv3_key": "diandian-sandbox-apiv3-key-00001",
        },
    },
    "PAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0114232020220520000000000000000001",
    "PAY_PRIVATE_KEY_PEM": read_key_file("wechatpay_private_key.pem"),
    "PAY_CLOSE_MIN_AGE_SECONDS": 300,
    "PAY_NOTIFY_TIMEOUT_SECONDS": 5,
    "PAY_RETRY_SCHEDULE": [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600],
    "PAY_PREPAY_TTL_SECONDS": 7200,
}


def resolve_config(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Defaults updated with ``overrides``, plus the derived keys.

    Derived: ``DEFAULT_APPID`` (first of ``APPS``) and ``ALL_PAGES`` (published pages
    plus the pages that exist only in trial/develop builds), unless given.
    """
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(DEFAULT_CONFIG) - {"DEFAULT_APPID", "ALL_PAGES"}
    if unknown:
        raise ValueError(f"unknown sandbox config keys: {sorted(unknown)}")
    config = copy.deepcopy(DEFAULT_CONFIG)
    config.update(copy.deepcopy(overrides))
    if not config["APPS"]:
        raise ValueError("APPS needs at least one appid")
    config.setdefault("DEFAULT_APPID", next(iter(config["APPS"])))
    if config["DEFAULT_APPID"] not in config["APPS"]:
        raise ValueError(f"DEFAULT_APPID {config['DEFAULT_APPID']!r} is not in APPS")
    config.setdefault("ALL_PAGES", config["PUBLISHED_PAGES"] + config["UNPUBLISHED_PAGES"])
    for template_id, keywords in config["TEMPLATES"].items():
        for name, kind in keywords.items():
            if kind not in KEYWORD_RULES:
                raise ValueError(f"template {template_id}: keyword {name} has unknown type {kind!r}")
    check_pay_config(config)
    return config


def check_pay_config(config: dict[str, Any]) -> None:
    for mchid, merchant in config["PAY_MERCHANTS"].items():
        missing = [name for name in MERCHANT_FIELDS if not isinstance(merchant.get(name), str)]
        if missing:
            raise ValueError(f"PAY_MERCHANTS[{mchid}] lacks {missing}")
        apiv3_key = merchant["apiv3_key"]
        if len(apiv3_key) != APIV3_KEY_LENGTH or not apiv3_key.isascii():
            raise ValueError(f"PAY_MERCHANTS[{mchid}]: the APIv3 key must be 32 ASCII characters")
    if any(not isinstance(step, (int, float)) or step <= 0 for step in config["PAY_RETRY_SCHEDULE"]):
        raise ValueError("PAY_RETRY_SCHEDULE must hold positive numbers of seconds")
