"""The security matrix: who may call every route of the app (docs/API.md, "Who may call what").

``AUDIENCE`` declares the audience of every endpoint in ``app.url_map``; a route without a line
here fails ``test_every_route_has_a_declared_audience``, and a route whose own declaration in the
code (``@public``, ``@organizer_only``, the guest default under /api/v1) disagrees with the table
fails too. The other tests walk the table: no credentials, a guest where a guest may not go,
broken, ended and misused tokens, the wrong guest, and the console's session and forms. The
admin API's organization walls and owner/staff rules are walked route by route in
tests/api/test_admin_permissions.py (whose owner-only list must be this table's).

Outcomes are compared as ``"2xx"`` / ``"3xx <where>"`` / ``"<status> <error code>"`` per
``"METHOD /rule"``, so a failure shows the whole table.
"""
from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import select

from carbon.core.clock import clock
from tests.api.test_admin_permissions import OWNER_ONLY, path_of
from tests.console.conftest import csrf_of, sign_in
from tests.security.conftest import METRICS_TOKEN, PASSWORD, World

# --- the table ---------------------------------------------------------------------------------

PUBLIC = "public"  # anyone; a bearer token changes nothing (or only adds the caller's own view)
GUEST = "guest"  # a guest's bearer token; the guest's own data only
ORGANIZER = "organizer"  # an organizer session token or API key; the caller's organization only
OWNER = "organizer owner"  # the same, owner role only (403 auth.owner_required for staff)
CONSOLE_OPEN = "console open"  # the console's sign-in page and its static files
CONSOLE = "console"  # a console cookie session of a member; the member's organization only
CONSOLE_OWNER = "console owner"  # the same, owner role only
SANDBOX = "sandbox"  # public, and registered only while the WeChat sandbox is configured
OPERATOR = "operator"  # DIANDIAN_METRICS_TOKEN, or (without one) a direct client on this machine
PROVIDER = "wechat pay"  # WeChat Pay's signature over the body, answered in WeChat Pay's format

AUDIENCE = {
    "health.healthz": PUBLIC, "health.readyz": PUBLIC, "metrics.metrics": OPERATOR,
    "apidocs.docs": PUBLIC, "api-docs.openapi_json": PUBLIC, "static": PUBLIC,
    # guests
    "accounts.login": PUBLIC, "accounts.logout": GUEST, "accounts.me": GUEST, "accounts.update_me": GUEST,
    "accounts.delete_me": GUEST, "accounts.export_me": GUEST, "accounts.bind_phone": GUEST,
    "footprints.preview": PUBLIC, "footprints.create": GUEST, "footprints.history": GUEST, "footprints.get": GUEST,
    "scenes.find_scenes": PUBLIC, "scenes.resolve": PUBLIC, "scenes.projects": PUBLIC, "h5.scene_page": PUBLIC,
    "orders.create_order": GUEST, "orders.list_orders": GUEST, "orders.get_order": GUEST,
    "orders.get_order_status": GUEST, "orders.order_receipt": GUEST,
    "wechatpay_notify.wechatpay_notify": PROVIDER,
    "certificates.mine": GUEST, "certificates.get": PUBLIC, "certificates.verify": PUBLIC,
    "certificates.chain": PUBLIC, "certificates.card": PUBLIC, "certificates.poster": PUBLIC,
    "certificate_page.certificate_page": PUBLIC,
    "leaderboards.board": PUBLIC, "leaderboards.me": GUEST,
    "screen.page": PUBLIC, "screen.events": PUBLIC, "screen.snapshot": PUBLIC, "screen.code": PUBLIC,
    "screen.static": PUBLIC,
    "simulator.page": SANDBOX, "simulator.static": SANDBOX, "simulator.wx_login": SANDBOX,
    "simulator.wx_request_payment": SANDBOX,
    # organizers: the admin API
    "admin.login": PUBLIC, "admin.logout": ORGANIZER, "admin.whoami": ORGANIZER, "admin.members": ORGANIZER,
    "admin.add_member": OWNER, "admin.api_keys": OWNER, "admin.create_api_key": OWNER,
    "admin.revoke_api_key": OWNER,
    **dict.fromkeys(["admin_scenes.list_scenes", "admin_scenes.create_scene", "admin_scenes.get_scene",
                     "admin_scenes.update_scene", "admin_scenes.add_channel", "admin_scenes.fetch_wxacode",
                     "admin_scenes.wxacode_png", "admin_scenes.qrcode_png", "admin_scenes.poster_png",
                     "admin_scenes.poster_pdf", "admin_scenes.scene_stats", "admin_scenes.scene_stats_csv"],
                    ORGANIZER),
    **dict.fromkeys(["admin_purchases.create_host_footprint", "admin_purchases.quote", "admin_purchases.purchase_state",
                     "admin_invoices.purchase_receipt", "admin_invoices.get_profile", "admin_invoices.list_requests",
                     "admin_invoices.create_request", "admin_invoices.export_requests"], ORGANIZER),
    **dict.fromkeys(["admin_purchases.buy", "admin_invoices.put_profile", "admin_invoices.issue",
                     "admin_invoices.reject"], OWNER),
    # organizers: the console
    "console.login": CONSOLE_OPEN, "console.static": CONSOLE_OPEN,
    **dict.fromkeys(["console.logout", "console.home", "console.scene_list", "console.scene_new",
                     "console.scene_edit", "console.scene_status", "console.channel_add", "console.scene_page",
                     "console.scene_stats_json", "console.scene_stats_csv", "console.scene_download",
                     "console.project_list", "console.order_list", "console.order_page", "console.refund_list",
                     "console.settlement_page", "console.settlement_csv", "console.order_receipt",
                     "console.invoice_list", "console.invoice_profile", "console.invoice_request",
                     "console.invoice_csv", "console.buy_page", "console.buy_event_footprint", "console.buy_quote",
                     "console.buy_order_page", "console.buy_order_state"], CONSOLE),
    **dict.fromkeys(["console.event_list", "console.event_replay", "console.order_refund", "console.invoice_decide",
                     "console.buy_order", "console.refund_retry"], CONSOLE_OWNER),
}
GUESTS = {GUEST}
ORGANIZERS = {ORGANIZER, OWNER}
CONSOLES = {CONSOLE, CONSOLE_OWNER}
# How each audience is declared in the code (carbon/accounts/auth.py audience_of).
DECLARED = {GUEST: "guest", ORGANIZER: "organizer", OWNER: "organizer", PUBLIC: "public", PROVIDER: "public",
            SANDBOX: "public", OPERATOR: "public", CONSOLE_OPEN: "public", CONSOLE: "public",
            CONSOLE_OWNER: "public"}
# A guest's resources in the URL, and what another guest gets for them (docs/API.md).
NOT_THE_CALLERS = {"footprints.get": "404 footprint.not_found", "orders.get_order": "404 order.not_found",
                   "orders.get_order_status": "404 order.not_found",
                   "orders.order_receipt": "404 order.not_found"}


def routes(app, *audiences: str) -> list[tuple[str, object]]:
    """(method, rule) of every route whose audience is one of ``audiences`` (all when none)."""
    return sorted(((method, rule) for rule in app.url_map.iter_rules()
                   if not audiences or AUDIENCE.get(rule.endpoint) in audiences
                   for method in sorted(rule.methods - {"HEAD", "OPTIONS"})), key=lambda mr: (mr[1].rule, mr[0]))


# --- what to put in each route ------------------------------------------------------------------

def values(world: World, org=None, guest=None) -> dict[str, str]:
    """URL variables naming real things: of organization A and its guest alice unless told otherwise."""
    org, guest = org or world.a, guest or world.alice
    return {"scene_id": org.scene, "key_id": org.key_id, "number": guest.certificate, "footprint_id": guest.footprint,
            "order_id": guest.orders[0], "event_id": str(world.event), "key": org.scene, "name": "qrcode.png",
            "filename": "console.css", "request_id": org.invoice_request or "inv_none", "action": "issue",
            "refund_id": guest.refund}
# Routes about an organization's own purchase: their order_id is that purchase, not a guest's order.
PURCHASE_ROUTES = {"admin_purchases.purchase_state", "admin_invoices.purchase_receipt", "console.buy_order_page",
                   "console.buy_order_state"}


STATIC_FILES = {"screen.static": "screen.css", "simulator.static": "simulator.css", "static": "none.css"}


def query_of(world: World, endpoint: str) -> str:
    scene = world.scene_string(world.a)
    return {"scenes.resolve": f"scene={scene}", "h5.scene_page": f"scene={scene}",
            "leaderboards.me": f"scene={world.a.scene}",
            "console.buy_quote": f"kind=host&footprint_id={world.a.host_footprint}"}.get(endpoint, "")


def body_of(world: World, endpoint: str) -> dict | None:
    """A valid body, so what is seen is who may call, not validation."""
    return {"accounts.update_me": {"nickname": "改名"}, "accounts.delete_me": {"confirm": "注销账号"},
            "accounts.bind_phone": {"code": "never-issued"}, "accounts.login": {"code": "never-issued"},
            "footprints.preview": {"activities": [{"type": "rail", "distance_km": 10}]},
            "footprints.create": {"activities": [{"type": "rail", "distance_km": 10}]},
            "orders.create_order": {"kg": "5"}, "simulator.wx_login": {"openid": "o_sec_simulated"},
            "simulator.wx_request_payment": {"appId": "x", "timeStamp": "1", "nonceStr": "n", "package": "p",
                                             "signType": "RSA", "paySign": "s"},
            "admin.login": {"email": world.a.owner, "password": PASSWORD},
            "admin.add_member": {"email": "new@sec.test", "password": PASSWORD, "display_name": "N"},
            "admin.create_api_key": {"name": "machine"},
            "admin_scenes.create_scene": {"kind": "conference", "name_zh": "新论坛"},
            "admin_scenes.update_scene": {"name_en": "Renamed"}, "admin_scenes.add_channel": {"slug": "new"},
            "wechatpay_notify.wechatpay_notify": {"id": "forged"}}.get(endpoint, {})


def url_of(world: World, rule, **overrides) -> str:
    given = {**values(world), **overrides}
    if rule.endpoint in PURCHASE_ROUTES and "order_id" not in overrides:
        given["order_id"] = world.a.purchase
    if rule.endpoint in STATIC_FILES:
        given["filename"] = STATIC_FILES[rule.endpoint]
    path = path_of(rule, **{name: given[name] for name in rule.arguments})
    query = query_of(world, rule.endpoint)
    return f"{path}?{query}" if query else path


def call(client, world: World, method: str, rule, headers: dict | None = None, **overrides):
    url = url_of(world, rule, **overrides)
    headers = {"Idempotency-Key": "sec-matrix", **(headers or {})}
    if rule.endpoint.startswith("console."):
        return client.open(url, method=method, data={} if method == "POST" else None, headers=headers)
    body = body_of(world, rule.endpoint) if method in {"POST", "PATCH", "PUT", "DELETE"} else None
    return client.open(url, method=method, json=body, headers=headers, buffered=True)


def outcome(response) -> str:
    """``2xx``, ``3xx /path``, ``<status> <envelope code>``, or ``<status> page:<code>`` for a console page."""
    if 200 <= response.status_code < 300:
        return "2xx"
    if 300 <= response.status_code < 400:
        return f"3xx {urlsplit(response.headers.get('Location', '')).path}"
    body = response.get_json(silent=True)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        if response.status_code == 401:  # the envelope, and a challenge that says so
            assert response.headers["WWW-Authenticate"].startswith('Bearer realm="diandian"'), response.headers
        return f"{response.status_code} {body['error'].get('code')}"
    if isinstance(body, dict) and body.get("code") == "FAIL":
        return f"{response.status_code} FAIL"
    page = re.search(r'data-code="([^"]+)"', response.get_data(as_text=True))
    return f"{response.status_code} page:{page.group(1) if page else '?'}"


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def fingerprint(app) -> str:
    """A digest of every row of every table: equal before and after means nothing was written."""
    from carbon.core.db import db

    digest = hashlib.sha256()
    with app.app_context():
        for table in db.metadata.sorted_tables:
            order = [column for column in table.primary_key.columns] or list(table.columns)
            for row in db.session.execute(select(table).order_by(*order)):
                digest.update(repr(tuple(row)).encode())
        db.session.remove()
    return digest.hexdigest()


def leaks(response, secrets: set[str]) -> set[str]:
    """The secrets in the answer, other than those the request itself named (e.g. in a sign-in link's ``next``)."""
    text = response.get_data().decode("utf-8", "replace")
    asked = response.request.full_path if response.request is not None else ""
    return {secret for secret in secrets if secret and secret in text and secret not in asked}


def alices_secrets(world: World) -> set[str]:
    return {world.alice.openid, world.alice.user_id, world.alice.footprint, *world.alice.orders,
            world.alice.awaiting, world.alice.package.removeprefix("prepay_id="), *world.alice.trade_nos}


def a_secrets(world: World) -> set[str]:
    """What only organization A (and alice) may see: its ids, members, key, and alice's orders."""
    return {world.a.id, world.a.owner, world.a.staff, world.a.key_id, world.a.scene, *world.alice.orders,
            *world.alice.trade_nos, world.alice.openid}


# --- 0: the table is the app --------------------------------------------------------------------

def test_every_route_has_a_declared_audience(world):
    from carbon.accounts.auth import audience_of

    endpoints = {rule.endpoint for rule in world.app.url_map.iter_rules()}
    assert endpoints - AUDIENCE.keys() == set(), "declare the audience of the new route(s) in AUDIENCE"
    assert AUDIENCE.keys() - endpoints == set(), "a route in AUDIENCE is gone: remove it"
    declared = {rule.endpoint: audience_of(world.app.view_functions[rule.endpoint], rule.rule)
                for rule in world.app.url_map.iter_rules()}
    assert declared == {endpoint: DECLARED[AUDIENCE[endpoint]] for endpoint in declared}
    assert {e for e, who in AUDIENCE.items() if who == OWNER} == OWNER_ONLY  # the admin matrix's list
    assert set(NOT_THE_CALLERS) == {rule.endpoint for _, rule in routes(world.app, GUEST) if rule.arguments}


def test_the_simulator_exists_only_with_the_sandbox(database_url, sandbox):
    from app import create_app
    from tests.conftest import make_config

    real = create_app(make_config(database_url, sandbox.url, WECHAT_API_BASE="https://api.weixin.qq.com"))
    endpoints = {rule.endpoint for rule in real.url_map.iter_rules()}
    assert endpoints == {e for e, who in AUDIENCE.items() if who != SANDBOX}
    for path in ("/simulator", "/simulator/static/simulator.js"):
        assert outcome(real.test_client().get(path)) == "404 request.not_found"
    assert outcome(real.test_client().post("/simulator/wx/login", json={"openid": "o_x"})) == "404 request.not_found"


# --- 1: no credentials ---------------------------------------------------------------------------

def without_credentials(audience: str, method: str) -> str | None:
    """What a caller without any credential gets; None: a public route, which must answer (not 401/403/5xx)."""
    if audience in GUESTS | ORGANIZERS:
        return "401 auth.missing_token"
    if audience in CONSOLES:  # a form without its token is refused before anything else; a page sends to sign-in
        return "400 page:console.csrf" if method == "POST" else "3xx /console/login"
    if audience == OPERATOR:
        return "401 metrics.token_required"
    if audience == PROVIDER:
        return "401 FAIL"
    return None


def test_without_credentials_only_public_routes_answer(world):
    client = world.client()
    seen, expected = {}, {}
    for method, rule in routes(world.app):
        if (method, rule.endpoint) in {("POST", "admin.login"), ("POST", "console.login")}:
            continue  # a sign-in writes its session: below
        name, audience = f"{method} {rule.rule}", AUDIENCE[rule.endpoint]
        seen[name] = outcome(call(client, world, method, rule))
        wanted = without_credentials(audience, method)
        public_answer = seen[name][:3] not in {"401", "403"} and not seen[name].startswith("5")
        expected[name] = wanted if wanted else seen[name] if public_answer else "a public answer"
    assert seen == expected


def test_protected_routes_write_nothing_without_credentials(world):
    client = world.client()
    before = fingerprint(world.app)
    for method, rule in routes(world.app, *GUESTS, *ORGANIZERS, *CONSOLES, OPERATOR):
        call(client, world, method, rule)
    anonymous = world.client()  # a console form with a valid token from a session signed in to nobody
    token = csrf_of(anonymous.get("/console/login"))
    seen = {f"POST {rule.rule}": outcome(anonymous.post(url_of(world, rule), data={"csrf_token": token}))
            for method, rule in routes(world.app, *CONSOLES) if method == "POST"}
    assert seen == dict.fromkeys(seen, "3xx /console/login")
    assert fingerprint(world.app) == before


def test_the_documented_table_names_every_audience_and_public_route(world):
    """docs/API.md, "Who may call what": a row per audience; every public route is listed in its row."""
    from tests.conftest import ROOT

    api = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    table = api.split("## Who may call what", 1)[1].split("\n## ", 1)[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert set(AUDIENCE.values()) <= rows.keys()
    listed = re.findall(r"`(?:GET |POST )?(/[^`]*)`", rows[PUBLIC])
    unlisted = [f"{method} {rule.rule}" for method, rule in routes(world.app, PUBLIC)
                if not any(_documented(rule.rule, prefix) for prefix in listed)]
    assert unlisted == []


def _documented(rule: str, listed: str) -> bool:
    """``/c/<string:number>`` is listed as ``/c/``, ``/api/v1/certificates/<string:number>/card.jpg`` as
    ``/api/v1/certificates/<number>`` (its card...)."""
    plain = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"<\1>", rule)
    return plain == listed or (listed.endswith("/") and plain.startswith(listed)) or \
        (listed.endswith(">") and plain.startswith(listed + "/"))


# --- 2: guests where guests may not go ------------------------------------------------------------

def test_a_guest_token_is_refused_on_organizer_console_and_operator_routes(world):
    client = world.client()
    headers = bearer(world.alice.token)
    before = fingerprint(world.app)
    seen, expected, leaked = {}, {}, {}
    for method, rule in routes(world.app, *ORGANIZERS, *CONSOLES, OPERATOR):
        name, audience = f"{method} {rule.rule}", AUDIENCE[rule.endpoint]
        response = call(client, world, method, rule, headers)
        seen[name] = outcome(response)
        expected[name] = ("401 auth.invalid_token" if audience in ORGANIZERS else
                          "401 metrics.token_required" if audience == OPERATOR else without_credentials(audience, method))
        if found := leaks(response, a_secrets(world) - {world.alice.openid}):
            leaked[name] = found
    assert seen == expected
    assert leaked == {}
    assert fingerprint(world.app) == before


def console_cookie(app, payload: dict, secret: str | None = None) -> str:
    """The console's signed cookie holding ``payload`` (as Flask would sign it, or with another key)."""
    interface = app.session_interface
    serializer = interface.get_signing_serializer(app)
    if secret is not None:
        from itsdangerous import URLSafeTimedSerializer

        serializer = URLSafeTimedSerializer(secret, salt=interface.salt, serializer=interface.serializer,
                                            signer_kwargs={"key_derivation": interface.key_derivation,
                                                           "digest_method": interface.digest_method})
    return serializer.dumps(payload)


def console_tokens(world: World) -> dict[str, dict]:
    """Cookies a console must not accept, each with a form token that matches."""
    from carbon.organizers.models import OrganizerSession

    client = world.client()
    member = client.post("/api/v1/admin/auth/login", json={"email": world.a.staff, "password": PASSWORD})
    ended = member.get_json()["token"]
    assert client.post("/api/v1/admin/auth/logout", headers=bearer(ended)).status_code == 204
    expired = client.post("/api/v1/admin/auth/login", json={"email": world.a.staff, "password": PASSWORD}
                          ).get_json()["token"]
    with world.app.app_context():
        from carbon.core.clock import utcnow
        from carbon.core.db import db

        token_id = URLSafeSerializer(world.app.secret_key, salt="diandian.organizer").loads(expired)
        db.session.scalar(select(OrganizerSession).where(OrganizerSession.token_id == token_id)
                          ).expires_at = utcnow()
        db.session.commit()
    live = client.post("/api/v1/admin/auth/login", json={"email": world.a.owner, "password": PASSWORD}
                       ).get_json()["token"]
    csrf = "t" * 43
    return {"guest token": {"token": world.alice.token, "csrf_token": csrf},
            "api key": {"token": world.a.api_key, "csrf_token": csrf},
            "revoked session": {"token": ended, "csrf_token": csrf},
            "expired session": {"token": expired, "csrf_token": csrf},
            "another key": {"token": live, "csrf_token": csrf, "_secret": "another-secret-key-of-32-characters!!"},
            "garbled token": {"token": live[:-3] + "AAA", "csrf_token": csrf}}


def test_the_console_accepts_no_cookie_but_a_live_members_session(world):
    before = fingerprint(world.app)
    seen, expected = {}, {}
    for kind, payload in console_tokens(world).items():
        secret = payload.pop("_secret", None)
        before = fingerprint(world.app)
        client = world.client()
        client.set_cookie("diandian_console", console_cookie(world.app, payload, secret), path="/console")
        for method, rule in routes(world.app, *CONSOLES):
            name = f"{kind}: {method} {rule.rule}"
            data = {"csrf_token": payload["csrf_token"]} if method == "POST" else None
            seen[name] = outcome(client.open(url_of(world, rule), method=method, data=data))
            # a cookie signed with another key is no session at all, so its form token is not the session's
            expected[name] = ("400 page:console.csrf" if secret and method == "POST" else "3xx /console/login")
    assert seen == expected
    assert fingerprint(world.app) == before
    # The control: the same forged cookie holding a live member's token is a session.
    client = world.client()
    live = organizer_login(world, world.a.staff)
    client.set_cookie("diandian_console", console_cookie(world.app, {"token": live, "csrf_token": "t" * 43}),
                      path="/console")
    assert outcome(client.get("/console/scenes")) == "2xx"
    assert csrf_of(client.get("/console/scenes")) == "t" * 43


# --- 3: tokens that are not (or no longer) good ------------------------------------------------------

def guest_login(world: World, openid: str) -> str:
    from tests.payments.conftest import guest_token

    return guest_token(world.client(), world.sandbox, openid)


def organizer_login(world: World, email: str) -> str:
    answer = world.client().post("/api/v1/admin/auth/login", json={"email": email, "password": PASSWORD})
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()["token"]


def resigned(world: World, token: str, salt: str, secret: str = "another-secret-key-of-32-characters!!") -> str:
    """The same session id signed with another key."""
    return URLSafeSerializer(secret, salt=salt).dumps(URLSafeSerializer(world.app.secret_key, salt=salt).loads(token))


def refused_everywhere(world: World, audiences: set[str], token: str, headers: dict | None = None) -> dict:
    client = world.client()
    return {f"{method} {rule.rule}": outcome(call(client, world, method, rule, {**bearer(token), **(headers or {})}))
            for method, rule in routes(world.app, *audiences)}


BROKEN = ["expired", "another key", "truncated", "garbled", "appended", "revoked", "deleted account",
          "organizer token", "api key", "empty signature", "not ascii"]


@pytest.mark.parametrize("kind", BROKEN)
def test_a_broken_ended_or_foreign_guest_token_is_401_on_every_guest_route(world, kind):
    from carbon.accounts.service import TOKEN_SALT

    before_client = world.client()
    token = guest_login(world, f"o_sec_{kind.replace(' ', '_')}")
    assert outcome(before_client.get("/api/v1/me", headers=bearer(token))) == "2xx"
    if kind == "revoked":
        assert before_client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    elif kind == "deleted account":
        assert before_client.delete("/api/v1/me", json={"confirm": "注销账号"}, headers=bearer(token)).status_code == 204
    token = {"another key": lambda: resigned(world, token, TOKEN_SALT), "truncated": lambda: token[:-6],
             "garbled": lambda: token[:5] + ("x" if token[5] != "x" else "y") + token[6:],
             "appended": lambda: token + "x", "organizer token": lambda: organizer_login(world, world.a.owner),
             "api key": lambda: world.a.api_key, "empty signature": lambda: token.split(".")[0] + ".",
             "not ascii": lambda: token[:-1] + "é"}.get(kind, lambda: token)()
    before = fingerprint(world.app)
    if kind == "expired":
        clock.advance(world.app.extensions["diandian.settings"].SESSION_TTL_SECONDS + 1)
    try:
        if kind == "not ascii":
            token = token.encode().decode("latin-1")
        seen = refused_everywhere(world, GUESTS, token)
    finally:
        clock.reset()
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")
    assert fingerprint(world.app) == before


@pytest.mark.parametrize("kind", ["expired", "another key", "truncated", "garbled", "revoked", "guest token",
                                  "a guest's token signed as an organizer's"])
def test_a_broken_ended_or_foreign_organizer_token_is_401_on_every_organizer_route(world, kind):
    from carbon.accounts.service import TOKEN_SALT as GUEST_SALT
    from carbon.organizers.service import TOKEN_SALT

    token = organizer_login(world, world.a.staff)
    assert outcome(world.client().get("/api/v1/admin/me", headers=bearer(token))) == "2xx"
    if kind == "revoked":
        assert world.client().post("/api/v1/admin/auth/logout", headers=bearer(token)).status_code == 204
    if kind == "a guest's token signed as an organizer's":  # a guest session id under the organizer salt
        guest_id = URLSafeSerializer(world.app.secret_key, salt=GUEST_SALT).loads(world.alice.token)
        token = URLSafeSerializer(world.app.secret_key, salt=TOKEN_SALT).dumps(guest_id)
    token = {"another key": lambda: resigned(world, token, TOKEN_SALT), "truncated": lambda: token[:-6],
             "garbled": lambda: token[:5] + ("x" if token[5] != "x" else "y") + token[6:],
             "guest token": lambda: world.alice.token}.get(kind, lambda: token)()
    before = fingerprint(world.app)
    if kind == "expired":
        clock.advance(world.app.extensions["diandian.settings"].ORGANIZER_SESSION_TTL_SECONDS + 1)
    try:
        seen = refused_everywhere(world, ORGANIZERS, token)
    finally:
        clock.reset()
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")
    assert fingerprint(world.app) == before


def test_an_organizer_session_id_signed_as_a_guests_is_no_guest(world):
    from carbon.accounts.service import TOKEN_SALT as GUEST_SALT
    from carbon.organizers.service import TOKEN_SALT

    session_id = URLSafeSerializer(world.app.secret_key, salt=TOKEN_SALT).loads(organizer_login(world, world.a.owner))
    token = URLSafeSerializer(world.app.secret_key, salt=GUEST_SALT).dumps(session_id)
    seen = refused_everywhere(world, GUESTS, token)
    assert seen == dict.fromkeys(seen, "401 auth.invalid_token")


# --- 4: the wrong guest ----------------------------------------------------------------------------

def test_another_guest_never_sees_or_touches_alices_things(world):
    """Bob, with his own valid token, on every guest route naming alice's footprint or order, and on
    every guest route at all: the documented 404s, and none of alice's ids or openid in any body."""
    client = world.client()
    bob = bearer(world.bob.token)
    before_orders = client.get("/api/v1/orders", headers=bearer(world.alice.token)).get_json()
    seen, expected, leaked = {}, {}, {}
    for method, rule in routes(world.app, GUEST):
        if rule.endpoint in {"accounts.delete_me", "accounts.logout"}:
            continue  # below, on a guest of their own
        name = f"{method} {rule.rule}"
        response = call(client, world, method, rule, bob)
        seen[name] = outcome(response)
        expected[name] = NOT_THE_CALLERS.get(rule.endpoint, seen[name] if seen[name] == "2xx" else "2xx")
        if rule.endpoint == "accounts.bind_phone":
            expected[name] = "400 auth.invalid_phone_code"
        if found := leaks(response, alices_secrets(world)):
            leaked[name] = found
    assert seen == expected
    assert leaked == {}
    # Her order awaiting payment, with its payment parameters, is not found either.
    awaiting = client.get(f"/api/v1/orders/{world.alice.awaiting}", headers=bob)
    assert outcome(awaiting) == "404 order.not_found" and not leaks(awaiting, alices_secrets(world))
    assert world.alice.package in client.get(f"/api/v1/orders/{world.alice.awaiting}",
                                             headers=bearer(world.alice.token)).get_data(as_text=True)
    # An order for alice's footprint is refused as if it did not exist.
    taken = client.post("/api/v1/orders", json={"footprint_id": world.alice.footprint},
                        headers={**bob, "Idempotency-Key": "sec-bob-steals"})
    unknown = client.post("/api/v1/orders", json={"footprint_id": "fp_unknown00000"},
                          headers={**bob, "Idempotency-Key": "sec-bob-unknown"})
    assert outcome(taken) == "422 order.unknown_footprint" and not leaks(taken, alices_secrets(world))
    assert without_request_id(taken) == without_request_id(unknown)  # the same as a footprint that does not exist
    assert client.get("/api/v1/orders", headers=bearer(world.alice.token)).get_json() == before_orders


def test_a_certificate_shows_its_order_only_to_its_owner(world):
    client = world.client()
    path = f"/api/v1/certificates/{world.alice.certificate}"
    anonymous = client.get(path).get_json()
    as_bob = client.get(path, headers=bearer(world.bob.token)).get_json()
    as_organizer = client.get(path, headers=bearer(world.a.api_key)).get_json()
    as_alice = client.get(path, headers=bearer(world.alice.token)).get_json()
    assert as_bob == anonymous == as_organizer
    assert {"order_id", "amount", "push"} & anonymous.keys() == set()
    assert as_alice["order_id"] == world.alice.orders[0] and as_alice["amount"]
    assert not alices_secrets(world) & {str(v) for v in _strings(anonymous)}
    mine = client.get("/api/v1/certificates", headers=bearer(world.bob.token)).get_json()
    assert mine == {"items": []}


def without_request_id(response) -> dict:
    return {name: value for name, value in response.get_json()["error"].items() if name != "request_id"}


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    else:
        yield value


def test_the_export_holds_the_callers_data_only(world):
    client = world.client()
    mine = client.get("/api/v1/me/export", headers=bearer(world.bob.token))
    assert mine.status_code == 200 and world.bob.footprint in mine.get_data(as_text=True)
    assert leaks(mine, alices_secrets(world) | {world.alice.certificate}) == set()
    alices = client.get("/api/v1/me/export", headers=bearer(world.alice.token))
    assert {world.alice.footprint, *world.alice.orders} <= leaks(alices, alices_secrets(world))
    assert world.bob.footprint not in alices.get_data(as_text=True)


# --- 4b: another organization on the organizer API, with A's real things ------------------------

ACROSS_API = {"scene_id": "404 scene.not_found", "key_id": "404 organizer.api_key_not_found",
              "order_id": "404 order.not_found", "request_id": "404 invoice.not_found"}
# Routes naming A's things in the body, as B would send it, and what B gets.
ACROSS_API_BODIES = {
    "admin_purchases.quote": ({"kind": "host", "footprint_id": "{host_footprint}"}, "404 footprint.not_found"),
    "admin_purchases.buy": ({"kind": "host", "footprint_id": "{host_footprint}"}, "404 footprint.not_found"),
    "admin_purchases.create_host_footprint": ({"scene": "{scene}", "activities": [
        {"type": "venue_electricity", "kwh": 100}]}, "404 scene.not_found"),
    "admin_invoices.create_request": ({"order_id": "{purchase}"}, "404 order.not_found")}


def test_another_organizations_key_finds_none_of_as_things_on_the_organizer_api(world):
    """B's owner key on every organizer route naming A's scene, key, purchase or invoice request in
    the URL, and on those naming A's host footprint, scene or purchase in the body: the documented
    404s, nothing written, none of A's ids in any answer."""
    from tests.api.test_admin_permissions import body_for

    client, headers = world.client(), {**bearer(world.b.api_key), "Idempotency-Key": "sec-b-on-a"}
    fill = {"host_footprint": world.a.host_footprint, "scene": world.a.scene, "purchase": world.a.purchase}
    before = fingerprint(world.app)
    seen, expected, leaked = {}, {}, {}
    for method, rule in routes(world.app, *ORGANIZERS):
        named = sorted(rule.arguments & ACROSS_API.keys())
        if not named and rule.endpoint not in ACROSS_API_BODIES:
            continue  # names nothing of A's: B's own (tests/api/test_admin_permissions.py)
        name = f"{method} {rule.rule}"
        body, wanted = ACROSS_API_BODIES.get(rule.endpoint, (None, None))
        if body is None and method in {"POST", "PATCH", "PUT"}:
            body = body_for(rule.endpoint, world.a.scene)
        body = {key: value.format(**fill) if isinstance(value, str) else value for key, value in (body or {}).items()}
        response = client.open(url_of(world, rule), method=method, json=body if method != "GET" else None,
                               headers=headers)
        seen[name], expected[name] = outcome(response), wanted or ACROSS_API[named[0]]
        if found := leaks(response, a_secrets(world) | {world.a.purchase, world.a.host_footprint,
                                                        world.a.invoice_request}):
            leaked[name] = found
    assert len(seen) >= 17
    assert seen == expected
    assert leaked == {}
    assert fingerprint(world.app) == before


# --- 5: another organization, staff and owners on the console ------------------------------------

def signed_in(world: World, email: str):
    client = world.client()
    assert sign_in(client, email, PASSWORD).status_code == 302
    return client


def test_another_organizations_console_sees_none_of_a(world):
    """B's owner and staff on every console route, with A's scene, order and event in the URL:
    404 (the failed event: "no such event", and it stays failed), and none of A's ids in any page."""
    from carbon.core.db import db
    from carbon.jobs.models import OutboxEvent

    clients = {email: signed_in(world, email) for email in (world.b.owner, world.b.staff)}
    tokens = {email: csrf_of(client.get("/console/scenes")) for email, client in clients.items()}
    before = fingerprint(world.app)
    for email, client in clients.items():
        seen, expected, leaked = {}, {}, {}
        for method, rule in routes(world.app, *CONSOLES):
            if rule.endpoint in {"console.logout"}:
                continue
            name = f"{method} {rule.rule}"
            response = client.open(url_of(world, rule), method=method,
                                   data={"csrf_token": tokens[email], "status": "live", "slug": "x", "name_zh": "改名",
                                         **a_purchase_form(world)} if method == "POST" else None)
            seen[name] = outcome(response)
            expected[name] = cross_console(rule, method, email == world.b.owner, seen[name])
            if found := leaks(response, a_secrets(world)):
                leaked[name] = found
        assert seen == expected, email
        assert leaked == {}, email
    assert fingerprint(world.app) == before  # A's event is still failed, nothing of A's renamed, no scene made
    for path in ("/console/settlement", "/console/settlement.csv"):  # A's project earns for A only
        assert world.project not in clients[world.b.owner].get(path).get_data(as_text=True)
        assert world.project in signed_in(world, world.a.staff).get(path).get_data(as_text=True)
    with world.app.app_context():
        assert db.session.get(OutboxEvent, world.event).status == "failed"
        db.session.remove()


def a_purchase_form(world: World) -> dict:
    """A form naming A's things, as B would post it."""
    return {"kind": "host", "footprint_id": world.a.host_footprint, "idempotency_key": "sec-b-buys-a",
            "order": world.a.purchase, "fapiao_number": "12345678", "reason": "b"}


def cross_console(rule, method: str, owner: bool, seen: str) -> str:
    if AUDIENCE[rule.endpoint] == CONSOLE_OWNER and not owner:
        return "403 page:auth.owner_required"
    if rule.endpoint == "console.invoice_profile" and method == "POST" and not owner:
        return "403 page:auth.owner_required"  # staff read the profile; owners change it
    if rule.endpoint in {"console.buy_quote", "console.buy_order"}:
        return "404 page:footprint.not_found"  # A's host footprint is no footprint of B's
    if rule.endpoint == "console.invoice_request":
        return "404 page:order.not_found"  # A's purchase is no order of B's
    if rule.endpoint == "console.invoice_decide":
        return "404 page:invoice.not_found"  # and A's stays requested (the fingerprint below)
    if rule.endpoint == "console.event_replay":
        return "3xx /console/events"  # with "没有这个失败事件"
    if rule.endpoint == "console.refund_retry":
        return "3xx /console/refunds"  # with "没有这笔退款", and A's refund as it was
    if "scene_id" in rule.arguments:
        return "404 page:scene.not_found"
    if "order_id" in rule.arguments:
        return "404 page:order.not_found"
    if rule.endpoint == "console.scene_new" and method == "POST":
        return seen  # B may create its own scene (its form errors here): not A's concern
    return "3xx /console/scenes" if rule.endpoint == "console.home" else "2xx"


def test_staff_and_owners_on_the_console(world):
    """Every console page opens for A's owner and staff with A's own things, except the owner-only ones."""
    for email, owner in ((world.a.owner, True), (world.a.staff, False)):
        client = signed_in(world, email)
        seen, expected, pii = {}, {}, {}
        for method, rule in routes(world.app, *CONSOLES):
            if method != "GET":
                continue
            name = f"{method} {rule.rule}"
            answer = client.get(url_of(world, rule))
            seen[name] = outcome(answer)
            expected[name] = ("403 page:auth.owner_required" if AUDIENCE[rule.endpoint] == CONSOLE_OWNER and not owner
                              else "3xx /console/scenes" if rule.endpoint == "console.home" else "2xx")
            if found := leaks(answer, {world.alice.openid, world.alice.package}):  # a guest's WeChat identity
                pii[name] = found
        assert seen == expected, email
        assert pii == {}, email


def test_staff_are_refused_every_owner_form_on_their_own_organizations_things(world):
    """A's staff, with the session's form token, on every owner-only console form naming A's own
    paid order, refund, failed event, purchase and invoice request (and the invoice profile's form):
    403, and nothing written."""
    client = signed_in(world, world.a.staff)
    token = csrf_of(client.get("/console/scenes"))
    forms = [rule for method, rule in routes(world.app, CONSOLE_OWNER, CONSOLE) if method == "POST" and (
        AUDIENCE[rule.endpoint] == CONSOLE_OWNER or rule.endpoint == "console.invoice_profile")]
    assert {rule.endpoint for rule in forms} == {"console.event_replay", "console.order_refund", "console.refund_retry",
                                                 "console.invoice_decide", "console.buy_order",
                                                 "console.invoice_profile"}
    before = fingerprint(world.app)
    seen = {}
    for rule in forms:
        for action in ("issue", "reject") if rule.endpoint == "console.invoice_decide" else ("issue",):
            response = client.post(url_of(world, rule, action=action), data={
                "csrf_token": token, "title": "甲组委会改名", "tax_id": "91350100M000100Y43", **a_purchase_form(world)})
            seen[f"POST {rule.rule} {action}"] = outcome(response)
    assert seen == dict.fromkeys(seen, "403 page:auth.owner_required")
    assert fingerprint(world.app) == before


# --- 6: CSRF on every console form ---------------------------------------------------------------

def test_every_console_form_is_refused_without_its_token_and_writes_nothing(world):
    client = signed_in(world, world.a.owner)
    good = csrf_of(client.get("/console/scenes"))
    other = csrf_of(signed_in(world, world.b.owner).get("/console/scenes"))  # another session's
    forms = [(method, rule) for method, rule in routes(world.app, CONSOLE_OPEN, *CONSOLES) if method == "POST"]
    assert {rule.endpoint for _, rule in forms} >= {"console.login", "console.logout", "console.event_replay"}
    before = fingerprint(world.app)
    seen = {}
    for method, rule in forms:
        form = {"email": world.a.owner, "password": PASSWORD, "status": "closed", "slug": "csrf", "name_zh": "改名",
                **dict.fromkeys(["kind"], "conference")}
        for label, given in (("none", {}), ("empty", {"csrf_token": ""}), ("wrong", {"csrf_token": good[:-2] + "xx"}),
                             ("another session's", {"csrf_token": other}), ("in the query", {})):
            query = f"?csrf_token={good}" if label == "in the query" else ""
            response = client.post(url_of(world, rule) + query, data={**form, **given})
            seen[f"{label}: POST {rule.rule}"] = outcome(response)
    assert seen == dict.fromkeys(seen, "400 page:console.csrf")
    assert fingerprint(world.app) == before
    assert outcome(client.get("/console/scenes")) == "2xx"  # still signed in: logout was refused too


# --- 7: operators ----------------------------------------------------------------------------------

@pytest.mark.parametrize("headers, environ, wanted", [
    ({}, {}, "401 metrics.token_required"),
    ({"Authorization": "Bearer wrong-token-of-some-length"}, {}, "401 metrics.token_required"),
    ({"Authorization": f"Bearer {METRICS_TOKEN[:-1]}"}, {}, "401 metrics.token_required"),
    ({"Authorization": f"Basic {METRICS_TOKEN}"}, {}, "401 metrics.token_required"),
    ({"Authorization": f"Bearer {METRICS_TOKEN}"}, {"REMOTE_ADDR": "198.51.100.7"}, "2xx"),
])
def test_metrics_take_the_metrics_token_only(world, headers, environ, wanted):
    assert outcome(world.client().get("/metrics", headers=headers, environ_base=environ)) == wanted


def test_metrics_are_not_public_behind_the_production_proxy():
    """deploy/nginx answers 404 for /metrics; without a token the app refuses any proxied or remote client."""
    from tests.conftest import ROOT

    nginx = (ROOT / "deploy" / "nginx" / "diandian.conf").read_text()
    assert re.search(r"location = /metrics \{[^}]*?\breturn 404\b", nginx)  # tests/deploy/test_nginx_live.py serves it
    assert "merge_slashes off" not in nginx  # //metrics is /metrics for nginx too


def test_a_draft_scene_is_no_scene_for_guests_and_the_public(world):
    """Every public or guest route that takes a scene answers for A's draft as for no scene at all."""
    from carbon.organizers.models import Organizer
    from carbon.organizers.service import Principal
    from carbon.scenes import service as scenes

    with world.app.app_context():
        from carbon.core.db import db

        owner = db.session.scalar(select(Organizer).where(Organizer.email == world.a.owner))
        draft = scenes.create_scene(Principal(owner.organization, "owner", organizer=owner),
                                    {"kind": "conference", "name_zh": "未发布的论坛", "code": "secdraft1"})
        draft_id = draft.public_id
        db.session.remove()
    client, bob = world.client(), bearer(world.bob.token)
    code = "s%3Dsecdraft1"
    asked = {"GET /api/v1/scenes/resolve": client.get(f"/api/v1/scenes/resolve?scene={code}"),
             "GET /s": client.get(f"/s?scene={code}"),
             "GET /api/v1/leaderboards": client.get(f"/api/v1/leaderboards?scene={draft_id}"),
             "GET /api/v1/leaderboards/me": client.get(f"/api/v1/leaderboards/me?scene={draft_id}", headers=bob),
             "POST /api/v1/footprints/preview": client.post("/api/v1/footprints/preview", json={
                 "scene": code, "activities": [{"type": "rail", "distance_km": 10}]}),
             "POST /api/v1/footprints": client.post("/api/v1/footprints", headers=bob, json={
                 "scene": code, "activities": [{"type": "rail", "distance_km": 10}]}),
             "POST /api/v1/orders": client.post("/api/v1/orders", json={"kg": "5", "scene": code},
                                                headers={**bob, "Idempotency-Key": "sec-draft"}),
             **{f"GET /screen/<key>{tail}": client.get(f"/screen/{key}{tail}", buffered=True)
                for key in (draft_id, "secdraft1") for tail in ("", "/events", "/snapshot.json", "/code.png")}}
    seen = {name: outcome(response) for name, response in asked.items()}
    pages = {"GET /s", "GET /screen/<key>"}  # HTML pages: a 404 page
    assert seen == {name: "404 page:?" if name in pages else "404 scene.not_found" for name in seen}
    assert not any("未发布的论坛" in response.get_data(as_text=True) for response in asked.values())


def test_the_openapi_document_declares_each_operations_audience(world):
    """/api/openapi.json: guest routes need the guest scheme, organizer routes the organizer scheme (and
    list 401, owner-only ones 403 too), public ones none; every /api/v1 route is in it."""
    document = world.client().get("/api/openapi.json").get_json()
    wanted = {GUEST: [{"guest": []}], ORGANIZER: [{"organizer": []}], OWNER: [{"organizer": []}], PUBLIC: [],
              PROVIDER: []}
    seen, expected = {}, {}
    for method, rule in routes(world.app):
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        operation = document["paths"].get(path, {}).get(method.lower())
        name, audience = f"{method} {rule.rule}", AUDIENCE[rule.endpoint]
        if operation is None:
            seen[name] = "missing"
            continue
        statuses = set(operation["responses"])
        seen[name] = (operation.get("security"), "401" in statuses, "403" in statuses if audience == OWNER else None)
        expected[name] = (wanted[audience], audience in GUESTS | ORGANIZERS or "401" in statuses,
                          True if audience == OWNER else None)
    assert seen == expected


@pytest.mark.parametrize("headers", [{"X-Forwarded-For": "127.0.0.1"}, {"X-Real-IP": "127.0.0.1"},
                                     {"Forwarded": "for=127.0.0.1"}, {"X-Forwarded-For": "::1"}])
def test_without_a_metrics_token_no_proxy_header_passes_for_this_machine(database_url, sandbox, headers):
    """Behind a trusted proxy (ProxyFix takes the client address from X-Forwarded-For) a remote client
    claiming to be 127.0.0.1 is still refused: any forwarding header means the request was not direct."""
    from app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(database_url, sandbox.url, TRUSTED_PROXIES=1))
    client = app.test_client()
    assert outcome(client.get("/metrics")) == "2xx"  # the control: a direct local client
    remote = {"REMOTE_ADDR": "198.51.100.7"}
    assert outcome(client.get("/metrics", headers=headers, environ_base=remote)) == "403 metrics.local_only"
    assert outcome(client.get("/metrics", headers=headers)) == "403 metrics.local_only"
