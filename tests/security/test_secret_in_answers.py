"""The AppSecret never reaches a caller: with classic access tokens it is in the token URL's query,
and a token endpoint that answers an HTTP error must not carry that URL into the 502."""
from __future__ import annotations

import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.conftest import dispose_app, make_config

SECRET = "0123456789abcdef0123456789abcdef"


class GatewayDown(BaseHTTPRequestHandler):
    def do_GET(self):  # a gateway in front of WeChat answering 502
        self.send_response(502, "Bad Gateway")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_a_failed_token_fetch_answers_502_without_the_appsecret(database_url):
    from app import create_app
    from carbon.accounts.models import AuthSession, User
    from carbon.accounts.service import TOKEN_SALT
    from carbon.core import session_tokens
    from carbon.core.clock import utcnow
    from carbon.core.db import db

    server = ThreadingHTTPServer(("127.0.0.1", 0), GatewayDown)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = create_app(make_config(database_url, f"http://127.0.0.1:{server.server_port}", WECHAT_TOKEN_MODE="classic",
                                 WECHAT_SECRET=SECRET, WECHAT_APPID="wx1234567890abcdef"))
    try:
        with app.app_context():
            session = AuthSession(token_id="t" * 32, user=User(openid="o_secret"),
                                  expires_at=utcnow() + timedelta(days=1))
            db.session.add(session)
            db.session.commit()
            token = session_tokens.sign(TOKEN_SALT, session.token_id)
        answer = app.test_client().patch("/api/v1/me", json={"nickname": "小明"},  # the content check needs a token
                                         headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 502 and answer.get_json()["error"]["code"] == "wechat.unavailable"
        assert SECRET not in answer.get_data(as_text=True) and "secret=" not in answer.get_data(as_text=True)
    finally:
        server.shutdown()
        dispose_app(app)
