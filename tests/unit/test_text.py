"""The one text rule (carbon.core.text) and the schema fields that apply it to what requests give."""
from __future__ import annotations

import pytest
from marshmallow import Schema, ValidationError

from carbon.core.http import inspect_json
from carbon.core.text import unstorable
from schemas.common import Email, Text, Url


class Sample(Schema):
    text = Text()
    url = Url()
    email = Email()


@pytest.mark.parametrize("text, character", [
    ("a\x00b", "U+0000"), ("\ud800", "U+D800"), ("x\udfff", "U+DFFF"), ("\x1b[31m", "U+001B"), ("\x7f", "U+007F"),
    ("\x85", "U+0085"), ("ok", None), ("第一行\n第二行\tend\r\n", None), ("emoji 🌱", None), ("", None),
])
def test_the_rule(text, character):
    assert unstorable(text) == character


@pytest.mark.parametrize("field, value", [("text", "a\x00"), ("url", "https://img.example/\ud800.png"),
                                          ("email", "a\ud800@b.example"), ("text", "\x07")])
def test_the_fields_refuse_what_the_rule_refuses(field, value):
    with pytest.raises(ValidationError) as caught:
        Sample().load({field: value})
    assert "U+" in caught.value.messages[field][0]


def test_the_fields_take_ordinary_text():
    loaded = Sample().load({"text": "第一行\n第二行", "url": "https://img.example/a.png", "email": "a@b.example"})
    assert loaded["text"] == "第一行\n第二行"


def test_the_body_check_finds_depth_and_the_first_refused_string():
    assert inspect_json({"a": [1, {"b": "x\x00"}], "c": "ok"}) == (3, ("a.1.b", "U+0000"))
    assert inspect_json({"k\ud800": 1}) == (1, ("_schema", "U+D800"))
    assert inspect_json([[[]]]) == (3, None) and inspect_json("plain") == (0, None)
    deep: list = []
    for _ in range(5000):  # far past the recursion limit: the walk does not recurse
        deep = [deep]
    assert inspect_json(deep)[0] == 5001
