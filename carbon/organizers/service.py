"""Organizations, members, organizer sessions and API keys."""
from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import joinedload
from werkzeug.security import check_password_hash, generate_password_hash

from carbon.core import extensions as ext
from carbon.core import session_tokens
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import AuthenticationError, Conflict, NotFound, PermissionDenied, RateLimited
from carbon.core.ids import new_token
from carbon.core.ratelimit import key_of
from carbon.organizers.models import ApiKey, Organization, Organizer, OrganizerSession

TOKEN_SALT = "diandian.organizer"
API_KEY_PREFIX = "dk_"
FAILURE_WINDOW_SECONDS = 15 * 60


@functools.cache
def _dummy_hash() -> str:
    """What a login for an unknown email checks the password against. Made by the first login of the
    process rather than at import: scrypt takes 32 MB for a moment, which every process (the job
    workers too) would otherwise peak at when it starts."""
    return generate_password_hash("diandian-timing-equaliser")


class BadCredentials(AuthenticationError):
    code = "auth.bad_credentials"
    message = "邮箱或密码错误 / Wrong email or password"


class LoginLocked(RateLimited):
    code = "auth.login_locked"
    message = "密码错误次数过多，登录已暂时锁定，请稍后再试 / Too many wrong passwords: login is locked for a while"


class OrganizerTokenInvalid(AuthenticationError):
    code = "auth.invalid_token"
    message = "组织者凭证无效，请重新登录 / The organizer token or API key is invalid, expired or revoked"


class EmailTaken(Conflict):
    code = "organizer.email_taken"
    message = "该邮箱已被使用 / This email is already in use"


@dataclass(frozen=True)
class Principal:
    """Who calls an admin route: a member (with a session) or an API key, and their role."""

    organization: Organization
    role: str
    organizer: Organizer | None = None
    api_key: ApiKey | None = None

    def require_owner(self) -> None:
        """The one owner rule: staff (members and keys) get 403 ``auth.owner_required``."""
        if self.role != "owner":
            raise PermissionDenied(code="auth.owner_required", message="仅限组织所有者 / Only an owner may do this")


def create_organization(name: str, *, owner_email: str, owner_password: str, owner_name: str) -> Organizer:
    organization = Organization(name=name)
    db.session.add(organization)
    return add_member(organization, email=owner_email, password=owner_password, display_name=owner_name,
                      role="owner")


def add_member(organization: Organization, *, email: str, password: str, display_name: str,
               role: str) -> Organizer:
    email = email.strip().lower()
    if db.session.scalar(select(Organizer.id).where(Organizer.email == email)) is not None:
        raise EmailTaken(details={"email": [email]})
    member = Organizer(organization=organization, email=email, display_name=display_name, role=role,
                       password_hash=generate_password_hash(password))
    db.session.add(member)
    db.session.commit()
    return member


def members(organization: Organization) -> list[Organizer]:
    return list(db.session.scalars(select(Organizer).where(Organizer.organization_id == organization.id)
                                   .order_by(Organizer.id)))


def login(email: str, password: str, client_ip: str | None) -> tuple[Organizer, str, datetime]:
    """Email and password → a session. What is limited is failing: wrong passwords per email and per
    client (then 429 ``auth.login_locked`` until the window ends), so someone guessing cannot lock
    the owner out with fewer failures than the limit, and a correct password under it gets in."""
    settings = ext.settings()
    limiter = ext.rate_limiter()
    email = email.strip().lower()
    client = client_ip or "unknown"
    limiter.hit(f"admin-login:ip:{client}", settings.LOGIN_RATE_PER_MINUTE_CLIENT)
    failures = {f"admin-login:failed:email:{key_of(email)}": settings.ADMIN_LOGIN_FAILURES_PER_EMAIL,
                f"admin-login:failed:ip:{client}": settings.ADMIN_LOGIN_FAILURES_PER_CLIENT}
    for key, limit in failures.items():
        limiter.check(key, limit, FAILURE_WINDOW_SECONDS, error=LoginLocked)
    dummy = _dummy_hash()  # (made by a process's first login, whichever email it names)
    member = db.session.scalar(select(Organizer).where(Organizer.email == email))
    if member is None:
        check_password_hash(dummy, password)  # same cost whether or not the email exists
    if member is None or not check_password_hash(member.password_hash, password) or member.disabled_at is not None:
        for key in failures:
            limiter.record(key, FAILURE_WINDOW_SECONDS)
        raise BadCredentials()
    limiter.forget(next(iter(failures)), FAILURE_WINDOW_SECONDS)  # the owner is in: their email starts afresh
    now = utcnow()
    session = OrganizerSession(token_id=new_token(24), organizer=member, created_at=now,
                               expires_at=now + timedelta(seconds=settings.ORGANIZER_SESSION_TTL_SECONDS))
    db.session.add(session)
    db.session.commit()
    return member, session_tokens.sign(TOKEN_SALT, session.token_id), session.expires_at


def logout(token: str) -> None:
    session = _session(token)
    session.revoked_at = utcnow()
    db.session.commit()


def authenticate(token: str) -> Principal:
    """An organizer session token or an API key (``dk_...``); 401 otherwise (a guest token too)."""
    if token.startswith(API_KEY_PREFIX):
        key = _api_key(token)
        return Principal(key.organization, key.role, api_key=key)
    member = session_tokens.live_owner(_LIVE_ORGANIZER, TOKEN_SALT, token)
    if member is None or member.disabled_at is not None:
        raise OrganizerTokenInvalid()
    return Principal(member.organization, member.role, organizer=member)


_LIVE_ORGANIZER = session_tokens.owner_query(OrganizerSession.organizer, joinedload(Organizer.organization))


def _session(token: str) -> OrganizerSession:
    session = session_tokens.live_session(OrganizerSession, TOKEN_SALT, token)
    if session is None:
        raise OrganizerTokenInvalid()
    return session


def create_api_key(organization: Organization, name: str, role: str) -> tuple[ApiKey, str]:
    """A new key; the whole key is returned once and only its hash is kept."""
    prefix = new_token(6)[:8].replace("-", "x").replace("_", "y")
    secret = new_token(24)
    full = f"{API_KEY_PREFIX}{prefix}_{secret}"
    key = ApiKey(organization=organization, name=name, role=role, prefix=prefix, key_hash=_hash(full))
    db.session.add(key)
    db.session.commit()
    return key, full


def api_keys(organization: Organization) -> list[ApiKey]:
    return list(db.session.scalars(select(ApiKey).where(ApiKey.organization_id == organization.id)
                                   .order_by(ApiKey.id)))


def revoke_api_key(organization: Organization, public_id: str) -> ApiKey:
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id,
                                                 ApiKey.organization_id == organization.id))
    if key is None:
        raise NotFound(code="organizer.api_key_not_found", message="未找到该密钥 / API key not found")
    key.revoked_at = key.revoked_at or utcnow()
    db.session.commit()
    return key


def _api_key(token: str) -> ApiKey:
    prefix = token[len(API_KEY_PREFIX):].split("_", 1)[0]
    key = db.session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None or not hmac.compare_digest(key.key_hash, _hash(token)):
        raise OrganizerTokenInvalid()
    return key


def _hash(full_key: str) -> str:
    return hashlib.sha256(full_key.encode()).hexdigest()
