"""Signed session tokens. The client holds ``sign(salt, token_id)``; the session row with that
``token_id`` says whether it still lives (``expires_at``, ``revoked_at``). Guests and organizers
sign with different salts, so one's token never passes as the other's.

Every authenticated request checks its token here: the signature (HMAC, in memory), then one read
by the session table's unique ``token_id`` index that loads the session's owner and the two
columns that say whether it lives. A revoked or expired session is refused on the next request, in
every worker: nothing about a session is cached. The statement is built once per owner
(``owner_query``) and the serializer once per key and salt, so a request pays for the read only.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Select, bindparam, select
from sqlalchemy.orm import QueryableAttribute

from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db


@lru_cache(maxsize=16)
def _serializer_for(secret_key: str, salt: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret_key, salt=salt)


def _serializer(salt: str) -> URLSafeSerializer:
    return _serializer_for(ext.settings().SECRET_KEY, salt)


def sign(salt: str, token_id: str) -> str:
    return _serializer(salt).dumps(token_id)


def token_id_of(salt: str, token: str) -> str | None:
    """The session id a token names, if its signature holds."""
    try:
        token_id = _serializer(salt).loads(token)
    except BadSignature:
        return None
    return token_id if isinstance(token_id, str) else None


def lives(revoked_at: datetime | None, expires_at: datetime) -> bool:
    """The one rule: a session lives until it is revoked or expires."""
    return revoked_at is None and expires_at > utcnow()


def live_session(model, salt: str, token: str, *options):
    """The ``model`` row the token names, if its signature holds and it lives; ``options`` (e.g.
    ``joinedload`` of its owner) load more in the same query."""
    token_id = token_id_of(salt, token)
    if token_id is None:
        return None
    session = db.session.scalar(select(model).options(*options).where(model.token_id == token_id))
    if session is None or not lives(session.revoked_at, session.expires_at):
        return None
    return session


def owner_query(owner: QueryableAttribute, *options) -> Select:
    """The statement ``live_owner`` runs for sessions whose owner is the relationship ``owner``
    (``AuthSession.user``): the owner, and its session's ``revoked_at`` and ``expires_at``, by token id.
    Build it once (module level): SQLAlchemy then reuses its compiled form and cache key."""
    model = owner.class_
    return (select(owner.property.mapper.class_, model.revoked_at, model.expires_at)
            .select_from(model).join(owner).options(*options)
            .where(model.token_id == bindparam("token_id")))


def live_owner(query: Select, salt: str, token: str):
    """The owner of the session the token names (``query`` from ``owner_query``), if its
    signature holds and the session lives; else None."""
    token_id = token_id_of(salt, token)
    if token_id is None:
        return None
    row = db.session.execute(query, {"token_id": token_id}).first()
    if row is None or not lives(row[1], row[2]):
        return None
    return row[0]
