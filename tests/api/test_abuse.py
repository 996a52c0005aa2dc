"""Abuse: the client behind a proxy, limits that never burn a wx.login code, failed-password lockout."""
from __future__ import annotations

import uuid

import pytest
import requests

from app import create_app
from tests.conftest import dispose_app, make_config


@pytest.fixture
def make_app(database_url, sandbox):
    """Apps made on demand, the clock frozen just after the start of a 15-minute window, so that
    no limit's window rolls over in the middle of a test."""
    from datetime import UTC, datetime, timedelta

    from carbon.core.clock import clock

    now = datetime.now(UTC).replace(microsecond=0)
    clock.set(now - timedelta(seconds=now.timestamp() % 900 - 1))
    made = []

    def make(**overrides):
        sandbox.reset()
        application = create_app(make_config(database_url, sandbox.url, **overrides))
        made.append(application)
        return application

    yield make
    for application in made:
        dispose_app(application)


def sandbox_code(sandbox, openid: str) -> str:
    return requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": openid}, timeout=5).json()["code"]


def jscode2session_calls(sandbox) -> list:
    return requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": "/sns/jscode2session"},
                        timeout=5).json()["calls"]


def logins(client, forwarded_for: str | None, count: int) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return [client.post("/api/v1/auth/login", json={"code": f"bad-{uuid.uuid4().hex}"}, headers=headers).status_code
            for _ in range(count)]


# --- DIANDIAN_TRUSTED_PROXIES ------------------------------------------------------------------

def test_behind_one_trusted_proxy_each_forwarded_client_has_its_own_bucket(make_app):
    client = make_app(TRUSTED_PROXIES=1, LOGIN_RATE_PER_MINUTE_CLIENT=2).test_client()
    assert logins(client, "203.0.113.7", 3) == [400, 400, 429]
    assert logins(client, "198.51.100.9", 2) == [400, 400]  # another guest behind the same nginx
    # a client cannot escape by sending its own X-Forwarded-For: nginx appends the real address
    assert logins(client, "10.9.9.9, 203.0.113.7", 1) == [429]


def test_without_trusted_proxies_the_forwarded_header_is_ignored(make_app):
    client = make_app(LOGIN_RATE_PER_MINUTE_CLIENT=2).test_client()
    assert logins(client, "203.0.113.1", 2) == [400, 400]
    assert logins(client, "203.0.113.2", 1) == [429]  # a spoofed header is no new bucket


def test_the_forwarded_proto_and_host_are_used_behind_a_trusted_proxy(make_app):
    application = make_app(TRUSTED_PROXIES=1)
    seen = {}

    @application.before_request
    def _look():
        from flask import request

        seen.update(scheme=request.scheme, host=request.host, remote_addr=request.remote_addr)

    application.test_client().get("/healthz", headers={
        "X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.cn"})
    assert seen == {"scheme": "https", "host": "api.example.cn", "remote_addr": "203.0.113.5"}


# --- guest login: no limit is decided after the wx.login code was spent, when it can be before ---

def test_a_client_over_its_limit_never_burns_a_code(make_app, sandbox):
    from carbon.core.clock import clock

    client = make_app(LOGIN_RATE_PER_MINUTE_CLIENT=1).test_client()
    assert logins(client, None, 1) == [400]
    calls = len(jscode2session_calls(sandbox))
    code = sandbox_code(sandbox, "o_patient")
    refused = client.post("/api/v1/auth/login", json={"code": code})
    assert refused.status_code == 429 and refused.headers["Retry-After"].isdigit()
    assert len(jscode2session_calls(sandbox)) == calls  # the code never reached WeChat ...
    clock.advance(int(refused.headers["Retry-After"]))
    assert client.post("/api/v1/auth/login", json={"code": code}).status_code == 200  # ... so it still works


def test_one_code_is_not_sent_to_wechat_again_and_again(make_app, sandbox):
    client = make_app().test_client()
    code = sandbox_code(sandbox, "o_replayer")
    assert client.post("/api/v1/auth/login", json={"code": code}).status_code == 200
    statuses = [client.post("/api/v1/auth/login", json={"code": code}).status_code for _ in range(5)]
    assert statuses[:2] == [400, 400] and set(statuses[2:]) == {429}  # auth.invalid_code, then limited
    assert len(jscode2session_calls(sandbox)) == 3
    limited = client.post("/api/v1/auth/login", json={"code": code}).get_json()["error"]
    assert limited["code"] == "auth.code_replayed"


# --- organizer login: failed attempts are limited, not logins ------------------------------------

OWNER = {"email": "owner@abuse.example", "password": "correct horse battery staple"}


def organizer_app(make_app, **overrides):
    from carbon.organizers import service as organizers

    application = make_app(TRUSTED_PROXIES=1, **overrides)
    with application.app_context():
        organizers.create_organization("组委会", owner_email=OWNER["email"], owner_password=OWNER["password"],
                                       owner_name="Owner")
    return application


def admin_login(client, password: str, *, email: str = OWNER["email"], client_ip: str = "203.0.113.10"):
    return client.post("/api/v1/admin/auth/login", json={"email": email, "password": password},
                       headers={"X-Forwarded-For": client_ip})


def test_successful_organizer_logins_are_not_what_is_limited(make_app):
    client = organizer_app(make_app, LOGIN_RATE_PER_MINUTE_OPENID=3, ADMIN_LOGIN_FAILURES_PER_EMAIL=3).test_client()
    assert [admin_login(client, OWNER["password"]).status_code for _ in range(5)] == [200] * 5
    assert [admin_login(client, "wrong").status_code for _ in range(2)] == [401, 401]
    assert admin_login(client, OWNER["password"]).status_code == 200  # under the limit: in, and counted afresh
    assert [admin_login(client, "wrong").status_code for _ in range(2)] == [401, 401]
    assert admin_login(client, OWNER["password"]).status_code == 200


def test_failed_passwords_lock_the_email_and_say_until_when(make_app):
    from carbon.core.clock import clock

    client = organizer_app(make_app, ADMIN_LOGIN_FAILURES_PER_EMAIL=3).test_client()
    assert [admin_login(client, "wrong", client_ip=f"198.51.100.{n}").status_code for n in range(3)] == [401] * 3
    locked = admin_login(client, OWNER["password"])
    assert locked.status_code == 429
    error = locked.get_json()["error"]
    assert error["code"] == "auth.login_locked"
    assert int(locked.headers["Retry-After"]) == error["details"]["retry_after_seconds"] > 0
    clock.advance(int(locked.headers["Retry-After"]))
    assert admin_login(client, OWNER["password"]).status_code == 200


def test_failed_passwords_from_one_client_lock_that_client(make_app):
    client = organizer_app(make_app, ADMIN_LOGIN_FAILURES_PER_CLIENT=3).test_client()
    sprayed = [admin_login(client, "123456", email=f"user{n}@abuse.example").status_code for n in range(3)]
    assert sprayed == [401] * 3
    assert admin_login(client, OWNER["password"]).status_code == 429  # that client, whatever the email
    assert admin_login(client, OWNER["password"], client_ip="198.51.100.77").status_code == 200
