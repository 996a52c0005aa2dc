"""Outages degrade instead of answering 500: Redis unreachable, the database dropping the connection
after a commit, a rollback that fails while the session is removed."""
from __future__ import annotations

import gc
import logging

import pytest
import requests
from sqlalchemy import create_engine, func, select, text

from app import create_app
from carbon.checkout.models import Order
from carbon.checkout.orders import RESUME_AFTER_SECONDS
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.organizers import service as organizers
from tests.conftest import dispose_app, make_config
from tests.payments.conftest import seed_project

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connection refused at once
OWNER = {"email": "owner@outage.example", "password": "correct horse battery staple"}


def sandbox_code(sandbox, path: str, **body) -> str:
    return requests.post(f"{sandbox.url}/__sandbox__/{path}", json=body, timeout=5).json()["code"]


@pytest.fixture
def dead_redis_app(database_url, sandbox):
    sandbox.reset()
    application = create_app(make_config(database_url, sandbox.url, REDIS_URL=DEAD_REDIS))
    yield application
    dispose_app(application)


def test_with_redis_unreachable_every_login_and_wechat_call_is_served_on_the_fallbacks(dead_redis_app, sandbox):
    client = dead_redis_app.test_client()
    login = client.post("/api/v1/auth/login", json={"code": sandbox_code(sandbox, "login-code", openid="o_noredis")})
    assert login.status_code == 200, login.get_json()
    guest = {"Authorization": f"Bearer {login.get_json()['token']}"}
    nickname = client.patch("/api/v1/me", json={"nickname": "低碳达人"}, headers=guest)
    assert nickname.status_code == 200, nickname.get_json()  # msgSecCheck needs the access token
    phone_code = sandbox_code(sandbox, "phone-code", openid="o_noredis", phone_number="13800138000")
    phone = client.post("/api/v1/me/phone", json={"code": phone_code}, headers=guest)
    assert phone.status_code == 200, phone.get_json()

    with dead_redis_app.app_context():
        organizers.create_organization("断网组委会", owner_email=OWNER["email"], owner_password=OWNER["password"],
                                       owner_name="Owner")
    admin_login = client.post("/api/v1/admin/auth/login", json=OWNER)
    assert admin_login.status_code == 200, admin_login.get_json()
    admin = {"Authorization": f"Bearer {admin_login.get_json()['token']}"}
    scene = client.post("/api/v1/admin/scenes", json={"kind": "conference", "name_zh": "断网论坛"}, headers=admin)
    assert scene.status_code == 201, scene.get_json()
    code = client.post(f"/api/v1/admin/scenes/{scene.get_json()['id']}/wxacode", json={}, headers=admin)
    assert code.status_code == 200, code.get_json()


def test_with_redis_unreachable_the_login_limits_still_hold_in_process(database_url, sandbox):
    sandbox.reset()
    application = create_app(make_config(database_url, sandbox.url, REDIS_URL=DEAD_REDIS,
                                         LOGIN_RATE_PER_MINUTE_CLIENT=2))
    try:
        client = application.test_client()
        statuses = [client.post("/api/v1/auth/login", json={"code": "bad"}).status_code for _ in range(3)]
        assert statuses == [400, 400, 429]
    finally:
        dispose_app(application)


def test_a_redis_user_without_a_fallback_answers_503_in_the_envelope(app, client, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    def down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(app.extensions["diandian.ratelimiter"], "hit", down)
    response = client.post("/api/v1/auth/login", json={"code": "any"})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "redis.unavailable"


def test_readyz_names_the_part_that_is_down(dead_redis_app, database_url, sandbox, tmp_path):
    """The database is required (not ready without it); Redis is not: the service runs degraded."""
    response = dead_redis_app.test_client().get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "degraded", "checks": {"database": "ok", "redis": "down"}}

    no_database = create_app(make_config(f"sqlite:///{tmp_path}/missing-dir/x/db.sqlite3", sandbox.url,
                                         REDIS_URL=DEAD_REDIS))
    response = no_database.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "checks": {"database": "down", "redis": "down"}}


# --- a database failure after this request already committed -----------------------------------

def terminate_other_backends(database_url: str) -> int:
    """pg_terminate_backend every other connection to the test database (the app's pooled ones)."""
    admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            return connection.scalar(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        admin.dispose()


def lose_the_database_after_wechat_pay(app, monkeypatch, database_url) -> None:
    """Once WeChat Pay has created the payment, the database connection dies: on PostgreSQL the
    backend is terminated for real, on SQLite the next COMMIT fails as a lost connection would."""
    provider = app.extensions["diandian.payments"]
    real_create = provider.create
    armed = []

    def create(**kwargs):
        prepay_id = real_create(**kwargs)
        if database_url.startswith("postgresql"):
            db.session.execute(text("SELECT 1"))  # the request's connection is checked out ...
            assert terminate_other_backends(database_url) >= 1  # ... and killed under it
        else:
            armed.append(True)
        return prepay_id

    with app.app_context():
        dialect = db.engine.dialect
    real_commit = dialect.do_commit

    def do_commit(dbapi_connection):
        if armed:
            armed.clear()
            raise dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly (test)")
        return real_commit(dbapi_connection)

    monkeypatch.setattr(provider, "create", create)
    monkeypatch.setattr(dialect, "do_commit", do_commit)


def test_a_database_failure_after_the_order_was_committed_does_not_say_nothing_was_written(
        app, client, login, monkeypatch, database_url):
    seed_project(app)
    token, _ = login("o_half_saved")
    lose_the_database_after_wechat_pay(app, monkeypatch, database_url)
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "half-saved-1"}
    response = client.post("/api/v1/orders", json={"kg": "2"}, headers=headers)
    assert response.status_code == 503, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "request.partially_saved"
    assert "Idempotency-Key" in error["message"] and error["request_id"] == response.headers["X-Request-ID"]
    assert response.headers["Retry-After"].isdigit()
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1  # it was indeed saved
    monkeypatch.undo()  # the database is back
    soon = client.post("/api/v1/orders", json={"kg": "2"}, headers=headers)
    assert soon.status_code == 409 and soon.get_json()["error"]["code"] == "order.in_progress"
    clock.advance(RESUME_AFTER_SECONDS + 1)  # the first request is surely over: the retry finishes it
    resumed = client.post("/api/v1/orders", json={"kg": "2"}, headers=headers)
    assert resumed.status_code == 201, resumed.get_json()
    assert resumed.get_json()["order"]["status"] == "awaiting_payment"
    assert resumed.get_json()["request_payment"]["package"].startswith("prepay_id=")
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1  # the same order


def test_a_commit_whose_outcome_is_unknown_is_not_called_nothing_written(app, client, login, monkeypatch):
    """The connection drops during the COMMIT itself: the server may have committed."""
    token, _ = login("o_commit_lost")
    with app.app_context():
        dialect = db.engine.dialect

    def do_commit(dbapi_connection):
        raise dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly (test)")

    monkeypatch.setattr(dialect, "do_commit", do_commit)
    response = client.patch("/api/v1/me", json={"avatar_url": "https://example.com/a.png"},
                            headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "request.partially_saved"


def test_a_database_failure_before_any_commit_still_says_nothing_was_written(app, client, login, database_url):
    token, _ = login("o_nothing_saved")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    if database_url.startswith("postgresql"):
        terminate_other_backends(database_url)
    else:
        pytest.skip("server-side connection loss is a PostgreSQL behaviour")
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "database.unavailable"


def test_a_streamed_answer_meets_a_dead_connection_before_it_starts(app, client, database_url):
    """The chain export streams its lines: the connection the pool hands it may have died while idle
    (a database restart); that is a 503 in the envelope, never a 500 from a stream already begun."""
    assert client.get("/api/v1/certificates/chain.jsonl").status_code == 200
    if database_url.startswith("postgresql"):
        terminate_other_backends(database_url)
    else:
        pytest.skip("server-side connection loss is a PostgreSQL behaviour")
    response = client.get("/api/v1/certificates/chain.jsonl")
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "database.unavailable"
    assert client.get("/api/v1/certificates/chain.jsonl").status_code == 200  # the pool was renewed


# --- failures while the request's session is removed, and in after_request/teardown ------------

def test_a_failing_rollback_at_teardown_is_logged_and_the_answer_stands(app, client, login, monkeypatch, caplog):
    token, _ = login("o_teardown")
    headers = {"Authorization": f"Bearer {token}"}
    with app.app_context():
        dialect = db.engine.dialect

    def do_rollback(dbapi_connection):
        raise dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly (test)")

    monkeypatch.setattr(dialect, "do_rollback", do_rollback)
    with caplog.at_level(logging.WARNING, logger="diandian"):
        response = client.get("/api/v1/me", headers=headers)  # reads, so teardown rolls back
    assert response.status_code == 200 and response.get_json()["id"]
    assert any(record.getMessage() == "session cleanup failed" for record in caplog.records)
    monkeypatch.undo()
    assert client.get("/api/v1/me", headers=headers).status_code == 200
    gc.collect()  # the connection whose rollback "failed" is finalized (rolled back now) and pooled ...
    with app.app_context():
        db.engine.dispose()  # ... and closed, so it holds no lock against the next test's cleanup


def test_backends_terminated_before_teardown_do_not_escape_flask(database_url, sandbox):
    if not database_url.startswith("postgresql"):
        pytest.skip("server-side connection loss is a PostgreSQL behaviour")
    sandbox.reset()
    application = create_app(make_config(database_url, sandbox.url))
    kill = []

    @application.after_request
    def _terminate(response):
        if kill:
            kill.clear()
            assert terminate_other_backends(database_url) >= 1
        return response

    try:
        client = application.test_client()
        code = sandbox_code(sandbox, "login-code", openid="o_terminated")
        headers = {"Authorization": f"Bearer {client.post('/api/v1/auth/login', json={'code': code}).get_json()['token']}"}
        kill.append(True)
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 200 and response.get_json()["id"]
        assert client.get("/api/v1/me", headers=headers).status_code == 200
    finally:
        dispose_app(application)


@pytest.mark.parametrize("hook", ["after_request", "teardown_request", "teardown_appcontext"])
def test_an_error_in_after_request_or_teardown_still_answers_the_envelope(database_url, sandbox, hook):
    application = create_app(make_config(database_url, sandbox.url, PROPAGATE_EXCEPTIONS=False,
                                         PROPAGATE_UNEXPECTED=False))

    def broken(*_):
        raise RuntimeError(f"broken {hook}")

    getattr(application, hook)(broken)
    funcs = {"after_request": application.after_request_funcs[None],
             "teardown_request": application.teardown_request_funcs[None],
             "teardown_appcontext": application.teardown_appcontext_funcs}[hook]
    try:
        response = application.test_client().get("/healthz", headers={"X-Request-ID": "crash-1"})
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/json"
        assert response.headers["X-Request-ID"] == "crash-1"
        assert response.get_json() == {"error": {"code": "internal", "message": "服务器内部错误 / Internal server error",
                                                 "details": {}, "request_id": "crash-1"}}
    finally:
        funcs.remove(broken)
        dispose_app(application)
