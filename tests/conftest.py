"""Shared fixtures.

Databases: every test that uses ``app`` runs on SQLite, and on PostgreSQL too when
``TEST_DATABASE_URL`` is set. Each backend gets its own fresh database built through the
migrations once per session; after each test every table is emptied, so tests that start
other processes or servers (which need committed rows) are isolated too.
"""
from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from carbon.core.clock import clock

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "").strip()
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "").strip()
BACKENDS = ["sqlite"] + (["postgresql"] if TEST_DATABASE_URL else [])
REDIS_MODES = ["none"] + (["redis"] if TEST_REDIS_URL else [])


def _create_postgres_database() -> tuple[str, callable]:
    base = make_url(TEST_DATABASE_URL)
    name = f"diandian_t_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return base.set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """A migrated, empty database for this session, one per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite3'}"
        drop = None
    else:
        url, drop = _create_postgres_database()
    from flask_migrate import upgrade

    from app import create_app

    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        upgrade()
        from carbon.core.db import db

        db.engine.dispose()
    yield url
    if drop:
        drop()


@pytest.fixture(scope="session")
def sandbox() -> Iterator:
    """The WeChat sandbox, served for real on 127.0.0.1 for the whole session."""
    from wechat.sandbox.testing import LiveSandbox

    live = LiveSandbox()
    live.start()
    yield live
    live.stop()


@pytest.fixture(params=REDIS_MODES)
def redis_url(request) -> Iterator[str]:
    """Empty string (in-process / database fallbacks) or a Redis URL, flushed around the test."""
    if request.param == "none":
        yield ""
        return
    import redis

    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.flushdb()
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()


def make_config(database_url: str, sandbox_url: str, **overrides) -> dict:
    config = {"ENV": "testing", "DATABASE_URL": database_url, "WECHAT_API_BASE": sandbox_url,
              "WECHATPAY_API_BASE": sandbox_url,
              "LOG_REQUESTS": False, "SECRET_KEY": "test-secret-key-for-diandian-tests-0001",
              "WECHAT_TIMEOUT_SECONDS": 5, "LOGIN_RATE_PER_MINUTE_CLIENT": 10_000,
              "LOGIN_RATE_PER_MINUTE_OPENID": 10_000}
    config.update(overrides)
    return config


@pytest.fixture
def app_config(database_url, sandbox) -> dict:
    return make_config(database_url, sandbox.url)


@pytest.fixture
def app(app_config, sandbox) -> Iterator:
    from app import create_app

    sandbox.reset()
    application = create_app(app_config)
    yield application
    dispose_app(application)


def dispose_app(application) -> None:
    """After a test: the big screen's streams ended, the clock back to real time, every table emptied,
    connections closed."""
    feeds = application.extensions.get("diandian.screen")
    if feeds is not None:
        feeds.close()  # a stream whose viewer has gone would go on reading until its next keep-alive
    clock.reset()
    with application.app_context():
        from carbon.core.db import db

        db.session.remove()
        empty_all_tables(db.engine)
        db.engine.dispose()


def empty_all_tables(engine, attempts: int = 5) -> None:
    from psycopg.errors import DeadlockDetected
    from sqlalchemy.exc import OperationalError

    from carbon.core.db import db

    tables = [t.name for t in reversed(db.metadata.sorted_tables)]
    for attempt in range(1, attempts + 1):
        try:
            forget_tokens(engine)
            with engine.begin() as conn:
                if engine.dialect.name == "postgresql":
                    # a connection a failed test left in a transaction fails the teardown instead of hanging it
                    conn.execute(text("SET LOCAL lock_timeout = '20s'"))
                    conn.execute(text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        conn.execute(text(f'DELETE FROM "{table}"'))
            return
        except OperationalError as exc:
            # A statement still finishing on another connection (the test's own requests, a notify
            # the sandbox delivers late) can lock the tables in another order than TRUNCATE does:
            # PostgreSQL then aborts the TRUNCATE as the deadlock's victim, and the other one
            # completes. Emptying again is safe; anything else is a real failure.
            if not isinstance(exc.orig, DeadlockDetected) or attempt == attempts:
                raise
            time.sleep(0.2 * attempt)


def forget_tokens(engine) -> None:
    """Empty the access-token cache a SQLite database keeps in its own file (app._token_engine)."""
    import sqlite3

    path = Path(f"{engine.url.database}.wechat-tokens") if engine.dialect.name == "sqlite" else None
    if path is not None and path.exists():
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as tokens, tokens:
            tokens.execute("DELETE FROM wechat_credentials")


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def login(client, sandbox):
    """Log a guest in through the sandbox; returns (token, body)."""
    import requests

    def do_login(openid: str = "o_guest_0001", **extra) -> tuple[str, dict]:
        code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": openid, **extra},
                             timeout=5).json()["code"]
        response = client.post("/api/v1/auth/login", json={"code": code})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        return body["token"], body

    return do_login


OWNER = {"email": "owner@forum.example", "password": "correct horse battery"}


@pytest.fixture
def admin(app, client):
    """Headers of a logged-in owner of a fresh organization."""
    from carbon.organizers import service as organizers

    with app.app_context():
        organizers.create_organization("论坛组委会", owner_email=OWNER["email"], owner_password=OWNER["password"],
                                       owner_name="Owner")
    token = client.post("/api/v1/admin/auth/login", json=OWNER).get_json()["token"]
    return {"Authorization": f"Bearer {token}"}


def make_scene(client, admin, **fields) -> dict:
    """A draft conference scene created through the admin API; its answer."""
    body = {"kind": "conference", "name_zh": "首届中国数字碳中和高峰论坛",
            "name_en": "First China Digital Carbon Neutrality Forum", "city": "成都", "province": "SC", **fields}
    response = client.post("/api/v1/admin/scenes", json=body, headers=admin)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


ROOT = Path(__file__).resolve().parent.parent
