"""Login, profile and logout through the real wechatpy client against the live sandbox."""
from __future__ import annotations

import requests
from sqlalchemy import func, select

from carbon.accounts.models import AuthSession, User
from carbon.core.clock import clock
from carbon.core.db import db


def sandbox_code(sandbox, openid: str, **extra) -> str:
    return requests.post(f"{sandbox.url}/__sandbox__/login-code", json={"openid": openid, **extra},
                         timeout=5).json()["code"]


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_login_creates_user_and_token_reads_me(app, client, sandbox):
    code = sandbox_code(sandbox, "o_alice", unionid="u_alice")
    response = client.post("/api/v1/auth/login", json={"code": code})
    assert response.status_code == 200
    body = response.get_json()
    assert body["created"] is True and body["token"] and body["expires_at"]
    assert "session_key" not in response.get_data(as_text=True)

    me = client.get("/api/v1/me", headers=bearer(body["token"]))
    assert me.status_code == 200
    assert me.get_json()["id"] == body["user"]["id"]
    with app.app_context():
        user = db.session.scalar(select(User).where(User.openid == "o_alice"))
        assert user.unionid == "u_alice"
        assert user.session_key  # kept server-side
    calls = requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": "/sns/jscode2session"}, timeout=5).json()
    assert [call["query"]["js_code"] for call in calls["calls"]] == [code]


def test_second_login_finds_the_same_user(app, client, sandbox, login):
    _, first = login("o_bob")
    _, second = login("o_bob")
    assert second["created"] is False
    assert first["user"]["id"] == second["user"]["id"]
    with app.app_context():
        assert count(User) == 1
        assert count(AuthSession) == 2


def test_two_first_logins_of_one_guest_at_once_find_one_user(app, client, sandbox, database_url, monkeypatch):
    """The mini-program launched twice: the other login creates the guest between this one's read and
    its insert. This one finds that guest (200, not created), instead of a 500."""
    import pytest
    from sqlalchemy import create_engine, event, insert

    if not database_url.startswith("postgresql"):
        pytest.skip("two writers at once: PostgreSQL (SQLite has one writer at a time)")
    other = create_engine(database_url)

    raced: list[str] = []

    def the_other_login_first(mapper, connection, target) -> None:
        if raced:
            return
        raced.append(target.openid)
        with other.begin() as elsewhere:
            elsewhere.execute(insert(User.__table__).values(public_id="usr_other_login", openid=target.openid,
                                                            leaderboard_hidden=False, created_at=clock.now()))

    event.listen(User, "before_insert", the_other_login_first)
    try:
        answer = client.post("/api/v1/auth/login", json={"code": sandbox_code(sandbox, "o_double_launch")})
    finally:
        event.remove(User, "before_insert", the_other_login_first)
        other.dispose()
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json()["created"] is False and answer.get_json()["user"]["id"] == "usr_other_login"
    with app.app_context():
        assert count(User) == 1 and count(AuthSession) == 1


def test_reused_code_is_invalid_code_and_writes_nothing(app, client, sandbox):
    code = sandbox_code(sandbox, "o_carol")
    assert client.post("/api/v1/auth/login", json={"code": code}).status_code == 200
    again = client.post("/api/v1/auth/login", json={"code": code})
    assert again.status_code == 400
    error = again.get_json()["error"]
    assert error["code"] == "auth.invalid_code"
    assert error["request_id"] == again.headers["X-Request-ID"]
    with app.app_context():
        assert count(AuthSession) == 1


def test_expired_code(app, client, sandbox):
    code = sandbox_code(sandbox, "o_dave")
    requests.post(f"{sandbox.url}/__sandbox__/clock/advance", json={"seconds": 301}, timeout=5)
    response = client.post("/api/v1/auth/login", json={"code": code})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "auth.invalid_code"
    with app.app_context():
        assert count(User) == 0


def test_unknown_code(client):
    response = client.post("/api/v1/auth/login", json={"code": "never-issued"})
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "auth.invalid_code"


def test_blocked_user(app, client, sandbox):
    code = sandbox_code(sandbox, "o_risky")
    requests.post(f"{sandbox.url}/__sandbox__/users/o_risky/block", timeout=5)
    response = client.post("/api/v1/auth/login", json={"code": code})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "auth.user_blocked"
    with app.app_context():
        assert count(User) == 0


def test_wechat_busy_is_a_502(app, client, sandbox):
    code = sandbox_code(sandbox, "o_busy")
    requests.post(f"{sandbox.url}/__sandbox__/failures", json={"path": "/sns/jscode2session", "errcode": -1},
                  timeout=5)
    response = client.post("/api/v1/auth/login", json={"code": code})
    assert response.status_code == 502
    assert response.get_json()["error"]["code"] == "wechat.busy"


def test_wechat_down_is_a_502_and_writes_nothing(database_url, sandbox):
    """Connection refused: nothing listens on the configured API base."""
    import socket

    from app import create_app
    from tests.conftest import empty_all_tables, make_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    app = create_app(make_config(database_url, f"http://127.0.0.1:{dead_port}"))
    try:
        response = app.test_client().post("/api/v1/auth/login", json={"code": "whatever"})
        assert response.status_code == 502
        assert response.get_json()["error"]["code"] == "wechat.unavailable"
        with app.app_context():
            assert count(User) == 0 and count(AuthSession) == 0
    finally:
        with app.app_context():
            empty_all_tables(db.engine)
            db.engine.dispose()


def test_logout_revokes_the_token(client, login):
    token, _ = login("o_erin")
    assert client.post("/api/v1/auth/logout", headers=bearer(token)).status_code == 204
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "auth.invalid_token"


def test_expired_token(app, client, login):
    token, _ = login("o_frank")
    clock.advance(app.extensions["diandian.settings"].SESSION_TTL_SECONDS + 1)
    response = client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "auth.invalid_token"


def test_forged_and_missing_tokens(client, login):
    token, _ = login("o_gina")
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for headers, code in [({}, "auth.missing_token"), (bearer(forged), "auth.invalid_token"),
                          ({"Authorization": "Basic abc"}, "auth.missing_token"),
                          (bearer("x" * 5000), "auth.invalid_token")]:
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, headers
        assert response.get_json()["error"]["code"] == code


def test_token_signed_with_another_secret_is_refused(app, client, login):
    from itsdangerous import URLSafeSerializer

    login("o_hank")
    with app.app_context():
        token_id = db.session.scalar(select(AuthSession.token_id))
    other = URLSafeSerializer("another-secret", salt="diandian.session").dumps(token_id)
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 401


def test_nickname_passes_content_check(client, login):
    token, _ = login("o_ivy")
    response = client.patch("/api/v1/me", json={"nickname": "碳中和小能手", "avatar_url": "https://example.com/a.png"},
                            headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["nickname"] == "碳中和小能手"
    assert response.get_json()["avatar_url"] == "https://example.com/a.png"


def test_risky_nickname_is_refused_and_not_saved(app, client, login, sandbox):
    token, _ = login("o_jack")
    response = client.patch("/api/v1/me", json={"nickname": "来赌博吧"}, headers=bearer(token))
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "profile.nickname_rejected"
    assert client.get("/api/v1/me", headers=bearer(token)).get_json()["nickname"] is None
    sent = requests.get(f"{sandbox.url}/__sandbox__/calls", params={"path": "/wxa/msg_sec_check"}, timeout=5).json()
    assert sent["calls"][-1]["json"]["version"] == 2
    assert sent["calls"][-1]["json"]["openid"] == "o_jack"


def test_bind_phone(client, login, sandbox):
    token, _ = login("o_kate")
    code = requests.post(f"{sandbox.url}/__sandbox__/phone-code",
                         json={"openid": "o_kate", "phone_number": "13800138000"}, timeout=5).json()["code"]
    response = client.post("/api/v1/me/phone", json={"code": code}, headers=bearer(token))
    assert response.status_code == 200
    assert response.get_json()["has_phone"] is True
    assert response.get_json()["phone_number"] == "138****8000"
    again = client.post("/api/v1/me/phone", json={"code": code}, headers=bearer(token))
    assert again.status_code == 400
    assert again.get_json()["error"]["code"] == "auth.invalid_phone_code"


def test_login_rate_limited_per_client(database_url, sandbox, redis_url):
    from app import create_app
    from tests.conftest import empty_all_tables, make_config

    app = create_app(make_config(database_url, sandbox.url, REDIS_URL=redis_url,
                                 LOGIN_RATE_PER_MINUTE_CLIENT=3))
    client = app.test_client()
    try:
        statuses = [client.post("/api/v1/auth/login", json={"code": "bad"}).status_code for _ in range(5)]
        assert statuses == [400, 400, 400, 429, 429]
        limited = client.post("/api/v1/auth/login", json={"code": "bad"})
        assert limited.get_json()["error"]["code"] == "rate_limited"
        assert 1 <= int(limited.headers["Retry-After"]) <= 120  # a sliding window: at most two windows
        admin = [client.post("/api/v1/admin/auth/login", json={"email": "a@b.example", "password": "pw"})
                 for _ in range(4)]
        assert [answer.status_code for answer in admin] == [401, 401, 401, 429]
        assert 1 <= int(admin[-1].headers["Retry-After"]) <= 120
    finally:
        with app.app_context():
            empty_all_tables(db.engine)
            db.engine.dispose()


def test_login_rate_limited_per_openid(database_url, sandbox, redis_url):
    from app import create_app
    from tests.conftest import empty_all_tables, make_config

    app = create_app(make_config(database_url, sandbox.url, REDIS_URL=redis_url,
                                 LOGIN_RATE_PER_MINUTE_OPENID=2))
    client = app.test_client()
    try:
        statuses = []
        for _ in range(3):
            code = sandbox_code(sandbox, "o_eager")
            statuses.append(client.post("/api/v1/auth/login", json={"code": code}).status_code)
        assert statuses == [200, 200, 429]
    finally:
        with app.app_context():
            empty_all_tables(db.engine)
            db.engine.dispose()
