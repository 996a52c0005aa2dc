"""Abuse: the client behind a proxy, limits that never burn a wx.login code, failed-password lockout."""
from __future__ import annotations

import pytest
import requests

from app import create_app
from tests.conftest import dispose_app, make_config


@pytest.fixture
def make_app(database_url, sandbox):
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
    return [client.post("/api/v1/auth/login", json={"code": "bad"}, headers=headers).status_code
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
