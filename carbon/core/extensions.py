"""Extension singletons (created here, bound to an app in create_app) and accessors."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import current_app
from flask_migrate import Migrate
from flask_smorest import Api

from carbon.core.db import db

if TYPE_CHECKING:
    from carbon.core.fallback import RedisBreaker
    from carbon.core.ratelimit import RateLimiter
    from carbon.core.settings import Settings
    from payments.provider import PaymentProvider
    from wechat.api import WeChatGateway

migrate = Migrate()

__all__ = ["db", "job_queue", "migrate", "payments", "rate_limiter", "redis_breaker", "redis_client", "settings",
           "wechat"]


def api() -> Api:
    """This app's flask-smorest Api (created per app by create_app)."""
    return current_app.extensions["diandian.api"]


def settings() -> Settings:
    return current_app.extensions["diandian.settings"]


def wechat() -> WeChatGateway:
    return current_app.extensions["diandian.wechat"]


def payments() -> PaymentProvider:
    return current_app.extensions["diandian.payments"]


def redis_client() -> Any | None:
    return current_app.extensions.get("diandian.redis")


def job_queue() -> Any | None:
    """The RQ queue the workers serve (``DIANDIAN_JOBS=workers`` with Redis), else None."""
    return current_app.extensions.get("diandian.job_queue")


def rate_limiter() -> RateLimiter:
    return current_app.extensions["diandian.ratelimiter"]


def redis_breaker() -> RedisBreaker:
    return current_app.extensions["diandian.redis_breaker"]
