from __future__ import annotations

from flask import jsonify, request
from flask_smorest import Blueprint

from carbon.accounts.auth import current_user, public
from carbon.checkout import service
from carbon.core.errors import ValidationError
from carbon.core.openapi import answers
from schemas.checkout import OrderCreatedOut, OrderIn, OrdersOut, WeChatPayAnswer

blp = Blueprint("orders", __name__, url_prefix="/api/v1", description="订单与支付 / Orders and payment")

IDEMPOTENCY_HEADER = "Idempotency-Key"


@blp.route("/orders", methods=["POST"])
@answers(404, 409, 410, 502)  # scene unknown or closed; key in progress or reused, sold out; WeChat Pay down
@blp.doc(parameters=[{"in": "header", "name": IDEMPOTENCY_HEADER, "required": True, "schema": {
    "type": "string", "minLength": 1, "maxLength": 64}, "description": "the same key returns the same order; "
    "retry with it after a 5xx"}])
@blp.arguments(OrderIn)
@blp.response(201, OrderCreatedOut)
def create_order(body):
    """Reserve credits for a footprint (or kg) and start the WeChat Pay payment.

    Send an ``Idempotency-Key`` header: the same key returns the same order; a concurrent
    duplicate gets 409 ``order.in_progress``."""
    key = request.headers.get(IDEMPOTENCY_HEADER, "").strip()
    if not key or len(key) > 64:
        raise ValidationError(code="order.idempotency_key_required",
                              details={IDEMPOTENCY_HEADER: ["需要 1-64 个字符 / 1-64 characters required"]})
    order, params = service.create_order(current_user(), body, key)
    return {"order": order, "request_payment": params}


@blp.route("/orders", methods=["GET"])
@blp.response(200, OrdersOut)
def list_orders():
    return {"items": service.orders_of(current_user())}


@blp.route("/orders/<string:order_id>", methods=["GET"])
@blp.response(200, OrderCreatedOut)
def get_order(order_id):
    """An order of the guest's, with fresh ``wx.requestPayment`` parameters while it awaits payment."""
    order = service.get_order(current_user(), order_id)
    params = service.payment_params(order) if order.status == "awaiting_payment" else None
    return {"order": order, "request_payment": params}


notify = Blueprint("wechatpay_notify", __name__, url_prefix="/api/v1/payments",
                   description="微信支付回调 / WeChat Pay notifications")


@notify.route("/wechatpay/notify", methods=["POST"])
@answers(413)
@notify.alt_response(204, description="taken (also a duplicate, or an event with nothing to do)", success=True)
@notify.alt_response(400, schema=WeChatPayAnswer, description="does not match the payment (amount, appid, mchid …)")
@notify.alt_response(401, schema=WeChatPayAnswer, description="signature or timestamp not trusted")
@notify.alt_response(503, description="cannot be processed now: WeChat Pay retries", schema={
    "oneOf": [{"$ref": "#/components/schemas/WeChatPayAnswer"}, {"$ref": "#/components/schemas/ErrorEnvelope"}]})
@notify.alt_response(500, description="a bug: WeChat Pay retries", schema={
    "oneOf": [{"$ref": "#/components/schemas/WeChatPayAnswer"}, {"$ref": "#/components/schemas/ErrorEnvelope"}]})
@public
def wechatpay_notify():
    """WeChat Pay's payment notification: verified on the raw body, confirmed at most once.

    Answers 204 (also for duplicates), 4xx ``{"code": "FAIL"}`` for what cannot be trusted, 5xx
    when it cannot be processed now (WeChat Pay retries)."""
    status, answer = service.handle_notify(dict(request.headers), request.get_data(cache=False))
    if answer is None:
        return "", status
    response = jsonify(answer)
    response.status_code = status
    return response
