from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import Text, Url


class LoginIn(Schema):
    code = Text(required=True, validate=validate.Length(min=1, max=128),
                metadata={"description": "the code from wx.login()"})
    scene = Text(validate=validate.Length(max=200),
                 metadata={"description": "the scanned scene, if any (counted in the scene's logins)"})


class UserOut(Schema):
    id = fields.String(attribute="public_id", required=True)
    nickname = fields.String(allow_none=True)
    avatar_url = fields.String(allow_none=True)
    leaderboard_hidden = fields.Boolean()
    has_phone = fields.Function(lambda user: bool(user.phone_number))
    phone_number = fields.Function(
        lambda user: (user.phone_number[:3] + "****" + user.phone_number[-4:]) if user.phone_number else None,
        metadata={"description": "masked"})
    created_at = fields.DateTime(required=True)


class LoginOut(Schema):
    token = fields.String(required=True, metadata={"description": "send as 'Authorization: Bearer <token>'"})
    expires_at = fields.DateTime(required=True)
    created = fields.Boolean(required=True, metadata={"description": "true when this login created the user"})
    user = fields.Nested(UserOut, required=True)


class ProfilePatchIn(Schema):
    nickname = Text(validate=validate.Length(min=1, max=32))
    avatar_url = Url(schemes={"https", "http"}, validate=validate.Length(max=512))
    leaderboard_hidden = fields.Boolean(metadata={"description": "true: leaderboards show the nickname masked"})

    @validates_schema
    def _something_to_change(self, data, **kwargs):
        if not data:
            raise ValidationError("至少提供一个字段 / Give at least one of nickname, avatar_url, leaderboard_hidden.",
                                  "_schema")


class PhoneIn(Schema):
    code = Text(required=True, validate=validate.Length(min=1, max=128),
                metadata={"description": "e.detail.code from the getPhoneNumber button"})
