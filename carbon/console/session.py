"""The console's session (decision 0012): Flask's signed cookie session under /console only, holding
an organizer session token (a revocable row) and a CSRF token."""
from __future__ import annotations

import hmac
import secrets
from datetime import timedelta

from flask import Flask, abort, g, request, session
from flask.sessions import SecureCookieSessionInterface

from carbon.core.errors import AuthenticationError
from carbon.organizers import service as organizers
from carbon.organizers.service import Principal

PREFIX = "/console"
COOKIE_NAME = "diandian_console"
CSRF_FIELD = "csrf_token"


class ConsoleSessions(SecureCookieSessionInterface):
    """A signed cookie session for paths under /console; the null session (no cookie read or
    written) for every other path, as ``NoCookieSessions`` gives the API."""

    salt = "diandian.console-session"

    def open_session(self, app, request):
        if not under_console(request.path):
            return None
        return super().open_session(app, request)

    def save_session(self, app, session, response) -> None:
        if not under_console(request.path):
            return None
        return super().save_session(app, session, response)


def under_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def configure(app: Flask, settings) -> None:
    app.session_interface = ConsoleSessions()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH=PREFIX, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_COOKIE_SECURE=settings.is_production,
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=settings.ORGANIZER_SESSION_TTL_SECONDS))


def csrf_token() -> str:
    """This session's CSRF token (made on first use), for a hidden field of every form."""
    if CSRF_FIELD not in session:
        session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return session[CSRF_FIELD]


def check_csrf() -> None:
    """before_request: every POST must carry the session's token."""
    if request.method != "POST":
        return
    expected = session.get(CSRF_FIELD)
    given = request.form.get(CSRF_FIELD, "")
    if not expected or not isinstance(given, str) or not hmac.compare_digest(expected.encode(), given.encode()):
        abort(400, description="csrf")


def sign_in(email: str, password: str) -> None:
    """The API's organizer login (same rate limits and lock-out); the session is started afresh."""
    _, token, _ = organizers.login(email, password, request.remote_addr)
    session.clear()
    session.permanent = True
    session["token"] = token
    session[CSRF_FIELD] = secrets.token_urlsafe(32)


def sign_out() -> None:
    token = session.get("token")
    if isinstance(token, str):
        try:
            organizers.logout(token)
        except AuthenticationError:
            pass  # already expired or revoked
    session.clear()


def principal() -> Principal | None:
    """The signed-in member, once per request; None without a live session (expired, revoked, an API key)."""
    if "console_principal" not in g:
        token = session.get("token")
        found = None
        if isinstance(token, str) and not token.startswith(organizers.API_KEY_PREFIX):
            try:
                found = organizers.authenticate(token)
            except AuthenticationError:
                found = None
        g.console_principal = found
    return g.console_principal
