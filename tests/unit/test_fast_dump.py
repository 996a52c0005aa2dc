"""carbon.core.openapi.fast_dump answers exactly what the schema's own ``dump`` answers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from marshmallow import Schema, fields, post_dump

from carbon.core.openapi import fast_dump
from schemas.common import Kilograms, Money


class Inner(Schema):
    key = fields.String()
    value = fields.Integer(allow_none=True)


class Outer(Schema):
    id = fields.String(attribute="public_id", data_key="ident")
    name = fields.String(allow_none=True)
    count = fields.Integer(dump_default=7)
    when = fields.DateTime()
    price = Money()
    weight = Kilograms()
    flag = fields.Function(lambda obj: obj["name"] is not None if isinstance(obj, dict) else obj.name is not None)
    shout = fields.Method("_shout")
    one = fields.Nested(Inner, allow_none=True)
    several = fields.List(fields.Nested(Inner))
    many = fields.Nested(Inner, many=True)
    tags = fields.List(fields.String())
    extra = fields.Dict()

    def _shout(self, obj):
        name = obj["name"] if isinstance(obj, dict) else obj.name
        return (name or "").upper()


class Hooked(Schema):
    name = fields.String()

    @post_dump
    def _upper(self, data, **kwargs):
        return {"name": data["name"].upper()}


@dataclass
class Thing:
    public_id: str
    name: str | None
    when: datetime
    price: Decimal
    weight: Decimal
    one: dict | None
    several: list
    many: list
    tags: list
    extra: dict


def _thing(**changes) -> Thing:
    values = {"public_id": "thg_1", "name": "成都", "when": datetime(2026, 12, 1, 8, 30, tzinfo=UTC),
              "price": Decimal("12.5"), "weight": Decimal("1.23456"), "one": {"key": "a", "value": 1},
              "several": [{"key": "b", "value": None}, {"key": "c"}], "many": [{"key": "d", "value": 4}],
              "tags": ["x", "y"], "extra": {"k": "v"}}
    return Thing(**{**values, **changes})


@pytest.mark.parametrize("obj", [
    _thing(),
    _thing(name=None, one=None, several=[], tags=[]),
    vars(_thing()),  # a dict: read by key
    {"public_id": "thg_2", "name": "x"},  # most fields missing: left out, count takes its default
])
def test_same_answer_as_marshmallow(obj):
    schema = Outer()
    assert fast_dump(schema)(obj) == schema.dump(obj)


def test_many():
    schema = Outer(many=True)
    things = [_thing(), _thing(public_id="thg_3", name=None)]
    assert fast_dump(schema)(things) == schema.dump(things)
    assert fast_dump(Outer())(things, many=True) == Outer().dump(things, many=True)


def test_a_schema_with_dump_hooks_keeps_marshmallows_dump():
    schema = Hooked()
    assert fast_dump(schema) == schema.dump
    assert fast_dump(schema)({"name": "a"}) == {"name": "A"}


def test_a_nested_schema_with_hooks_is_dumped_by_marshmallow():
    class Holder(Schema):
        inner = fields.Nested(Hooked)

    schema = Holder()
    assert fast_dump(schema) == schema.dump
    assert fast_dump(schema)({"inner": {"name": "a"}}) == {"inner": {"name": "A"}}
