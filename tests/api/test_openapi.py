"""The OpenAPI description matches the service: errors in the envelope, every status documented,
the audience's security, strings where the wire has strings. (Conformance under generated
requests: tests/api/test_schemathesis.py.)"""
from __future__ import annotations

import re

import pytest

ENVELOPE = "#/components/schemas/ErrorEnvelope"
NOTIFY = "/api/v1/payments/wechatpay/notify"
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/openapi.json").get_json()


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolved(spec, response: dict) -> dict:
    if "$ref" in response:
        return spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response


def test_every_error_is_the_envelope_and_nothing_is_left_to_default(spec):
    assert "Error" not in spec["components"]["schemas"]  # flask-smorest's own error schema
    assert set(spec["components"]["schemas"]["ErrorEnvelope"]["required"]) == {"error"}
    assert set(spec["components"]["schemas"]["ErrorBody"]["required"]) == {"code", "message", "details", "request_id"}
    checked = 0
    for path, method, operation in operations(spec):
        assert "default" not in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            schema = resolved(spec, response)["content"]["application/json"]["schema"]
            if path == NOTIFY:
                assert "WeChatPayAnswer" in str(schema)  # WeChat Pay's own format
            else:
                assert schema == {"$ref": ENVELOPE}, (method, path, status)
            checked += 1
    assert checked > 200


def test_statuses_follow_audience_path_body_and_declarations(app, spec):
    docs = {(method.upper(), path): operation for path, method, operation in operations(spec)}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = docs[(method, path)]  # every API route is described
            statuses = set(operation["responses"])
            assert {"500", "503"} <= statuses
            assert ("{" in path) <= ("404" in statuses), (method, path)
            assert (method in {"POST", "PUT", "PATCH"} and path != NOTIFY) == ("415" in statuses), (method, path)
            if "requestBody" in operation or "415" in statuses:  # a body the route does not read is checked too
                assert {"400", "413", "422"} <= statuses, (method, path)
    login = docs[("POST", "/api/v1/auth/login")]
    assert login["security"] == [] and {"400", "403", "429", "502"} <= set(login["responses"])
    assert "Retry-After" in spec["components"]["responses"]["TOO_MANY_REQUESTS"]["headers"]
    assert docs[("POST", "/api/v1/admin/members")]["security"] == [{"organizer": []}]
    assert {"403", "409"} <= set(docs[("POST", "/api/v1/admin/members")]["responses"])
    assert {"409", "410", "502"} <= set(docs[("POST", "/api/v1/orders")]["responses"])
    assert set(spec["components"]["securitySchemes"]) == {"guest", "organizer"}


def test_documented_401_and_security_are_what_the_service_does(app, client, spec):
    """A route documents 401 and a security scheme exactly when it refuses a caller without a token."""
    for path, method, operation in operations(spec):
        response = client.open(re.sub(r"\{[^}]+\}", "x", path), method=method.upper(), json={})
        refused = response.status_code == 401 and "error" in (response.get_json() or {})
        assert refused == bool(operation["security"]), (method, path, response.status_code)
        if refused:
            assert "401" in operation["responses"]


def test_strings_on_the_wire_are_strings_in_the_description(spec):
    schemas = spec["components"]["schemas"]
    assert schemas["PledgeOut"]["properties"]["venue_kwh"]["type"] == "string"  # was "number"
    assert schemas["OrderOut"]["properties"]["amount"]["type"] == "string"
    assert schemas["OrderOut"]["properties"]["kg"]["pattern"] == r"^-?\d+\.\d{3}$"
