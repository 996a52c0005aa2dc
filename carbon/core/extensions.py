"""Extension singletons (created here, bound to an app in create_app) and accessors."""
from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask_smorest import Api

from carbon.core.db import db

if TYPE_CHECKING:
    from carbon.core.fallback import RedisBreaker
    from carbon.core.ratelimit import RateLimiter
    from carbon.core.settings import Settings
    from payments.provider import PaymentProvider
    from wechat.api import WeChatGateway

__all__ = ["db", "init_migrations", "job_queue", "payments", "rate_limiter", "redis_breaker", "redis_client", "settings",
           "wechat"]


def init_migrations(app: Flask, directory: str) -> None:
    """Flask-Migrate for ``app`` (``app.extensions["migrate"]`` and the ``flask db`` commands), with
    alembic (and the mako and pygments it pulls in, ~11 MB) imported only when something migrates:
    serving requests and running jobs never does."""
    app.extensions["migrate"] = _Migrations(app, directory)
    app.cli.add_command(_MigrationCommands())


class _Migrations:
    """Stands in ``app.extensions["migrate"]`` until it is read, then is Flask-Migrate's own config."""

    def __init__(self, app: Flask, directory: str) -> None:
        self._app, self._directory = app, directory

    def __getattr__(self, name: str) -> Any:
        from flask_migrate import Migrate

        Migrate(self._app, db, directory=self._directory)  # replaces this in app.extensions (and `flask db`)
        return getattr(self._app.extensions["migrate"], name)


class _MigrationCommands(click.Group):
    """``flask db …``: Flask-Migrate's group, imported when one of its commands runs (or is listed)."""

    def __init__(self) -> None:
        super().__init__("db", help="Perform database migrations.")

    @functools.cached_property
    def commands_of_flask_migrate(self) -> click.Group:
        from flask_migrate.cli import db as group

        return group

    def make_context(self, info_name, args, parent=None, **extra) -> click.Context:
        return self.commands_of_flask_migrate.make_context(info_name, args, parent=parent, **extra)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self.commands_of_flask_migrate.get_command(ctx, name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return self.commands_of_flask_migrate.list_commands(ctx)


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
