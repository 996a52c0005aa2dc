"""Signed session tokens. The client holds ``sign(salt, token_id)``; the session row with that
``token_id`` says whether it still lives (``expires_at``, ``revoked_at``). Guests and organizers
sign with different salts, so one's token never passes as the other's."""
from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select

from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db


def _serializer(salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(ext.settings().SECRET_KEY, salt=salt)


def sign(salt: str, token_id: str) -> str:
    return _serializer(salt).dumps(token_id)


def live_session(model, salt: str, token: str, *options):
    """The ``model`` row the token names, if its signature holds and it is neither expired nor
    revoked; ``options`` (e.g. ``joinedload`` of its owner) load more in the same query."""
    try:
        token_id = _serializer(salt).loads(token)
    except BadSignature:
        return None
    if not isinstance(token_id, str):
        return None
    session = db.session.scalar(select(model).options(*options).where(model.token_id == token_id))
    if session is None or session.revoked_at is not None or session.expires_at <= utcnow():
        return None
    return session
