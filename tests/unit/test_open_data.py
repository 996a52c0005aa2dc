"""The official encryptedData sample decrypts through our code; a foreign watermark is refused."""
import json

import pytest

from carbon.core.errors import DomainError
from tests.conftest import ROOT
from wechat.api import decrypt_open_data

# A copy of shared/data/wechat_encrypted_data_sample.json (WeChat's official sample vector).
FIXTURE = ROOT / "tests" / "fixtures" / "wechat_encrypted_data_sample.json"


@pytest.fixture
def sample():
    return json.loads(FIXTURE.read_text())


def test_official_sample_decrypts(sample):
    plain = decrypt_open_data(sample["appid"], sample["session_key"], sample["encryptedData"], sample["iv"])
    assert plain == sample["decrypted"]
    assert plain["openId"] == "oGZUI0egBJY1zhBYw2KhdUfwVJJE"
    assert plain["watermark"]["appid"] == "wx4f4bc4dec97d474b"


def test_other_appid_is_refused(sample):
    with pytest.raises(DomainError) as info:
        decrypt_open_data("wxd1a2b3c4d5e6f7a8", sample["session_key"], sample["encryptedData"], sample["iv"])
    assert info.value.code == "auth.invalid_open_data"


@pytest.mark.parametrize("field, value", [
    ("session_key", "AAAAAAAAAAAAAAAAAAAAAA=="),
    ("iv", "AAAAAAAAAAAAAAAAAAAAAA=="),
    ("encryptedData", "not base64!"),
    ("session_key", "short"),
])
def test_garbage_is_refused_not_crashed(sample, field, value):
    args = {**sample, field: value}
    with pytest.raises(DomainError):
        decrypt_open_data(args["appid"], args["session_key"], args["encryptedData"], args["iv"])
