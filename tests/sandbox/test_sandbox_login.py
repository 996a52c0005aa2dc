"""jscode2session, the phone-number code and encryptedData."""
from __future__ import annotations

import base64
import json
import threading

import pytest
from wechatpy.crypto import WeChatWxaCrypto
from wechatpy.exceptions import InvalidAppIdException, WeChatClientException

PHONE = "/wxa/business/getuserphonenumber"


def test_login_with_wechatpy_adds_and_ignores_access_token(api, client):
    code = api.login_code("o-alice", unionid="u-alice")
    session = client.wxa.code_to_session(code)
    assert set(session) == {"openid", "session_key", "unionid"}
    assert (session["openid"], session["unionid"]) == ("o-alice", "u-alice")
    assert len(base64.b64decode(session["session_key"])) == 16
    paths = [call["path"] for call in api.hook("calls", method="GET").json()["calls"]]
    assert paths == ["/cgi-bin/token", "/sns/jscode2session"]
    login_call = api.hook("calls?path=/sns/jscode2session", method="GET").json()["calls"][0]
    assert login_call["query"]["access_token"]
    assert login_call["query"]["js_code"] == code


def test_each_login_gets_a_new_session_key_and_no_unionid_unless_bound(api):
    first = api.login("o-bob")
    second = api.login("o-bob")
    assert set(first) == {"openid", "session_key"}
    assert first["session_key"] != second["session_key"]


def test_reused_code_is_40163(api):
    code = api.login_code("o-carol")
    assert "session_key" in api.code_to_session(code)
    body = api.code_to_session(code)
    assert body["errcode"] == 40163
    assert body["errmsg"].startswith("code been used rid: ")


def test_code_expires_after_five_minutes(api):
    fresh, stale = api.login_code("o-dan"), api.login_code("o-dan")
    api.advance(299)
    assert "session_key" in api.code_to_session(fresh)
    api.advance(2)
    body = api.code_to_session(stale)
    assert body["errcode"] == 40029
    assert body["errmsg"].startswith("invalid code rid: ")


def test_unknown_code_wrong_secret_and_other_app(api, tuned_api):
    assert api.code_to_session("not-a-code")["errcode"] == 40029
    assert api.code_to_session(api.login_code("o-erin"), secret="wrong")["errcode"] == 40125
    assert api.code_to_session(api.login_code("o-erin"), appid="wx-unknown")["errcode"] == 40013
    other_app_code = tuned_api.login_code("o-erin", appid=tuned_api.other_appid)
    assert tuned_api.code_to_session(other_app_code)["errcode"] == 40029
    session = tuned_api.code_to_session(other_app_code, tuned_api.other_appid, tuned_api.other_secret)
    assert session["openid"] == "o-erin"


def test_blocked_user_is_40226_and_the_code_is_consumed(api, client):
    code = api.login_code("o-frank")
    assert api.hook("users/o-frank/block").json() == {"openid": "o-frank", "blocked": True}
    with pytest.raises(WeChatClientException) as caught:
        client.wxa.code_to_session(code)
    assert caught.value.errcode == 40226
    api.hook("users/o-frank/unblock")
    assert api.code_to_session(code)["errcode"] == 40163
    assert api.login("o-frank")["openid"] == "o-frank"


def test_more_than_the_per_minute_logins_is_45011(tuned_api):
    for _ in range(3):
        tuned_api.login("o-grace")
    body = tuned_api.code_to_session(tuned_api.login_code("o-grace"))
    assert body["errcode"] == 45011
    assert tuned_api.login("o-heidi")["openid"] == "o-heidi"  # per openid
    tuned_api.advance(60)
    tuned_api.login("o-grace")


def test_concurrent_use_of_one_code_logs_in_once(api):
    code = api.login_code("o-ivan")
    results = []

    def exchange():
        results.append(api.code_to_session(code))

    threads = [threading.Thread(target=exchange) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum("session_key" in body for body in results) == 1
    assert sorted(body.get("errcode", 0) for body in results) == [0] + [40163] * 15


def test_phone_number_code(api, client):
    code = api.hook("phone-code", {"phone_number": "13800138000", "country_code": "86"}).json()["code"]
    body = client.post(api.url + PHONE, data={"code": code})
    assert body["errcode"] == 0
    info = body["phone_info"]
    assert info["phoneNumber"] == info["purePhoneNumber"] == "13800138000"
    assert info["countryCode"] == "86"
    assert info["watermark"]["appid"] == api.appid
    assert abs(info["watermark"]["timestamp"] - api.advance(0)) < 5
    with pytest.raises(WeChatClientException) as caught:
        client.post(api.url + PHONE, data={"code": code})
    assert caught.value.errcode == 40029


def test_foreign_phone_number_carries_its_country_code(api):
    code = api.hook("phone-code", {"phone_number": "91234567", "country_code": "852"}).json()["code"]
    info = api.post(PHONE, {"code": code}, token=api.token()).json()["phone_info"]
    assert (info["phoneNumber"], info["purePhoneNumber"], info["countryCode"]) == ("+85291234567", "91234567", "852")


def test_phone_code_errors(api):
    token = api.token()
    assert api.post(PHONE, {}, token=token).json()["errcode"] == 47001
    assert api.post(PHONE, {"code": "nope"}, token=token).json()["errcode"] == 40029
    code = api.hook("phone-code", {}).json()["code"]
    api.advance(300)
    token = api.token()
    assert api.post(PHONE, {"code": code}, token=token).json()["errcode"] == 40029


def test_encrypted_data_decrypts_with_wechatpy(api):
    session = api.login("o-judy")
    data = {"openId": "o-judy", "nickName": "小绿", "gender": 2}
    sealed = api.hook("encrypted-data", {"openid": "o-judy", "data": data}).json()
    assert set(sealed) == {"encryptedData", "iv"}
    plain = WeChatWxaCrypto(session["session_key"], sealed["iv"], api.appid).decrypt_message(sealed["encryptedData"])
    assert {key: plain[key] for key in data} == data
    assert plain["watermark"]["appid"] == api.appid
    assert abs(plain["watermark"]["timestamp"] - api.advance(0)) < 5


def test_encrypted_data_follows_the_current_session_key(api):
    old = api.login("o-ken")["session_key"]
    new = api.login("o-ken")["session_key"]
    sealed = api.hook("encrypted-data", {"openid": "o-ken", "data": {"a": 1}}).json()
    assert WeChatWxaCrypto(new, sealed["iv"], api.appid).decrypt_message(sealed["encryptedData"])["a"] == 1
    with pytest.raises((ValueError, json.JSONDecodeError, UnicodeDecodeError)):
        WeChatWxaCrypto(old, sealed["iv"], api.appid).decrypt_message(sealed["encryptedData"])


def test_encrypted_data_watermark_of_another_app_is_refused_by_wechatpy(api):
    session = api.login("o-lin")
    sealed = api.hook("encrypted-data", {"openid": "o-lin", "appid": api.other_appid, "data": {}}).json()
    with pytest.raises(InvalidAppIdException):
        WeChatWxaCrypto(session["session_key"], sealed["iv"], api.appid).decrypt_message(sealed["encryptedData"])


def test_encrypted_data_needs_a_logged_in_user(api):
    api.login_code("o-mia")
    response = api.hook("encrypted-data", {"openid": "o-mia", "data": {}})
    assert response.status_code == 409
    assert api.hook("encrypted-data", {"openid": "o-nobody", "data": {}}).status_code == 404
