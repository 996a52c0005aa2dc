"""Sandbox configuration: defaults and the check of a caller's overrides."""
from __future__ import annotations

import copy
from typing import Any

from wechat.sandbox.keywords import KEYWORD_RULES

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
    return config
