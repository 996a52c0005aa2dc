"""The access token, shared by every worker and process and refreshed by one holder.

WeChat invalidates the previous ``/cgi-bin/token`` five minutes after each new fetch, so
per-process caches make workers knock each other's tokens out. The token therefore lives
in Redis (when configured) or in the database, and a refresh happens under a lock: the
first worker to find the token stale fetches it, the others wait and read what it stored.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from carbon.core.clock import clock
from carbon.core.fallback import RedisBreaker
from wechat.models import WeChatCredential

LOCK_LEASE_SECONDS = 15
LOCK_WAIT_SECONDS = 20
REFRESH_MARGIN_SECONDS = 300  # refresh during WeChat's 5-minute overlap, never after expiry


@dataclass(frozen=True)
class StoredToken:
    value: str
    expires_at: datetime


class TokenStore(Protocol):
    def read(self, key: str) -> StoredToken | None: ...
    def write(self, key: str, token: StoredToken) -> None: ...
    def delete_if(self, key: str, value: str) -> None: ...
    def lock(self, key: str) -> contextlib.AbstractContextManager[None]: ...


class LockTimeout(RuntimeError):
    pass


class RedisTokenStore:
    def __init__(self, redis_client, prefix: str = "diandian:wechat:") -> None:
        self.redis = redis_client
        self.prefix = prefix

    def read(self, key: str) -> StoredToken | None:
        raw = self.redis.get(self.prefix + key)
        if not raw:
            return None
        data = json.loads(raw)
        return StoredToken(data["value"], datetime.fromisoformat(data["expires_at"]))

    def write(self, key: str, token: StoredToken) -> None:
        ttl = max(1, int((token.expires_at - clock.now()).total_seconds()))
        payload = json.dumps({"value": token.value, "expires_at": token.expires_at.isoformat()})
        self.redis.set(self.prefix + key, payload, ex=ttl)

    def delete_if(self, key: str, value: str) -> None:
        current = self.read(key)
        if current and current.value == value:
            self.redis.delete(self.prefix + key)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        lock = self.redis.lock(self.prefix + "lock:" + key, timeout=LOCK_LEASE_SECONDS,
                               blocking_timeout=LOCK_WAIT_SECONDS)
        if not lock.acquire():
            raise LockTimeout(key)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                lock.release()


class DatabaseTokenStore:
    """Token rows in ``wechat_credentials``; the lock is a lease taken by a conditional UPDATE,
    which is atomic on SQLite and PostgreSQL alike. Uses its own connections, so a token
    fetched in the middle of a request is committed whatever the request does."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.holder = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"

    def read(self, key: str) -> StoredToken | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(WeChatCredential.value, WeChatCredential.expires_at)
                               .where(WeChatCredential.key == key)).first()
        if row is None or row.value is None or row.expires_at is None:
            return None
        return StoredToken(row.value, row.expires_at)

    def write(self, key: str, token: StoredToken) -> None:
        self._ensure_row(key)
        with self.engine.begin() as conn:
            conn.execute(update(WeChatCredential).where(WeChatCredential.key == key)
                         .values(value=token.value, expires_at=token.expires_at))

    def delete_if(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(WeChatCredential)
                         .where(WeChatCredential.key == key, WeChatCredential.value == value)
                         .values(value=None, expires_at=None))

    def _ensure_row(self, key: str) -> None:
        table = WeChatCredential.__table__
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        with self.engine.begin() as conn:
            conn.execute(insert(table).values(key=key).on_conflict_do_nothing(index_elements=["key"]))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        self._ensure_row(key)
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            now = clock.now()
            with self.engine.begin() as conn:
                taken = conn.execute(
                    update(WeChatCredential)
                    .where(WeChatCredential.key == key,
                           (WeChatCredential.lease_until.is_(None)) | (WeChatCredential.lease_until < now))
                    .values(lease_holder=self.holder,
                            lease_until=now + timedelta(seconds=LOCK_LEASE_SECONDS))
                ).rowcount
            if taken:
                break
            if time.monotonic() > deadline:
                raise LockTimeout(key)
            time.sleep(0.02)
        try:
            yield
        finally:
            with self.engine.begin() as conn:
                conn.execute(update(WeChatCredential)
                             .where(WeChatCredential.key == key, WeChatCredential.lease_holder == self.holder)
                             .values(lease_holder=None, lease_until=None))


class FallbackTokenStore:
    """Redis first; the database while Redis cannot be reached (``breaker`` decides, for every call).

    A token written to the database during an outage is not copied to Redis: when Redis is back its
    token (if any) is used again; in ``classic`` mode it may have been replaced meanwhile, and WeChat's
    40001 on it makes the next call refresh it once (WeChatGateway._call)."""

    def __init__(self, primary: TokenStore, fallback: TokenStore, breaker: RedisBreaker) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker

    def read(self, key: str) -> StoredToken | None:
        return self.breaker.call(lambda: self.primary.read(key), lambda: self.fallback.read(key))

    def write(self, key: str, token: StoredToken) -> None:
        self.breaker.call(lambda: self.primary.write(key, token), lambda: self.fallback.write(key, token))

    def delete_if(self, key: str, value: str) -> None:
        self.breaker.call(lambda: self.primary.delete_if(key, value), lambda: self.fallback.delete_if(key, value))

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            self.breaker.call(lambda: stack.enter_context(self.primary.lock(key)),
                              lambda: stack.enter_context(self.fallback.lock(key)))
            yield


Fetcher = Callable[[], tuple[str, int]]  # -> (token, expires_in seconds)


class AccessTokenManager:
    """Hands out a token valid for at least REFRESH_MARGIN_SECONDS; one holder refreshes."""

    def __init__(self, store: TokenStore, key: str, fetch: Fetcher) -> None:
        self.store = store
        self.key = key
        self.fetch = fetch

    def _fresh(self, token: StoredToken | None) -> bool:
        return token is not None and (token.expires_at - clock.now()).total_seconds() > REFRESH_MARGIN_SECONDS

    def get(self) -> str:
        token = self.store.read(self.key)
        if self._fresh(token):
            return token.value  # type: ignore[union-attr]
        with self.store.lock(self.key):
            token = self.store.read(self.key)  # another holder may have refreshed meanwhile
            if self._fresh(token):
                return token.value  # type: ignore[union-attr]
            value, expires_in = self.fetch()
            self.store.write(self.key, StoredToken(value, clock.now() + timedelta(seconds=expires_in)))
            return value

    def invalidate(self, value: str) -> None:
        """WeChat rejected ``value``: forget it (only if nobody replaced it already)."""
        self.store.delete_if(self.key, value)
