"""The console's session and forms (decision 0012): CSRF on every form, one organization's cookie
never opens another's scene, logout ends the session for every copy of the cookie, the API login's
rate limit, field errors beside the fields."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import func, select

from carbon.core.db import db
from carbon.organizers.models import OrganizerSession
from carbon.scenes.models import Scene
from tests.console.conftest import PASSWORD, SCENE_FORM, csrf_of, organization, sign_in


def scene_count(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Scene))


def test_a_form_posted_without_its_token_is_refused_and_changes_nothing(app, client, owner_a):
    token = csrf_of(client.get("/console/scenes/new"))
    for refused in ({}, {"csrf_token": ""}, {"csrf_token": token[:-2] + "xx"}):
        response = client.post("/console/scenes/new", data={**SCENE_FORM, **refused})
        assert response.status_code == 400 and 'data-code="console.csrf"' in response.get_data(as_text=True)
    assert scene_count(app) == 0
    # Another session's token does not pass either.
    other = app.test_client()
    other_token = csrf_of(other.get("/console/login"))
    assert client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": other_token}).status_code == 400
    assert client.post("/console/logout", data={}).status_code == 400  # logout is a form too
    assert client.get("/console/scenes").status_code == 200  # still signed in
    # A sign-in form without its token is refused before the password is even checked.
    assert other.post("/console/login", data={"email": owner_a, "password": PASSWORD}).status_code == 400
    created = client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": token})
    assert created.status_code == 302 and scene_count(app) == 1


def test_the_token_is_renewed_at_sign_in(app, client):
    organization(app, "甲", "a@forum.example")
    before = csrf_of(client.get("/console/login"))
    client.post("/console/login", data={"email": "a@forum.example", "password": PASSWORD, "csrf_token": before})
    after = csrf_of(client.get("/console/scenes/new"))
    assert after != before
    assert client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": before}).status_code == 400


def test_a_cookie_from_one_organizer_never_opens_another_organizations_scene(app, client, owner_a):
    from carbon.organizers.models import Organizer
    from carbon.organizers.service import Principal
    from carbon.scenes import service as scenes

    organization(app, "乙组委会", "b@forum.example")
    with app.app_context():
        member = db.session.scalar(select(Organizer).where(Organizer.email == "b@forum.example"))
        theirs = scenes.create_scene(Principal(member.organization, "owner", organizer=member),
                                     {"kind": "conference", "name_zh": "乙的论坛"}).public_id
    token = csrf_of(client.get("/console/scenes"))
    assert "乙的论坛" not in client.get("/console/scenes").get_data(as_text=True)
    for path in ("", "/edit", "/stats.json", "/stats.csv", "/poster.png", "/poster.pdf", "/qrcode.png",
                 "/wxacode.png"):
        assert client.get(f"/console/scenes/{theirs}{path}").status_code == 404, path
    for path, form in (("/status", {"status": "live"}), ("/edit", {"name_zh": "改名"}),
                       ("/channels", {"slug": "door"})):
        assert client.post(f"/console/scenes/{theirs}{path}", data={**form, "csrf_token": token}).status_code == 404
    with app.app_context():
        scene = db.session.scalar(select(Scene).where(Scene.public_id == theirs))
        assert (scene.status, scene.name_zh, [c.slug for c in scene.channels]) == ("draft", "乙的论坛", ["", "search"])


def test_logout_ends_the_session_for_every_copy_of_the_cookie(app, client, owner_a):
    copied = client.get_cookie("diandian_console", path="/console").value
    token = csrf_of(client.get("/console/scenes"))
    out = client.post("/console/logout", data={"csrf_token": token})
    assert out.status_code == 302 and out.headers["Location"].endswith("/console/login")
    with app.app_context():
        assert db.session.scalar(select(OrganizerSession.revoked_at)) is not None
    thief = app.test_client()
    thief.set_cookie("diandian_console", copied, path="/console")
    answer = thief.get("/console/scenes")
    assert answer.status_code == 302 and "/console/login" in answer.headers["Location"]


def test_a_member_disabled_while_signed_in_is_signed_out_at_the_next_request(app, client, owner_a):
    """The console reads the member on every request: once disabled, the live cookie opens no page
    and posts no form (back to the sign-in page, nothing saved), and the password signs in no more."""
    from carbon.core.clock import utcnow
    from carbon.organizers.models import Organizer

    token = csrf_of(client.get("/console/scenes/new"))
    with app.app_context():
        db.session.scalar(select(Organizer).where(Organizer.email == owner_a)).disabled_at = utcnow()
        db.session.commit()
    page = client.get("/console/scenes")
    assert page.status_code == 302 and "/console/login" in page.headers["Location"]
    posted = client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": token})
    assert posted.status_code == 302 and "/console/login" in posted.headers["Location"]
    assert scene_count(app) == 0
    assert "邮箱或密码错误" in sign_in(app.test_client(), owner_a).get_data(as_text=True)


def test_the_cookie_is_http_only_lax_and_limited_to_the_console(app, client):
    from carbon.console.session import configure

    organization(app, "甲", "a@forum.example")
    cookie = sign_in(client, "a@forum.example").headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # tests and development run on plain HTTP; production sets it:
    production = SimpleNamespace(is_production=True, ORGANIZER_SESSION_TTL_SECONDS=3600)
    probe = SimpleNamespace(config={})
    configure(probe, production)
    assert probe.config["SESSION_COOKIE_SECURE"] is True
    # The API neither reads the console's cookie nor sets one.
    value = client.get_cookie("diandian_console", path="/console").value
    api = app.test_client()
    api.set_cookie("diandian_console", value, path="/")
    me = api.get("/api/v1/admin/me")
    assert me.status_code == 401 and "Set-Cookie" not in me.headers
    assert "Set-Cookie" not in api.get("/healthz").headers


@pytest.fixture
def limited_app(database_url, sandbox, redis_url):
    """The app with the production login limits (the suite's default config lifts the per-client one),
    its clock held at the start of a limit window (the limits count in fixed 15-minute windows: a
    test straddling a window's end would see its count start again)."""
    from datetime import UTC, datetime

    from app import create_app
    from carbon.core.clock import clock
    from tests.conftest import dispose_app, make_config

    now = int(datetime.now(UTC).timestamp())
    clock.set(datetime.fromtimestamp(now - now % 900 + 1, UTC))
    application = create_app(make_config(database_url, sandbox.url, REDIS_URL=redis_url))
    yield application
    dispose_app(application)


def test_the_console_sign_in_shares_the_api_logins_rate_limit(limited_app):
    from carbon.core import extensions as ext

    organization(limited_app, "甲", "a@forum.example")
    with limited_app.app_context():
        limit = ext.settings().ADMIN_LOGIN_FAILURES_PER_EMAIL
    api = limited_app.test_client()
    for _ in range(limit):  # wrong passwords through the API...
        assert api.post("/api/v1/admin/auth/login", json={"email": "a@forum.example", "password": "nope"}
                        ).status_code == 401
    browser = limited_app.test_client()  # ...lock the console's sign-in too, even with the right one
    locked = sign_in(browser, "a@forum.example")
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "登录已暂时锁定" in locked.get_data(as_text=True)
    assert browser.get("/console/scenes").status_code == 302  # not signed in
    with limited_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OrganizerSession)) == 0


def test_wrong_passwords_through_the_console_lock_the_api_login(limited_app):
    from carbon.core import extensions as ext

    organization(limited_app, "甲", "a@forum.example")
    with limited_app.app_context():
        limit = ext.settings().ADMIN_LOGIN_FAILURES_PER_EMAIL
    browser = limited_app.test_client()
    for _ in range(limit):
        wrong = sign_in(browser, "a@forum.example", "nope")
        assert wrong.status_code == 200 and "邮箱或密码错误" in wrong.get_data(as_text=True)
    answer = limited_app.test_client().post("/api/v1/admin/auth/login",
                                            json={"email": "a@forum.example", "password": PASSWORD})
    assert answer.status_code == 429 and answer.get_json()["error"]["code"] == "auth.login_locked"


@pytest.mark.parametrize("fields, field, message", [
    ({"ends_on": "2021-09-06"}, "ends_on", "结束早于开始"),
    ({"expected_attendance": "many"}, "expected_attendance", "Not a valid integer"),
    ({"province": "XX"}, "province", "Must be one of"),
    ({"kind": "custom"}, "preset", "自定义场景需提供计算项"),
    ({"preset": "{not json"}, "preset", "不是有效的 JSON"),
    ({"slug": "A!"}, "slug", "String does not match"),
    ({"name_zh": ""}, "name_zh", "Length must be between 1 and 128"),
])
def test_the_services_field_errors_are_shown_next_to_their_fields(app, client, owner_a, fields, field, message):
    token = csrf_of(client.get("/console/scenes/new"))
    response = client.post("/console/scenes/new", data={**SCENE_FORM, **fields, "csrf_token": token})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and f'data-field="{field}">' in page
    shown = page.split(f'data-field="{field}">', 1)[1].split("</span>", 1)[0]
    assert message in shown, shown
    assert 'value="首届中国数字碳中和高峰论坛"' in page or field == "name_zh"  # what was typed stays
    assert scene_count(app) == 0


def test_a_taken_code_is_shown_on_its_field(app, client, owner_a):
    token = csrf_of(client.get("/console/scenes/new"))
    assert client.post("/console/scenes/new", data={**SCENE_FORM, "code": "cdcnf21", "csrf_token": token}
                       ).status_code == 302
    again = client.post("/console/scenes/new", data={**SCENE_FORM, "code": "cdcnf21", "slug": "forum-two",
                                                     "csrf_token": token})
    assert 'data-field="code">已被占用' in again.get_data(as_text=True) and scene_count(app) == 1


def test_edit_go_live_close_and_channels_go_through_the_scene_service(app, client, owner_a):
    token = csrf_of(client.get("/console/scenes/new"))
    created = client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": token})
    scene_id = created.headers["Location"].rsplit("/", 1)[1]
    edited = client.post(f"/console/scenes/{scene_id}/edit", data={**SCENE_FORM, "name_zh": "第二届论坛",
                                                                  "ends_on": "", "csrf_token": token})
    assert edited.status_code == 302
    refused = client.post(f"/console/scenes/{scene_id}/channels", data={"slug": "Door!", "csrf_token": token})
    assert 'data-field="slug">' in refused.get_data(as_text=True)
    assert client.post(f"/console/scenes/{scene_id}/channels", data={"slug": "door", "label": "入口",
                                                                      "csrf_token": token}).status_code == 302
    assert client.post(f"/console/scenes/{scene_id}/status", data={"status": "live", "csrf_token": token}
                       ).status_code == 302
    assert client.post(f"/console/scenes/{scene_id}/status", data={"status": "closed", "csrf_token": token}
                       ).status_code == 302
    page = client.get(f"/console/scenes/{scene_id}").get_data(as_text=True)
    assert "已结束 / Closed" in page and "s=" in page and "c=door" in page.replace("&amp;", "&")
    with app.app_context():
        scene = db.session.scalar(select(Scene).where(Scene.public_id == scene_id))
        assert (scene.name_zh, scene.ends_on, scene.status) == ("第二届论坛", None, "closed")
        assert [c.slug for c in scene.channels] == ["", "search", "door"]
    draft_again = client.post(f"/console/scenes/{scene_id}/status", data={"status": "draft", "csrf_token": token},
                              follow_redirects=True)
    assert "不允许的状态变更" in draft_again.get_data(as_text=True)


def test_downloads_are_real_images_and_pdfs(app, client, owner_a):
    import io

    from PIL import Image

    token = csrf_of(client.get("/console/scenes/new"))
    scene_id = client.post("/console/scenes/new", data={**SCENE_FORM, "csrf_token": token}
                           ).headers["Location"].rsplit("/", 1)[1]
    for name, size in (("wxacode.png", (430, 430)), ("poster.png", (1240, 1754))):
        answer = client.get(f"/console/scenes/{scene_id}/{name}")
        assert answer.status_code == 200 and answer.mimetype == "image/png" and "attachment" in \
            answer.headers["Content-Disposition"]
        assert Image.open(io.BytesIO(answer.data)).size == size
    qr = client.get(f"/console/scenes/{scene_id}/qrcode.png")
    assert qr.status_code == 200 and qr.data[:8] == b"\x89PNG\r\n\x1a\n"
    pdf = client.get(f"/console/scenes/{scene_id}/poster.pdf?source=qrcode")
    assert pdf.status_code == 200 and pdf.data.startswith(b"%PDF-") and b"/MediaBox" in pdf.data
    assert client.get(f"/console/scenes/{scene_id}/poster.png?channel=nope").status_code == 404


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/console/", "/api/v1/me",
                                    "/console\\@evil.example", "/console/scenes\r\nSet-Cookie: evil=1",
                                    "/console/scenes\nX: y", "/console/scenes\r"])
def test_sign_in_never_sends_the_browser_elsewhere(app, client, target):
    organization(app, "甲", "a@forum.example")
    token = csrf_of(client.get("/console/login"))
    answer = client.post("/console/login", query_string={"next": target},
                         data={"email": "a@forum.example", "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 302 and answer.headers["Location"] == "/console/scenes"


def test_staff_see_no_failed_events(app, client):
    from carbon.organizers import service as organizers
    from carbon.organizers.models import Organization

    organization(app, "甲", "a@forum.example")
    with app.app_context():
        organizers.add_member(db.session.scalar(select(Organization)), email="s@forum.example", password=PASSWORD,
                              display_name="staff", role="staff")
    sign_in(client, "s@forum.example")
    token = csrf_of(client.get("/console/scenes"))
    assert "失败事件" not in client.get("/console/scenes").get_data(as_text=True)
    assert client.get("/console/events").status_code == 403
    assert client.post("/console/events/1/replay", data={"csrf_token": token}).status_code == 403


@pytest.mark.parametrize("email, password, field", [("a\x00@forum.example", PASSWORD, "email"),
                                                    ("not an email", PASSWORD, "email"),
                                                    ("a@forum.example", "", "password")])
def test_sign_in_checks_its_fields_as_the_api_does(app, client, email, password, field):
    organization(app, "甲", "a@forum.example")
    answer = sign_in(client, email, password)
    assert answer.status_code == 200 and f'data-field="{field}">' in answer.get_data(as_text=True)
    assert client.get("/console/scenes").status_code == 302


@pytest.mark.parametrize("path, form", [("/console/invoices/request", {"order": "ord_\x00x"}),
                                        ("/console/buy/orders", {"kind": "top_up", "scene": "scn_x",
                                                                 "idempotency_key": "key-\x00-long-enough"})])
def test_a_nul_in_a_form_field_answers_a_console_page_not_the_apis_json(app, client, owner_a, path, form):
    """PostgreSQL refuses NUL in text, even in a lookup: the console answers its own error page (as
    SQLite's run of the same form does), never the API's JSON envelope, and stays usable."""
    token = csrf_of(client.get("/console/scenes"))
    answer = client.post(path, data={**form, "csrf_token": token})
    assert 400 <= answer.status_code < 500 or answer.status_code == 302, answer.status_code
    assert answer.mimetype == "text/html", answer.get_data(as_text=True)[:300]
    if answer.status_code != 302:
        assert "data-code=" in answer.get_data(as_text=True)
    assert client.get("/console/scenes").status_code == 200


def test_what_no_console_handler_sees_still_answers_a_console_page(app, client, owner_a, monkeypatch):
    """A path under /console that matches no route, a wrong method and a database that is away are
    answered by the app, not the console's blueprint: they are the console's error page too (with
    the envelope's code and the 503's Retry-After), never the API's JSON."""
    from sqlalchemy.exc import OperationalError

    from carbon.console import views

    missing = client.get("/console/no-such-page")
    assert (missing.status_code, missing.mimetype) == (404, "text/html")
    assert 'data-code="request.not_found"' in missing.get_data(as_text=True)
    wrong = client.delete("/console/scenes")
    assert (wrong.status_code, wrong.mimetype) == (405, "text/html") and "GET" in wrong.headers["Allow"]

    def away(_principal):
        raise OperationalError("SELECT 1", {}, ConnectionError("the database restarted"))

    monkeypatch.setattr(views.scenes, "list_scenes", away)
    down = client.get("/console/scenes")
    assert (down.status_code, down.mimetype) == (503, "text/html") and int(down.headers["Retry-After"]) >= 1
    assert 'data-code="database.unavailable"' in down.get_data(as_text=True) and down.headers["X-Request-ID"]
    monkeypatch.undo()
    assert client.get("/console/scenes").status_code == 200
    api = client.get("/api/v1/no-such-route")  # the API keeps its envelope
    assert api.status_code == 404 and api.get_json()["error"]["code"] == "request.not_found"
