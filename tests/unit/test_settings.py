import pytest

from carbon.core.settings import DEFAULT_SECRET_KEY, SettingsError, load_settings

GOOD_PRODUCTION = {
    "DIANDIAN_ENV": "production",
    "DIANDIAN_SECRET_KEY": "x" * 40,
    "DIANDIAN_WECHAT_APPID": "wx1234567890abcdef",
    "DIANDIAN_WECHAT_SECRET": "real-secret",
    "DIANDIAN_WECHAT_API_BASE": "https://api.weixin.qq.com",
    "DIANDIAN_WECHATPAY_PRIVATE_KEY_PATH": "/etc/diandian/apiclient_key.pem",
    "DIANDIAN_WECHATPAY_PUBLIC_KEY_PATH": "/etc/diandian/pub_key.pem",
    "DIANDIAN_WECHATPAY_PUBLIC_KEY_ID": "PUB_KEY_ID_0112345678202601010000000000000001",
    "DIANDIAN_WECHATPAY_APIV3_KEY": "k" * 32,
    "DIANDIAN_WECHATPAY_API_BASE": "https://api.mch.weixin.qq.com",
    "DIANDIAN_PHONE_KEYS": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "DIANDIAN_PUBLIC_BASE_URL": "https://diandian.example.com",
}


def test_environment_then_overrides():
    settings = load_settings({"SESSION_TTL_SECONDS": "60"},
                             environ={"DIANDIAN_SESSION_TTL_SECONDS": "120", "DIANDIAN_LOG_REQUESTS": "0"})
    assert settings.SESSION_TTL_SECONDS == 60
    assert settings.LOG_REQUESTS is False


def test_bad_values_name_the_setting():
    with pytest.raises(SettingsError, match="DIANDIAN_SESSION_TTL_SECONDS"):
        load_settings(environ={"DIANDIAN_SESSION_TTL_SECONDS": "soon"})
    with pytest.raises(SettingsError, match="DIANDIAN_ENV"):
        load_settings(environ={"DIANDIAN_ENV": "staging"})


def test_production_accepts_a_complete_configuration():
    assert load_settings(environ=GOOD_PRODUCTION).is_production


@pytest.mark.parametrize("name, value, message", [
    ("DIANDIAN_SECRET_KEY", DEFAULT_SECRET_KEY, "DIANDIAN_SECRET_KEY"),
    ("DIANDIAN_SECRET_KEY", "short", "DIANDIAN_SECRET_KEY"),
    ("DIANDIAN_WECHAT_SECRET", "", "DIANDIAN_WECHAT_SECRET"),
    ("DIANDIAN_WECHAT_API_BASE", "http://127.0.0.1:8090", "DIANDIAN_ALLOW_SANDBOX"),
    ("DIANDIAN_WECHATPAY_PRIVATE_KEY_PATH", "", "DIANDIAN_WECHATPAY_PRIVATE_KEY_PATH"),
    ("DIANDIAN_WECHATPAY_APIV3_KEY", "diandian-sandbox-apiv3-key-00001", "DIANDIAN_WECHATPAY_APIV3_KEY"),
    ("DIANDIAN_WECHATPAY_APIV3_KEY", "too-short", "DIANDIAN_WECHATPAY_APIV3_KEY"),
    ("DIANDIAN_WECHATPAY_PUBLIC_KEY_ID", "PUB_KEY_ID_0114232020220520000000000000000001",
     "DIANDIAN_WECHATPAY_PUBLIC_KEY_ID"),
    ("DIANDIAN_WECHATPAY_API_BASE", "http://127.0.0.1:8090", "DIANDIAN_ALLOW_SANDBOX"),
    ("DIANDIAN_PHONE_KEYS", "", "DIANDIAN_PHONE_KEYS"),
    ("DIANDIAN_PUBLIC_BASE_URL", "http://diandian.example.com", "DIANDIAN_PUBLIC_BASE_URL"),
    ("DIANDIAN_WECHATPAY_NOTIFY_URL", "http://diandian.example.com/notify", "DIANDIAN_PUBLIC_BASE_URL"),
    ("DIANDIAN_PHONE_KEYS", "c2hvcnQ=", "DIANDIAN_PHONE_KEYS"),
    ("DIANDIAN_PHONE_KEYS", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=,not base64!", "DIANDIAN_PHONE_KEYS"),
])
def test_production_refuses_to_start_and_names_the_setting(name, value, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(environ={**GOOD_PRODUCTION, name: value})


def test_production_may_point_at_a_sandbox_only_when_allowed():
    environ = {**GOOD_PRODUCTION, "DIANDIAN_WECHAT_API_BASE": "http://127.0.0.1:8090", "DIANDIAN_ALLOW_SANDBOX": "1"}
    assert load_settings(environ=environ).uses_wechat_sandbox


def test_create_app_refuses_production_with_default_secret(monkeypatch):
    from app import create_app

    with pytest.raises(SettingsError, match="DIANDIAN_SECRET_KEY"):
        create_app({"ENV": "production"})
