from __future__ import annotations

from flask import g, request

from carbon.accounts import privacy, service
from carbon.accounts.auth import current_user, public
from carbon.core.db import kept_after_commit
from carbon.core.openapi import Blueprint, answers
from carbon.scenes import service as scenes
from schemas.accounts import AccountDeleteIn, ExportOut, LoginIn, LoginOut, PhoneIn, ProfilePatchIn, UserOut

blp = Blueprint("accounts", __name__, url_prefix="/api/v1", description="登录与个人资料 / Login and profile")


@blp.route("/auth/login", methods=["POST"])
@answers(400, 403, 429, 502)  # bad or used code, blocked by WeChat, limits, WeChat down
@blp.arguments(LoginIn)
@blp.response(200, LoginOut)
@public
@kept_after_commit()  # answers the session and the user it writes
def login(body):
    """Log in with a wx.login() code; returns a session token."""
    result = service.login(body["code"], request.remote_addr)
    scenes.record_login(body.get("scene"))
    return result


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
def logout():
    """Revoke the current session token."""
    service.logout(g.token)


@blp.route("/me", methods=["GET"])
@blp.response(200, UserOut)
def me():
    """The logged-in guest."""
    return current_user()


@blp.route("/me", methods=["PATCH"])
@answers(429, 502)  # WeChat's content check
@blp.arguments(ProfilePatchIn)
@blp.response(200, UserOut)
def update_me(body):
    """Change nickname (checked by WeChat's content security) and avatar URL."""
    return service.update_profile(current_user(), **body)


@blp.route("/me", methods=["DELETE"])
@answers(409)  # an order still open
@blp.arguments(AccountDeleteIn)
@blp.response(204)
def delete_me(body):
    """Delete the account (PIPL): personal data erased, every session revoked; certificates stay valid
    and show 已注销用户. Send ``{"confirm": "注销账号"}``. A later login is a new guest."""
    privacy.delete_account(current_user())


@blp.route("/me/export", methods=["GET"])
@answers(429)
@blp.response(200, ExportOut)
def export_me():
    """Everything Diandian holds about the guest, as JSON (PIPL): profile, sessions, footprints,
    orders, payments, refunds, retirements, certificates."""
    return privacy.export(current_user())


@blp.route("/me/phone", methods=["POST"])
@answers(400, 429, 502)
@blp.arguments(PhoneIn)
@blp.response(200, UserOut)
def bind_phone(body):
    """Bind the phone number from a getPhoneNumber button code."""
    return service.bind_phone(current_user(), body["code"])
