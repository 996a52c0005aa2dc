"""Every error of the API uses the one envelope; bad input never gets a 500."""
from __future__ import annotations

import re

import pytest

ROUTES = [("POST", "/api/v1/auth/login"), ("PATCH", "/api/v1/me"), ("POST", "/api/v1/me/phone")]


def assert_envelope(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["request_id"] == response.headers["X-Request-ID"]
    if code:
        assert error["code"] == code
    return error


@pytest.fixture
def auth(login):
    token, _ = login("o_envelope")
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("method, path", ROUTES)
@pytest.mark.parametrize("body, content_type", [
    (b"", "application/json"),
    (b"{not json", "application/json"),
    (b"code=abc", "application/x-www-form-urlencoded"),
    (b"[1, 2, 3]", "application/json"),
    (b'"just a string"', "application/json"),
    (b"\xff\xfe\x00garbage", "application/json"),
])
def test_non_json_and_malformed_bodies_are_4xx(client, auth, method, path, body, content_type):
    response = client.open(path, method=method, data=body, headers={**auth, "Content-Type": content_type})
    assert 400 <= response.status_code < 500
    assert_envelope(response, response.status_code)


@pytest.mark.parametrize("body, field", [
    ({}, "code"),
    ({"code": 123}, "code"),
    ({"code": ""}, "code"),
    ({"code": None}, "code"),
    ({"code": "x" * 129}, "code"),
    ({"code": "abc", "extra": 1}, "extra"),
])
def test_login_validation_has_per_field_details(client, body, field):
    error = assert_envelope(client.post("/api/v1/auth/login", json=body), 422, "validation_error")
    assert field in error["details"]


@pytest.mark.parametrize("body, field", [
    ({"nickname": ""}, "nickname"),
    ({"nickname": "x" * 33}, "nickname"),
    ({"nickname": ["list"]}, "nickname"),
    ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
    ({"avatar_url": 5}, "avatar_url"),
    ({"openid": "o_other"}, "openid"),
])
def test_profile_validation(client, auth, body, field):
    error = assert_envelope(client.patch("/api/v1/me", json=body, headers=auth), 422, "validation_error")
    assert field in error["details"]


def test_huge_body_is_413(client):
    response = client.post("/api/v1/auth/login", data=b'{"code": "' + b"a" * 200_000 + b'"}',
                           headers={"Content-Type": "application/json"})
    assert_envelope(response, 413, "request.too_large")


def test_unknown_route_and_wrong_method(client, auth):
    assert_envelope(client.get("/api/v1/nothing-here", headers=auth), 404, "request.not_found")
    assert_envelope(client.get("/nothing-here"), 404, "request.not_found")
    response = client.delete("/api/v1/auth/login")
    assert_envelope(response, 405, "request.method_not_allowed")
    assert "POST" in response.headers["Allow"]


@pytest.mark.parametrize("method, path", [("GET", "/api/v1//me"), ("POST", "/api/v1//footprints/preview"),
                                          ("POST", "/api/v1/payments//wechatpay/notify"), ("GET", "//healthz")])
def test_a_doubled_slash_is_a_404_in_the_envelope_not_a_redirect_page(client, auth, method, path):
    assert_envelope(client.open(path, method=method, headers=auth, json={}), 404, "request.not_found")


def test_request_id_is_echoed_or_made(client):
    response = client.get("/healthz", headers={"X-Request-ID": "trace-abc.123"})
    assert response.headers["X-Request-ID"] == "trace-abc.123"
    made = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["X-Request-ID"]
    assert made and " " not in made
    assert client.get("/healthz").headers["X-Request-ID"] != client.get("/healthz").headers["X-Request-ID"]


def test_every_non_public_api_route_requires_a_token(app, client):
    """Fail closed: each /api/v1 rule answers 401 without a token unless marked public."""
    public = {"accounts.login", "footprints.preview", "admin.login", "scenes.resolve", "scenes.projects", "scenes.find_scenes",
              "wechatpay_notify.wechatpay_notify",  # the notify is authenticated by its signature
              "certificates.chain", "certificates.get", "certificates.verify", "certificates.card",
              "certificates.poster",  # certificates are public records
              "leaderboards.board"}
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or rule.endpoint in public:
            continue
        path = re.sub(r"<int:[^>]+>", "1", rule.rule)
        path = re.sub(r"<[^>]+>", "x", path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            response = client.open(path, method=method, json={})
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 4


def test_a_value_the_database_refuses_is_an_input_error_not_a_500(app, client, auth, monkeypatch):
    """The safety net under the schemas (schemathesis found PostgreSQL's DataError for NUL text; the
    body check refuses that now, but a number out of range or too long a text may still reach it)."""
    from sqlalchemy.exc import DataError

    from carbon.accounts import service

    def refused(*args, **kwargs):
        raise DataError("UPDATE users ...", {}, Exception("value too long for type character varying(32)"))

    monkeypatch.setattr(service, "update_profile", refused)
    assert_envelope(client.patch("/api/v1/me", json={"nickname": "ok"}, headers=auth), 422, "validation_error")
