"""The WeChat Pay API v3 provider: JSAPI orders for a mini-program and Native orders (a QR code) for
the console, in public-key mode.

Every answer from WeChat Pay is verified (signature and a 5-minute timestamp window) before it
is believed; notifications the same way, then decrypted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from carbon.core.clock import CHINA_TZ, clock
from carbon.core.outbound import settled
from payments.provider import (
    Notification,
    NotifyRejected,
    ProviderError,
    ProviderRefused,
    Refund,
    RefundNotice,
    Transaction,
)
from payments.wechatpay import crypto

TIMESTAMP_WINDOW_SECONDS = 300
RESPONSE_UNVERIFIED = "RESPONSE_UNVERIFIED"  # ProviderError.code: an answer that failed its signature check
SANDBOX_KEYS = Path(__file__).parent / "sandbox_keys"


@dataclass(frozen=True)
class WeChatPayConfig:
    mchid: str
    appid: str
    serial_no: str
    private_key_pem: bytes
    apiv3_key: str
    public_key_id: str
    public_key_pem: bytes
    api_base: str
    notify_url: str
    timeout_seconds: float = 5.0
    # During a key switch: the APIv3 key and the WeChat Pay public key (id, PEM) being replaced,
    # still accepted until the switch is over (docs/OPERATIONS.md, "Rotating WeChat Pay keys").
    previous_apiv3_key: str = ""
    previous_public_key: tuple[str, bytes] | None = None


class WeChatPayV3:
    name = "wechatpay"

    def __init__(self, config: WeChatPayConfig, session: requests.Session | None = None):
        if any(len(key.encode()) != 32 for key in (config.apiv3_key, config.previous_apiv3_key) if key):
            raise ValueError("the APIv3 key must be 32 bytes")
        self.config = config
        self._private_key = crypto.load_private_key(config.private_key_pem)
        self._public_keys = {config.public_key_id: crypto.load_public_key(config.public_key_pem)}
        if config.previous_public_key:
            previous_id, previous_pem = config.previous_public_key
            self._public_keys.setdefault(previous_id, crypto.load_public_key(previous_pem))
        self._apiv3_keys = [key for key in (config.apiv3_key, config.previous_apiv3_key) if key]
        self._http = session or settled(requests.Session(), config.api_base)

    # --- the checkout's calls ----------------------------------------------------------------

    def create(self, *, out_trade_no: str, description: str, total_fen: int, openid: str,
               time_expire: datetime, attach: str = "") -> str:
        body = self._order(out_trade_no, description, total_fen, time_expire, attach)
        return self._call("POST", "/v3/pay/transactions/jsapi", body | {"payer": {"openid": openid}})["prepay_id"]

    def native(self, *, out_trade_no: str, description: str, total_fen: int, time_expire: datetime,
               attach: str = "") -> str:
        """A Native order: the ``code_url`` to show as a QR code; whoever scans it pays. The same
        out_trade_no with the same parameters answers the same code_url."""
        body = self._order(out_trade_no, description, total_fen, time_expire, attach)
        code_url = self._call("POST", "/v3/pay/transactions/native", body).get("code_url")
        if not isinstance(code_url, str) or not code_url.startswith("weixin://"):
            raise ProviderError("WeChat Pay answered no code_url", code="NO_CODE_URL")
        return code_url

    def _order(self, out_trade_no: str, description: str, total_fen: int, time_expire: datetime,
               attach: str) -> dict[str, Any]:
        body = {"appid": self.config.appid, "mchid": self.config.mchid, "description": description[:127],
                "out_trade_no": out_trade_no, "time_expire": time_expire.astimezone(CHINA_TZ).isoformat(
                    timespec="seconds"), "notify_url": self.config.notify_url,
                "amount": {"total": total_fen, "currency": "CNY"}}
        if attach:
            body["attach"] = attach[:128]
        return body

    def client_params(self, prepay_id: str) -> dict[str, str]:
        timestamp, nonce_str, package = str(clock.timestamp()), crypto.nonce(), f"prepay_id={prepay_id}"
        pay_sign = crypto.sign(self._private_key, self.config.appid, timestamp, nonce_str, package)
        return {"appId": self.config.appid, "timeStamp": timestamp, "nonceStr": nonce_str, "package": package,
                "signType": "RSA", "paySign": pay_sign}

    def query(self, out_trade_no: str) -> Transaction | None:
        try:
            answer = self._call("GET", f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no)}"
                                       f"?mchid={self.config.mchid}")
        except ProviderRefused as exc:
            if exc.code == "ORDER_NOT_EXIST":
                return None
            raise
        try:
            return _transaction(answer)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderError("WeChat Pay's answer is malformed") from exc

    def close(self, out_trade_no: str) -> None:
        self._call("POST", f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no)}/close",
                   {"mchid": self.config.mchid})

    def refund(self, *, out_trade_no: str, out_refund_no: str, refund_fen: int, total_fen: int,
               reason: str, transaction_id: str | None = None) -> Refund:
        charge = {"transaction_id": transaction_id} if transaction_id else {"out_trade_no": out_trade_no}
        answer = self._call("POST", "/v3/refund/domestic/refunds", {
            **charge, "out_refund_no": out_refund_no, "reason": reason[:80],
            "notify_url": self.config.notify_url,
            "amount": {"refund": refund_fen, "total": total_fen, "currency": "CNY"}})
        return Refund(answer["out_refund_no"], answer["refund_id"], answer["status"],
                      int(answer["amount"]["refund"]))

    def query_refund(self, out_refund_no: str) -> RefundNotice | None:
        try:
            answer = self._call("GET", f"/v3/refund/domestic/refunds/{quote(out_refund_no)}")
        except ProviderRefused as exc:
            if exc.code == "RESOURCE_NOT_EXISTS":
                return None
            raise
        try:  # the query's answer names the status "status" (a notification: "refund_status") and no mchid
            return _refund_notice({**answer, "refund_status": answer["status"], "mchid": self.config.mchid})
        except (KeyError, TypeError, AttributeError) as exc:
            raise ProviderError("WeChat Pay's answer is malformed") from exc

    def parse_notify(self, headers: dict[str, str], body: bytes) -> Notification:
        """Verify (signature, serial, 5-minute window, probes) and decrypt a payment or refund notification."""
        try:
            text = body.decode("utf-8", errors="strict")
        except UnicodeDecodeError as exc:
            raise NotifyRejected("notify.not_utf8") from exc
        self._verify(headers, text, rejected=NotifyRejected, what="notify")
        try:
            envelope = json.loads(text)
            resource = envelope["resource"]
            if resource.get("algorithm") != "AEAD_AES_256_GCM":
                raise NotifyRejected("notify.unknown_algorithm")
            plain = self._decrypt(resource)
            event_type = envelope["event_type"]
            data = json.loads(plain)
            transaction = _transaction(data) if event_type.startswith("TRANSACTION.") else None
            refund = _refund_notice(data) if event_type.startswith("REFUND.") else None
            return Notification(str(envelope["id"]), event_type, transaction, clock.now(), refund)
        except ValueError as exc:  # JSON or decryption
            raise NotifyRejected("notify.undecryptable") from exc
        except (KeyError, TypeError, AttributeError) as exc:
            raise NotifyRejected("notify.malformed") from exc

    def _decrypt(self, resource: dict[str, Any]) -> bytes:
        """The resource under the APIv3 key, or under the previous one during a switch."""
        for key in self._apiv3_keys[:-1]:
            try:
                return crypto.decrypt(key, nonce_text=resource["nonce"], ciphertext=resource["ciphertext"],
                                      associated_data=resource.get("associated_data", ""))
            except ValueError:
                continue
        return crypto.decrypt(self._apiv3_keys[-1], nonce_text=resource["nonce"], ciphertext=resource["ciphertext"],
                              associated_data=resource.get("associated_data", ""))

    # --- the wire ------------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")) if body is not None else ""
        headers = {"Accept": "application/json", "Authorization": crypto.authorization(
            self._private_key, mchid=self.config.mchid, serial_no=self.config.serial_no, method=method,
            path=path, body=payload, timestamp=clock.timestamp())}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, self.config.api_base.rstrip("/") + path,
                                          data=payload.encode() if body is not None else None, headers=headers,
                                          timeout=self.config.timeout_seconds)
        except requests.RequestException as exc:
            raise ProviderError(f"WeChat Pay unreachable: {type(exc).__name__}") from exc
        try:  # signed are the bytes: decoded as UTF-8, never by the charset requests would guess
            text = response.content.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProviderError("response.not_utf8", code=RESPONSE_UNVERIFIED) from exc
        self._verify(response.headers, text, rejected=ProviderError, what="response")
        try:
            data = json.loads(text) if text else {}
        except ValueError as exc:
            raise ProviderError("WeChat Pay's answer is not JSON", status=response.status_code) from exc
        if response.status_code >= 400:
            error = ProviderRefused if response.status_code < 500 else ProviderError
            raise error(data.get("message", response.reason), code=data.get("code"), status=response.status_code)
        return data

    def _verify(self, headers, body: str, *, rejected: type[Exception], what: str) -> None:
        """Check a signed message from WeChat Pay; ``what`` ("notify" or "response") names the check
        that failed, e.g. ``response.bad_signature``."""
        def refuse(check: str) -> Exception:
            error = rejected(f"{what}.{check}")
            if isinstance(error, ProviderError):
                error.code = RESPONSE_UNVERIFIED
            return error

        if headers.get("Wechatpay-Signature-Type", crypto.SCHEME) != crypto.SCHEME:
            raise refuse("unknown_signature_type")
        public_key = self._public_keys.get(headers.get("Wechatpay-Serial", ""))
        if public_key is None:
            raise refuse("unknown_serial")
        timestamp = headers.get("Wechatpay-Timestamp", "")
        if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12) or \
                abs(clock.timestamp() - int(timestamp)) > TIMESTAMP_WINDOW_SECONDS:
            raise refuse("stale")
        signature = headers.get("Wechatpay-Signature", "")
        if signature.startswith(crypto.SIGNTEST_PREFIX):
            raise refuse("signtest_probe")
        if not crypto.verify(public_key, signature, timestamp, headers.get("Wechatpay-Nonce", ""), body):
            raise refuse("bad_signature")


def _transaction(data: dict[str, Any]) -> Transaction:
    amount = data.get("amount") or {}
    return Transaction(out_trade_no=_text(data["out_trade_no"]), trade_state=_text(data["trade_state"]),
                       appid=_text(data["appid"]), mchid=_text(data["mchid"]), total_fen=_fen(amount["total"]),
                       currency=_text(amount.get("currency", "CNY")), transaction_id=_text(data.get("transaction_id"), None),
                       payer_openid=_text((data.get("payer") or {}).get("openid"), None),
                       success_time=_text(data.get("success_time"), None), raw=data)


def _refund_notice(data: dict[str, Any]) -> RefundNotice:
    return RefundNotice(out_trade_no=_text(data["out_trade_no"]), out_refund_no=_text(data["out_refund_no"]),
                        refund_id=_text(data["refund_id"]), status=_text(data["refund_status"]),
                        mchid=_text(data["mchid"]), refund_fen=_fen(data["amount"]["refund"]),
                        transaction_id=_text(data.get("transaction_id"), None), raw=data)


_ABSENT = object()


def _text(value: Any, absent: Any = _ABSENT) -> Any:
    """A string field of WeChat Pay's JSON (``absent`` stands for a missing or null optional one)."""
    if value is None and absent is not _ABSENT:
        return absent
    if not isinstance(value, str) or len(value) > 256:
        raise TypeError("not a string field")
    return value


def _fen(value: Any) -> int:
    """An amount in fen: WeChat Pay sends whole numbers."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 10**12:
        raise TypeError("not an amount in fen")
    return value


def sandbox_key(name: str) -> bytes:
    return (SANDBOX_KEYS / name).read_bytes()
