"""The ``organizer`` audience: admin routes need an organizer session token or an API key.

A guest token is signed with another salt, so it never passes here; every query of an admin
route is scoped to ``current_principal().organization``.
"""
from __future__ import annotations

from flask import current_app, g, request

from carbon.accounts.auth import audience, bearer_token
from carbon.core.errors import AuthenticationError, PermissionDenied
from carbon.organizers import service
from carbon.organizers.service import Principal

organizer_only = audience("organizer")


def enforce_organizer_auth() -> None:
    """before_request: authenticate organizers on every view marked ``@organizer_only``."""
    if request.endpoint is None:
        return
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "_diandian_audience", None) != "organizer":
        return
    token = bearer_token()
    if token is None:
        raise AuthenticationError(code="auth.missing_token",
                                  message="缺少组织者凭证 / Missing 'Authorization: Bearer <organizer token or API key>'")
    g.principal = service.authenticate(token)
    g.token = token


def current_principal() -> Principal:
    return g.principal


def require_owner() -> None:
    if current_principal().role != "owner":
        raise PermissionDenied(code="auth.owner_required", message="仅限组织所有者 / Only an owner may do this")
