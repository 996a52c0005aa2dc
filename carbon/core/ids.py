"""Identifiers: random public ids and tokens, and request ids."""
from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford-like, no i/l/o/u


def new_public_id(prefix: str, length: int = 12) -> str:
    """A short random id like ``usr_4k9x2m...``, safe to show and to put in URLs."""
    return f"{prefix}_" + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def new_request_id() -> str:
    return secrets.token_hex(16)  # 32 hex characters, like uuid4().hex, at a fraction of the cost
