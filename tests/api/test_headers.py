"""Headers people and browsers expect: no caching of private answers, security headers on HTML pages,
the challenge on 401, when to retry after 429, and CORS preflights answered before authentication."""
from __future__ import annotations

import pytest

from tests.api.test_envelope import assert_envelope
from tests.conftest import OWNER, make_scene

PREFLIGHT = {"Origin": "https://console.example", "Access-Control-Request-Method": "GET",
             "Access-Control-Request-Headers": "authorization, content-type"}


@pytest.fixture
def guest(login):
    token, _ = login("o_headers")
    return {"Authorization": f"Bearer {token}"}


def test_private_answers_are_not_stored(client, login, admin):
    token, _ = login("o_private")
    guest = {"Authorization": f"Bearer {token}"}
    for path in ("/api/v1/me", "/api/v1/footprints", "/api/v1/orders", "/api/v1/footprints/fp_missing"):
        assert client.get(path, headers=guest).headers["Cache-Control"] == "no-store", path
    for path in ("/api/v1/admin/me", "/api/v1/admin/scenes", "/api/v1/admin/members", "/api/v1/admin/api-keys"):
        assert client.get(path, headers=admin).headers["Cache-Control"] == "no-store", path
    assert client.get("/api/v1/admin/me").headers["Cache-Control"] == "no-store"  # a 401 too


def test_login_answers_carrying_tokens_are_not_stored(client, sandbox, admin):
    import requests

    code = requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": "o_login_cache"},
                         timeout=5).json()["code"]
    for path, body in (("/api/v1/auth/login", {"code": code}), ("/api/v1/admin/auth/login", OWNER)):
        response = client.post(path, json=body)
        assert response.status_code == 200 and "token" in response.get_json()
        assert response.headers["Cache-Control"] == "no-store", path


@pytest.mark.parametrize("path", ["/s?scene=s%3Dnope1", "/api/docs"])
def test_html_pages_carry_security_headers(client, path):
    response = client.get(path)
    assert response.mimetype == "text/html"
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy


def test_the_h5_page_of_a_live_scene_carries_them_too(client, admin):
    scene = make_scene(client, admin, code="hdrs1")
    client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={"status": "live"}, headers=admin)
    response = client.get("/s?scene=s%3Dhdrs1")
    assert response.status_code == 200 and "Content-Security-Policy" in response.headers


def test_json_answers_are_not_sniffed(client):
    assert client.get("/healthz").headers["X-Content-Type-Options"] == "nosniff"


def test_401_answers_carry_the_bearer_challenge(client):
    missing = client.get("/api/v1/me")
    assert_envelope(missing, 401, "auth.missing_token")
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="diandian"'
    forged = client.get("/api/v1/admin/me", headers={"Authorization": "Bearer forged"})
    assert_envelope(forged, 401, "auth.invalid_token")
    assert forged.headers["WWW-Authenticate"] == 'Bearer realm="diandian", error="invalid_token"'
    wrong = client.post("/api/v1/admin/auth/login", json={"email": "nobody@x.example", "password": "wrong"})
    assert_envelope(wrong, 401, "auth.bad_credentials")
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_cors_preflight_is_answered_before_authentication(client):
    response = client.open("/api/v1/me", method="OPTIONS", headers=PREFLIGHT)
    assert response.status_code == 204, response.get_data(as_text=True)
    headers = response.headers
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert {"GET", "PATCH"} <= {method.strip() for method in headers["Access-Control-Allow-Methods"].split(",")}
    allowed = {name.strip().lower() for name in headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert int(headers["Access-Control-Max-Age"]) > 0
    assert "Access-Control-Allow-Credentials" not in headers  # bearer tokens only, never cookies


def test_cross_origin_answers_can_be_read_but_still_need_the_token(client, guest):
    answer = client.get("/api/v1/me", headers={**guest, "Origin": "https://console.example"})
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]
    refused = client.get("/api/v1/me", headers={"Origin": "https://console.example"})
    assert_envelope(refused, 401, "auth.missing_token")
    assert refused.headers["Access-Control-Allow-Origin"] == "*"


def test_a_preflight_for_no_route_is_404_and_a_plain_options_still_needs_a_token(client):
    assert_envelope(client.open("/api/v1/nothing", method="OPTIONS", headers=PREFLIGHT), 404, "request.not_found")
    assert_envelope(client.open("/api/v1/me", method="OPTIONS"), 401, "auth.missing_token")
