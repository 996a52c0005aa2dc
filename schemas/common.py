"""Fields and schemas every area shares: text, money, carbon, the error envelope."""
from __future__ import annotations

import functools
from decimal import Decimal

from marshmallow import Schema, ValidationError, fields

from carbon.core.text import unstorable, unstorable_message
from carbon.core.units import cny, kg


class _Storable:
    """A string field whose loaded value must be text the service can keep (``carbon.core.text``)."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        character = unstorable(text)
        if character:
            raise ValidationError(unstorable_message(character))
        return text


class Text(_Storable, fields.String):
    """Every string a request gives (stored, compared or looked up): no NUL, controls or lone surrogates."""


class Url(_Storable, fields.Url):
    """A URL under the same text rule."""


class Email(_Storable, fields.Email):
    """An email address under the same text rule."""


class Money(fields.Field):
    """CNY as a string with two places on the wire ("12.34"); Decimal inside. Floats refused."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata = {"type": "string", "pattern": r"^-?\d+\.\d{2}$", "example": "12.34", **self.metadata}

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(cny(value))

    def _deserialize(self, value, attr, data, **kwargs):
        return _decimal(value, cny)


class Kilograms(fields.Field):
    """kg CO2e as a string with three places ("30.480"); Decimal inside. Floats refused."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.metadata = {"type": "string", "pattern": r"^-?\d+\.\d{3}$", "example": "30.480", **self.metadata}

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(kg(value))

    def _deserialize(self, value, attr, data, **kwargs):
        return _decimal(value, kg)


def plain(obj, schema: type[Schema]) -> dict:
    """The attributes ``schema`` dumps, read off ``obj`` into a dict that ``schema`` can dump later
    (for answers kept beyond the database session, e.g. cached)."""
    return {name: getattr(obj, name) for name in dumped_attributes(schema)}


@functools.cache
def dumped_attributes(schema: type[Schema]) -> tuple[str, ...]:
    return tuple(field.attribute or name for name, field in schema().dump_fields.items())


def _decimal(value, quantize):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValidationError("需为数字字符串 / Must be a number given as a string or integer.")
    try:
        result = quantize(value)
    except (ValueError, TypeError) as exc:
        raise ValidationError("不是有效数字 / Not a valid number.") from exc
    return Decimal(result)


class ErrorBody(Schema):
    code = fields.String(required=True, metadata={"example": "auth.invalid_code"})
    message = fields.String(required=True)
    details = fields.Dict(required=True, metadata={"description": "per-field messages for validation errors"})
    request_id = fields.String(required=True)


class ErrorEnvelope(Schema):
    error = fields.Nested(ErrorBody, required=True)
