from __future__ import annotations

from flask import Response, jsonify, request
from werkzeug.exceptions import HTTPException

from carbon.accounts.auth import current_user, public
from carbon.checkout import inbox, orders
from carbon.checkout.outcomes import Outcome
from carbon.core.db import kept_after_commit
from carbon.core.errors import ValidationError
from carbon.core.http import provider_format
from carbon.core.openapi import Blueprint, answers
from carbon.core.text import unstorable, unstorable_message
from carbon.invoices import service as invoices
from carbon.metrics import count_notify
from schemas.checkout import OrderCreatedOut, OrderIn, OrdersOut, OrderStatusOut, WeChatPayAnswer

blp = Blueprint("orders", __name__, url_prefix="/api/v1", description="订单与支付 / Orders and payment")

IDEMPOTENCY_HEADER = "Idempotency-Key"


def idempotency_key() -> str:
    """The request's ``Idempotency-Key`` (1-64 characters the service can store), for every route that
    creates an order."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key or len(key) > 64:
        raise ValidationError(code="order.idempotency_key_required",
                              details={IDEMPOTENCY_HEADER: ["需要 1-64 个字符 / 1-64 characters required"]})
    character = unstorable(key)
    if character:
        raise ValidationError(code="order.idempotency_key_required",
                              details={IDEMPOTENCY_HEADER: [unstorable_message(character)]})
    return key


@blp.route("/orders", methods=["POST"])
@answers(404, 409, 410, 429, 502)  # scene gone; key busy or reused, sold out, hold limit; WeChat checks and Pay
@blp.doc(parameters=[{"in": "header", "name": IDEMPOTENCY_HEADER, "required": True, "schema": {
    "type": "string", "minLength": 1, "maxLength": 64}, "description": "the same key returns the same order; "
    "retry with it after a 5xx"}])
@blp.arguments(OrderIn)
@blp.response(201, OrderCreatedOut)
@kept_after_commit()  # answers the order and payment it writes, over three commits
def create_order(body):
    """Reserve credits for a footprint (or kg) and start the WeChat Pay payment.

    Send an ``Idempotency-Key`` header: the same key returns the same order; a concurrent
    duplicate gets 409 ``order.in_progress``."""
    order, params = orders.create_order(current_user(), body, idempotency_key())
    return {"order": order, "request_payment": params}


@blp.route("/orders", methods=["GET"])
@blp.response(200, OrdersOut)
def list_orders():
    return {"items": orders.orders_of(current_user())}


@blp.route("/orders/<string:order_id>", methods=["GET"])
@blp.response(200, OrderCreatedOut)
def get_order(order_id):
    """An order of the guest's, with fresh ``wx.requestPayment`` parameters while it awaits payment."""
    order = orders.get_order(current_user(), order_id)
    params = orders.payment_params(order) if order.status == "awaiting_payment" else None
    return {"order": order, "request_payment": params}


@blp.route("/orders/<string:order_id>/status", methods=["GET"])
@blp.response(200, OrderStatusOut)
def get_order_status(order_id):
    """What to poll after ``wx.requestPayment``: the status, and the certificate's number once it is
    ``fulfilled``. Cheaper than the whole order; poll after 0.3, 0.5, 0.8, 1.2 s, then every 2 s
    (as the simulator does)."""
    return orders.order_status(current_user(), order_id)


@blp.route("/orders/<string:order_id>/receipt.pdf", methods=["GET"])
@answers(409)  # order.not_paid
@blp.response(200, content_type="application/pdf", description="the receipt, one A4 page")
@blp.doc(responses={"200": {"description": "the receipt, one A4 page", "content": {
    "application/pdf": {"schema": {"type": "string", "format": "binary"}}}}})
def order_receipt(order_id):
    """The receipt of one of the guest's paid orders (also once refunded, saying so) as a PDF,
    Chinese first: 409 ``order.not_paid`` before it is paid, 404 for someone else's order."""
    order = orders.get_order(current_user(), order_id)
    return Response(invoices.receipt_pdf(order), mimetype="application/pdf", headers={
        "Content-Disposition": f'inline; filename="receipt-{order.public_id}.pdf"'})


notify = Blueprint("wechatpay_notify", __name__, url_prefix="/api/v1/payments",
                   description="微信支付回调 / WeChat Pay notifications")


# What WeChat Pay is answered for each outcome; every other outcome is acknowledged with 204.
NOT_ACKNOWLEDGED = {
    Outcome.MALFORMED: (400, "请求体无法解析 / malformed body"),
    Outcome.MISMATCH: (400, "与订单不符 / mismatch"),
    Outcome.REJECTED: (401, "验签失败 / rejected"),
    Outcome.FAILED: (500, "处理失败，稍后重试 / failed, retry later"),
    Outcome.DEFERRED: (503, "稍后重试 / busy, retry later"),
}


def wechatpay_answer(status: int, message: str):
    response = jsonify({"code": "FAIL", "message": message})
    response.status_code = status
    return response


@notify.errorhandler(HTTPException)
def _http_error_as_wechatpay_answer(exc: HTTPException):
    """A body over the size limit (413) or any other HTTP error, answered the way WeChat Pay reads it."""
    return wechatpay_answer(exc.code or 400, f"{exc.name}")


@notify.route("/wechatpay/notify", methods=["POST"])
@notify.alt_response(204, description="recorded (also a duplicate, or an event with nothing to do)", success=True)
@notify.alt_response(400, schema=WeChatPayAnswer, description="malformed, or does not match the payment")
@notify.alt_response(401, schema=WeChatPayAnswer, description="signature or timestamp not trusted")
@notify.alt_response(413, schema=WeChatPayAnswer, description="body over the size limit")
@notify.alt_response(500, description="failed: WeChat Pay retries", schema={
    "oneOf": [{"$ref": "#/components/schemas/WeChatPayAnswer"}, {"$ref": "#/components/schemas/ErrorEnvelope"}]})
@notify.alt_response(503, description="cannot be processed now: WeChat Pay retries", schema={
    "oneOf": [{"$ref": "#/components/schemas/WeChatPayAnswer"}, {"$ref": "#/components/schemas/ErrorEnvelope"}]})
@public
@provider_format
def wechatpay_notify():
    """WeChat Pay's payment and refund notifications: verified on the raw body, recorded once,
    confirmed at most once.

    Answers 204 when recorded (also for duplicates), 4xx ``{"code": "FAIL"}`` for what cannot be
    trusted, 5xx when it cannot be processed now (WeChat Pay retries) — always in WeChat Pay's format."""
    receipt = inbox.handle_notify(dict(request.headers), request.get_data(cache=False))
    count_notify(receipt.outcome)
    if receipt.outcome not in NOT_ACKNOWLEDGED:
        return "", 204
    status, message = NOT_ACKNOWLEDGED[receipt.outcome]
    return wechatpay_answer(status, f"{message}: {receipt.detail}" if receipt.detail else message)
