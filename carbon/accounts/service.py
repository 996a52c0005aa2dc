"""Login, session tokens, profile. Services own the unit of work; routes stay thin."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from carbon.accounts import phones
from carbon.accounts.models import AuthSession, User
from carbon.core import extensions as ext
from carbon.core import session_tokens
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import AuthenticationError, DomainError, RateLimited
from carbon.core.ids import new_token
from carbon.core.ratelimit import key_of

TOKEN_SALT = "diandian.session"
CODE_ATTEMPTS = 3  # a wx.login code is sent to WeChat at most this often (retries after a 502) ...
CODE_WINDOW_SECONDS = 300  # ... within its five-minute life
ANONYMOUS_NAME = "微信用户"


class NicknameRejected(DomainError):
    http_status = 422
    code = "profile.nickname_rejected"
    message = "昵称未通过内容安全检查，请修改 / The nickname did not pass WeChat's content check"


class TokenInvalid(AuthenticationError):
    code = "auth.invalid_token"
    message = "登录已失效，请重新登录 / The session token is invalid, expired or revoked"


class CodeReplayed(RateLimited):
    code = "auth.code_replayed"
    message = "该登录凭证已多次使用，请重新调用 wx.login / This login code was tried too often; call wx.login again"


@dataclass(frozen=True)
class LoginResult:
    user: User
    token: str
    expires_at: datetime
    created: bool


def login(code: str, client_ip: str | None) -> LoginResult:
    """Exchange a ``wx.login`` code, find or create the user, open a session.

    The limits that can be judged before the code is spent at WeChat come first (per client, per
    code); the per-openid one can only be judged after jscode2session, so its 429 costs the code."""
    settings = ext.settings()
    limiter = ext.rate_limiter()
    limiter.hit(f"login:ip:{client_ip or 'unknown'}", settings.LOGIN_RATE_PER_MINUTE_CLIENT)
    limiter.hit(f"login:code:{key_of(code)}", CODE_ATTEMPTS, CODE_WINDOW_SECONDS, error=CodeReplayed)
    wx_session = ext.wechat().exchange_code(code)
    limiter.hit(f"login:openid:{wx_session.openid}", settings.LOGIN_RATE_PER_MINUTE_OPENID)

    user = db.session.scalar(select(User).where(User.openid == wx_session.openid))
    created = user is None
    if user is None:
        try:
            with db.session.begin_nested():
                user = User(openid=wx_session.openid)
                db.session.add(user)
        except IntegrityError:  # the same guest's other first login (a double launch) created it just now
            created = False
            user = db.session.scalar(select(User).where(User.openid == wx_session.openid))
    if wx_session.unionid:
        user.unionid = wx_session.unionid
    user.session_key = wx_session.session_key
    now = utcnow()
    user.last_login_at = now
    session = AuthSession(token_id=new_token(24), user=user, created_at=now, client_ip=client_ip,
                          expires_at=now + timedelta(seconds=settings.SESSION_TTL_SECONDS))
    db.session.add(session)
    db.session.commit()
    return LoginResult(user, session_tokens.sign(TOKEN_SALT, session.token_id), session.expires_at, created)


def authenticate(token: str) -> User:
    """The user behind a bearer token; 401 when it is forged, expired or revoked."""
    user = session_tokens.live_owner(_LIVE_USER, TOKEN_SALT, token)
    if user is None:
        raise TokenInvalid()
    return user


_LIVE_USER = session_tokens.owner_query(AuthSession.user)  # one read by auth_sessions.token_id


def logout(token: str) -> None:
    session = session_tokens.live_session(AuthSession, TOKEN_SALT, token)
    if session is not None:
        session.revoked_at = utcnow()
        db.session.commit()


def public_name(user) -> str:
    """The name others see (leaderboards, the big screen): the nickname, which passed WeChat's
    content check, masked to its first character when the guest opted out; never an openid."""
    nickname = (user.nickname or "").strip()
    if not nickname:
        return ANONYMOUS_NAME
    return masked(nickname) if user.leaderboard_hidden else nickname


def masked(name: str) -> str:
    """A name as shown when it is not to be read in full: its first character, then one to three ``*``."""
    return name[0] + "*" * min(len(name) - 1 or 1, 3)


def update_profile(user: User, *, nickname: str | None = None, avatar_url: str | None = None,
                   leaderboard_hidden: bool | None = None) -> User:
    """Change nickname, avatar and whether others see the nickname; a nickname must pass WeChat's
    text check (it is shown publicly)."""
    if nickname is not None:
        verdict = ext.wechat().check_text(nickname, openid=user.openid, scene=1, nickname=nickname)
        if not verdict.passed:
            raise NicknameRejected(details={"nickname": [f"suggest={verdict.suggest}, label={verdict.label}"]})
        user.nickname = nickname
    if avatar_url is not None:
        user.avatar_url = avatar_url
    if leaderboard_hidden is not None:
        user.leaderboard_hidden = leaderboard_hidden
    db.session.commit()
    return user


def bind_phone(user: User, code: str) -> User:
    """Store the number of a getPhoneNumber code, encrypted (it is only ever shown masked)."""
    phone = ext.wechat().phone_number(code)
    user.phone_ciphertext = phones.seal(phone.pure_phone_number, user.public_id)
    user.phone_country_code = phone.country_code
    db.session.commit()
    return user
