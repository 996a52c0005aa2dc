"""WeChat Pay test hooks under ``/__sandbox__/pay/``: pay as the guest (JSAPI) or scan a Native code, send
notifications, inspect.

Bad hook requests answer 4xx ``{"error": "..."}`` like the other hooks; a payment the guest's
``wx.requestPayment`` would refuse answers 400 ``{"code", "message"}``.
"""
from __future__ import annotations

import secrets
from html import escape
from typing import Any

from flask import Blueprint, Response, jsonify, request

from wechat.sandbox.hooks import HookError, answer_hook_error, payload, positive_int, required_str
from wechat.sandbox.pay_crypto import pay_sign_message, rsa_verify
from wechat.sandbox.pay_model import (
    PAID_STATES,
    beijing_digits,
    find_orders,
    mark_paid,
    order_view,
    random_digits,
    refund_object,
)
from wechat.sandbox.pay_notify import (
    VARIANTS,
    CraftError,
    claim,
    craft,
    queue_refund_event,
    queue_transaction_event,
    run_due,
    send_claimed,
)
from wechat.sandbox.state import PayOrder, PayRefund, PayState, sandbox_state

bp = Blueprint("wechat_sandbox_pay_hooks", __name__, url_prefix="/__sandbox__/pay")
bp.register_error_handler(HookError, answer_hook_error)

PACKAGE_PREFIX = "prepay_id="
MAX_COUNT, MAX_CONCURRENCY = 100, 32


class PaymentRefused(Exception):
    """What ``wx.requestPayment`` would fail with."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message


@bp.errorhandler(PaymentRefused)
def answer_refusal(error: PaymentRefused) -> tuple[Response, int]:
    return jsonify(code=error.code, message=error.message), 400


@bp.errorhandler(CraftError)
def answer_craft_error(error: CraftError) -> tuple[Response, int]:
    return jsonify(error=error.message), error.status


def the_order(pay: PayState, out_trade_no: str, mchid: str | None) -> PayOrder:
    orders = find_orders(pay, out_trade_no, mchid)
    if not orders:
        raise HookError(404, f"unknown out_trade_no {out_trade_no}")
    if len(orders) > 1:
        raise HookError(409, f"several merchants have an order {out_trade_no}: give mchid")
    return orders[0]


def string_field(body: dict[str, Any], name: str, code: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise PaymentRefused(code, f"{name} is required")
    return value


# ---- playing the guest --------------------------------------------------------------------


@bp.post("/request-payment")
def request_payment() -> Response:
    """``wx.requestPayment``: check paySign and the prepay_id, pay, then notify (attempt 1) unless told not to.

    With ``"deliver": false`` attempt 1 waits, due now, for ``run-due``.
    """
    state = sandbox_state()
    body = payload()
    package = string_field(body, "package", "PREPAY_NOT_FOUND")
    timestamp = string_field(body, "timeStamp", "PAY_SIGN_INVALID")
    nonce = string_field(body, "nonceStr", "PAY_SIGN_INVALID")
    pay_sign = string_field(body, "paySign", "PAY_SIGN_INVALID")
    if body.get("signType") != "RSA":
        raise PaymentRefused("PAY_SIGN_INVALID", "signType must be RSA (API v3)")
    if not (timestamp.isdigit() and len(timestamp) == 10):
        raise PaymentRefused("PAY_SIGN_INVALID", "timeStamp must be a string of 10 digits (seconds)")
    if len(nonce) > 32:
        raise PaymentRefused("PAY_SIGN_INVALID", "nonceStr is longer than 32 characters")
    deliver_now = body.get("deliver", True)
    if not isinstance(deliver_now, bool):
        raise HookError(400, "deliver must be a boolean")
    with state.lock:
        pay = state.pay
        now = state.now()
        prepay = pay.prepays.get(package[len(PACKAGE_PREFIX):]) if package.startswith(PACKAGE_PREFIX) else None
        if prepay is None:
            raise PaymentRefused("PREPAY_NOT_FOUND", f"no order has package {package!r}")
        order = pay.orders[(prepay.mchid, prepay.out_trade_no)]
        app_id = body.get("appId", order.appid)
        if not isinstance(app_id, str) or not app_id:
            raise PaymentRefused("PAY_SIGN_INVALID", "appId must be a string")
        message = pay_sign_message(app_id, timestamp, nonce, package)
        if not rsa_verify(pay.merchants[order.mchid].public_key, message, pay_sign):
            raise PaymentRefused("PAY_SIGN_INVALID", "paySign does not verify with the merchant's public key")
        if app_id != order.appid:
            raise PaymentRefused("PAY_SIGN_INVALID", f"appId {app_id} is not the appid of the order")
        openid = body.get("openid")
        if openid is not None and openid != order.openid:
            raise PaymentRefused("PAYER_MISMATCH", f"the order is for payer {order.openid}, not {openid}")
        if order.trade_state in PAID_STATES:
            raise PaymentRefused("ORDER_PAID", f"order {order.out_trade_no} is already paid")
        if order.trade_state == "CLOSED":
            raise PaymentRefused("ORDER_CLOSED", f"order {order.out_trade_no} is closed")
        if now >= order.time_expire:
            raise PaymentRefused("ORDER_EXPIRED", f"order {order.out_trade_no} is past its time_expire")
        if prepay.prepay_id != order.prepay_ids[-1]:
            raise PaymentRefused("PREPAY_EXPIRED", "a newer prepay_id superseded this one")
        if now - prepay.issued_at > state.config["PAY_PREPAY_TTL_SECONDS"]:
            raise PaymentRefused("PREPAY_EXPIRED", "the prepay_id is older than its validity (2 hours)")
        mark_paid(state, order)
        event = queue_transaction_event(state, order)
        due_at = claim(state, event) if deliver_now else None  # so no run-due can take attempt 1 first
        answer = {"out_trade_no": order.out_trade_no, "transaction_id": order.transaction_id, "trade_state": "SUCCESS"}
    notify = None
    if due_at is not None:
        record = send_claimed(state, pay, event, due_at)
        notify = {key: record[key] for key in ("event_id", "attempt", "status", "error", "acknowledged")}
    return jsonify(answer | {"notify": notify})


SCANNER_OPENID = "o_sandbox_native_scanner"
SCAN_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>扫码支付 / Scan and pay</title></head>
<body><h1>微信支付（沙箱） / WeChat Pay (sandbox)</h1>
<p id="description">{description}</p><p>¥<span id="amount">{amount}</span> · <span id="state">{state}</span></p>
<form method="post" action="/__sandbox__/pay/scan"><input type="hidden" name="code_url" value="{code_url}">
<button type="submit" id="pay">确认支付 / Pay</button></form></body></html>"""
PAID_PAGE = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>支付成功 / Paid</title></head>
<body><h1 id="paid">支付成功 / Paid</h1><p>{out_trade_no} · <span id="transaction">{transaction_id}</span></p>
<p>notify: <span id="notify">{notify}</span></p></body></html>"""


def scanned_order(pay: PayState, code_url: str) -> PayOrder:
    key = pay.code_urls.get(code_url)
    if key is None:
        raise PaymentRefused("CODE_URL_NOT_FOUND", f"no Native order has code_url {code_url!r}")
    return pay.orders[key]


@bp.get("/scan")
def scan_page() -> Response:
    """What the payer's phone shows after scanning a Native ``code_url``: the order and a Pay button
    (a person, or a browser test, pays it here)."""
    code_url = request.args.get("code_url", "")
    state = sandbox_state()
    with state.lock:
        order = scanned_order(state.pay, code_url)
        page = SCAN_PAGE.format(description=escape(order.description), amount=f"{order.total / 100:.2f}",
                                state=order.trade_state, code_url=escape(code_url))
    return Response(page, content_type="text/html; charset=utf-8")


@bp.post("/scan")
def scan_and_pay() -> Response:
    """Scan a Native ``code_url`` and pay it: ``{"code_url", "openid"?, "deliver"?}`` as JSON, or the
    scan page's form. The order is paid by ``openid`` (a sandbox payer by default), then notified
    (attempt 1) like a JSAPI payment, unless ``"deliver": false``."""
    form = request.mimetype == "application/x-www-form-urlencoded"
    body = dict(request.form) if form else payload()
    code_url = body.get("code_url")
    if not isinstance(code_url, str) or not code_url:
        raise HookError(400, "code_url is required")
    openid = body.get("openid", SCANNER_OPENID)
    if not isinstance(openid, str) or not 1 <= len(openid) <= 128:
        raise HookError(400, "openid must be a string of 1-128 characters")
    deliver_now = body.get("deliver", True)
    if not isinstance(deliver_now, bool):
        raise HookError(400, "deliver must be a boolean")
    state = sandbox_state()
    with state.lock:
        pay = state.pay
        order = scanned_order(pay, code_url)
        if order.trade_state in PAID_STATES:
            raise PaymentRefused("ORDER_PAID", f"order {order.out_trade_no} is already paid")
        if order.trade_state == "CLOSED":
            raise PaymentRefused("ORDER_CLOSED", f"order {order.out_trade_no} is closed")
        if state.now() >= order.time_expire:
            raise PaymentRefused("ORDER_EXPIRED", f"order {order.out_trade_no} is past its time_expire")
        order.openid = openid
        mark_paid(state, order)
        event = queue_transaction_event(state, order)
        due_at = claim(state, event) if deliver_now else None
        answer = {"out_trade_no": order.out_trade_no, "transaction_id": order.transaction_id, "trade_state": "SUCCESS"}
    notify = None
    if due_at is not None:
        record = send_claimed(state, pay, event, due_at)
        notify = {key: record[key] for key in ("event_id", "attempt", "status", "error", "acknowledged")}
    if form:
        page = PAID_PAGE.format(out_trade_no=answer["out_trade_no"], transaction_id=answer["transaction_id"],
                                notify=escape(str((notify or {}).get("status"))))
        return Response(page, content_type="text/html; charset=utf-8")
    return jsonify(answer | {"notify": notify})


# ---- playing WeChat Pay -------------------------------------------------------------------


REFUND_OUTCOMES = ("SUCCESS", "ABNORMAL", "PROCESSING", "CLOSED")


@bp.post("/refund-outcome")
def set_refund_outcome() -> Response:
    """``{"status": "ABNORMAL"}``: refunds created from now on go abnormal (e.g. the payer's account is
    closed), until ``{"status": "SUCCESS"}``; ``PROCESSING``: they are answered processing and notified
    only when ``/refunds/<no>/resolve`` ends them (as an abnormal one is ended); ``CLOSED``: closed at once."""
    status = payload().get("status")
    if status not in REFUND_OUTCOMES:
        raise HookError(400, f"status must be one of {', '.join(REFUND_OUTCOMES)}")
    state = sandbox_state()
    with state.lock:
        state.pay.next_refund_status = status
    return jsonify(status=status)


@bp.post("/refunds/<out_refund_no>/resolve")
def resolve_refund(out_refund_no: str) -> Response:
    """End an abnormal or processing refund as WeChat Pay (or the merchant's operator there) would:
    ``{"status": "SUCCESS"}`` (paid back) or ``"CLOSED"`` (nothing paid back: the amount may be refunded
    again under a new out_refund_no); its notification is queued (sent by run-due)."""
    status = payload().get("status", "SUCCESS")
    if status not in ("SUCCESS", "CLOSED"):
        raise HookError(400, "status must be SUCCESS or CLOSED")
    state = sandbox_state()
    with state.lock:
        refund = next((r for (_, no), r in state.pay.refunds.items() if no == out_refund_no), None)
        if refund is None:
            raise HookError(404, f"unknown out_refund_no {out_refund_no}")
        if refund.status not in ("ABNORMAL", "PROCESSING"):
            raise HookError(409, f"refund {out_refund_no} is {refund.status}, not ABNORMAL or PROCESSING")
        refund.status, refund.success_time = status, state.now()
        if status == "CLOSED":  # a closed refund paid nothing back: its amount can be refunded anew
            state.pay.orders[(refund.mchid, refund.out_trade_no)].refunded -= refund.refund
        if refund.notify_url is not None:
            queue_refund_event(state, refund)
    return jsonify(out_refund_no=out_refund_no, status=status)


MERCHANT_REFUND_STATUSES = ("SUCCESS", "ABNORMAL", "CLOSED")


@bp.post("/orders/<out_trade_no>/merchant-refund")
def refund_at_merchant_platform(out_trade_no: str) -> Response:
    """The merchant's operator refunds a paid order by hand at WeChat Pay's merchant platform (never
    through the API, so the merchant did not choose the out_refund_no): ``{"refund"?: fen (what is
    left by default), "status"?: SUCCESS | ABNORMAL | CLOSED, "out_refund_no"?, "deliver"?, "mchid"?}``.
    WeChat Pay notifies the refund's end to the merchant's notification URL (here: the order's),
    encrypted and signed like any notification, attempt 1 at once unless ``"deliver": false`` (then
    due now, for ``run-due``); an ABNORMAL one is ended later by ``/refunds/<no>/resolve``."""
    body = payload()
    status = body.get("status", "SUCCESS")
    if status not in MERCHANT_REFUND_STATUSES:
        raise HookError(400, f"status must be one of {', '.join(MERCHANT_REFUND_STATUSES)}")
    deliver_now = body.get("deliver", True)
    if not isinstance(deliver_now, bool):
        raise HookError(400, "deliver must be a boolean")
    out_refund_no = body.get("out_refund_no")
    if out_refund_no is not None and (not isinstance(out_refund_no, str) or not 1 <= len(out_refund_no) <= 64):
        raise HookError(400, "out_refund_no must be a string of 1-64 characters")
    state = sandbox_state()
    with state.lock:
        pay = state.pay
        order = the_order(pay, out_trade_no, body.get("mchid"))
        if order.trade_state not in PAID_STATES:
            raise HookError(409, f"order {out_trade_no} is {order.trade_state}: only a paid order can be refunded")
        amount = positive_int(body, "refund", order.total - order.refunded or 1)
        if amount > order.total - order.refunded:
            raise HookError(409, f"only {order.total - order.refunded} fen of order {out_trade_no} is left to refund")
        now = state.now()
        out_refund_no = out_refund_no or "5" + beijing_digits(now) + random_digits(12)
        if (order.mchid, out_refund_no) in pay.refunds:
            raise HookError(409, f"the merchant has a refund {out_refund_no} already")
        refund = PayRefund(
            mchid=order.mchid, out_refund_no=out_refund_no, refund_id="503" + beijing_digits(now)[:8] + random_digits(18),
            out_trade_no=order.out_trade_no, transaction_id=order.transaction_id, reason="商户平台退款",
            notify_url=order.notify_url, refund=amount, total=order.total, currency=order.currency, created_at=now,
            success_time=now, params={"merchant_platform": True}, status=status)
        pay.refunds[(order.mchid, out_refund_no)] = refund
        order.refund_nos.append(out_refund_no)
        if status != "CLOSED":
            order.refunded += amount
            order.trade_state = "REFUND"
        event = queue_refund_event(state, refund)
        due_at = claim(state, event) if deliver_now else None
        answer = refund_object(refund)
    notify = None
    if due_at is not None:
        record = send_claimed(state, pay, event, due_at)
        notify = {key: record[key] for key in ("event_id", "attempt", "status", "error", "acknowledged")}
    return jsonify(answer | {"notify": notify})


@bp.post("/notifications/run-due")
def run_due_notifications() -> Response:
    """Send every pending notification attempt due by the virtual now; answers the list of deliveries made."""
    return jsonify(run_due(sandbox_state()))


@bp.post("/notify")
def send_crafted_notifications() -> Response:
    """Send hand-made notifications now (not retried); answers one ``{status, body, ...}`` per send."""
    state = sandbox_state()
    body = payload()
    variant = body.get("variant", "normal")
    if variant not in VARIANTS:
        raise HookError(400, f"variant must be one of {', '.join(VARIANTS)}")
    count = positive_int(body, "count", 1)
    concurrency = positive_int(body, "concurrency", 1)
    if count > MAX_COUNT or concurrency > MAX_CONCURRENCY:
        raise HookError(400, f"count is at most {MAX_COUNT}, concurrency at most {MAX_CONCURRENCY}")
    url = body.get("url")
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise HookError(400, "url must be an http(s) URL")
    distinct = body.get("distinct_events", False)
    if not isinstance(distinct, bool):
        raise HookError(400, "distinct_events must be a boolean")
    total = body.get("total", 100)
    if not isinstance(total, int) or isinstance(total, bool) or total < 1:
        raise HookError(400, "total must be a positive integer")
    mchid = body.get("mchid")
    spec = {"variant": variant, "count": count, "concurrency": concurrency, "url": url,
            "distinct_events": distinct, "total": total}
    with state.lock:
        pay = state.pay
        if variant == "unknown_order":
            out_trade_no = body.get("out_trade_no") or f"SANDBOX-UNKNOWN-{secrets.token_hex(4)}"
            if find_orders(pay, out_trade_no, mchid):
                raise HookError(409, f"the sandbox knows an order {out_trade_no}")
            merchant_id = mchid or next(iter(pay.merchants))
            if merchant_id not in pay.merchants:
                raise HookError(400, f"unknown mchid {merchant_id}")
            order = None
            spec["out_trade_no"] = out_trade_no
        else:
            order = the_order(pay, required_str(body, "out_trade_no"), mchid)
            merchant_id = order.mchid
        merchant = pay.merchants[merchant_id]
    records = craft(state, spec, order, merchant)
    return jsonify([
        {"status": record["status"], "body": record["response"], "error": record["error"],
         "event_id": record["event_id"]}
        for record in records
    ])


# ---- inspecting ---------------------------------------------------------------------------


@bp.get("/orders/<out_trade_no>")
def show_order(out_trade_no: str) -> Response:
    state = sandbox_state()
    with state.lock:
        return jsonify(order_view(the_order(state.pay, out_trade_no, request.args.get("mchid")), state.pay))


@bp.get("/notifications")
def list_notifications() -> Response:
    """Every delivery made (scheduled attempts and hand-made sends), oldest first."""
    state = sandbox_state()
    with state.lock:
        deliveries = list(state.pay.deliveries)
    return jsonify(notifications=deliveries)
