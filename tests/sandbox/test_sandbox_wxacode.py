"""getwxacodeunlimit: validation, and the PNG decoded back to appid/page/scene/env_version."""
from __future__ import annotations

import io
import json
from urllib.parse import parse_qs, urlsplit

import pytest
import zxingcpp
from PIL import Image
from wechatpy.exceptions import APILimitedException, WeChatClientException

WXACODE = "/wxa/getwxacodeunlimit"


def decode(png: bytes) -> tuple[Image.Image, dict[str, str]]:
    """The image and the query of the URL its QR code carries."""
    image = Image.open(io.BytesIO(png))
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1
    url = urlsplit(results[0].text)
    assert (url.scheme, url.netloc, url.path) == ("https", "sandbox.weixin.qq.com", "/wxacode")
    return image, {key: values[0] for key, values in parse_qs(url.query, strict_parsing=True).items()}


def errcode(api, token, **body):
    return api.post(WXACODE, body, token=token).json()["errcode"]


@pytest.mark.parametrize("scene", ["c:CDF21", "e=12&r=ab3", "a" * 32, "!#$&'()*+,/:;=?@-._~09AZaz"])
def test_scene_round_trips_through_wechatpy(api, client, scene):
    response = client.wxa.get_wxa_code_unlimited(scene, page="pages/scene/index")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    image, query = decode(response.content)
    assert image.format == "PNG"
    assert image.size == (430, 430)
    assert query == {
        "appid": api.appid,
        "page": "pages/scene/index",
        "scene": scene,
        "env_version": "release",
    }
    call = api.hook(f"calls?path={WXACODE}", method="GET").json()["calls"][-1]
    assert call["content_type"] is None  # wechatpy posts bare JSON bytes
    assert call["json"]["scene"] == scene
    recorded = api.hook("wxacodes", method="GET").json()["wxacodes"]
    assert [(c["scene"], c["page"], c["env_version"], c["width"]) for c in recorded] == [
        (scene, "pages/scene/index", "release", 430)
    ]


def test_default_page_width_and_colours(api):
    token = api.token()
    response = api.post(
        WXACODE, {"scene": "x1", "width": 1280, "line_color": {"r": "10", "g": 80, "b": "20"}}, token=token
    )
    image, query = decode(response.content)
    assert query["page"] == "pages/index/index"
    assert image.size == (1280, 1280)
    assert (10, 80, 20) in {colour for _, colour in image.getcolors(maxcolors=16)}


def test_hyaline_code_has_a_transparent_background(api):
    response = api.post(WXACODE, {"scene": "x1", "width": 280, "is_hyaline": True, "auto_color": True},
                        token=api.token())
    image, _ = decode(response.content)
    assert image.mode == "RGBA"
    assert image.size == (280, 280)
    assert image.getpixel((0, 0))[3] == 0


def test_body_without_content_type_is_read_as_json(api):
    raw = json.dumps({"scene": "raw=1"}).encode()
    response = api.http.post(api.url + WXACODE, params={"access_token": api.token()}, data=raw)
    _, query = decode(response.content)
    assert query["scene"] == "raw=1"
    call = api.hook(f"calls?path={WXACODE}", method="GET").json()["calls"][0]
    assert call["content_type"] is None
    assert call["json"] == {"scene": "raw=1"}


def test_scene_length_and_characters(api, client):
    token = api.token()
    with pytest.raises(WeChatClientException) as caught:
        client.wxa.get_wxa_code_unlimited("a" * 33)
    assert caught.value.errcode == 40169
    assert "invalid length for scene" in caught.value.errmsg
    assert errcode(api, token, scene="") == 40169
    assert errcode(api, token, page="pages/index/index") == 40169
    assert errcode(api, token, scene=12) == 40169
    assert errcode(api, token, scene="100%") == 40129
    assert errcode(api, token, scene="会场") == 40129
    assert errcode(api, token, scene="a b") == 40129


def test_body_that_is_not_json_is_40169(api):
    response = api.post(WXACODE, data=b"scene=abc", token=api.token())
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["errcode"] == 40169


@pytest.mark.parametrize(
    "page", ["/pages/index/index", "pages/scene/index?c=1", "pages/dev/index", "pages/nowhere/index"]
)
def test_bad_or_unpublished_page_is_41030(api, page):
    body = api.post(WXACODE, {"scene": "x1", "page": page}, token=api.token()).json()
    assert body["errcode"] == 41030
    assert body["errmsg"].startswith("invalid page")


def test_unpublished_page_needs_check_path_false_and_a_trial_or_develop_build(api):
    token = api.token()
    for env_version in ("trial", "develop"):
        response = api.post(
            WXACODE,
            {"scene": "x1", "page": "pages/dev/index", "check_path": False, "env_version": env_version},
            token=token,
        )
        _, query = decode(response.content)
        assert (query["page"], query["env_version"]) == ("pages/dev/index", env_version)
    assert errcode(api, token, scene="x1", page="pages/dev/index", check_path=False) == 41030
    assert errcode(api, token, scene="x1", page="pages/dev/index", env_version="trial") == 41030
    assert errcode(api, token, scene="x1", page="pages/nowhere", check_path=False, env_version="trial") == 41030


@pytest.mark.parametrize(
    "extra",
    [
        {"env_version": "beta"},
        {"width": 279},
        {"width": 1281},
        {"width": "430"},
        {"check_path": "false"},
        {"line_color": {"r": 0, "g": 0}},
        {"line_color": {"r": 0, "g": 0, "b": 256}},
        {"check_page": False},
    ],
)
def test_format_errors_are_47001(api, extra):
    assert errcode(api, api.token(), scene="x1", **extra) == 47001


def test_per_minute_limit_is_45009(tuned_api, make_client):
    client = make_client(tuned_api.url)
    for _ in range(2):
        assert client.wxa.get_wxa_code_unlimited("x1").status_code == 200
    with pytest.raises(APILimitedException) as caught:
        client.wxa.get_wxa_code_unlimited("x1")
    assert caught.value.errcode == 45009
    tuned_api.advance(60)
    assert client.wxa.get_wxa_code_unlimited("x1").status_code == 200
