"""Input an attacker sends: each case once answered 500 with a traceback and is now a 4xx in the envelope."""
from __future__ import annotations

import http.client
import io
import json
import threading

import pytest
from werkzeug.serving import make_server

from bench.harness import free_port
from tests.api.test_envelope import assert_envelope
from tests.conftest import make_config, make_scene

DEEP = "[" * 1000 + "]" * 1000
HUGE = "9" * 5000


@pytest.fixture
def guest(login):
    token, _ = login("o_hardening")
    return {"Authorization": f"Bearer {token}"}


def post_raw(client, path: str, body: str | bytes, headers: dict | None = None):
    return client.post(path, data=body, headers={"Content-Type": "application/json", **(headers or {})})


# --- 1, 2: nesting and number length -------------------------------------------------------

@pytest.mark.parametrize("path, body", [
    ("/api/v1/auth/login", DEEP),
    ("/api/v1/auth/login", '{"code": ' + DEEP + "}"),
    ("/api/v1/admin/auth/login", '{"email": "a@b.example", "password": ' + DEEP + "}"),
    ("/api/v1/footprints/preview", '{"activities": [{"type": "meal", "count": ' + DEEP + "}]}"),
    ("/api/v1/auth/login", "[" * 21 + "]" * 21),  # just past the limit, far from Python's own
])
def test_deeply_nested_json_is_400(client, path, body):
    error = assert_envelope(post_raw(client, path, body), 400, "request.json_too_deep")
    assert "20" in error["message"]


def test_nesting_within_the_limit_reaches_validation(client):
    body = '{"code": ' + "[" * 19 + "]" * 19 + "}"
    assert_envelope(post_raw(client, "/api/v1/auth/login", body), 422, "validation_error")


@pytest.mark.parametrize("path, body", [
    ("/api/v1/auth/login", '{"code": ' + HUGE + "}"),
    ("/api/v1/admin/auth/login", '{"email": "a@b.example", "password": -' + HUGE + "}"),
    ("/api/v1/footprints/preview", '{"activities": [{"type": "meal", "count": ' + HUGE + "}]}"),
])
def test_an_integer_of_more_than_4300_digits_is_400(client, path, body):
    assert_envelope(post_raw(client, path, body), 400, "request.number_too_long")


def test_long_numbers_inside_strings_are_just_strings(client):
    body = '{"code": "' + HUGE + '"}'
    error = assert_envelope(post_raw(client, "/api/v1/auth/login", body), 422, "validation_error")
    assert "code" in error["details"]


# --- 4: text that cannot be stored ----------------------------------------------------------

BAD_TEXT = ["abc\u0000def", "\ud800", "x\udfffy", "bell\u0007"]


@pytest.mark.parametrize("text", BAD_TEXT)
@pytest.mark.parametrize("field", ["nickname", "avatar_url"])
def test_profile_text_with_nul_or_surrogates_is_422(client, guest, field, text):
    value = f"https://img.example/{text}.png" if field == "avatar_url" else text
    error = assert_envelope(client.patch("/api/v1/me", json={field: value}, headers=guest), 422, "validation_error")
    assert field in error["details"]


@pytest.mark.parametrize("text", BAD_TEXT)
@pytest.mark.parametrize("field", ["name_zh", "name_en", "description", "city", "pledge_note"])
def test_scene_text_with_nul_or_surrogates_is_422(client, admin, field, text):
    scene = make_scene(client, admin)
    response = client.patch(f"/api/v1/admin/scenes/{scene['id']}", json={field: text}, headers=admin)
    assert field in assert_envelope(response, 422, "validation_error")["details"]
    response = client.post("/api/v1/admin/scenes", json={"kind": "hotel", "name_zh": "酒店", field: text},
                           headers=admin)
    assert field in assert_envelope(response, 422, "validation_error")["details"]


@pytest.mark.parametrize("text", BAD_TEXT)
def test_channel_member_and_key_names_with_nul_or_surrogates_are_422(client, admin, text):
    scene = make_scene(client, admin)
    cases = [(f"/api/v1/admin/scenes/{scene['id']}/channels", {"slug": "door", "label": text}, "label"),
             ("/api/v1/admin/members", {"email": "m@forum.example", "password": "long enough pw",
                                        "display_name": text}, "display_name"),
             ("/api/v1/admin/members", {"email": f"m{text}@forum.example", "password": "long enough pw",
                                        "display_name": "M"}, "email"),
             ("/api/v1/admin/members", {"email": "m@forum.example", "password": f"long enough {text}",
                                        "display_name": "M"}, "password"),
             ("/api/v1/admin/api-keys", {"name": text}, "name")]
    for path, body, field in cases:
        error = assert_envelope(client.post(path, json=body, headers=admin), 422, "validation_error")
        assert field in error["details"], (path, body)


@pytest.mark.parametrize("body, field", [
    ({"kg": 5, "beneficiary_name": "某\u0000人"}, "beneficiary_name"),
    ({"kg": 5, "scene": "s=abcd\ud800"}, "scene"),
    ({"footprint_id": "fp_\u0000"}, "footprint_id"),
    ({"kg": 5, "note": {"deep": ["ok", "\u0001"]}}, "note.deep.1"),
    ({"kg": 5, "bad\u0000key": 1}, "_schema"),
])
def test_every_json_string_is_under_the_text_rule_even_where_a_schema_is_not(client, guest, body, field):
    """The orders schema (left to the checkout rewrite) does not use the shared field yet: the body
    check in front of every view holds the rule there too, naming the place."""
    response = client.post("/api/v1/orders", data=json.dumps(body), headers={**guest, "Idempotency-Key": "k1",
                                                                              "Content-Type": "application/json"})
    error = assert_envelope(response, 422, "validation_error")
    assert field in error["details"] and "U+" in error["details"][field][0]


def test_a_surrogate_in_a_password_at_login_is_422(client):
    response = client.post("/api/v1/admin/auth/login", json={"email": "a@b.example", "password": "\ud800"})
    assert "password" in assert_envelope(response, 422, "validation_error")["details"]


def test_query_strings_are_under_the_text_rule(client, admin):
    scene = make_scene(client, admin)
    response = client.get(f"/api/v1/admin/scenes/{scene['id']}/poster.png?channel=door%00", headers=admin)
    assert "channel" in assert_envelope(response, 422, "validation_error")["details"]


def test_line_breaks_and_tabs_are_kept(client, admin):
    scene = make_scene(client, admin, description="第一行\n第二行\tend\r\n")
    assert scene["description"] == "第一行\n第二行\tend\r\n"


@pytest.mark.parametrize("path", ["/api/v1/footprints/%00abc", "/api/v1/footprints/abc%00", "/api/v1/orders/%00"])
def test_nul_in_a_guest_path_id_is_404(client, guest, path):
    assert_envelope(client.get(path, headers=guest), 404, "request.not_found")


@pytest.mark.parametrize("suffix", ["", "/stats", "/poster.png", "/stats.csv"])
def test_nul_in_an_admin_scene_id_is_404(client, admin, suffix):
    assert_envelope(client.get(f"/api/v1/admin/scenes/%00abc{suffix}", headers=admin), 404, "request.not_found")
    assert_envelope(client.delete("/api/v1/admin/api-keys/key_%00", headers=admin), 404, "request.not_found")


def test_a_token_with_control_characters_is_401(client):
    """gunicorn refuses such headers itself; other servers may not (on PostgreSQL a NUL used to be a 500)."""
    for path in ("/api/v1/me", "/api/v1/admin/me"):
        for token in ("dk_\x00abc_def", "dk_abc\x01_def", "abc\x7fdef"):
            response = client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert_envelope(response, 401, "auth.invalid_token")


# --- 7: chunked bodies ----------------------------------------------------------------------

def chunked(client, body: bytes, content_type: str):
    """As gunicorn and werkzeug's server pass a chunked body on: no Content-Length, the input terminated."""
    return client.post("/api/v1/auth/login", input_stream=io.BytesIO(body),
                       headers={"Transfer-Encoding": "chunked", "Content-Type": content_type},
                       environ_overrides={"wsgi.input_terminated": True})


def test_a_chunked_body_over_the_limit_is_413(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = b'{"code": "' + b"a" * limit + b'"}'
    assert_envelope(chunked(client, body, "application/json"), 413, "request.too_large")


def test_a_chunked_body_of_exactly_the_limit_is_read(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    body = b'{"code": "' + b"a" * (limit - 12) + b'"}'
    assert len(body) == limit
    error = assert_envelope(chunked(client, body, "application/json"), 422, "validation_error")
    assert "code" in error["details"]  # longer than 128: the body was read whole and validated


def test_a_chunked_body_that_is_not_json_is_415(client):
    assert_envelope(chunked(client, b"code=abc", "text/plain"), 415, "request.unsupported_media_type")


@pytest.fixture
def served(database_url, sandbox):
    """The app behind werkzeug's real HTTP server, which de-chunks bodies itself."""
    from app import create_app
    from tests.conftest import dispose_app

    application = create_app(make_config(database_url, sandbox.url))
    port = free_port()
    server = make_server("127.0.0.1", port, application, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield port
    server.shutdown()
    thread.join(5)
    dispose_app(application)


def send_chunked(port: int, body: bytes, content_type: str) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/api/v1/auth/login", body=iter([body[i:i + 4096]
                                                                    for i in range(0, len(body), 4096)]),
                           headers={"Content-Type": content_type}, encode_chunked=True)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slow
def test_chunked_bodies_over_real_http(served):
    assert send_chunked(served, b'{"code": "' + b"a" * 100_000 + b'"}', "application/json")[0] == 413
    assert send_chunked(served, b"code=abc", "text/plain")[0] == 415
    status, answer = send_chunked(served, b'{"code": ""}', "application/json")
    assert status == 422 and b"validation_error" in answer
