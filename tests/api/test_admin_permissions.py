"""Permission matrix of every organizer route under /api/v1/admin/.

The routes are discovered from ``app.url_map`` (as in test_envelope), so a new admin route is
covered as soon as it exists: it must refuse callers without a token, with a guest token, with
a revoked key or a logged-out token; it must not show or touch another organization's scenes
or keys; and it is open to every member and key of the organization unless listed in
``OWNER_ONLY``. A route with a URL variable other than ``scene_id`` / ``key_id`` fails here
until this file learns what to put in it.

Outcomes are compared as ``"2xx"`` or ``"<status> <error code>"`` per ``"METHOD /rule"``, so
a failure shows the whole table.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
import requests
from sqlalchemy import select

from carbon.core.clock import clock, utcnow
from carbon.core.db import db
from carbon.organizers import service as organizers
from carbon.organizers.models import Organizer

ADMIN = "/api/v1/admin/"
LOGIN = "/api/v1/admin/auth/login"
PUBLIC = {"admin.login"}
OWNER_ONLY = {"admin.add_member", "admin.api_keys", "admin.create_api_key", "admin.revoke_api_key",
              "admin_purchases.buy", "admin_invoices.put_profile", "admin_invoices.issue", "admin_invoices.reject"}
# What the purchase routes answer their own organization here (a scene no guest has measured yet,
# an order that does not exist): the permission outcome is what the other tests compare
OWN_PURCHASES = {"admin_purchases.quote": "422 purchase.no_average", "admin_purchases.buy": "422 purchase.no_average",
                 "admin_purchases.purchase_state": "404 order.not_found",
                 # no profile yet, an order or invoice request that does not exist
                 "admin_invoices.purchase_receipt": "404 order.not_found",
                 "admin_invoices.get_profile": "404 invoice.profile_not_found",
                 "admin_invoices.create_request": "404 order.not_found",
                 "admin_invoices.issue": "404 invoice.not_found", "admin_invoices.reject": "404 invoice.not_found"}
ACROSS_PURCHASES = {"admin_purchases.quote": "404 scene.not_found", "admin_purchases.buy": "404 scene.not_found",
                    "admin_purchases.create_host_footprint": "404 scene.not_found",
                    "admin_purchases.purchase_state": "404 order.not_found",
                    **{endpoint: outcome for endpoint, outcome in OWN_PURCHASES.items()
                       if endpoint.startswith("admin_invoices.")}}
KINDS = ["owner", "staff", "owner key", "staff key"]
PASSWORD = "correct horse battery staple"
WXACODE = "/wxa/getwxacodeunlimit"


@dataclass
class Org:
    id: str
    owner: str
    staff: str
    scene: str = ""


# --- helpers --------------------------------------------------------------------------------

def admin_routes(app) -> list[tuple[str, object]]:
    """(method, rule) of every non-public admin route."""
    routes = [(method, rule) for rule in app.url_map.iter_rules()
              if rule.rule.startswith(ADMIN) and rule.endpoint not in PUBLIC
              for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert OWNER_ONLY <= {rule.endpoint for _, rule in routes}, "an owner-only endpoint was renamed"
    assert len(routes) >= 19
    return routes


def path_of(rule, **values) -> str:
    missing = rule.arguments - values.keys()
    assert not missing, f"{rule.rule}: teach this test what to put in {sorted(missing)}"
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda match: values[match.group(1)], rule.rule)


def body_for(endpoint: str, scene: str = "x") -> dict:
    """A valid minimal body, so the outcome seen is the permission check, not validation."""
    unique = uuid.uuid4().hex[:8]
    purchase = {"kind": "group", "scene": scene, "attendees": 5}
    return {"admin.add_member": {"email": f"m{unique}@example.test", "password": PASSWORD, "display_name": "M"},
            "admin.create_api_key": {"name": f"key {unique}"},
            "admin_scenes.create_scene": {"kind": "conference", "name_zh": "测试论坛"},
            "admin_scenes.update_scene": {"name_en": "Renamed"},
            "admin_scenes.add_channel": {"slug": f"c{unique[:6]}"},
            "admin_purchases.create_host_footprint": {"scene": scene, "activities": [
                {"type": "venue_electricity", "kwh": 100}]},
            "admin_purchases.quote": purchase, "admin_purchases.buy": purchase,
            "admin_invoices.put_profile": {"title": "测试有限公司", "tax_id": "91350100M000100Y43"},
            "admin_invoices.create_request": {"order_id": "ord_nothing"},
            "admin_invoices.issue": {"fapiao_number": "12345678"}, "admin_invoices.reject": {"reason": "抬头有误"}
            }.get(endpoint, {})


def call(client, method: str, rule, headers: dict, **values):
    body = body_for(rule.endpoint, values.get("scene_id") or "x") if method in {"POST", "PATCH", "PUT"} else None
    if rule.endpoint == "admin_purchases.buy":
        headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    values.setdefault("order_id", "ord_nothing")
    values.setdefault("request_id", "inv_nothing")
    return client.open(path_of(rule, **values), method=method, json=body, headers=headers)


def outcome(response) -> str:
    if 200 <= response.status_code < 300:
        return "2xx"
    body = response.get_json(silent=True) or {}
    return f"{response.status_code} {body.get('error', {}).get('code')}"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def login_as(client, email: str) -> dict:
    response = client.post(LOGIN, json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.get_json()
    return bearer(response.get_json()["token"])


def new_key(client, org: Org, role: str = "staff") -> dict:
    """A key made by the org's owner: {"id", "prefix", "key", ...}."""
    response = client.post(f"{ADMIN}api-keys", json={"name": f"{role} key", "role": role},
                           headers=login_as(client, org.owner))
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def credentials(client, org: Org, kind: str) -> dict:
    """Headers of a fresh session of the org's owner or staff, or of a new owner or staff key."""
    role, _, key = kind.partition(" ")
    return bearer(new_key(client, org, role)["key"]) if key else login_as(client, getattr(org, role))


def refused_to(kind: str, rule) -> bool:
    return kind.startswith("staff") and rule.endpoint in OWNER_ONLY


def make_org(app, client, tag: str) -> Org:
    with app.app_context():
        owner = organizers.create_organization(f"Org {tag}", owner_email=f"owner@{tag}.test",
                                               owner_password=PASSWORD, owner_name=f"Owner {tag}")
        organizers.add_member(owner.organization, email=f"staff@{tag}.test", password=PASSWORD,
                              display_name=f"Staff {tag}", role="staff")
        org = Org(owner.organization.public_id, owner.email, f"staff@{tag}.test")
    response = client.post(f"{ADMIN}scenes", json={"kind": "conference", "name_zh": "测试论坛"},
                           headers=login_as(client, org.owner))
    assert response.status_code == 201, response.get_json()
    org.scene = response.get_json()["id"]
    return org


def everywhere(app, client, headers: dict) -> dict[str, str]:
    """The outcome of every admin route for one caller (any value in the URL)."""
    return {f"{method} {rule.rule}": outcome(call(client, method, rule, headers, **dict.fromkeys(rule.arguments, "x")))
            for method, rule in admin_routes(app)}


def wxacode_calls(sandbox) -> list:
    return requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": WXACODE}, timeout=5).json()["calls"]


@pytest.fixture(autouse=True)
def crashes_are_500s(app):
    """A crash shows as '500 internal' in the tables instead of ending the test."""
    app.config["PROPAGATE_UNEXPECTED"] = False


@pytest.fixture
def orgs(app, client) -> dict[str, Org]:
    """Two organizations, each with an owner, a staff member and one scene."""
    return {tag: make_org(app, client, tag) for tag in ("a", "b")}


# --- 1, 2: no token, a guest token, anything else that is not an organizer credential --------

@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic b3duZXI6cHc="},
                                     {"Authorization": "dk_abc_def"}], ids=["none", "empty", "basic", "no-scheme"])
def test_without_a_token_every_admin_route_is_401(app, client, headers):
    seen = everywhere(app, client, headers)
    assert seen == dict.fromkeys(seen, "401 auth.missing_token")


@pytest.mark.parametrize("token", ["guest", "dk_nokey123_secret", "dk_", "not.a.token"])
def test_a_guest_token_or_a_forged_one_never_reaches_admin_routes(app, client, login, orgs, token):
    if token == "guest":
        token, _ = login("o_guest")
    seen = everywhere(app, client, bearer(token))
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")


def test_organizer_credentials_are_not_guest_tokens(client, orgs):
    for headers in (login_as(client, orgs["a"].owner), credentials(client, orgs["a"], "owner key")):
        assert outcome(client.get("/api/v1/me", headers=headers)) == "401 auth.invalid_token"


# --- 3: organizations are walled off -----------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_another_organizations_scene_and_keys_are_not_found(app, client, sandbox, orgs, kind):
    a, b = orgs["a"], orgs["b"]
    a_key = new_key(client, a)
    secrets_of_a = {a.id, a.owner, a.staff, a.scene, a_key["id"], a_key["prefix"]}
    expected, seen, leaks = {}, {}, []
    for method, rule in admin_routes(app):
        name = f"{method} {rule.rule}"
        headers = credentials(client, b, kind)
        response = call(client, method, rule, headers, scene_id=a.scene, key_id=a_key["id"])
        seen[name], expected[name] = outcome(response), across(kind, rule)
        leaks += [(name, secret) for secret in secrets_of_a if secret in response.get_data(as_text=True)]
    assert seen == expected
    assert leaks == []
    assert wxacode_calls(sandbox) == []  # refused before any call to WeChat
    scene = client.get(f"{ADMIN}scenes/{a.scene}", headers=login_as(client, a.owner)).get_json()
    assert scene["name_en"] != "Renamed" and [c["slug"] for c in scene["channels"]] == ["", "search"]
    assert outcome(client.get(f"{ADMIN}scenes", headers=bearer(a_key["key"]))) == "2xx"  # A's key not revoked


def across(kind: str, rule) -> str:
    """What a caller of organization B gets on a route naming A's scene or key, or on its own routes."""
    if "scene_id" in rule.arguments:
        return "404 scene.not_found"
    if refused_to(kind, rule):
        return "403 auth.owner_required"
    if rule.endpoint in ACROSS_PURCHASES:
        return ACROSS_PURCHASES[rule.endpoint]
    return "404 organizer.api_key_not_found" if "key_id" in rule.arguments else "2xx"


@pytest.mark.parametrize("kind", ["owner", "owner key"])
def test_lists_answer_for_the_callers_organization_only(client, orgs, kind):
    a, b = orgs["a"], orgs["b"]
    a_key = new_key(client, a)
    headers = credentials(client, b, kind)
    items = {name: client.get(f"{ADMIN}{name}", headers=headers).get_json()["items"]
             for name in ("scenes", "members", "api-keys")}
    assert [scene["id"] for scene in items["scenes"]] == [b.scene]
    assert sorted(member["email"] for member in items["members"]) == [b.owner, b.staff]
    assert a_key["id"] not in {key["id"] for key in items["api-keys"]}
    assert client.get(f"{ADMIN}me", headers=headers).get_json()["organization"]["id"] == b.id
    a_scenes = client.get(f"{ADMIN}scenes", headers=bearer(a_key["key"])).get_json()["items"]
    assert [scene["id"] for scene in a_scenes] == [a.scene]


def test_what_b_creates_stays_in_b(client, orgs):
    a, b = orgs["a"], orgs["b"]
    b_owner = login_as(client, b.owner)
    created = client.post(f"{ADMIN}scenes", json=body_for("admin_scenes.create_scene"), headers=b_owner).get_json()
    member = client.post(f"{ADMIN}members", json=body_for("admin.add_member"), headers=b_owner).get_json()
    a_owner = login_as(client, a.owner)
    assert created["id"] not in {s["id"] for s in client.get(f"{ADMIN}scenes", headers=a_owner).get_json()["items"]}
    a_members = client.get(f"{ADMIN}members", headers=a_owner).get_json()["items"]
    assert member["email"] not in {m["email"] for m in a_members}
    assert outcome(client.get(f"{ADMIN}scenes/{created['id']}", headers=a_owner)) == "404 scene.not_found"


# --- 4: owners and staff, members and keys ---------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_every_route_is_open_to_the_organization_except_owner_only_ones_for_staff(app, client, orgs, kind):
    a = orgs["a"]
    expected, seen = {}, {}
    for method, rule in admin_routes(app):
        name = f"{method} {rule.rule}"
        key_id = new_key(client, a)["id"] if "key_id" in rule.arguments else None
        headers = credentials(client, a, kind)
        seen[name] = outcome(call(client, method, rule, headers, scene_id=a.scene, key_id=key_id))
        expected[name] = "403 auth.owner_required" if refused_to(kind, rule) else OWN_PURCHASES.get(rule.endpoint, "2xx")
    assert seen == expected


@pytest.mark.parametrize("kind", ["staff", "staff key"])
def test_staff_and_staff_keys_are_refused_owner_only_routes_and_nothing_happens(client, orgs, kind):
    a = orgs["a"]
    headers, target, member = credentials(client, a, kind), new_key(client, a), body_for("admin.add_member")
    answers = [client.post(f"{ADMIN}members", json=member, headers=headers),
               client.get(f"{ADMIN}api-keys", headers=headers),
               client.post(f"{ADMIN}api-keys", json={"name": "machine", "role": "owner"}, headers=headers),
               client.delete(f"{ADMIN}api-keys/{target['id']}", headers=headers)]
    assert [outcome(answer) for answer in answers] == ["403 auth.owner_required"] * 4
    assert outcome(client.get(f"{ADMIN}scenes", headers=bearer(target["key"]))) == "2xx"
    assert outcome(client.post(LOGIN, json={"email": member["email"], "password": PASSWORD})) \
        == "401 auth.bad_credentials"
    owner = login_as(client, a.owner)
    assert len(client.get(f"{ADMIN}api-keys", headers=owner).get_json()["items"]) == 1 + kind.endswith("key")


@pytest.mark.parametrize("kind", ["owner", "owner key"])
def test_owners_and_owner_keys_manage_members_and_keys(client, orgs, kind):
    a = orgs["a"]
    headers, target, member = credentials(client, a, kind), new_key(client, a), body_for("admin.add_member")
    added = client.post(f"{ADMIN}members", json=member, headers=headers)
    assert added.status_code == 201 and added.get_json()["role"] == "staff"
    assert outcome(client.post(LOGIN, json={"email": member["email"], "password": PASSWORD})) == "2xx"
    listed = client.get(f"{ADMIN}api-keys", headers=headers)
    assert listed.status_code == 200 and target["id"] in {key["id"] for key in listed.get_json()["items"]}
    assert outcome(client.delete(f"{ADMIN}api-keys/{target['id']}", headers=headers)) == "2xx"
    assert outcome(client.get(f"{ADMIN}scenes", headers=bearer(target["key"]))) == "401 auth.invalid_token"


@pytest.mark.parametrize("kind", ["owner", "owner key"])
def test_owners_and_owner_keys_create_api_keys(client, orgs, kind):
    created = client.post(f"{ADMIN}api-keys", json={"name": "machine", "role": "owner"},
                          headers=credentials(client, orgs["a"], kind))
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["role"] == "owner" and body["key"].startswith(f"dk_{body['prefix']}_")
    assert client.get(f"{ADMIN}me", headers=bearer(body["key"])).get_json()["api_key"] == body["id"]
    listed = client.get(f"{ADMIN}api-keys", headers=login_as(client, orgs["a"].owner)).get_json()["items"]
    assert body["id"] in {item["id"] for item in listed} and not any("key" in item for item in listed)  # shown once


# --- 5: keys and sessions stop working --------------------------------------------------------

def test_an_api_key_works_on_its_organization_until_revoked(app, client, orgs):
    a = orgs["a"]
    key = new_key(client, a)
    listed = client.get(f"{ADMIN}scenes", headers=bearer(key["key"]))
    assert listed.status_code == 200 and [s["id"] for s in listed.get_json()["items"]] == [a.scene]
    assert client.get(f"{ADMIN}me", headers=bearer(key["key"])).get_json()["api_key"] == key["id"]
    revoked = client.delete(f"{ADMIN}api-keys/{key['id']}", headers=login_as(client, a.owner))
    assert revoked.status_code == 200 and revoked.get_json()["revoked_at"]
    seen = everywhere(app, client, bearer(key["key"]))
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")


def test_a_key_with_a_wrong_secret_is_refused(client, orgs):
    key = new_key(client, orgs["a"])["key"]
    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert outcome(client.get(f"{ADMIN}scenes", headers=bearer(tampered))) == "401 auth.invalid_token"


def test_a_logged_out_token_is_refused_everywhere(app, client, orgs):
    token, other = login_as(client, orgs["a"].staff), login_as(client, orgs["a"].staff)
    assert client.post(f"{ADMIN}auth/logout", headers=token).status_code == 204
    seen = everywhere(app, client, token)
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")
    assert outcome(client.get(f"{ADMIN}me", headers=other)) == "2xx"  # only that session ended


def test_an_expired_token_is_refused(app, client, orgs):
    token = login_as(client, orgs["a"].owner)
    clock.advance(app.extensions["diandian.settings"].ORGANIZER_SESSION_TTL_SECONDS + 1)
    assert outcome(client.get(f"{ADMIN}me", headers=token)) == "401 auth.invalid_token"


def test_a_disabled_member_is_refused(app, client, orgs):
    token = login_as(client, orgs["a"].staff)
    with app.app_context():
        db.session.scalar(select(Organizer).where(Organizer.email == orgs["a"].staff)).disabled_at = utcnow()
        db.session.commit()
    assert outcome(client.get(f"{ADMIN}me", headers=token)) == "401 auth.invalid_token"
    assert outcome(client.post(LOGIN, json={"email": orgs["a"].staff, "password": PASSWORD})) \
        == "401 auth.bad_credentials"


# --- 6: login --------------------------------------------------------------------------------

def test_wrong_password_and_unknown_email_get_the_same_answer(client, orgs):
    wrong = client.post(LOGIN, json={"email": orgs["a"].owner, "password": PASSWORD + "!"})
    unknown = client.post(LOGIN, json={"email": "nobody@a.test", "password": PASSWORD})
    assert outcome(wrong) == outcome(unknown) == "401 auth.bad_credentials"
    assert without_request_id(wrong) == without_request_id(unknown)


def without_request_id(response) -> dict:
    return {name: value for name, value in response.get_json()["error"].items() if name != "request_id"}


@pytest.mark.parametrize("body, field", [
    ({}, "email"),
    ({"email": "owner@a.test"}, "password"),
    ({"email": "not-an-email", "password": PASSWORD}, "email"),
    ({"email": "owner@a.test", "password": ""}, "password"),
    ({"email": "owner@a.test", "password": 12345}, "password"),
    ({"email": "owner@a.test", "password": "x" * 257}, "password"),
    ({"email": "owner@a.test", "password": PASSWORD, "role": "owner"}, "role"),
])
def test_login_validation_is_422(client, body, field):
    response = client.post(LOGIN, json=body)
    assert outcome(response) == "422 validation_error"
    assert field in response.get_json()["error"]["details"]
