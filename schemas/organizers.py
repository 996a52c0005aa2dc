from __future__ import annotations

from marshmallow import Schema, fields, validate

from carbon.organizers.models import ROLES
from schemas.common import Email, Text


class AdminLoginIn(Schema):
    email = Email(required=True, validate=validate.Length(max=254))
    password = Text(required=True, validate=validate.Length(1, 256), load_only=True)


class OrganizationOut(Schema):
    id = fields.String(attribute="public_id")
    name = fields.String()


class OrganizerOut(Schema):
    id = fields.String(attribute="public_id")
    email = fields.String()
    display_name = fields.String()
    role = fields.String()
    created_at = fields.DateTime()


class AdminLoginOut(Schema):
    token = fields.String(metadata={"description": "send as 'Authorization: Bearer <token>' on /api/v1/admin"})
    expires_at = fields.DateTime()
    organizer = fields.Nested(OrganizerOut)
    organization = fields.Nested(OrganizationOut)


class WhoAmIOut(Schema):
    organization = fields.Nested(OrganizationOut)
    role = fields.String()
    organizer = fields.Nested(OrganizerOut, allow_none=True)
    api_key = fields.String(allow_none=True, metadata={"description": "the key's id when called with a key"})


class MemberIn(Schema):
    email = Email(required=True, validate=validate.Length(max=254))
    password = Text(required=True, validate=validate.Length(10, 256), load_only=True)
    display_name = Text(required=True, validate=validate.Length(1, 64))
    role = Text(load_default="staff", validate=validate.OneOf(ROLES))


class NewOrganizationIn(MemberIn):
    """``flask create-organizer``: an organization and its first owner."""
    organization = Text(required=True, validate=validate.Length(1, 128))
    role = Text(load_default="owner", validate=validate.OneOf(["owner"]))


class MembersOut(Schema):
    items = fields.List(fields.Nested(OrganizerOut))


class ApiKeyIn(Schema):
    name = Text(required=True, validate=validate.Length(1, 64))
    role = Text(load_default="staff", validate=validate.OneOf(ROLES))


class ApiKeyOut(Schema):
    id = fields.String(attribute="public_id")
    name = fields.String()
    role = fields.String()
    prefix = fields.String()
    created_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)


class ApiKeyCreatedOut(ApiKeyOut):
    key = fields.String(attribute="full_key",
                        metadata={"description": "shown once; send as 'Authorization: Bearer <key>'"})


class ApiKeysOut(Schema):
    items = fields.List(fields.Nested(ApiKeyOut))
