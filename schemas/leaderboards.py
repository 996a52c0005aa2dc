from __future__ import annotations

from marshmallow import Schema, fields, validate

from schemas.common import Kilograms, Text

PERIOD = fields.String(load_default="all", validate=validate.OneOf(("week", "month", "all")),
                       metadata={"description": "this week (Monday, Asia/Shanghai), this month, or all time"})
SCENE = Text(validate=validate.Length(1, 32), metadata={"description": "a scene's id; none: the global board"})


class BoardQuery(Schema):
    scene = SCENE
    period = PERIOD
    board = fields.String(load_default="guests", validate=validate.OneOf(("guests", "organizations")),
                          metadata={"description": "guests (the default) or organizations, ranked apart "
                                                   "(organizations that bought for the scene)"})
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class StandingQuery(Schema):
    scene = SCENE
    period = PERIOD
    neighbours = fields.Integer(load_default=2, validate=validate.Range(0, 10),
                                metadata={"description": "guests shown above and below"})


class EntryOut(Schema):
    rank = fields.Integer(required=True, metadata={"description": "ties share a rank (1, 1, 3)"})
    name = fields.String(required=True, metadata={"description": "nickname, masked when the guest opted out"})
    kg = Kilograms(required=True)
    me = fields.Boolean(required=True)


class BoardOut(Schema):
    scene = fields.String(allow_none=True)
    period = fields.String(required=True)
    starts_on = fields.Date(allow_none=True)
    participants = fields.Integer(required=True, metadata={"description": "guests, or organizations, on the board"})
    kind = fields.String(required=True, metadata={"description": "guests | organizations"})


class ProgressOut(Schema):
    neutralized_kg = Kilograms(required=True)
    estimated_kg = Kilograms(allow_none=True, metadata={
        "description": "expected attendance × the average footprint its guests calculated"})
    percent = fields.Decimal(as_string=True, places=1, allow_none=True)
    participants = fields.Integer(required=True)


class LeaderboardOut(Schema):
    board = fields.Nested(BoardOut, required=True)
    entries = fields.List(fields.Nested(EntryOut), required=True)
    progress = fields.Nested(ProgressOut, allow_none=True)


class StandingOut(Schema):
    rank = fields.Integer(allow_none=True, metadata={"description": "null: not on this board yet"})
    kg = Kilograms(required=True)
    above = fields.List(fields.Nested(EntryOut), required=True)
    below = fields.List(fields.Nested(EntryOut), required=True)
