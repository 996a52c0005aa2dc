"""subscribeMessage.send: acceptances, template/keyword checks, page and state."""
from __future__ import annotations

import pytest
from wechatpy.exceptions import WeChatClientException

SEND = "/cgi-bin/message/subscribe/send"

VALID_ALL_TYPES = {
    "thing1": "成都碳中和大会 2026",
    "number2": "12.5",
    "letter3": "CDCER",
    "symbol4": "✓+",
    "character_string5": "CERT-2026-000123",
    "time6": "2026年10月1日 15:01",
    "date7": "2026-10-01",
    "amount8": "¥12.50",
    "phone_number9": "+86-13800138000",
    "car_number10": "川A12345",
    "name11": "张三",
    "phrase12": "已完成",
}

# (keyword, passing values, failing values) — one row per keyword type.
KEYWORD_CASES = [
    ("thing1", ["x" * 20, "会场 A-1"], ["x" * 21]),
    ("number2", ["0", "3.14", "9" * 32], ["12kg", "-1", "9" * 33]),
    ("letter3", ["abc", "A" * 32], ["ab1", "a" * 33]),
    ("symbol4", ["!", "+-*/%"], ["+-*/%!", "a!"]),
    ("character_string5", ["abc-123_#", "x" * 32], ["编号123", "x" * 33, "a b"]),
    ("time6", ["15:01", "2019年10月1日 15:01", "15:01~16:30", "2026/10/01 08:00:00"], ["25:00", "下午三点"]),
    ("date7", ["2019年10月1日", "2026-10-01 15:01", "2026-10-01~2026-10-03"], ["2026-13-01", "tomorrow"]),
    ("amount8", ["12", "¥12.50", "$9.99", "100元", "1234567890"], ["12345678901", "¥", "12.5.0", "十元"]),
    ("phone_number9", ["13800138000", "+86-138-0013-8000"], ["1" * 18, "phone"]),
    ("car_number10", ["粤A8Z888", "川AD12345"], ["川AD123456", "川A-1234"]),
    ("name11", ["张三", "欧阳娜娜", "Zhang San", "a" * 20], ["张" * 11, "a" * 21, "张三abc"]),
    ("phrase12", ["已完成", "五个汉字啊"], ["六个汉字啊啊", "done"]),
]


def data_of(values):
    return {key: {"value": value} for key, value in values.items()}


def accept(api, openid, template_id, count=1):
    response = api.hook("subscriptions", {"openid": openid, "template_id": template_id, "count": count})
    assert response.status_code == 200, response.text
    return response.json()["remaining"]


@pytest.fixture
def typed(tuned_api):
    """A logged-in user of the tuned sandbox and a sender for TPL_ALL_TYPES."""
    tuned_api.login("o-typed")
    token = tuned_api.token()

    def send(**changes):
        accept(tuned_api, "o-typed", "TPL_ALL_TYPES")
        body = {"touser": "o-typed", "template_id": "TPL_ALL_TYPES", "data": data_of({**VALID_ALL_TYPES, **changes})}
        return tuned_api.post(SEND, body, token=token).json()

    return send


@pytest.mark.parametrize(("keyword", "good", "bad"), KEYWORD_CASES, ids=[case[0] for case in KEYWORD_CASES])
def test_keyword_values_by_type(typed, keyword, good, bad):
    for value in good:
        assert typed(**{keyword: value})["errcode"] == 0, value
    for value in bad:
        body = typed(**{keyword: value})
        assert body["errcode"] == 47003, value
        assert body["errmsg"].startswith(f"argument invalid! data.{keyword}.value "), body["errmsg"]


def test_send_with_wechatpy_uses_up_the_acceptance(api, client):
    api.login("o-alice")
    data = data_of({"thing1": "碳中和证书", "number2": "12", "date3": "2026年5月1日", "amount4": "¥36.00",
                    "character_string5": "DD-000001"})
    assert accept(api, "o-alice", "TPL_CERT_ISSUED", count=2) == 2
    for _ in range(2):
        body = client.wxa.send_subscribe_message(
            "o-alice", "TPL_CERT_ISSUED", data, page="pages/certificate/index?no=1"
        )
        assert body["errcode"] == 0
        assert isinstance(body["msgid"], int)
    with pytest.raises(WeChatClientException) as caught:
        client.wxa.send_subscribe_message("o-alice", "TPL_CERT_ISSUED", data)
    assert caught.value.errcode == 43101
    assert caught.value.errmsg.startswith("user refuse to accept the msg")
    messages = api.hook("messages", method="GET").json()["messages"]
    assert [(m["touser"], m["template_id"], m["page"], m["miniprogram_state"], m["lang"]) for m in messages] == [
        ("o-alice", "TPL_CERT_ISSUED", "pages/certificate/index?no=1", "formal", "zh_CN")
    ] * 2
    assert messages[0]["data"] == data


def test_no_acceptance_is_43101_and_nothing_is_recorded(api):
    api.login("o-bob")
    body = {"touser": "o-bob", "template_id": "TPL_ORDER_PAID", "data": data_of(
        {"thing1": "碳信用 12 kg", "amount2": "36.00元", "time3": "2026-05-01 10:00", "phrase4": "支付成功",
         "name5": "李四"})}
    assert api.post(SEND, body, token=api.token()).json()["errcode"] == 43101
    assert api.hook("messages", method="GET").json()["messages"] == []


def test_acceptance_is_per_template(api):
    api.login("o-carol")
    accept(api, "o-carol", "TPL_ORDER_PAID")
    body = {"touser": "o-carol", "template_id": "TPL_CERT_ISSUED", "data": data_of(
        {"thing1": "证书", "number2": "1", "date3": "2026-05-01", "amount4": "1", "character_string5": "A1"})}
    assert api.post(SEND, body, token=api.token()).json()["errcode"] == 43101


@pytest.mark.parametrize(
    ("changes", "errcode"),
    [
        ({"touser": "o-never-logged-in"}, 40003),
        ({"touser": "o-code-only"}, 40003),
        ({"template_id": "TPL_NOPE"}, 40037),
        ({"data": {}}, 47003),
        ({"data": None}, 47003),
        ({"page": "pages/nowhere/index"}, 41030),
        ({"page": "/pages/index/index"}, 41030),
        ({"page": "pages/dev/index"}, 41030),  # formal (the default): only the released version's pages
        ({"page": "pages/dev/index", "miniprogram_state": "formal"}, 41030),
        ({"miniprogram_state": "release"}, 47003),
        ({"lang": "fr_FR"}, 47003),
    ],
)
def test_request_errors(api, changes, errcode):
    api.login("o-dan")
    api.login_code("o-code-only")
    accept(api, "o-dan", "TPL_CERT_ISSUED")
    body = {
        "touser": "o-dan",
        "template_id": "TPL_CERT_ISSUED",
        "data": data_of({"thing1": "证书", "number2": "1", "date3": "2026-05-01", "amount4": "1",
                         "character_string5": "A1"}),
        **changes,
    }
    assert api.post(SEND, body, token=api.token()).json()["errcode"] == errcode


def test_keywords_must_match_the_template(api):
    api.login("o-erin")
    accept(api, "o-erin", "TPL_CERT_ISSUED")
    token = api.token()
    values = {"thing1": "证书", "number2": "1", "date3": "2026-05-01", "amount4": "1", "character_string5": "A1"}

    def send(data):
        return api.post(SEND, {"touser": "o-erin", "template_id": "TPL_CERT_ISSUED", "data": data}, token=token).json()

    missing = send(data_of({key: value for key, value in values.items() if key != "date3"}))
    assert (missing["errcode"], missing["errmsg"].split(" rid:")[0]) == (
        47003, "argument invalid! data.date3.value is empty")
    extra = send(data_of({**values, "thing9": "多余"}))
    assert (extra["errcode"], extra["errmsg"].split(" rid:")[0]) == (
        47003, "argument invalid! data.thing9 is not a keyword of the template")
    assert send(data_of({**values, "thing1": ""}))["errcode"] == 47003
    assert send({**data_of(values), "number2": {"value": 1}})["errcode"] == 47003
    assert send(data_of(values))["errcode"] == 0


def test_trial_state_and_unpublished_page(api):
    api.login("o-frank")
    accept(api, "o-frank", "TPL_CERT_ISSUED")
    body = {
        "touser": "o-frank",
        "template_id": "TPL_CERT_ISSUED",
        "page": "pages/dev/index",
        "miniprogram_state": "trial",
        "lang": "en_US",
        "data": data_of({"thing1": "证书", "number2": "1", "date3": "2026-05-01", "amount4": "1",
                         "character_string5": "A1"}),
    }
    assert api.post(SEND, body, token=api.token()).json()["errcode"] == 0


def test_subscription_hook_checks_its_input(api):
    assert api.hook("subscriptions", {"openid": "o-ghost", "template_id": "TPL_CERT_ISSUED"}).status_code == 404
    api.login_code("o-grace")
    assert api.hook("subscriptions", {"openid": "o-grace", "template_id": "TPL_NOPE"}).status_code == 400
    zero = {"openid": "o-grace", "template_id": "TPL_CERT_ISSUED", "count": 0}
    assert api.hook("subscriptions", zero).status_code == 400
