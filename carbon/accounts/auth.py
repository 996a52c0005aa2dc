"""Who may call a view: every ``/api/v1`` route needs a guest token unless it says otherwise.

Views declare their audience with ``@public`` (anyone) or a decorator that ``register_audience``
returns (e.g. ``@organizer_only``); the default under ``/api/v1`` is a logged-in guest. One
before_request hook checks every audience, before the view, so forgetting a decorator fails closed.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from flask import current_app, g, request

from carbon.accounts import service
from carbon.accounts.models import User
from carbon.core.errors import AuthenticationError

F = TypeVar("F", bound=Callable)
API_PREFIX = "/api/v1/"
_AUDIENCES: dict[str, tuple[Callable[[str], None], str]] = {}


def public(view: F) -> F:
    view._diandian_audience = "public"  # type: ignore[attr-defined]
    return view


def register_audience(name: str, authenticate: Callable[[str], None], missing: str) -> Callable[[F], F]:
    """A new audience: ``authenticate(token)`` sets ``g`` or raises; ``missing`` is the message for
    a request without a token. Returns the decorator that marks views for it."""
    _AUDIENCES[name] = (authenticate, missing)

    def mark(view: F) -> F:
        view._diandian_audience = name  # type: ignore[attr-defined]
        return view
    return mark


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def audience_of(view: Callable | None, path: str) -> str:
    """Who may call ``view`` at ``path``: its mark, else a guest under /api/v1 and anyone elsewhere."""
    return getattr(view, "_diandian_audience", "guest" if path.startswith(API_PREFIX) else "public")


def enforce_audiences() -> None:
    """before_request: authenticate the caller for the view's audience."""
    if request.endpoint is None:
        return
    who = audience_of(current_app.view_functions.get(request.endpoint), request.path)
    if who == "public":
        return
    authenticate, missing = _AUDIENCES[who]
    token = bearer_token()
    if token is None:
        raise AuthenticationError(code="auth.missing_token", message=missing)
    if not (token.isascii() and token.isprintable()):  # no token we issue; NUL would reach the database
        raise AuthenticationError(code="auth.invalid_token", message="登录凭证格式无效 / Malformed token")
    authenticate(token)
    g.token = token


def _authenticate_guest(token: str) -> None:
    g.user = service.authenticate(token)


register_audience("guest", _authenticate_guest, "缺少登录凭证 / Missing 'Authorization: Bearer <token>'")


def current_user() -> User:
    return g.user


def optional_user() -> User | None:
    """On a public route: the guest whose valid bearer token came with the request, else nobody
    (a bad token makes the caller anonymous, not refused)."""
    token = bearer_token()
    if token is None or not (token.isascii() and token.isprintable()):
        return None
    try:
        return service.authenticate(token)
    except AuthenticationError:
        return None
