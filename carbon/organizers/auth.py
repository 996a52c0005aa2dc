"""The ``organizer`` audience: admin routes need an organizer session token or an API key.

A guest token is signed with another salt, so it never passes here; every query of an admin
route is scoped to ``current_principal().organization``.
"""
from __future__ import annotations

from flask import g

from carbon.accounts.auth import register_audience
from carbon.organizers import service
from carbon.organizers.service import Principal


def _authenticate(token: str) -> None:
    g.principal = service.authenticate(token)


organizer_only = register_audience(
    "organizer", _authenticate, "缺少组织者凭证 / Missing 'Authorization: Bearer <organizer token or API key>'")


def current_principal() -> Principal:
    return g.principal


def require_owner() -> None:
    current_principal().require_owner()
