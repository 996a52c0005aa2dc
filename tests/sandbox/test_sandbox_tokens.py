"""access_token: classic supersede/overlap/expiry/quota, stable token, token checks."""
from __future__ import annotations

import re

import pytest
from wechatpy.exceptions import WeChatClientException

RID = re.compile(r" rid: [0-9a-f]+(-[0-9a-f]+)*$")
MSG_SEC_CHECK = "/wxa/msg_sec_check"


def fetch(api, **overrides):
    params = {"grant_type": "client_credential", "appid": api.appid, "secret": api.secret, **overrides}
    return api.get("/cgi-bin/token", **params).json()


def stable(api, force_refresh=False, **overrides):
    body = {
        "grant_type": "client_credential",
        "appid": api.appid,
        "secret": api.secret,
        "force_refresh": force_refresh,
        **overrides,
    }
    return api.post("/cgi-bin/stable_token", body).json()


def token_check(api, token):
    """errcode of a protected call made with ``token`` (v1 msg_sec_check on clean text)."""
    return api.post(MSG_SEC_CHECK, {"content": "hello"}, token=token).json()["errcode"]


def test_classic_token_body_has_no_errcode(api):
    body = fetch(api)
    assert set(body) == {"access_token", "expires_in"}
    assert body["expires_in"] == 7200
    assert len(body["access_token"]) >= 64
    assert token_check(api, body["access_token"]) == 0


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"grant_type": "authorization_code"}, 40002),
        ({"appid": "wx0000000000000000"}, 40013),
        ({"secret": "not-the-secret"}, 40125),
    ],
)
def test_classic_token_errors(api, overrides, errcode):
    body = fetch(api, **overrides)
    assert body["errcode"] == errcode
    assert RID.search(body["errmsg"])
    assert api.hook("stats", method="GET").json()["token_issued"] == 0


def test_new_classic_token_supersedes_the_previous_after_the_overlap(api):
    first = fetch(api)["access_token"]
    second = fetch(api)["access_token"]
    assert first != second
    api.advance(299)
    assert token_check(api, first) == 0
    assert token_check(api, second) == 0
    api.advance(2)
    body = api.post(MSG_SEC_CHECK, {"content": "hello"}, token=first).json()
    assert body["errcode"] == 40001
    assert body["errmsg"].startswith("invalid credential, access_token is invalid or not latest rid: ")
    assert token_check(api, second) == 0
    assert api.hook("stats", method="GET").json()["token_issued"] == 2


def test_classic_token_expires_after_its_ttl(api):
    token = fetch(api)["access_token"]
    api.advance(7199)
    assert token_check(api, token) == 0
    api.advance(2)
    assert token_check(api, token) == 42001


def test_missing_and_unknown_tokens(api):
    body = api.post(MSG_SEC_CHECK, {"content": "hello"}).json()
    assert body["errcode"] == 41001
    assert body["errmsg"].startswith("access_token missing")
    assert token_check(api, "x" * 80) == 40001


def test_daily_quota_then_next_day(tuned_api):
    tuned_api.advance_to_next_day()
    for _ in range(3):
        assert "access_token" in fetch(tuned_api)
    body = fetch(tuned_api)
    assert body["errcode"] == 45009
    assert tuned_api.hook("stats", method="GET").json()["token_issued"] == 3
    tuned_api.advance_to_next_day()
    assert "access_token" in fetch(tuned_api)


def test_quota_error_from_wechatpy_is_a_client_exception(tuned_api, make_client):
    tuned_api.advance_to_next_day()
    for _ in range(3):
        fetch(tuned_api)
    client = make_client(tuned_api.url)
    with pytest.raises(WeChatClientException) as caught:
        client.fetch_access_token()
    assert caught.value.errcode == 45009


def test_stable_token_is_the_same_while_valid(api):
    first = stable(api)
    assert set(first) == {"access_token", "expires_in"}
    assert first["expires_in"] == 7200
    api.advance(100)
    again = stable(api)
    assert again["access_token"] == first["access_token"]
    assert again["expires_in"] == 7100
    assert api.hook("stats", method="GET").json()["stable_token_issued"] == 1


def test_stable_token_renews_in_its_last_overlap_and_the_old_one_lives_on(api):
    old = stable(api)["access_token"]
    api.advance(7200 - 300)
    new = stable(api)
    assert new["access_token"] != old
    assert new["expires_in"] == 7200
    assert token_check(api, old) == 0
    api.advance(299)
    assert token_check(api, old) == 0
    api.advance(2)
    assert token_check(api, old) == 42001
    assert stable(api)["access_token"] == new["access_token"]


def test_stable_and_classic_pools_are_separate(api):
    stable_token = stable(api)["access_token"]
    fetch(api)
    fetch(api)
    api.advance(301)
    assert token_check(api, stable_token) == 0
    classic = fetch(api)["access_token"]
    assert stable(api, force_refresh=True)["access_token"] != stable_token
    assert token_check(api, classic) == 0
    stats = api.hook("stats", method="GET").json()
    assert (stats["token_issued"], stats["stable_token_issued"]) == (3, 2)


def test_force_refresh_revokes_the_previous_and_is_rate_limited(api):
    old = stable(api)["access_token"]
    forced = stable(api, force_refresh=True)
    assert forced["access_token"] != old
    assert token_check(api, old) == 40001
    assert stable(api, force_refresh=True)["errcode"] == 45009  # < 30 s apart
    api.advance(30)
    assert "access_token" in stable(api, force_refresh=True)


def test_force_refresh_daily_limit(tuned_api):
    tuned_api.advance_to_next_day()
    for _ in range(3):
        assert "access_token" in stable(tuned_api, force_refresh=True)
        tuned_api.advance(31)
    assert stable(tuned_api, force_refresh=True)["errcode"] == 45009
    assert "access_token" in stable(tuned_api)  # normal mode is not limited
    tuned_api.advance_to_next_day()
    assert "access_token" in stable(tuned_api, force_refresh=True)


def test_stable_token_needs_a_json_body_and_good_credentials(api):
    assert api.post("/cgi-bin/stable_token", data=b"grant_type=client_credential").json()["errcode"] == 47001
    assert stable(api, secret="nope")["errcode"] == 40125
    assert stable(api, force_refresh="yes")["errcode"] == 47001


def test_invalidate_hook_and_wechatpy_auto_retry(api, client):
    assert client.wxa.check_text_security("hello")["errcode"] == 0
    assert api.hook("tokens/invalidate").json() == {"invalidated": 1}
    # wechatpy sees 40001, fetches a new token and retries; the sandbox accepts the new one.
    assert client.wxa.check_text_security("hello")["errcode"] == 0
    paths = [call["path"] for call in api.hook("calls", method="GET").json()["calls"]]
    assert paths == ["/cgi-bin/token", MSG_SEC_CHECK, MSG_SEC_CHECK, "/cgi-bin/token", MSG_SEC_CHECK]
