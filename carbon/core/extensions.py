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


def job_queue(name: str = "default") -> Any | None:
    """The RQ queue of the outbox queue ``name`` (``DIANDIAN_JOBS=workers`` with Redis), else None."""
    queues = current_app.extensions.get("diandian.job_queues")
    if queues is None:
        return None
    if name not in queues:
        from rq import Queue

        queues[name] = Queue("diandian" if name == "default" else f"diandian.{name}", connection=redis_client())
    return queues[name]


def rate_limiter() -> RateLimiter:
    return current_app.extensions["diandian.ratelimiter"]


def redis_breaker() -> RedisBreaker:
    return current_app.extensions["diandian.redis_breaker"]
