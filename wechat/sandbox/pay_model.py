"""WeChat Pay objects as the API shows them (transactions, refunds) and the changes to orders."""
from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from wechat.sandbox.state import CHINA_TZ, PayOrder, PayRefund, PayState, Prepay, SandboxState

PAID_STATES = ("SUCCESS", "REFUND")
TRADE_STATE_DESC = {
    "SUCCESS": "支付成功",
    "NOTPAY": "订单未支付",
    "CLOSED": "订单已关闭",
    "REFUND": "转入退款",
}
BANK_TYPE = "OTHERS"
RECEIVED_ACCOUNT = "支付用户零钱"


def rfc3339(timestamp: float) -> str:
    """RFC 3339 in Beijing time, as WeChat Pay writes times: ``2018-06-08T10:34:56+08:00``."""
    return datetime.fromtimestamp(timestamp, CHINA_TZ).isoformat(timespec="seconds")


def beijing_digits(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, CHINA_TZ).strftime("%Y%m%d%H%M%S")


def random_digits(count: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(count))


def new_transaction_id(now: float) -> str:
    """28 digits starting 42000, like WeChat Pay's."""
    return "42000" + beijing_digits(now)[:8] + random_digits(15)


def new_event_id(now: float) -> str:
    return "EV-" + beijing_digits(now) + random_digits(8)


def transaction_object(order: PayOrder) -> dict[str, Any]:
    """What a query answers and a TRANSACTION.SUCCESS notification carries."""
    paid = order.transaction_id is not None
    body: dict[str, Any] = {"appid": order.appid, "mchid": order.mchid, "out_trade_no": order.out_trade_no}
    if paid:
        body["transaction_id"] = order.transaction_id
    body |= {
        "trade_type": order.trade_type,
        "trade_state": order.trade_state,
        "trade_state_desc": TRADE_STATE_DESC[order.trade_state],
    }
    if paid:
        body["bank_type"] = BANK_TYPE
    body["attach"] = order.attach or ""
    if paid:
        body["success_time"] = rfc3339(order.success_time)
    if order.openid is not None:  # a Native order has a payer once scanned
        body["payer"] = {"openid": order.openid}
    amount: dict[str, Any] = {"total": order.total}
    if paid:
        amount["payer_total"] = order.total
    body["amount"] = amount | {"currency": order.currency, "payer_currency": order.currency}
    return body


def paid_transaction_object(order: PayOrder, now: float) -> dict[str, Any]:
    """The order's transaction as a successful payment shows it (made up if it is not paid)."""
    body = transaction_object(order)
    if order.transaction_id is not None:
        return body | {"trade_state": "SUCCESS", "trade_state_desc": TRADE_STATE_DESC["SUCCESS"]}
    return {
        "appid": order.appid,
        "mchid": order.mchid,
        "out_trade_no": order.out_trade_no,
        "transaction_id": new_transaction_id(now),
        "trade_type": order.trade_type,
        "trade_state": "SUCCESS",
        "trade_state_desc": TRADE_STATE_DESC["SUCCESS"],
        "bank_type": BANK_TYPE,
        "attach": order.attach or "",
        "success_time": rfc3339(now),
        "payer": {"openid": order.openid},
        "amount": {
            "total": order.total,
            "payer_total": order.total,
            "currency": order.currency,
            "payer_currency": order.currency,
        },
    }


def refund_object(refund: PayRefund) -> dict[str, Any]:
    """What the refund API answers (the sandbox refunds at once: status SUCCESS, unless a hook made
    refunds go ABNORMAL)."""
    return {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": refund.transaction_id,
        "out_trade_no": refund.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": RECEIVED_ACCOUNT,
        "success_time": rfc3339(refund.success_time),
        "create_time": rfc3339(refund.created_at),
        "status": refund.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": refund.total,
            "refund": refund.refund,
            "payer_total": refund.total,
            "payer_refund": refund.refund,
            "settlement_total": refund.total,
            "settlement_refund": refund.refund,
            "discount_refund": 0,
            "currency": refund.currency,
            "from": [],
        },
    }


def refund_notification_object(refund: PayRefund) -> dict[str, Any]:
    """The decrypted resource of a REFUND.SUCCESS (or .ABNORMAL, .CLOSED) notification."""
    return {
        "mchid": refund.mchid,
        "out_trade_no": refund.out_trade_no,
        "transaction_id": refund.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
        "success_time": rfc3339(refund.success_time),
        "user_received_account": RECEIVED_ACCOUNT,
        "amount": {
            "total": refund.total,
            "refund": refund.refund,
            "payer_total": refund.total,
            "payer_refund": refund.refund,
        },
    }


def issue_prepay(state: SandboxState, order: PayOrder) -> str:
    """A new prepay_id (``wx`` + 26 digits and letters); it supersedes the order's previous ones."""
    now = state.now()
    prepay_id = "wx" + beijing_digits(now) + secrets.token_hex(6)
    state.pay.prepays[prepay_id] = Prepay(prepay_id, order.mchid, order.out_trade_no, now)
    order.prepay_ids.append(prepay_id)
    return prepay_id


def issue_code_url(state: SandboxState, order: PayOrder) -> str:
    """A Native order's ``code_url`` (``weixin://wxpay/bizpayurl?pr=`` + 7 letters and digits)."""
    code_url = "weixin://wxpay/bizpayurl?pr=" + secrets.token_urlsafe(5)[:7]
    state.pay.code_urls[code_url] = (order.mchid, order.out_trade_no)
    order.code_url = code_url
    return code_url


def mark_paid(state: SandboxState, order: PayOrder) -> None:
    now = state.now()
    order.trade_state = "SUCCESS"
    order.transaction_id = new_transaction_id(now)
    order.success_time = now
    state.pay.transactions[order.transaction_id] = (order.mchid, order.out_trade_no)


def find_orders(pay: PayState, out_trade_no: str, mchid: str | None = None) -> list[PayOrder]:
    """Orders with this number (of one merchant if ``mchid`` is given)."""
    return [
        order
        for (order_mchid, number), order in pay.orders.items()
        if number == out_trade_no and (mchid is None or order_mchid == mchid)
    ]


def order_view(order: PayOrder, pay: PayState) -> dict[str, Any]:
    """Everything about an order, for test assertions."""
    return {
        "mchid": order.mchid,
        "appid": order.appid,
        "out_trade_no": order.out_trade_no,
        "description": order.description,
        "attach": order.attach,
        "notify_url": order.notify_url,
        "amount": {"total": order.total, "currency": order.currency, "refunded": order.refunded},
        "payer": {"openid": order.openid},
        "trade_state": order.trade_state,
        "transaction_id": order.transaction_id,
        "created_at": order.created_at,
        "time_expire": order.time_expire,
        "success_time": order.success_time,
        "closed_at": order.closed_at,
        "prepay_ids": list(order.prepay_ids),
        "refunds": [refund_object(pay.refunds[(order.mchid, number)]) for number in order.refund_nos],
        "transaction": transaction_object(order),
    }
