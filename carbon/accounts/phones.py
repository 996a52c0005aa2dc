"""Phone numbers encrypted at rest (decision 0014): AES-256-GCM, a fresh 96-bit nonce per number, the
user's public id as associated data (a ciphertext copied to another row does not open).

Stored as ``v1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>``. The keys come from
``DIANDIAN_PHONE_KEYS`` (comma-separated; the first encrypts, every one decrypts); outside production
an empty setting means one key derived from ``SECRET_KEY``. Rotation: put the new key first, keep the
old one after it, run ``flask pii rotate`` (re-encrypts every number not under the first key), then
drop the old key. A number is only ever shown masked (``masked``) and never logged.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

from carbon.core import extensions as ext
from carbon.core.db import db

VERSION = "v1"
NONCE_BYTES = 12
log = logging.getLogger("diandian.phones")


class PhoneUnreadable(RuntimeError):
    """A stored number that does not open: malformed, altered, copied from another row, or under a key
    that is no longer configured."""


class PhoneKeyMissing(PhoneUnreadable):
    """A stored number names a key that is no longer configured (rotate before dropping a key)."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"diandian.phone-key:" + key).hexdigest()[:8]


@functools.lru_cache(maxsize=8)
def _ciphers(keys: tuple[bytes, ...]) -> tuple[str, dict[str, AESGCM]]:
    return key_id(keys[0]), {key_id(key): AESGCM(key) for key in keys}


def _keyring() -> tuple[str, dict[str, AESGCM]]:
    settings = ext.settings()
    keys = settings.phone_keys or [hashlib.sha256(b"diandian.phone:" + settings.SECRET_KEY.encode()).digest()]
    return _ciphers(tuple(keys))


def seal(phone: str, owner_public_id: str) -> str:
    """The stored form of ``phone``, under the first key."""
    current, ciphers = _keyring()
    nonce = os.urandom(NONCE_BYTES)
    sealed = ciphers[current].encrypt(nonce, phone.encode(), owner_public_id.encode())
    return f"{VERSION}.{current}.{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"


def _parts(stored: str) -> tuple[str, str] | None:
    """(key id, body) of a stored number in the v1 form, else None."""
    parts = stored.split(".", 2)
    return (parts[1], parts[2]) if len(parts) == 3 and parts[0] == VERSION else None


def unseal(stored: str, owner_public_id: str) -> str:
    """The number; PhoneUnreadable (PhoneKeyMissing for an unknown key) when it does not open."""
    parts = _parts(stored)
    if parts is None:
        raise PhoneUnreadable("stored phone number is not in the v1 form")
    kid, body = parts
    _, ciphers = _keyring()
    if kid not in ciphers:
        raise PhoneKeyMissing(f"phone number under key {kid!r}, which DIANDIAN_PHONE_KEYS no longer holds")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        return ciphers[kid].decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], owner_public_id.encode()).decode()
    except (InvalidTag, ValueError) as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise PhoneUnreadable("stored phone number fails its check (altered, or not this row's)") from exc


def masked(user) -> str | None:
    """``138****8000``: all the API ever says of a number. A number that does not open (its key
    dropped before ``pii rotate`` ran, or the row altered) reads as none, and is logged by account,
    never by value, so the guest's requests keep working while an operator restores the key."""
    if not user.phone_ciphertext:
        return None
    try:
        phone = unseal(user.phone_ciphertext, user.public_id)
    except PhoneUnreadable as exc:
        log.error("phone number unreadable", extra={"fields": {"user": user.public_id, "reason": type(exc).__name__}})
        return None
    return phone[:3] + "****" + phone[-4:]


def rotate(batch: int = 500) -> dict[str, int]:
    """Re-encrypt under the first key every number stored under another; counts per outcome.
    A number under an unknown key (or that fails its tag) is left as it is and counted as ``failed``;
    one bound again or erased (account deleted) since it was read is left as it now is (``changed``):
    each row is written only if it still holds what was read."""
    from carbon.accounts.models import User

    current, _ = _keyring()
    done = {"rotated": 0, "current": 0, "failed": 0, "changed": 0}
    last_id = 0
    while True:
        rows = db.session.execute(select(User.id, User.public_id, User.phone_ciphertext).where(
            User.id > last_id, User.phone_ciphertext.is_not(None)).order_by(User.id).limit(batch)).all()
        if not rows:
            return done
        for user_id, public_id, stored in rows:
            if (_parts(stored) or ("",))[0] == current:
                done["current"] += 1
                continue
            try:
                sealed = seal(unseal(stored, public_id), public_id)
            except PhoneUnreadable:
                done["failed"] += 1
                continue
            written = db.session.execute(update(User).where(User.id == user_id, User.phone_ciphertext == stored)
                                         .values(phone_ciphertext=sealed)).rowcount
            done["rotated" if written else "changed"] += 1
        last_id = rows[-1].id
        db.session.commit()
