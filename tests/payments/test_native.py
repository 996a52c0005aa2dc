"""WeChat Pay Native through the provider and the sandbox, on the wire: the code_url, the same
parameters answering the same code, different ones refused, the scan paying it (payer = whoever
scanned), its signed notification, and an answer failing its check refused like every answer."""
from __future__ import annotations

from datetime import timedelta

import pytest
import requests
from cryptography.hazmat.primitives import serialization

from carbon.core.clock import utcnow
from tests.conftest import dispose_app, make_config
from tests.payments.test_paid_path_rules import SANDBOX_KEYS


def _native(provider, number: str, total: int = 1234, **extra):
    return provider.native(out_trade_no=number, description="碳中和 测试", total_fen=total,
                           time_expire=utcnow() + timedelta(minutes=15), attach="ord_native", **extra)


def test_a_native_order_is_a_code_url_that_a_scan_pays(app, sandbox):
    from carbon.core import extensions as ext
    from payments.provider import ProviderRefused

    with app.app_context():
        provider = ext.payments()
        code_url = _native(provider, "DDNATIVE0001")
        assert code_url.startswith("weixin://wxpay/bizpayurl?pr=")
        assert _native(provider, "DDNATIVE0001") == code_url  # asked again after a lost answer: the same
        with pytest.raises(ProviderRefused) as refused:
            _native(provider, "DDNATIVE0001", total=999)
        assert refused.value.code == "OUT_TRADE_NO_USED"
        unpaid = provider.query("DDNATIVE0001")
        assert (unpaid.trade_state, unpaid.payer_openid, unpaid.raw["trade_type"]) == ("NOTPAY", None, "NATIVE")

    page = requests.get(f"{sandbox.url}/__sandbox__/pay/scan", params={"code_url": code_url}, timeout=10)
    assert page.status_code == 200 and "12.34" in page.text and 'id="pay"' in page.text
    paid = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": code_url, "openid": "o_scanner",
                                                                      "deliver": False}, timeout=10)
    assert paid.status_code == 200 and paid.json()["trade_state"] == "SUCCESS"
    again = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": code_url}, timeout=10)
    assert (again.status_code, again.json()["code"]) == (400, "ORDER_PAID")
    unknown = requests.post(f"{sandbox.url}/__sandbox__/pay/scan", json={"code_url": "weixin://x"}, timeout=10)
    assert (unknown.status_code, unknown.json()["code"]) == (400, "CODE_URL_NOT_FOUND")
    with app.app_context():
        transaction = ext.payments().query("DDNATIVE0001")
        assert (transaction.trade_state, transaction.payer_openid, transaction.total_fen) == ("SUCCESS", "o_scanner", 1234)
        assert transaction.transaction_id == paid.json()["transaction_id"]
    shown = requests.get(f"{sandbox.url}/__sandbox__/pay/orders/DDNATIVE0001", timeout=10).json()
    assert (shown["transaction"]["trade_type"], shown["payer"]["openid"]) == ("NATIVE", "o_scanner")


def test_a_native_answer_that_fails_its_check_is_refused(database_url, sandbox, tmp_path):
    from app import create_app
    from carbon.core import extensions as ext
    from payments.provider import ProviderError

    forger = serialization.load_pem_private_key((SANDBOX_KEYS / "forger_private_key.pem").read_bytes(), None)
    wrong_public = tmp_path / "wrong_public.pem"
    wrong_public.write_bytes(forger.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    sandbox.reset()
    app = create_app(make_config(database_url, sandbox.url, WECHATPAY_PUBLIC_KEY_PATH=str(wrong_public)))
    try:
        with app.app_context(), pytest.raises(ProviderError) as refused:
            _native(ext.payments(), "DDNATIVE0002")
        assert (refused.value.code, str(refused.value)) == ("RESPONSE_UNVERIFIED", "response.bad_signature")
    finally:
        dispose_app(app)
