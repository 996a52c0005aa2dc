"""Rotating WeChat Pay's keys without downtime: during the switch the service accepts notifications
encrypted with the old or the new APIv3 key and signed with the old or the new WeChat Pay public
key; once the previous key is removed, what the old one signs or encrypts is refused."""
from __future__ import annotations

from contextlib import contextmanager

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from carbon.checkout.models import Order
from carbon.core.db import db
from carbon.core.settings import SANDBOX_APIV3_KEY
from tests.conftest import dispose_app
from tests.payments.conftest import guest_token, seed_project, serve
from tests.payments.test_checkout_e2e import hook, place_order
from wechat.sandbox.config import DEFAULT_CONFIG
from wechat.sandbox.testing import LiveSandbox

NEW_APIV3_KEY = "diandian-rotated-apiv3-key-00002"
NEW_PUBLIC_KEY_ID = "PUB_KEY_ID_0114232020261201000000000000000002"
OLD_PUBLIC_KEY_ID = DEFAULT_CONFIG["PAY_PUBLIC_KEY_ID"]


def new_wechatpay_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@contextmanager
def rotated_sandbox(private_pem: bytes, apiv3_key: str = NEW_APIV3_KEY):
    """WeChat Pay after the switch: the new platform public key, and the new APIv3 key (or, to
    play a notification still encrypted under the old one, the old)."""
    merchants = {mchid: {**merchant, "apiv3_key": apiv3_key}
                 for mchid, merchant in DEFAULT_CONFIG["PAY_MERCHANTS"].items()}
    sandbox = LiveSandbox({"PAY_MERCHANTS": merchants, "PAY_PUBLIC_KEY_ID": NEW_PUBLIC_KEY_ID,
                           "PAY_PRIVATE_KEY_PEM": private_pem.decode()})
    sandbox.start()
    try:
        yield sandbox
    finally:
        sandbox.stop()


def order(live, sandbox, openid: str, key: str):
    return place_order(live, guest_token(live.url, sandbox, openid), {"kg": "2"}, key=key)


def pay(live, sandbox, openid: str, key: str) -> tuple[str, dict]:
    created = order(live, sandbox, openid, key)
    assert created.status_code == 201, created.json()
    notified = hook(sandbox, "request-payment", created.json()["request_payment"]).json()["notify"]
    with live.app.app_context():
        status = db.session.scalar(select(Order.status).where(Order.public_id == created.json()["order"]["id"]))
    return status, notified


def test_both_keys_work_during_a_switch_and_only_the_new_after_it(database_url, sandbox, tmp_path):
    private_pem, public_pem = new_wechatpay_key()
    new_public = tmp_path / "wechatpay_public_key_new.pem"
    new_public.write_bytes(public_pem)
    old_public = tmp_path / "wechatpay_public_key_old.pem"
    from payments.wechatpay.provider import sandbox_key

    old_public.write_bytes(sandbox_key("wechatpay_public_key.pem"))
    during = {"WECHATPAY_APIV3_KEY": NEW_APIV3_KEY, "WECHATPAY_APIV3_KEY_PREVIOUS": SANDBOX_APIV3_KEY,
              "WECHATPAY_PUBLIC_KEY_ID": NEW_PUBLIC_KEY_ID, "WECHATPAY_PUBLIC_KEY_PATH": str(new_public),
              "WECHATPAY_PUBLIC_KEY_ID_PREVIOUS": OLD_PUBLIC_KEY_ID,
              "WECHATPAY_PUBLIC_KEY_PATH_PREVIOUS": str(old_public)}
    after = {key: value for key, value in during.items() if not key.endswith("_PREVIOUS")}
    sandbox.reset()
    apps = []
    try:
        with rotated_sandbox(private_pem) as rotated:
            with serve(database_url, sandbox, keep_data=True, **during) as old_side:
                apps.append(old_side.app)
                seed_project(old_side.app, units=100)
                assert pay(old_side, sandbox, "o_rot_old", "rot-1")[0] == "fulfilled"  # old key, old signature
            with serve(database_url, rotated, keep_data=True, **during) as new_side:
                apps.append(new_side.app)
                assert pay(new_side, rotated, "o_rot_new", "rot-2")[0] == "fulfilled"  # new key, new signature
            with serve(database_url, sandbox, keep_data=True, **after) as switched:  # the old public key is gone
                apps.append(switched.app)
                refused = order(switched, sandbox, "o_rot_late", "rot-3")
                assert refused.status_code == 502
                assert refused.json()["error"]["details"]["check"] == "response.unknown_serial"
            with rotated_sandbox(private_pem, apiv3_key=SANDBOX_APIV3_KEY) as stale, \
                    serve(database_url, stale, keep_data=True, **after) as switched:  # the old APIv3 key is gone
                apps.append(switched.app)
                status, notified = pay(switched, stale, "o_rot_stale", "rot-5")
                assert status == "awaiting_payment" and notified["status"] == 401, notified
            with serve(database_url, rotated, keep_data=True, **after) as switched:
                apps.append(switched.app)
                assert pay(switched, rotated, "o_rot_done", "rot-4")[0] == "fulfilled"
    finally:
        if apps:
            dispose_app(apps[0])
