"""The session check's read (carbon.core.session_tokens.OwnerRead): the guest it answers is the
session's ORM object, changes to it are saved, and it sees what the request itself has written."""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from carbon.accounts import service
from carbon.accounts.models import AuthSession, User
from carbon.core import session_tokens
from carbon.core.clock import utcnow
from carbon.core.db import db


def _guest(openid: str, **session) -> str:
    user = User(openid=openid, nickname="点点")
    db.session.add_all([user, AuthSession(token_id=f"tid-{openid}", user=user,
                                          expires_at=session.get("expires_at", utcnow() + timedelta(days=1)),
                                          revoked_at=session.get("revoked_at"))])
    return session_tokens.sign(service.TOKEN_SALT, f"tid-{openid}")


def test_the_guest_is_the_sessions_object_and_its_changes_are_saved(app):
    with app.app_context():
        token = _guest("o_read_1")
        db.session.commit()
        db.session.remove()
        user = service.authenticate(token)
        assert user in db.session and user.nickname == "点点" and user.created_at.tzinfo is not None
        assert db.session.get(User, user.id) is user  # the identity map answers it, no second copy
        user.nickname = "改名"
        db.session.commit()
        db.session.remove()
        assert db.session.scalar(select(User.nickname).where(User.openid == "o_read_1")) == "改名"
        again = service.authenticate(token)
        assert again.nickname == "改名"
        assert [session.token_id for session in again.sessions] == ["tid-o_read_1"]  # relationships load


def test_a_check_inside_a_begun_session_sees_its_own_unsaved_rows(app):
    with app.app_context():
        token = _guest("o_read_2")  # added, not committed: an ORM query would flush and find it
        user = service.authenticate(token)
        assert user.openid == "o_read_2" and user in db.session
        db.session.rollback()


@pytest.mark.parametrize("session", [{"revoked_at": utcnow()}, {"expires_at": utcnow() - timedelta(seconds=1)}])
def test_a_revoked_or_expired_session_is_refused(app, session):
    with app.app_context():
        token = _guest("o_read_3", **session)
        db.session.commit()
        db.session.remove()
        with pytest.raises(service.TokenInvalid):
            service.authenticate(token)
