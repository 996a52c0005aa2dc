"""Every log line of a guest's whole walk, at DEBUG and from every logger (ours, werkzeug, urllib3,
wechatpy), holds no openid, session_key, session token, phone number, APIv3 key, private key,
AppSecret or access token. Only the sandbox's own loggers are left out: it plays WeChat."""
from __future__ import annotations

import logging
import re

import pytest

from carbon.core.http import JsonFormatter
from payments.wechatpay.provider import sandbox_key
from tests.observability.conftest import guest_walk
from tests.payments.conftest import serve


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[str, str]] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == "wechat.sandbox" or record.name.startswith("wechat.sandbox."):
            return
        self.lines.append((record.name, f"{self.formatter_.format(record)} {record.args!r}"))


@pytest.fixture
def captured():
    """A handler on the root logger and on every logger that does not propagate to it; every logger
    at DEBUG, SQLAlchemy's at INFO (each statement and its parameters; its DEBUG adds result rows)."""
    capture = Capture()
    known = [logger for logger in logging.root.manager.loggerDict.values() if isinstance(logger, logging.Logger)]
    loggers = [logging.getLogger(), *known, logging.getLogger("sqlalchemy")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        if logger is logging.root or not logger.propagate:
            logger.addHandler(capture)
        logger.setLevel(logging.INFO if logger.name.startswith("sqlalchemy") else logging.DEBUG)
    yield capture
    for logger, level in zip(loggers, levels, strict=True):
        logger.removeHandler(capture)
        logger.setLevel(level)


def secrets_of(walk, service, sandbox) -> dict[str, str]:
    settings = service.app.extensions["diandian.settings"]
    pem = sandbox_key("merchant_private_key.pem").decode()
    body_lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    found = {"openid": walk.openid, "session_key": walk.session_key, "session token": walk.token,
             "phone number": walk.phone, "APIv3 key": settings.WECHATPAY_APIV3_KEY,
             "AppSecret": settings.WECHAT_SECRET, "private key": "PRIVATE KEY"}
    found.update({f"private key line {n}": line for n, line in enumerate(body_lines[:-1])})  # the last is short
    found.update({f"access token {n}": value for n, value in enumerate(sandbox.state.mp.tokens)})
    return found


def test_no_secret_or_personal_data_in_the_logs_of_a_guest_walk(captured, database_url, sandbox):
    with serve(database_url, sandbox, LOG_REQUESTS=True, LOG_LEVEL="DEBUG") as service:
        walk = guest_walk(service, sandbox)
        leaked_values = secrets_of(walk, service, sandbox)
    text = "\n".join(line for _, line in captured.lines)
    # The capture saw the walk: the service's request lines, by route, and its calls to WeChat.
    routes = {m for m in re.findall(r'"route": "([^"]+)"', text)}
    assert {"/api/v1/auth/login", "/api/v1/me/phone", "/api/v1/orders", "/api/v1/payments/wechatpay/notify",
            "/api/v1/certificates/<string:number>/card.jpg"} <= routes
    assert "/sns/jscode2session" in text and "/cgi-bin/" in text  # urllib3 logged the outbound calls
    assert "secret=***" in text and "access_token=***" in text  # with their credentials blanked
    assert "INSERT INTO users" in text and "parameters hidden" in text  # SQL logged, its values not
    assert len(leaked_values["session token"]) > 20 and len(sandbox.state.mp.tokens) >= 1
    leaks = {what: [name for name, line in captured.lines if value in line][:3]
             for what, value in leaked_values.items() if value in text}
    assert leaks == {}, leaks


def test_a_database_error_logged_names_no_value(app, captured):
    """A unique violation (two first logins of one openid at once) logged as unhandled: the SQL and
    the constraint, never the openid or session_key (hidden parameters; PostgreSQL's DETAIL blanked)."""
    from sqlalchemy.exc import IntegrityError

    from carbon.accounts.models import User
    from carbon.core.db import db

    openid, session_key = "o_racing_login_0001", "c2Vzc2lvbi1rZXktcmFjZQ=="
    with app.app_context():
        db.session.add(User(openid=openid, session_key=session_key))
        db.session.commit()
        db.session.add(User(openid=openid, session_key=session_key))
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            logging.getLogger("diandian.error").exception("unhandled", extra={"fields": {"path": "/api/v1/auth/login"}})
    [line] = [line for name, line in captured.lines if name == "diandian.error"]
    assert "IntegrityError" in line and "INSERT INTO users" in line
    assert openid not in line and session_key not in line
