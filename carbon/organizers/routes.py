from __future__ import annotations

from flask import g, request

from carbon.accounts.auth import public
from carbon.core.openapi import Blueprint, answers
from carbon.organizers import service
from carbon.organizers.auth import current_principal, organizer_only, require_owner
from schemas.organizers import (
    AdminLoginIn,
    AdminLoginOut,
    ApiKeyCreatedOut,
    ApiKeyIn,
    ApiKeyOut,
    ApiKeysOut,
    MemberIn,
    MembersOut,
    OrganizerOut,
    WhoAmIOut,
)

blp = Blueprint("admin", __name__, url_prefix="/api/v1/admin",
                description="组织者：登录、成员与密钥 / Organizers: login, members, API keys")


@blp.route("/auth/login", methods=["POST"])
@answers(401, 429)  # wrong email or password; too many logins or wrong passwords
@blp.arguments(AdminLoginIn)
@blp.response(200, AdminLoginOut)
@public
def login(body):
    """Organizer login with email and password; returns an admin token."""
    member, token, expires_at = service.login(body["email"], body["password"], request.remote_addr)
    return {"token": token, "expires_at": expires_at, "organizer": member, "organization": member.organization}


@blp.route("/auth/logout", methods=["POST"])
@blp.response(204)
@organizer_only
def logout():
    """Revoke the admin token (API keys are revoked under /api-keys)."""
    if current_principal().organizer is not None:
        service.logout(g.token)


@blp.route("/me", methods=["GET"])
@blp.response(200, WhoAmIOut)
@organizer_only
def whoami():
    principal = current_principal()
    return {"organization": principal.organization, "role": principal.role, "organizer": principal.organizer,
            "api_key": principal.api_key.public_id if principal.api_key else None}


@blp.route("/members", methods=["GET"])
@blp.response(200, MembersOut)
@organizer_only
def members():
    return {"items": service.members(current_principal().organization)}


@blp.route("/members", methods=["POST"])
@answers(403, 409)
@blp.arguments(MemberIn)
@blp.response(201, OrganizerOut)
@organizer_only
def add_member(body):
    """Add an owner or staff member (owners only)."""
    require_owner()
    return service.add_member(current_principal().organization, **body)


@blp.route("/api-keys", methods=["GET"])
@answers(403)
@blp.response(200, ApiKeysOut)
@organizer_only
def api_keys():
    require_owner()
    return {"items": service.api_keys(current_principal().organization)}


@blp.route("/api-keys", methods=["POST"])
@answers(403)
@blp.arguments(ApiKeyIn)
@blp.response(201, ApiKeyCreatedOut)
@organizer_only
def create_api_key(body):
    """A key for machines; the key itself is shown only in this answer (owners only)."""
    require_owner()
    key, full = service.create_api_key(current_principal().organization, body["name"], body["role"])
    key.full_key = full  # shown in this answer only; never stored
    return key


@blp.route("/api-keys/<string:key_id>", methods=["DELETE"])
@answers(403)
@blp.response(200, ApiKeyOut)
@organizer_only
def revoke_api_key(key_id):
    require_owner()
    return service.revoke_api_key(current_principal().organization, key_id)
