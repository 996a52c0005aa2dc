"""A local emulator of WeChat's side, for tests and dev: api.weixin.qq.com (mini-program APIs)
and api.mch.weixin.qq.com (WeChat Pay API v3, direct merchant JSAPI).

Written from WECHAT_PROTOCOLS.md, independently of ``wechat/``, ``payments/`` and ``carbon/``,
so the adapter and the emulator check each other. It imports only the standard library and
general packages.
"""
from __future__ import annotations

from typing import Any

from flask import Flask

from wechat.sandbox.config import resolve_config
from wechat.sandbox.hooks import bp as hooks_blueprint
from wechat.sandbox.mp import bp as mp_blueprint
from wechat.sandbox.pay import bp as pay_blueprint
from wechat.sandbox.pay_hooks import bp as pay_hooks_blueprint
from wechat.sandbox.state import EXTENSION_KEY, SandboxState

__all__ = ["create_sandbox_app"]


def create_sandbox_app(config: dict[str, Any] | None = None) -> Flask:
    """A Flask app serving the emulated APIs and the ``/__sandbox__/`` hooks.

    ``config`` overrides keys of ``wechat.sandbox.config.DEFAULT_CONFIG``.
    """
    app = Flask(__name__)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions[EXTENSION_KEY] = SandboxState(resolve_config(config))
    app.register_blueprint(mp_blueprint)
    app.register_blueprint(pay_blueprint)
    app.register_blueprint(hooks_blueprint)
    app.register_blueprint(pay_hooks_blueprint)
    return app
