"""WeChat Pay API v3 cryptography: RSA-SHA256 signatures, AEAD_AES_256_GCM resources, keys.

As in WECHAT_PROTOCOLS.md §6.3–§7: requests are signed over ``METHOD\\nURI\\nTS\\nNONCE\\nBODY\\n``
with the merchant's key; responses and notifications over ``TS\\nNONCE\\nBODY\\n`` with WeChat
Pay's key; ``wx.requestPayment``'s paySign over ``appId\\ntimeStamp\\nnonceStr\\npackage\\n``.
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets
import string
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEYS_DIR = Path(__file__).resolve().parent / "keys"
SCHEME = "WECHATPAY2-SHA256-RSA2048"
NONCE_ALPHABET = string.ascii_uppercase + string.digits
AUTH_FIELDS = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
AUTH_FIELD_RE = re.compile(r'\s*(\w+)="([^"]*)"\s*')


def read_key_file(name: str) -> str:
    """A PEM file of ``wechat/sandbox/keys/``."""
    return (KEYS_DIR / name).read_text(encoding="ascii")


@cache  # parsing checks the key, which is slow, and every reset loads the same keys
def load_private_key(pem: str) -> RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    if not isinstance(key, RSAPrivateKey):
        raise TypeError("not an RSA private key")
    return key


@cache
def load_public_key(pem: str) -> RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, RSAPublicKey):
        raise TypeError("not an RSA public key")
    return key


@cache
def forger_private_key() -> RSAPrivateKey:
    """A key that is not WeChat Pay's, for forged notifications."""
    return load_private_key(read_key_file("forger_private_key.pem"))


def new_nonce(length: int = 32) -> str:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(length))


def rsa_sign(key: RSAPrivateKey, message: bytes) -> str:
    """Base64 of SHA256withRSA (PKCS#1 v1.5)."""
    return base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def rsa_verify(key: RSAPublicKey, message: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, message, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def request_message(method: str, uri: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{method}\n{uri}\n{timestamp}\n{nonce}\n".encode() + body + b"\n"


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def pay_sign_message(app_id: str, timestamp: str, nonce: str, package: str) -> bytes:
    return f"{app_id}\n{timestamp}\n{nonce}\n{package}\n".encode()


def parse_authorization(header: str | None) -> dict[str, str] | None:
    """The five fields of a ``WECHATPAY2-SHA256-RSA2048 k="v",...`` header, or None if malformed."""
    if not header or not header.startswith(SCHEME + " "):
        return None
    fields: dict[str, str] = {}
    for part in header[len(SCHEME) + 1:].split(","):
        match = AUTH_FIELD_RE.fullmatch(part)
        if match is None or match.group(1) in fields:
            return None
        fields[match.group(1)] = match.group(2)
    if any(not fields.get(name) for name in AUTH_FIELDS):
        return None
    return fields


def signed_headers(key: RSAPrivateKey, serial: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The ``Wechatpay-*`` headers of a response or notification with this body."""
    nonce = new_nonce()
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": rsa_sign(key, response_message(str(timestamp), nonce, body)),
        "Wechatpay-Signature-Type": SCHEME,
    }


def aead_encrypt(apiv3_key: str, nonce: str, plaintext: bytes, associated_data: str) -> str:
    """Base64 of AES-256-GCM ciphertext || tag; key and nonce are the strings' UTF-8 bytes."""
    encrypted = AESGCM(apiv3_key.encode("utf-8")).encrypt(
        nonce.encode("utf-8"), plaintext, associated_data.encode("utf-8")
    )
    return base64.b64encode(encrypted).decode("ascii")
