"""WeChat Pay notifications (WECHAT_PROTOCOLS.md §6.4): encrypted, signed, retried on the virtual clock.

A notification (``PayEvent``) keeps its id and body on every attempt; each attempt is signed
afresh with the virtual clock's time. HTTP 200 or 204 acknowledges it; anything else, a
timeout or a connection error schedules the next attempt ``PAY_RETRY_SCHEDULE[n]`` seconds
after this one. Nothing is sent on its own: attempts go out when the payment hook delivers
attempt 1 or when ``run-due`` sends what is due. No lock is held while sending, so the
receiver may call the sandbox back.

``craft`` builds the hand-made notifications of the notify hook (duplicates, forgeries...).
"""
from __future__ import annotations

import base64
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from wechat.sandbox.pay_crypto import aead_encrypt, forger_private_key, new_nonce, signed_headers
from wechat.sandbox.pay_model import (
    new_event_id,
    new_transaction_id,
    paid_transaction_object,
    random_digits,
    refund_notification_object,
    rfc3339,
    transaction_object,
)
from wechat.sandbox.state import Merchant, PayEvent, PayOrder, PayRefund, PayState, SandboxState

ACKNOWLEDGING = (200, 204)
RESPONSE_KEEP = 500  # characters of the receiver's answer kept in the log
STALE_BY = 360
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
UNKNOWN_SERIAL = "PUB_KEY_ID_UNKNOWN"
TRANSACTION = ("TRANSACTION.SUCCESS", "支付成功", "transaction")
REFUND = ("REFUND.SUCCESS", "退款成功", "refund")
REFUND_KINDS = {"SUCCESS": REFUND, "ABNORMAL": ("REFUND.ABNORMAL", "退款异常", "refund"),
                "CLOSED": ("REFUND.CLOSED", "退款关闭", "refund")}
VARIANTS = (
    "normal",
    "stale",
    "tampered_ciphertext",
    "tampered_body",
    "signtest",
    "other_key",
    "bad_serial",
    "wrong_amount",
    "wrong_appid",
    "wrong_mchid",
    "unknown_order",
    "refund_event",
    "wrong_payer",
    "second_charge",
)


class CraftError(Exception):
    """A notify hook request that cannot be served (status, message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


# ---- bodies -------------------------------------------------------------------------------


def envelope(
    event_id: str, now: float, kind: tuple[str, str, str], apiv3_key: str, resource: dict[str, Any]
) -> dict[str, Any]:
    """The notification body: ``resource`` encrypted with AEAD_AES_256_GCM under the APIv3 key."""
    event_type, summary, original_type = kind
    nonce = new_nonce(12)
    plaintext = json.dumps(resource, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return {
        "id": event_id,
        "create_time": rfc3339(now),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {
            "original_type": original_type,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": aead_encrypt(apiv3_key, nonce, plaintext, original_type),
            "associated_data": original_type,
            "nonce": nonce,
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(state: SandboxState, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    headers = signed_headers(
        state.pay.private_key,
        state.config["PAY_PUBLIC_KEY_ID"],
        body,
        int(state.now()) if timestamp is None else timestamp,
    )
    return {"Content-Type": "application/json", **headers}


# ---- scheduled notifications --------------------------------------------------------------


def queue_event(
    state: SandboxState, kind: tuple[str, str, str], mchid: str, out_trade_no: str, url: str, resource: dict[str, Any]
) -> PayEvent:
    """A notification whose attempt 1 is due now (caller holds the lock)."""
    pay = state.pay
    now = state.now()
    event_id = new_event_id(now)
    body = encode(envelope(event_id, now, kind, pay.merchants[mchid].apiv3_key, resource))
    event = PayEvent(event_id, kind[0], mchid, out_trade_no, url, body, next_due=now)
    pay.events.append(event)
    return event


def queue_transaction_event(state: SandboxState, order: PayOrder) -> PayEvent:
    return queue_event(
        state, TRANSACTION, order.mchid, order.out_trade_no, order.notify_url, transaction_object(order)
    )


def queue_refund_event(state: SandboxState, refund: PayRefund) -> PayEvent:
    return queue_event(
        state, REFUND_KINDS[refund.status], refund.mchid, refund.out_trade_no, refund.notify_url,
        refund_notification_object(refund)
    )


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> tuple[int | None, str, str | None]:
    """(status, answer text, error): status None when nothing came back."""
    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return None, "", "timeout"
    except requests.RequestException as error:
        return None, "", f"{type(error).__name__}: {error}"
    return response.status_code, response.text[:RESPONSE_KEEP], None


def claim(state: SandboxState, event: PayEvent) -> float | None:
    """Take the event's pending attempt for this thread: its due time, or None if it is not pending."""
    with state.lock:
        if event.next_due is None:
            return None  # acknowledged, given up, or another thread is sending it
        due_at, event.next_due = event.next_due, None
        return due_at


def deliver(state: SandboxState, pay: PayState, event: PayEvent) -> dict[str, Any] | None:
    """Send the event's next attempt if it is pending; the delivery record, or None."""
    due_at = claim(state, event)
    return None if due_at is None else send_claimed(state, pay, event, due_at)


def send_claimed(state: SandboxState, pay: PayState, event: PayEvent, due_at: float) -> dict[str, Any]:
    """Send a claimed attempt (no lock held while sending), record it, schedule the next one if it failed."""
    with state.lock:
        attempt = event.attempts + 1
        sent_at = state.now()
        headers = sign(state, event.body)
        timeout = state.config["PAY_NOTIFY_TIMEOUT_SECONDS"]
        schedule = state.config["PAY_RETRY_SCHEDULE"]
    status, answer, error = post(event.url, event.body, headers, timeout)
    with state.lock:
        event.attempts = attempt
        acknowledged = status in ACKNOWLEDGING
        if acknowledged:
            event.acknowledged = True
        elif attempt <= len(schedule):
            event.next_due = sent_at + schedule[attempt - 1]
        else:
            event.given_up = True
        record = {
            "kind": "scheduled",
            "event_id": event.event_id,
            "event_type": event.event_type,
            "out_trade_no": event.out_trade_no,
            "url": event.url,
            "attempt": attempt,
            "due_at": due_at,
            "sent_at": sent_at,
            "status": status,
            "error": error,
            "response": answer,
            "acknowledged": acknowledged,
            "next_due_at": event.next_due,
            "given_up": event.given_up,
        }
        pay.deliveries.append(record)
    return record


def run_due(state: SandboxState) -> list[dict[str, Any]]:
    """Send every pending attempt due by the virtual now, earliest first."""
    with state.lock:
        pay = state.pay
        now = state.now()
        due = sorted(
            (event for event in pay.events if event.next_due is not None and event.next_due <= now),
            key=lambda event: event.next_due,
        )
    return [record for event in due if (record := deliver(state, pay, event)) is not None]


# ---- hand-made notifications --------------------------------------------------------------


def tamper_ciphertext(body: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(body["resource"]["ciphertext"]))
    raw[0] ^= 0x01
    body["resource"]["ciphertext"] = base64.b64encode(bytes(raw)).decode("ascii")


def tamper_bytes(body: bytes, event_id: str) -> bytes:
    """Change the last character of the event id: still JSON, no longer what was signed."""
    position = body.index(event_id.encode("ascii")) + len(event_id) - 1
    changed = bytearray(body)
    changed[position] = ord("1") if changed[position] != ord("1") else ord("2")
    return bytes(changed)


def other_mchid(pay: PayState, mchid: str) -> str:
    candidate = int(mchid) + 1 if mchid.isdigit() else 1900000001
    while str(candidate) in pay.merchants:
        candidate += 1
    return str(candidate)


def unknown_transaction(state: SandboxState, merchant: Merchant, out_trade_no: str, total: int) -> dict[str, Any]:
    now = state.now()
    return {
        "appid": merchant.appid,
        "mchid": merchant.mchid,
        "out_trade_no": out_trade_no,
        "transaction_id": new_transaction_id(now),
        "trade_type": "JSAPI",
        "trade_state": "SUCCESS",
        "trade_state_desc": "支付成功",
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": rfc3339(now),
        "payer": {"openid": "o-sandbox-unknown-payer"},
        "amount": {"total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY"},
    }


def refund_resource(state: SandboxState, pay: PayState, order: PayOrder, transaction: dict[str, Any]) -> dict:
    """The order's latest refund as a REFUND.SUCCESS notification carries it (made up if none)."""
    if order.refund_nos:
        return refund_notification_object(pay.refunds[(order.mchid, order.refund_nos[-1])])
    now = state.now()
    return {
        "mchid": order.mchid,
        "out_trade_no": order.out_trade_no,
        "transaction_id": transaction["transaction_id"],
        "out_refund_no": "RF" + new_event_id(now)[3:],
        "refund_id": "503" + random_digits(26),
        "refund_status": "SUCCESS",
        "success_time": rfc3339(now),
        "user_received_account": "支付用户零钱",
        "amount": {"total": order.total, "refund": order.total, "payer_total": order.total,
                   "payer_refund": order.total},
    }


def resource_for(
    state: SandboxState, pay: PayState, variant: str, order: PayOrder | None, merchant: Merchant, spec: dict[str, Any]
) -> tuple[tuple[str, str, str], dict[str, Any]]:
    """(kind, plaintext resource) of a hand-made notification."""
    if order is None:
        return TRANSACTION, unknown_transaction(state, merchant, spec["out_trade_no"], spec["total"])
    if variant == "normal":
        if order.transaction_id is None:
            raise CraftError(409, f"order {order.out_trade_no} is not paid: a normal notification needs a payment")
        return TRANSACTION, transaction_object(order)
    transaction = paid_transaction_object(order, state.now())
    if variant == "refund_event":
        return REFUND, refund_resource(state, pay, order, transaction)
    if variant == "wrong_amount":
        amount = transaction["amount"]
        transaction["amount"] = amount | {"total": amount["total"] + 1, "payer_total": amount["total"] + 1}
    elif variant == "wrong_appid":
        transaction["appid"] = "wx" + ("0" * 16 if merchant.appid != "wx" + "0" * 16 else "1" * 16)
    elif variant == "wrong_mchid":
        transaction["mchid"] = other_mchid(pay, merchant.mchid)
    elif variant == "wrong_payer":
        transaction["payer"] = {"openid": "o-sandbox-someone-else"}
    elif variant == "second_charge":  # the same order charged again under a new transaction id
        transaction["transaction_id"] = new_transaction_id(state.now())
    return TRANSACTION, transaction


def craft(state: SandboxState, spec: dict[str, Any], order: PayOrder | None, merchant: Merchant) -> list[dict]:
    """Build and send ``spec["count"]`` notifications of ``spec["variant"]`` now; their outcomes.

    Not scheduled and never retried. ``normal`` repeats one event (same id and body) unless
    ``distinct_events``; every other variant gets a new event per send.
    """
    variant, count = spec["variant"], spec["count"]
    with state.lock:
        pay = state.pay
        now = state.now()
        url = spec["url"] or (order.notify_url if order is not None else None)
        if url is None:
            raise CraftError(400, "url is required: the sandbox knows no notify_url for this order")
        kind, resource = resource_for(state, pay, variant, order, merchant, spec)
        out_trade_no = resource.get("out_trade_no")
        sends = []
        shared: tuple[str, dict[str, Any]] | None = None
        for _ in range(count):
            if shared is None or variant != "normal" or spec["distinct_events"]:
                event_id = new_event_id(now)
                body = envelope(event_id, now, kind, merchant.apiv3_key, resource)
                shared = (event_id, body)
            event_id, body = shared
            sends.append((event_id, *signed_variant(state, variant, event_id, dict(body))))
        timeout = state.config["PAY_NOTIFY_TIMEOUT_SECONDS"]

    def send(item: tuple[str, bytes, dict[str, str]]) -> dict[str, Any]:
        event_id, data, headers = item
        sent_at = state.now()
        status, answer, error = post(url, data, headers, timeout)
        return {
            "kind": "crafted",
            "variant": variant,
            "event_id": event_id,
            "event_type": kind[0],
            "out_trade_no": out_trade_no,
            "url": url,
            "attempt": None,
            "due_at": None,
            "sent_at": sent_at,
            "status": status,
            "error": error,
            "response": answer,
            "acknowledged": status in ACKNOWLEDGING,
            "next_due_at": None,
            "given_up": False,
        }

    with ThreadPoolExecutor(max_workers=spec["concurrency"], thread_name_prefix="sandbox-notify") as pool:
        records = list(pool.map(send, sends))
    with state.lock:
        pay.deliveries.extend(records)
    return records


def signed_variant(
    state: SandboxState, variant: str, event_id: str, body: dict[str, Any]
) -> tuple[bytes, dict[str, str]]:
    """(raw body, headers) of one send: signed properly except where the variant says otherwise."""
    if variant == "tampered_ciphertext":
        body = {**body, "resource": dict(body["resource"])}
        tamper_ciphertext(body)
    data = encode(body)
    now = int(state.now())
    if variant == "stale":
        return data, sign(state, data, now - STALE_BY)
    headers = sign(state, data, now)
    if variant == "tampered_body":
        return tamper_bytes(data, event_id), headers
    if variant == "signtest":
        headers["Wechatpay-Signature"] = SIGNTEST_PREFIX + base64.b64encode(os.urandom(256)).decode("ascii")
    elif variant == "other_key":
        forged = signed_headers(forger_private_key(), state.config["PAY_PUBLIC_KEY_ID"], data, now)
        headers.update(forged)
    elif variant == "bad_serial":
        headers["Wechatpay-Serial"] = UNKNOWN_SERIAL
    return data, headers
