"""WeChat Pay API v3 (api.mch.weixin.qq.com), direct merchant JSAPI and Native, per WECHAT_PROTOCOLS.md §6.2–§6.4.

Every ``/v3`` call is recorded, may be slowed down (the delay hook), may be answered by an injected failure (HTTP 500 SYSTEM_ERROR
whatever the armed errcode), and must carry a valid merchant ``Authorization`` (else 401
SIGN_ERROR). Every answer, errors and 204 included, is signed with WeChat Pay's key. Views raise
``PayError``; times are the sandbox's virtual clock.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from wechat.sandbox.errors import request_id
from wechat.sandbox.pay_crypto import parse_authorization, request_message, rsa_verify, signed_headers
from wechat.sandbox.pay_model import (
    PAID_STATES,
    beijing_digits,
    issue_code_url,
    issue_prepay,
    random_digits,
    refund_object,
    transaction_object,
)
from wechat.sandbox.pay_notify import queue_refund_event
from wechat.sandbox.state import Merchant, PayOrder, PayRefund, SandboxState, sandbox_state

bp = Blueprint("wechat_sandbox_pay", __name__)

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
OUT_TRADE_NO_RE = re.compile(r"[0-9A-Za-z_\-|*]{6,32}")
OUT_REFUND_NO_RE = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")
RFC3339_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
DESCRIPTION_MAX, ATTACH_MAX, NOTIFY_URL_MAX, OPENID_MAX, REASON_MAX = 127, 128, 255, 128, 80
AUTH_MAX_SKEW = 300
MIN_EXPIRE_AHEAD = 60
DEFAULT_EXPIRE = 7 * 86400
MAX_EXPIRE = 90 * 86400


class PayError(Exception):
    """Raised by a view to answer ``{"code", "message"[, "detail"]}`` with an HTTP error status."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(status, code, message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


def param_error(field: str, value: Any, issue: str) -> PayError:
    """400 PARAM_ERROR pointing at a body field (``/amount/total`` style, as WeChat writes it)."""
    detail = {"field": field, "value": value, "issue": issue, "location": "body"}
    return PayError(400, "PARAM_ERROR", f"参数错误: {field} {issue}", detail)


def order_not_exist() -> PayError:
    return PayError(404, "ORDER_NOT_EXIST", "订单不存在")


# ---- framing: record, inject, authenticate, sign ------------------------------------------


def json_answer(body: Any, status: int = 200) -> Response:
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    return Response(data, status=status, content_type=JSON_CONTENT_TYPE)


def request_uri() -> str:
    """The path and query exactly as sent, which is what the merchant signed."""
    environ = request.environ
    uri = environ.get("RAW_URI") or environ.get("REQUEST_URI") or request.path
    query = environ.get("QUERY_STRING", "")
    if "?" not in uri and query:
        uri = f"{uri}?{query}"
    return uri


@bp.before_request
def authenticate() -> Response | None:
    state = sandbox_state()
    raw = request.get_data()
    state.record_request()
    state.wait_delay(request.path)
    failure = state.take_failure(request.path)
    if failure is not None:
        status, code = failure["pay_error"]
        raise PayError(status, code, "系统错误" if code == "SYSTEM_ERROR" else f"armed failure: {code}")
    fields = parse_authorization(request.headers.get("Authorization"))
    if fields is None:
        raise PayError(401, "SIGN_ERROR", "Http头Authorization值格式错误，请参考《微信支付商户REST API签名规则》")
    merchant = state.pay.merchants.get(fields["mchid"])
    if merchant is None:
        raise PayError(401, "SIGN_ERROR", "商户号不存在或未开通APIv3")
    if fields["serial_no"].upper() != merchant.serial_no.upper():
        raise PayError(401, "SIGN_ERROR", "商户证书序列号有误。请使用签名私钥匹配的证书序列号")
    timestamp = fields["timestamp"]
    if not (timestamp.isdigit() and len(timestamp) == 10):
        raise PayError(401, "SIGN_ERROR", "Http头Authorization中的timestamp格式错误，应为10位秒级时间戳")
    if abs(state.now() - int(timestamp)) > AUTH_MAX_SKEW:
        raise PayError(401, "SIGN_ERROR", "Http头Authorization中的timestamp与发起请求的时间不得超过5分钟")
    message = request_message(request.method, request_uri(), timestamp, fields["nonce_str"], raw)
    if not rsa_verify(merchant.public_key, message, fields["signature"]):
        raise PayError(401, "SIGN_ERROR", "签名错误，请检查后再试")
    g.pay_merchant = merchant
    return None


@bp.errorhandler(PayError)
def answer_pay_error(error: PayError) -> Response:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.detail is not None:
        body["detail"] = error.detail
    return json_answer(body, error.status)


@bp.errorhandler(HTTPException)
def answer_http_error(error: HTTPException) -> Response:
    code = (error.name or "ERROR").upper().replace(" ", "_")
    return json_answer({"code": code, "message": error.description or code}, error.code or 500)


@bp.errorhandler(Exception)
def answer_unexpected_error(error: Exception) -> Response:
    """A sandbox bug still gets WeChat Pay's shape (and signature); the traceback goes to the log."""
    current_app.logger.exception("wechat sandbox: /v3 call failed")
    return json_answer({"code": "SYSTEM_ERROR", "message": "系统错误"}, 500)


@bp.after_request
def sign_response(response: Response) -> Response:
    """WeChat Pay signs every answer, including errors and the empty body of a 204."""
    state = sandbox_state()
    body = b"" if response.status_code == 204 else response.get_data()
    if response.status_code == 204:
        response.set_data(b"")
        del response.headers["Content-Type"]
    response.headers.update(
        signed_headers(state.pay.private_key, state.config["PAY_PUBLIC_KEY_ID"], body, int(state.now()))
    )
    response.headers["Request-ID"] = request_id().upper()
    return response


# ---- helpers ------------------------------------------------------------------------------


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def json_object_body() -> dict[str, Any]:
    """The body parsed as a JSON object whatever the Content-Type."""
    raw = request.get_data()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise PayError(400, "PARAM_ERROR", "请求体不是合法的JSON对象")
    return body


def merchant() -> Merchant:
    return g.pay_merchant


def same_mchid(value: Any, location: str = "body") -> None:
    """The mchid in the body or query must be the one that signed the request."""
    if value is None or value == "":
        error = param_error("/mchid", value, "缺少参数 mchid")
    elif value != merchant().mchid:
        error = param_error("/mchid", value, "mchid与Authorization中的商户号不一致")
    else:
        return
    error.detail["location"] = location
    raise error


def required_str(body: dict[str, Any], name: str, path: str, max_length: int, min_length: int = 1) -> str:
    value = body.get(name)
    if value is None:
        raise param_error(path, value, f"缺少参数 {name}")
    if not isinstance(value, str):
        raise param_error(path, value, f"{name} 应为字符串")
    if not min_length <= len(value) <= max_length:
        raise param_error(path, value, f"{name} 长度应为 {min_length}-{max_length}")
    return value


def optional_str(body: dict[str, Any], name: str, path: str, max_length: int) -> str | None:
    if body.get(name) is None:
        return None
    return required_str(body, name, path, max_length)


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")  # WeChat Pay takes https only; the sandbox, local http too


def valid_notify_url(value: Any, path: str = "/notify_url") -> str:
    if value is None:
        raise param_error(path, value, "缺少参数 notify_url")
    if not isinstance(value, str) or len(value) > NOTIFY_URL_MAX:
        raise param_error(path, value, f"notify_url 应为不超过{NOTIFY_URL_MAX}个字符的URL")
    parts = urlsplit(value)
    local = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS  # the sandbox's own leniency
    if not parts.hostname or not (parts.scheme == "https" or local):
        raise param_error(path, value, "notify_url 必须为 https:// (或本机 http://) 的绝对URL")
    if parts.query or "?" in value or parts.fragment:
        raise param_error(path, value, "notify_url 不能携带参数")
    return value


def valid_time_expire(state: SandboxState, value: Any) -> float:
    now = state.now()
    if value is None:
        return now + DEFAULT_EXPIRE
    if not isinstance(value, str) or not RFC3339_RE.fullmatch(value):
        raise param_error("/time_expire", value, "time_expire 应为 rfc3339 格式，如 2018-06-08T10:34:56+08:00")
    try:
        expire = datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise param_error("/time_expire", value, "time_expire 不是合法的时间") from None
    if expire < now + MIN_EXPIRE_AHEAD:
        raise param_error("/time_expire", value, "time_expire 必须晚于下单时间至少1分钟")
    if expire > now + MAX_EXPIRE:
        raise param_error("/time_expire", value, "time_expire 不能晚于下单时间90天")
    return expire


def valid_amount(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``amount`` with positive integer fen in each of ``names`` and currency CNY (the default)."""
    amount = body.get("amount")
    if not isinstance(amount, dict):
        raise param_error("/amount", amount, "缺少参数 amount 或 amount 不是对象")
    checked: dict[str, Any] = {}
    for name in names:
        value = amount.get(name)
        if not is_int(value) or value < 1:
            raise param_error(f"/amount/{name}", value, f"{name} 应为正整数（单位：分）")
        checked[name] = value
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise param_error("/amount/currency", currency, "Currency code is invalid: 境内商户号仅支持人民币 CNY")
    checked["currency"] = currency
    return checked


# ---- orders -------------------------------------------------------------------------------


@bp.post("/v3/pay/transactions/jsapi")
def create_jsapi_order() -> Response:
    """Create an order, or repeat it: same parameters → its latest live prepay_id."""
    return create_order("JSAPI")


@bp.post("/v3/pay/transactions/native")
def create_native_order() -> Response:
    """Create a Native order (no payer: whoever scans its code pays), or repeat it: same
    parameters → the same ``code_url`` (it stays valid until the order's time_expire)."""
    return create_order("NATIVE")


def create_order(trade_type: str) -> Response:
    state = sandbox_state()
    body = json_object_body()
    mch = merchant()
    appid = required_str(body, "appid", "/appid", 32)
    same_mchid(body.get("mchid"))
    if appid != mch.appid:
        raise PayError(400, "APPID_MCHID_NOT_MATCH", "appid和mchid不匹配，请检查后再试")
    description = required_str(body, "description", "/description", DESCRIPTION_MAX)
    out_trade_no = required_str(body, "out_trade_no", "/out_trade_no", 32)
    if not OUT_TRADE_NO_RE.fullmatch(out_trade_no):
        raise param_error("/out_trade_no", out_trade_no, "out_trade_no 应为6-32位数字、大小写字母、_-|*")
    attach = optional_str(body, "attach", "/attach", ATTACH_MAX)
    notify_url = valid_notify_url(body.get("notify_url"))
    amount = valid_amount(body, ("total",))
    openid = None
    if trade_type == "JSAPI":
        payer = body.get("payer")
        openid = payer.get("openid") if isinstance(payer, dict) else None
        if not isinstance(openid, str) or not 1 <= len(openid) <= OPENID_MAX:
            raise param_error("/payer/openid", openid, "缺少参数 payer.openid")
    params = {
        "trade_type": trade_type,
        "appid": appid,
        "description": description,
        "attach": attach,
        "notify_url": notify_url,
        "amount": amount,
        "openid": openid,
        "time_expire": body.get("time_expire"),
    }
    with state.lock:
        pay = state.pay
        now = state.now()
        order = pay.orders.get((mch.mchid, out_trade_no))
        if order is None:
            order = PayOrder(
                mchid=mch.mchid,
                appid=appid,
                out_trade_no=out_trade_no,
                description=description,
                attach=attach,
                notify_url=notify_url,
                total=amount["total"],
                currency=amount["currency"],
                openid=openid,
                time_expire=valid_time_expire(state, body.get("time_expire")),
                params=params,
                created_at=now,
                trade_type=trade_type,
            )
            pay.orders[(mch.mchid, out_trade_no)] = order
            if trade_type == "NATIVE":
                return json_answer({"code_url": issue_code_url(state, order)})
            return json_answer({"prepay_id": issue_prepay(state, order)})
        if order.trade_state in PAID_STATES:
            raise PayError(403, "ORDERPAID", "该订单已支付")
        if order.trade_state == "CLOSED":
            raise PayError(403, "ORDER_CLOSED", "该订单已关闭，请使用新的商户订单号下单")
        if order.params != params:
            raise PayError(403, "OUT_TRADE_NO_USED", "商户订单号重复，且与原订单参数不一致")
        if now >= order.time_expire:
            raise PayError(403, "OUT_TRADE_NO_USED", "该订单已过time_expire，请关单后使用新的商户订单号下单")
        if trade_type == "NATIVE":
            return json_answer({"code_url": order.code_url})
        latest = pay.prepays[order.prepay_ids[-1]]
        if now - latest.issued_at > state.config["PAY_PREPAY_TTL_SECONDS"]:
            return json_answer({"prepay_id": issue_prepay(state, order)})
        return json_answer({"prepay_id": latest.prepay_id})


def query_mchid() -> None:
    same_mchid(request.args.get("mchid"), location="query")


@bp.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
def query_by_out_trade_no(out_trade_no: str) -> Response:
    query_mchid()
    state = sandbox_state()
    with state.lock:
        order = state.pay.orders.get((merchant().mchid, out_trade_no))
        if order is None:
            raise order_not_exist()
        return json_answer(transaction_object(order))


@bp.get("/v3/pay/transactions/id/<transaction_id>")
def query_by_transaction_id(transaction_id: str) -> Response:
    query_mchid()
    state = sandbox_state()
    with state.lock:
        key = state.pay.transactions.get(transaction_id)
        if key is None or key[0] != merchant().mchid:
            raise order_not_exist()
        return json_answer(transaction_object(state.pay.orders[key]))


@bp.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
def close_order(out_trade_no: str) -> Response:
    """204; not before PAY_CLOSE_MIN_AGE_SECONDS; a paid order cannot be closed; closing twice is fine."""
    state = sandbox_state()
    same_mchid(json_object_body().get("mchid"))
    with state.lock:
        order = state.pay.orders.get((merchant().mchid, out_trade_no))
        if order is None:
            raise order_not_exist()
        if order.trade_state in PAID_STATES:
            raise PayError(403, "ORDERPAID", "订单已支付，不能关单")
        now = state.now()
        if order.trade_state == "NOTPAY":
            if now - order.created_at < state.config["PAY_CLOSE_MIN_AGE_SECONDS"]:
                raise PayError(400, "INVALID_REQUEST", "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟")
            order.trade_state = "CLOSED"
            order.closed_at = now
    return Response(status=204)


# ---- refunds ------------------------------------------------------------------------------


@bp.post("/v3/refund/domestic/refunds")
def create_refund() -> Response:
    """Refund part or all of a paid order; the same out_refund_no again answers the same refund."""
    state = sandbox_state()
    body = json_object_body()
    mch = merchant()
    transaction_id = optional_str(body, "transaction_id", "/transaction_id", 32)
    out_trade_no = optional_str(body, "out_trade_no", "/out_trade_no", 32)
    if transaction_id is None and out_trade_no is None:
        raise param_error("/out_trade_no", None, "transaction_id 和 out_trade_no 必须二选一")
    out_refund_no = required_str(body, "out_refund_no", "/out_refund_no", 64)
    if not OUT_REFUND_NO_RE.fullmatch(out_refund_no):
        raise param_error("/out_refund_no", out_refund_no, "out_refund_no 应为1-64位数字、大小写字母、_-|*@")
    reason = optional_str(body, "reason", "/reason", REASON_MAX)
    notify_url = None if body.get("notify_url") is None else valid_notify_url(body["notify_url"])
    amount = valid_amount(body, ("refund", "total"))
    if amount["refund"] > amount["total"]:
        raise param_error("/amount/refund", amount["refund"], "退款金额不能大于原订单金额")
    with state.lock:
        pay = state.pay
        key = (mch.mchid, out_trade_no) if transaction_id is None else pay.transactions.get(transaction_id)
        order = None if key is None or key[0] != mch.mchid else pay.orders.get(key)
        if order is None:
            raise PayError(404, "RESOURCE_NOT_EXISTS", "订单不存在")
        if out_trade_no is not None and order.out_trade_no != out_trade_no:
            raise param_error("/out_trade_no", out_trade_no, "out_trade_no 与 transaction_id 不是同一笔订单")
        params = {"out_trade_no": order.out_trade_no, "reason": reason, "notify_url": notify_url, "amount": amount}
        existing = pay.refunds.get((mch.mchid, out_refund_no))
        if existing is not None:
            if existing.params != params:
                raise PayError(400, "INVALID_REQUEST", "商户退款单号已被使用，且与原退款参数不一致")
            return json_answer(refund_object(existing))
        if order.trade_state not in PAID_STATES:
            raise PayError(400, "INVALID_REQUEST", "订单未支付，不能退款")
        if amount["total"] != order.total:
            raise param_error("/amount/total", amount["total"], "订单金额与原订单金额不一致")
        if amount["refund"] > order.total - order.refunded:
            raise PayError(403, "NOT_ENOUGH", "可退金额不足：申请退款金额超过订单剩余可退金额")
        now = state.now()
        refund = PayRefund(
            mchid=mch.mchid,
            out_refund_no=out_refund_no,
            refund_id="503" + beijing_digits(now)[:8] + random_digits(18),
            out_trade_no=order.out_trade_no,
            transaction_id=order.transaction_id,
            reason=reason,
            notify_url=notify_url,
            refund=amount["refund"],
            total=order.total,
            currency=amount["currency"],
            created_at=now,
            success_time=now,
            params=params,
            status=pay.next_refund_status,
        )
        pay.refunds[(mch.mchid, out_refund_no)] = refund
        order.refund_nos.append(out_refund_no)
        if refund.status != "CLOSED":  # a refund closed at once pays nothing back
            order.refunded += refund.refund
            order.trade_state = "REFUND"
        if notify_url is not None and refund.status != "PROCESSING":  # PROCESSING: notified when it ends
            queue_refund_event(state, refund)  # delivered by run-due: never while the caller waits
        return json_answer(refund_object(refund))


@bp.get("/v3/refund/domestic/refunds/<out_refund_no>")
def query_refund(out_refund_no: str) -> Response:
    state = sandbox_state()
    with state.lock:
        refund = state.pay.refunds.get((merchant().mchid, out_refund_no))
        if refund is None:
            raise PayError(404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        return json_answer(refund_object(refund))


@bp.route("/v3/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown_api(rest: str) -> Response:
    raise PayError(404, "NOT_FOUND", f"接口不存在: /v3/{rest}")
