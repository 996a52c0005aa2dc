"""The WeChat Pay v3 signature scheme and AEAD_AES_256_GCM, on ``cryptography``.

- Requests: ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid=..,nonce_str=..,signature=..,timestamp=..,serial_no=..``
  over ``METHOD\\nPATH?QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n`` with the merchant key.
- Responses and notifications: ``TIMESTAMP\\nNONCE\\nBODY\\n`` signed with WeChat Pay's key.
- ``wx.requestPayment``: ``paySign`` over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``.
"""
from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"


def load_private_key(pem: bytes) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError("the merchant key must be RSA")
    return key


def load_public_key(pem: bytes) -> RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, RSAPublicKey):
        raise TypeError("the WeChat Pay public key must be RSA")
    return key


def nonce(length: int = 32) -> str:
    return secrets.token_hex(length // 2)


def sign(private_key: RSAPrivateKey, *lines: str) -> str:
    message = "".join(f"{line}\n" for line in lines).encode()
    return base64.b64encode(private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(public_key: RSAPublicKey, signature: str, *lines: str) -> bool:
    if signature.startswith(SIGNTEST_PREFIX):
        return False  # WeChat's probe: a merchant that "accepts" it does not verify at all
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    message = "".join(f"{line}\n" for line in lines).encode()
    try:
        public_key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def authorization(private_key: RSAPrivateKey, *, mchid: str, serial_no: str, method: str, path: str,
                  body: str, timestamp: int) -> str:
    nonce_str = nonce()
    signature = sign(private_key, method, path, str(timestamp), nonce_str, body)
    return (f'{SCHEME} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
            f'timestamp="{timestamp}",serial_no="{serial_no}"')


def decrypt(apiv3_key: str, *, nonce_text: str, ciphertext: str, associated_data: str) -> bytes:
    """AEAD_AES_256_GCM: base64(ciphertext || tag) with the APIv3 key; raises ValueError when tampered."""
    try:
        return AESGCM(apiv3_key.encode()).decrypt(nonce_text.encode(), base64.b64decode(ciphertext),
                                                  associated_data.encode() if associated_data else None)
    except (InvalidTag, binascii.Error, ValueError) as exc:
        raise ValueError("the resource does not decrypt with the APIv3 key") from exc
