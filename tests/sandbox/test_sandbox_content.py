"""msgSecCheck v2 verdicts, the 2-hour visit rule, and v1."""
from __future__ import annotations

import pytest
from wechatpy.exceptions import WeChatClientException

CHECK = "/wxa/msg_sec_check"


@pytest.fixture
def check(api):
    """Post a v2 check (with a fresh token) for a freshly logged-in user; returns the body."""
    api.login("o-alice")

    def post(content, **fields):
        body = {"version": 2, "scene": 1, "openid": "o-alice", "content": content, **fields}
        return api.post(CHECK, body, token=api.token()).json()

    return post


def test_clean_text_passes(check):
    body = check("低碳出行小能手")
    assert body["errcode"] == 0
    assert body["trace_id"]
    assert body["result"] == {"suggest": "pass", "label": 100}
    assert body["detail"] == [{"strategy": "content_model", "errcode": 0, "suggest": "pass", "label": 100, "prob": 90}]


def test_blocklisted_word_is_risky_with_its_label_and_keyword(check):
    body = check("来赌博吧")
    assert body["errcode"] == 0
    assert body["result"] == {"suggest": "risky", "label": 20006}
    assert body["detail"][0]["keyword"] == "赌博"
    assert body["detail"][0]["suggest"] == "risky"


def test_nickname_is_checked_too(check):
    body = check("你好", nickname="色情小王")
    assert body["result"] == {"suggest": "risky", "label": 20002}


def test_review_word_suggests_review(check):
    body = check("可代开发票")
    assert body["result"] == {"suggest": "review", "label": 21000}


def test_blocklist_hook_replaces_the_list(api, check):
    assert api.hook("content/blocklist", {"words": {"广告": 10001}}).json() == {"words": {"广告": 10001}}
    assert check("来赌博吧")["result"]["suggest"] == "pass"
    assert check("加我看广告")["result"] == {"suggest": "risky", "label": 10001}
    assert api.hook("content/blocklist", {"words": ["广告"]}).status_code == 400


def test_user_must_have_visited_in_the_last_two_hours(api, check):
    assert check("hi")["errcode"] == 0
    api.advance(7201)
    body = check("hi")
    assert body["errcode"] == 40003
    assert "last 2 hours" in body["errmsg"]
    api.login("o-alice")
    assert check("hi")["errcode"] == 0


@pytest.mark.parametrize(
    ("fields", "errcode"),
    [
        ({"openid": "o-stranger"}, 40003),
        ({"openid": None}, 40003),
        ({"scene": 5}, 40129),
        ({"scene": "1"}, 40129),
        ({"content": ""}, 44002),
        ({"content": None}, 44002),
        ({"content": "长" * 2501}, 47001),
    ],
)
def test_v2_errors(check, fields, errcode):
    assert check(fields.pop("content", "hello"), **fields)["errcode"] == errcode


def test_longest_content_is_accepted(check):
    assert check("长" * 2500)["result"]["suggest"] == "pass"


def test_v1_through_wechatpy(client):
    assert client.wxa.check_text_security("你好") == {"errcode": 0, "errmsg": "ok"}
    with pytest.raises(WeChatClientException) as caught:
        client.wxa.check_text_security("一起赌博")
    assert caught.value.errcode == 87014
    assert caught.value.errmsg.startswith("risky content rid: ")
