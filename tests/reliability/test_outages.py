"""Outages degrade instead of answering 500: Redis unreachable, the database dropping the connection
after a commit, a rollback that fails while the session is removed."""
from __future__ import annotations

import pytest
import requests

from app import create_app
from carbon.organizers import service as organizers
from tests.conftest import dispose_app, make_config

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
