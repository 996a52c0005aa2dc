"""Schemathesis against the app (WSGI, no network but the local sandbox): for every operation of
/api/openapi.json, generated requests must get no server error and answers that conform to the
description (status code, content type, body schema, headers).

``make test`` runs a bounded, repeatable number of examples per operation; ``make soak`` runs many
more, randomly (``DIANDIAN_FUZZ_EXAMPLES``, ``DIANDIAN_FUZZ_RANDOM``). The guest and organizer
tokens come from the sandbox login and POST /api/v1/admin/auth/login (auth provider below), and
path parameters name the real scene, footprint, order and API key.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from tests.conftest import dispose_app, make_config
from tests.payments.conftest import live_scene, seed_project

EXAMPLES = int(os.environ.get("DIANDIAN_FUZZ_EXAMPLES", "8"))
RANDOM = os.environ.get("DIANDIAN_FUZZ_RANDOM") == "1"
REPORT = os.environ.get("DIANDIAN_FUZZ_REPORT") == "1"  # print how often each operation answered what
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
OWNER = {"email": "owner@fuzz.example", "password": "long password"}  # as live_scene makes it
GUEST = "o_fuzz_guest"


class World:
    """The rows the generated requests can reach, and fresh tokens when a test logged one out."""

    def __init__(self, app, sandbox) -> None:
        self.app, self.sandbox, self.client = app, sandbox, app.test_client()
        self.project = seed_project(app)
        with app.app_context():
            _, self.scene = live_scene(self.project, "fuzz01", OWNER["email"])
        self.tokens: dict[str, str] = {}
        self.calls: Counter = Counter()
        guest = self.bearer("guest")
        footprint = self.client.post("/api/v1/footprints", headers=guest, json={
            "scene": "s=fuzz01", "activities": [{"type": "hotel", "nights": 1}]}).get_json()
        order = self.client.post("/api/v1/orders", json={"kg": "3"}, headers={**guest, "Idempotency-Key": "fuzz"})
        key = self.client.post("/api/v1/admin/api-keys", json={"name": "fuzz", "role": "staff"},
                               headers=self.bearer("organizer"))
        self.ids = {"scene_id": self.scene, "footprint_id": footprint["id"], "order_id": order.get_json()["order"]["id"],
                    "key_id": key.get_json()["id"]}

    def token(self, audience: str) -> str:
        token = self.tokens.get(audience)
        if token is None or not self._live(audience, token):
            token = self.tokens[audience] = self._login(audience)
        return token

    def bearer(self, audience: str) -> dict:
        return {"Authorization": f"Bearer {self.token(audience)}"}

    def _live(self, audience: str, token: str) -> bool:
        from carbon.accounts import service as accounts
        from carbon.core.errors import AuthenticationError
        from carbon.organizers import service as organizers

        with self.app.app_context():
            try:
                (accounts if audience == "guest" else organizers).authenticate(token)
                return True
            except AuthenticationError:
                return False

    def _login(self, audience: str) -> str:
        if audience == "guest":
            code = requests.post(f"{self.sandbox.url}/__sandbox__/login-code", json={"openid": GUEST},
                                 timeout=5).json()["code"]
            response = self.client.post("/api/v1/auth/login", json={"code": code})
        else:
            response = self.client.post("/api/v1/admin/auth/login", json=OWNER)
        assert response.status_code == 200, response.get_json()
        return response.get_json()["token"]


def _described() -> schemathesis.BaseSchema:
    """The description, read from an app made for that alone (it needs no database)."""
    spec_app = create_app({"ENV": "testing", "DATABASE_URL": "sqlite://", "LOG_REQUESTS": False})
    return schemathesis.openapi.from_dict(spec_app.test_client().get("/api/openapi.json").get_json())


schema = _described()
_WORLD: dict[str, World] = {}  # the app under test, for the auth provider and the hook


@pytest.fixture(scope="module")
def fuzzed_app(database_url, sandbox):
    """One app and its rows for every operation of a backend: what one operation leaves (a closed
    scene, a revoked token) is what the next one meets, as in production."""
    sandbox.reset()
    application = create_app(make_config(
        database_url, sandbox.url, PROPAGATE_EXCEPTIONS=False, PROPAGATE_UNEXPECTED=False,
        ADMIN_LOGIN_FAILURES_PER_EMAIL=10**9, ADMIN_LOGIN_FAILURES_PER_CLIENT=10**9))
    _WORLD["current"] = World(application, sandbox)
    yield application
    if REPORT:
        calls = _WORLD["current"].calls
        print(f"\nschemathesis: {sum(calls.values())} requests", file=sys.stderr)
        for (label, status), count in sorted(calls.items()):
            print(f"  {count:5d}  {status}  {label}", file=sys.stderr)
    _WORLD.clear()
    dispose_app(application)


@schema.auth(refresh_interval=None)
class SandboxLogins:
    """Authenticates each case as its operation's audience (its security scheme). Some cases are
    made while the tests are collected, before any app exists, so the case carries a stand-in
    that ``before_call`` swaps for a live token, logged in through the sandbox (and logged in
    again after a test logged it out)."""

    def get(self, case, ctx) -> str | None:
        security = case.operation.definition.raw.get("security") or []
        return next(iter(security[0])) if security else None

    def set(self, case, audience: str, ctx) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {STAND_IN.format(audience)}"}


STAND_IN = "fuzz-stand-in-for-{}"


@schemathesis.hook
def before_call(ctx, case, kwargs: dict[str, Any]) -> None:
    """The stand-in token → a live one; path parameters → the real scene, footprint, order and key
    (an unknown id is a 404 that other tests cover)."""
    world = _WORLD["current"]
    header = (case.headers or {}).get("Authorization", "")
    for audience in ("guest", "organizer"):
        if header == f"Bearer {STAND_IN.format(audience)}":
            case.headers["Authorization"] = f"Bearer {world.token(audience)}"
    if case.path_parameters:
        case.path_parameters = {name: world.ids.get(name, value) for name, value in case.path_parameters.items()}


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_operation_conforms_to_the_description(case, fuzzed_app):
    response = case.call_and_validate(app=fuzzed_app, checks=CHECKS)
    _WORLD["current"].calls[(case.operation.label, response.status_code)] += 1
