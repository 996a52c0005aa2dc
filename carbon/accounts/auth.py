"""Every ``/api/v1`` route needs a guest token unless marked otherwise.

Views declare who may call them with ``@public`` (anyone) or, later, other audiences;
the default is a logged-in guest. The check runs before the view, so forgetting a
decorator fails closed.
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


def public(view: F) -> F:
    view._diandian_audience = "public"  # type: ignore[attr-defined]
    return view


def audience(name: str) -> Callable[[F], F]:
    """Mark a view for another audience (e.g. ``organizer``), checked by that area's own hook."""
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


def enforce_guest_auth() -> None:
    """before_request: authenticate guests on every non-public /api/v1 view."""
    if not request.path.startswith(API_PREFIX) or request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    who = getattr(view, "_diandian_audience", "guest")
    if who != "guest":
        return
    token = bearer_token()
    if token is None:
        raise AuthenticationError(code="auth.missing_token",
                                  message="缺少登录凭证 / Missing 'Authorization: Bearer <token>'")
    g.user = service.authenticate(token)
    g.token = token


def current_user() -> User:
    return g.user
