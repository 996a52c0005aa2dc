"""The application factory. gunicorn serves ``app:create_app()``; nothing is created at import."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import event

ROOT = Path(__file__).resolve().parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    import carbon.models  # noqa: F401 - every model registered on the metadata
    from carbon import metrics
    from carbon.core.http import configure_logging, install
    from carbon.core.settings import load_settings

    settings = load_settings(config)
    configure_logging(settings.LOG_LEVEL)

    app = Flask(__name__, instance_path=str(ROOT / "var"))
    app.url_map.merge_slashes = False  # ``/api/v1//me`` is a 404 in the envelope, not werkzeug's HTML redirect
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        TESTING=settings.is_testing,
        SQLALCHEMY_DATABASE_URI=_database_url(settings.DATABASE_URL),
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.DATABASE_URL),
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        JSON_SORT_KEYS=False,
        API_TITLE="Diandian 点点碳中和",
        API_VERSION="1.0",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.config.update(settings.extra)
    app.extensions["diandian.settings"] = settings

    _init_extensions(app, settings)
    if settings.TRUSTED_PROXIES:  # the client's address, scheme and host as the proxies in front saw them
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    install(app, log_requests=settings.LOG_REQUESTS)
    metrics.install(app)
    _register_blueprints(app)
    _register_job_handlers(app)
    _register_cli(app)
    return app


def _database_url(url: str) -> str:
    """SQLite paths are taken relative to the project root, not the working directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and url != "sqlite:///:memory:" and not url[len(prefix):].startswith("/"):
        path = ROOT / url[len(prefix):]
        path.parent.mkdir(parents=True, exist_ok=True)
        return prefix + str(path)
    return url


def _engine_options(url: str) -> dict[str, Any]:
    # hide_parameters: a database error (and SQL echo) never shows bound values (openids, session keys, phones).
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}, "hide_parameters": True}
    # No pre-ping: it costs a round trip on every request. A connection that died (database restart,
    # failover) fails its request with 503 database.unavailable and SQLAlchemy then replaces the pool.
    return {"pool_size": 5, "max_overflow": 10, "pool_recycle": 1800, "pool_use_lifo": True, "hide_parameters": True}


def _init_extensions(app: Flask, settings) -> None:
    from carbon.accounts.auth import audience_of
    from carbon.core import extensions as ext
    from carbon.core.db import db
    from carbon.core.fallback import RedisBreaker
    from carbon.core.ratelimit import RateLimiter

    db.init_app(app)
    ext.init_migrations(app, directory=str(ROOT / "carbon" / "migrations"))
    from carbon.core.http import requires_json
    from carbon.core.openapi import DiandianApi
    from schemas.common import ErrorEnvelope

    # one per app: apispec refuses duplicate schemas
    app.extensions["diandian.api"] = DiandianApi(app, error_schema=ErrorEnvelope, audience_of=audience_of,
                                                 requires_json=requires_json)

    redis_client = None
    breaker = app.extensions["diandian.redis_breaker"] = RedisBreaker()
    if settings.REDIS_URL:
        import redis

        redis_client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        app.extensions["diandian.redis"] = redis_client
    app.extensions["diandian.ratelimiter"] = RateLimiter(redis_client, breaker=breaker)
    if redis_client is not None and settings.JOBS == "workers":
        app.extensions["diandian.job_queues"] = {}  # outbox queue name → its RQ queue, made on first use

    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        app.extensions["diandian.wechat"] = _wechat_gateway(settings, engine, redis_client, breaker)
    app.extensions["diandian.payments"] = _payment_provider(settings)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    from carbon.core.geo import sqlite_math

    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    sqlite_math(dbapi_connection)


def _payment_provider(settings):
    from pathlib import Path

    from payments.wechatpay.provider import WeChatPayConfig, WeChatPayV3, sandbox_key

    def key(path: str, sandbox_name: str) -> bytes:
        return Path(path).read_bytes() if path else sandbox_key(sandbox_name)

    return WeChatPayV3(WeChatPayConfig(
        mchid=settings.WECHATPAY_MCHID, appid=settings.WECHAT_APPID, serial_no=settings.WECHATPAY_SERIAL_NO,
        private_key_pem=key(settings.WECHATPAY_PRIVATE_KEY_PATH, "merchant_private_key.pem"),
        apiv3_key=settings.WECHATPAY_APIV3_KEY, public_key_id=settings.WECHATPAY_PUBLIC_KEY_ID,
        public_key_pem=key(settings.WECHATPAY_PUBLIC_KEY_PATH, "wechatpay_public_key.pem"),
        api_base=settings.WECHATPAY_API_BASE, notify_url=settings.notify_url,
        timeout_seconds=settings.WECHAT_TIMEOUT_SECONDS, previous_apiv3_key=settings.WECHATPAY_APIV3_KEY_PREVIOUS,
        previous_public_key=(settings.WECHATPAY_PUBLIC_KEY_ID_PREVIOUS,
                             Path(settings.WECHATPAY_PUBLIC_KEY_PATH_PREVIOUS).read_bytes())
        if settings.WECHATPAY_PUBLIC_KEY_ID_PREVIOUS else None))


def _wechat_gateway(settings, engine, redis_client, breaker):
    from wechat.api import WeChatGateway
    from wechat.client import DiandianWeChatClient
    from wechat.tokens import DatabaseTokenStore, FallbackTokenStore, RedisTokenStore

    store = DatabaseTokenStore(_token_engine(engine))
    if redis_client is not None:
        store = FallbackTokenStore(RedisTokenStore(redis_client), store, breaker)
    client = DiandianWeChatClient(settings.WECHAT_APPID, settings.WECHAT_SECRET,
                                  api_base=settings.WECHAT_API_BASE, store=store,
                                  token_mode=settings.WECHAT_TOKEN_MODE,
                                  timeout=settings.WECHAT_TIMEOUT_SECONDS)
    return WeChatGateway(client)


def _token_engine(engine):
    """Where the shared access token is kept: the database, except that SQLite (one writer per file)
    keeps it in a file of its own beside the database (``….wechat-tokens``, a cache: safe to delete).
    A token refreshed inside a write transaction (an outbox handler sending a push) would otherwise
    wait on that transaction's own write lock. Connections are not pooled: tokens are read per
    WeChat call, not per request."""
    from sqlalchemy import create_engine
    from sqlalchemy.dialects import sqlite
    from sqlalchemy.pool import NullPool
    from sqlalchemy.schema import CreateTable

    from wechat.models import WeChatCredential

    url = engine.url
    if engine.dialect.name != "sqlite" or url.database in (None, "", ":memory:"):
        return engine
    tokens = create_engine(url.set(database=f"{url.database}.wechat-tokens"), poolclass=NullPool,
                           **_engine_options(str(url)))
    table = str(CreateTable(WeChatCredential.__table__, if_not_exists=True).compile(dialect=sqlite.dialect()))

    event.listen(tokens, "connect", _sqlite_pragmas)
    # On first use, not at start (the file may not be reachable yet); once per process, not per connection.
    event.listen(tokens, "first_connect", lambda dbapi_connection, _record: dbapi_connection.execute(table))
    return tokens


def _register_blueprints(app: Flask) -> None:
    from carbon.accounts.auth import enforce_audiences
    from carbon.accounts.routes import blp as accounts_blp
    from carbon.certificates.routes import blp as certificates_blp
    from carbon.certificates.routes import page as certificate_page
    from carbon.checkout.admin_routes import blp as admin_purchases_blp
    from carbon.checkout.routes import blp as orders_blp
    from carbon.checkout.routes import notify as notify_blp
    from carbon.core.apidocs import bp as apidocs_bp
    from carbon.core.health import bp as health_bp
    from carbon.footprint.routes import blp as footprint_blp
    from carbon.invoices.routes import blp as admin_invoices_blp
    from carbon.leaderboards.routes import blp as leaderboards_blp
    from carbon.organizers.routes import blp as admin_blp
    from carbon.scenes.admin_routes import blp as admin_scenes_blp
    from carbon.scenes.routes import blp as scenes_blp
    from carbon.scenes.routes import h5 as h5_bp
    from carbon.screen.routes import bp as screen_bp

    app.before_request(enforce_audiences)
    app.register_blueprint(health_bp)
    app.register_blueprint(apidocs_bp)
    app.extensions["diandian.api"].register_blueprint(accounts_blp)
    app.extensions["diandian.api"].register_blueprint(footprint_blp)
    app.extensions["diandian.api"].register_blueprint(scenes_blp)
    app.extensions["diandian.api"].register_blueprint(admin_blp)
    app.extensions["diandian.api"].register_blueprint(admin_scenes_blp)
    app.extensions["diandian.api"].register_blueprint(admin_purchases_blp)
    app.extensions["diandian.api"].register_blueprint(admin_invoices_blp)
    app.extensions["diandian.api"].register_blueprint(orders_blp)
    app.extensions["diandian.api"].register_blueprint(notify_blp)
    app.extensions["diandian.api"].register_blueprint(certificates_blp)
    app.extensions["diandian.api"].register_blueprint(leaderboards_blp)
    app.register_blueprint(h5_bp)
    app.register_blueprint(certificate_page)
    from carbon import console

    console.init_app(app, app.extensions["diandian.settings"])  # its cookie session: decision 0012
    app.register_blueprint(screen_bp)
    if app.extensions["diandian.settings"].uses_wechat_sandbox:  # the simulator plays WeChat with the sandbox
        from carbon.simulator.routes import bp as simulator_bp

        app.register_blueprint(simulator_bp)


def _register_job_handlers(app: Flask) -> None:
    """Every area's outbox handlers (imported for their registration), and a last dispatch of what a
    request or command committed without handing on."""
    import carbon.certificates.service  # issues on order.paid, revokes on order.refunded
    import carbon.checkout.operations  # payment.needs_refund
    import carbon.leaderboards.service  # ranks on order.paid and order.refunded
    import carbon.scenes.stats  # noqa: F401 - counts order.paid
    from carbon import jobs

    @app.teardown_appcontext
    def _hand_on_committed_events(_error) -> None:
        try:
            jobs.kick()
        except Exception:
            import logging

            logging.getLogger("diandian.jobs").exception("outbox hand-on at teardown failed")


def _register_cli(app: Flask) -> None:
    from carbon.cli import register

    register(app)
