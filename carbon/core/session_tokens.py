"""Signed session tokens. The client holds ``sign(salt, token_id)``; the session row with that
``token_id`` says whether it still lives (``expires_at``, ``revoked_at``). Guests and organizers
sign with different salts, so one's token never passes as the other's.

Every authenticated request checks its token here: the signature (HMAC, in memory), then one read
by the session table's unique ``token_id`` index that loads the session's owner and the two
columns that say whether it lives. A revoked or expired session is refused on the next request, in
every worker: nothing about a session is cached. The statement is built once per owner
(``owner_query``) and the serializer once per key and salt, so a request pays for the read only.
An owner loaded without ``options`` is read as plain columns and put into the request's ORM
session as the ORM would have loaded it (``OwnerRead``), without the ORM's per-query work.
"""
from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Select, bindparam, inspect, select
from sqlalchemy.orm import QueryableAttribute, attributes, make_transient_to_detached

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


class OwnerRead:
    """How ``live_owner`` reads a session's owner (from ``owner_query``, built once at import).

    With ``options`` (e.g. ``joinedload`` of the owner's organization): one ORM query. Without: the
    owner's mapped columns, ``revoked_at`` and ``expires_at`` as one Core read (same column types),
    then the owner is put into the session's identity map as a query would have loaded it
    (``make_transient_to_detached``; an owner already in the session is that object, as a query
    would answer). Changes to it are then tracked and committed as usual. The read runs on the
    request session's connection (after flushing, as a query would), in its transaction."""

    def __init__(self, owner: QueryableAttribute, options: tuple) -> None:
        self.model = owner.class_
        self.mapper = inspect(owner.property.mapper.class_)
        self.orm = (select(self.mapper.class_, self.model.revoked_at, self.model.expires_at)
                    .select_from(self.model).join(owner).options(*options)
                    .where(self.model.token_id == bindparam("token_id")))
        self.core: Select | None = None
        table = self.mapper.local_table
        props = list(self.mapper.column_attrs)
        if not options and all(len(prop.columns) == 1 and prop.columns[0].table is table for prop in props):
            sessions = inspect(self.model).local_table
            self.keys = tuple(prop.key for prop in props)
            self.pk_positions = tuple(self.keys.index(self.mapper.get_property_by_column(column).key)
                                      for column in self.mapper.primary_key)
            self.core = (select(*(prop.columns[0] for prop in props), sessions.c.revoked_at, sessions.c.expires_at)
                         .select_from(sessions.join(table, owner.property.primaryjoin))
                         .where(sessions.c.token_id == bindparam("token_id")))

    def read(self, token_id: str) -> tuple[Any, datetime | None, datetime] | None:
        session = db.session()
        if self.core is None:
            row = session.execute(self.orm, {"token_id": token_id}).first()
            return None if row is None else (row[0], row[1], row[2])
        if session.autoflush and (session.new or session.dirty or session.deleted):
            session.flush()  # as the ORM query would (autoflush)
        row = session.connection(bind_arguments={"mapper": self.mapper}).execute(
            self.core, {"token_id": token_id}).first()
        if row is None:
            return None
        return self._owner(session, row), row[-2], row[-1]

    def _owner(self, session, row) -> Any:
        key = self.mapper.identity_key_from_primary_key(tuple(row[i] for i in self.pk_positions))
        existing = session.identity_map.get(key)
        if existing is not None:
            return existing
        owner = self.mapper.class_manager.new_instance()
        attributes.instance_dict(owner).update(zip(self.keys, row, strict=False))
        make_transient_to_detached(owner)  # every column loaded, as committed; relationships load lazily
        session.add(owner)
        return owner


def owner_query(owner: QueryableAttribute, *options) -> OwnerRead:
    """How ``live_owner`` reads sessions whose owner is the relationship ``owner``
    (``AuthSession.user``): the owner, and its session's ``revoked_at`` and ``expires_at``, by token id.
    Build it once (module level): SQLAlchemy then reuses its compiled form and cache key."""
    return OwnerRead(owner, options)


def live_owner(query: OwnerRead, salt: str, token: str):
    """The owner of the session the token names (``query`` from ``owner_query``), if its
    signature holds and the session lives; else None."""
    token_id = token_id_of(salt, token)
    if token_id is None:
        return None
    row = query.read(token_id)
    if row is None or not lives(row[1], row[2]):
        return None
    return row[0]
