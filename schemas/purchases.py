"""An organization's purchase: what it buys for (issue 15, decision 0016)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import Text


class PurchaseIn(Schema):
    kind = Text(required=True, validate=validate.OneOf(("host", "group", "top_up")), metadata={
        "description": "host: the event's own footprint; group: attendees at the scene's average "
                       "footprint; top_up: the scene's estimate minus what was neutralized"})
    footprint_id = Text(validate=validate.Length(1, 32), metadata={"description": "host: the host footprint"})
    scene = Text(validate=validate.Length(1, 32), metadata={"description": "group, top_up: the organization's scene"})
    attendees = fields.Integer(strict=True, validate=validate.Range(1, 100_000), metadata={"description": "group"})
    project_id = Text(validate=validate.Length(1, 32), metadata={"description": "default: the scene's first project"})

    @validates_schema
    def _what_for(self, data, **kwargs):
        needed = {"host": ("footprint_id",), "group": ("scene", "attendees"), "top_up": ("scene",)}
        missing = {name: ["必填 / Required."] for name in needed.get(data.get("kind"), ()) if data.get(name) is None}
        if missing:
            raise ValidationError(missing)
