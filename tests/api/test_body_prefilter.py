"""The body check parses a JSON body only when it could hold a character the service refuses
(carbon.core.http._MAYBE_UNSTORABLE): every way such a character can arrive is still refused, and
ordinary escapes (json.dumps writes Chinese as \\uXXXX) pass without the extra parse."""
from __future__ import annotations

import json

import pytest

from tests.api.test_envelope import assert_envelope

PREVIEW = "/api/v1/footprints/preview"


def rail(from_city: str) -> dict:
    return {"kind": "event", "activities": [{"type": "rail", "from_city": from_city, "to_city": "重庆"}]}


def post(client, body: bytes):
    return client.post(PREVIEW, data=body, headers={"Content-Type": "application/json"})


@pytest.mark.parametrize("body", [
    json.dumps(rail("成都\u0000")).encode(),  # \u0000 escaped
    json.dumps(rail("成都\u001f")).encode(),
    json.dumps(rail("成都\u007f")).encode(),
    json.dumps(rail("成都\u0085")).encode(),  # C1, escaped
    json.dumps(rail("成都\u0085"), ensure_ascii=False).encode(),  # C1, raw UTF-8 C2 85
    json.dumps(rail("成都\b")).encode(),  # \b
    json.dumps(rail("成都\f")).encode(),  # \f
    json.dumps(rail("成都\ud800")).encode(),  # an unpaired surrogate, escaped (lower and upper case hex)
    json.dumps(rail("成都\udfff")).encode().replace(b"\\udfff", b"\\uDFFF"),
    json.dumps(rail("成都\ud800"), ensure_ascii=False).encode("utf-8", "surrogatepass"),  # raw ED A0 80
], ids=["nul", "us", "del", "c1", "c1-raw", "bs", "ff", "surrogate", "surrogate-upper", "surrogate-raw"])
def test_a_refused_character_is_refused_however_it_is_written(client, body):
    error = assert_envelope(post(client, body), 422, "validation_error")
    assert "activities.0.from_city" in error["details"], error


def test_escaped_chinese_passes(client):
    response = post(client, json.dumps(rail("成都")).encode())  # \u6210\u90fd
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["lines"][0]["inputs"]["from_city"] == "成都"
