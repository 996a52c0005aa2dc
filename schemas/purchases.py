"""An organization's purchase: what it buys for (issue 15, decision 0016)."""
from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from schemas.common import Kilograms, Money, Text
from schemas.footprint import FootprintOut


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


class QuoteOut(Schema):
    kind = fields.String(required=True)
    kg = Kilograms(required=True, metadata={"description": "to neutralize, computed now"})
    units = fields.Integer(required=True)
    unit_kg = fields.Decimal(as_string=True, required=True)
    estimated_amount = Money(required=True, metadata={"description": "CNY at the project's list price; the order "
                                                                     "prices its serials exactly"})
    project_id = fields.Function(lambda quote: quote.project.public_id, required=True)
    scene = fields.Function(lambda quote: quote.scene.public_id if quote.scene else None, allow_none=True)
    footprint_id = fields.Function(lambda quote: quote.footprint.public_id if quote.footprint else None,
                                   allow_none=True)
    event_name = fields.String(allow_none=True)
    purpose = fields.String(required=True)
    attendees = fields.Integer(allow_none=True)
    estimated_kg = Kilograms(allow_none=True, metadata={"description": "top_up: the scene's estimate"})
    neutralized_kg = Kilograms(allow_none=True, metadata={"description": "top_up: neutralized so far"})


class PurchaseStateOut(Schema):
    order = fields.String(required=True)
    status = fields.String(required=True)
    amount = fields.String(required=True)
    kg = fields.String(required=True)
    code_url = fields.String(allow_none=True, metadata={"description": "WeChat Pay Native: show as a QR code "
                                                                       "while the order awaits payment"})
    certificate = fields.String(allow_none=True)
    paid = fields.Boolean(required=True)


class HostFootprintOut(FootprintOut):
    event_name = fields.String(allow_none=True)
