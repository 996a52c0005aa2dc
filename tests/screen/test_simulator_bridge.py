"""The simulator's stand-ins for the WeChat app (wx.login, wx.requestPayment): real calls to the
sandbox, refusals passed on as 4xx, and no simulator at all when the service talks to real WeChat."""
from __future__ import annotations

import pytest

from tests.payments.conftest import seed_project


def test_wx_login_gives_a_code_the_public_api_logs_in_with(client):
    answer = client.post("/simulator/wx/login", json={"openid": "o_sim_bridge"})
    assert answer.status_code == 200
    login = client.post("/api/v1/auth/login", json={"code": answer.get_json()["code"]})
    assert login.status_code == 200 and login.get_json()["created"] is True
    again = client.post("/api/v1/auth/login", json={"code": answer.get_json()["code"]})
    assert again.status_code == 400  # a wx.login code is single-use at WeChat: the sandbox says so too


def test_wx_request_payment_pays_the_order_and_wechat_pay_notifies(app, client, login):
    seed_project(app, units=1000)
    token, _ = login("o_sim_pay")
    guest = {"Authorization": f"Bearer {token}"}
    created = client.post("/api/v1/orders", json={"kg": "3"}, headers={**guest, "Idempotency-Key": "sim-1"}).get_json()
    tampered = {**created["request_payment"], "paySign": created["request_payment"]["paySign"][::-1]}
    refused = client.post("/simulator/wx/request-payment", json=tampered)
    assert refused.status_code == 400 and refused.get_json()["error"]["code"] == "simulator.refused"
    assert refused.get_json()["error"]["details"]["code"] == ["PAY_SIGN_INVALID"]
    paid = client.post("/simulator/wx/request-payment", json=created["request_payment"])
    assert paid.status_code == 200 and paid.get_json()["trade_state"] == "SUCCESS"
    twice = client.post("/simulator/wx/request-payment", json=created["request_payment"])
    assert twice.status_code == 400 and twice.get_json()["error"]["details"]["code"] == ["ORDER_PAID"]


@pytest.mark.parametrize("path", ["/simulator/wx/login", "/simulator/wx/request-payment"])
@pytest.mark.parametrize("body, content_type, status", [
    (b"", None, 422), (b"[]", "application/json", 422), (b"\x00\xff", "text/plain", 422),
    (b"[" * 3000 + b"]" * 3000, "application/json", 413), (b"[" * 900 + b"]" * 900, "application/json", 422),
    (b'{"openid": "\\u0000", "package": 1}', "application/json", 422),
    (b'{"openid": "' + b"a" * 65 + b'"}', "application/json", 422)])
def test_bad_bodies_are_4xx_in_the_envelope(client, path, body, content_type, status):
    headers = {"Content-Type": content_type} if content_type else {}
    answer = client.post(path, data=body, headers=headers)
    assert answer.status_code == status
    assert set(answer.get_json()["error"]) == {"code", "message", "details", "request_id"}


def test_no_simulator_when_the_service_talks_to_real_wechat(database_url):
    from app import create_app

    application = create_app({"ENV": "testing", "DATABASE_URL": database_url, "LOG_REQUESTS": False,
                              "WECHAT_API_BASE": "https://api.weixin.qq.com"})
    client = application.test_client()
    for method, path in (("GET", "/simulator"), ("POST", "/simulator/wx/login"),
                         ("POST", "/simulator/wx/request-payment"), ("GET", "/simulator/static/simulator.js")):
        assert client.open(path, method=method, json={"openid": "o_x"}).status_code == 404


def test_the_page_offers_the_codes_of_live_scenes_only(app, client, admin):
    from tests.conftest import make_scene

    live = make_scene(client, admin, code="simlive1")
    make_scene(client, admin, code="simdraft")
    client.post(f"/api/v1/admin/scenes/{live['id']}/channels", json={"slug": "door", "label": "入口"}, headers=admin)
    client.patch(f"/api/v1/admin/scenes/{live['id']}", json={"status": "live"}, headers=admin)
    page = client.get("/simulator")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-scene="s=simlive1"' in html and 'data-scene="s=simlive1&amp;c=door"' in html
    assert "simdraft" not in html
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
