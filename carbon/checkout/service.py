"""Orders and their payments: create (idempotent), confirm exactly once, expire, reconcile, refund.

The unit of work is here. The payment row, with our ``out_trade_no``, is committed before WeChat
Pay is called, so a notification can never arrive for a payment we do not know.
"""
from __future__ import annotations

import hashlib
import json
import logging
import secrets
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import joinedload

from carbon.accounts.models import User
from carbon.checkout import states
from carbon.checkout.models import IdempotencyKey, NotifyEvent, Order, OutboxEvent, Payment
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ, utcnow
from carbon.core.db import db, on_postgresql
from carbon.core.errors import Conflict, NotFound, UpstreamError, ValidationError
from carbon.core.failpoints import failpoint
from carbon.core.units import cny, cny_ceil, kg, kg_to_grams, to_fen
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.footprint.models import Footprint
from carbon.ledger import service as ledger
from carbon.ledger import settlement
from carbon.ledger.models import LedgerTransaction
from carbon.scenes import service as scenes
from carbon.scenes import stats as scene_stats
from payments.provider import NotifyRejected, ProviderError, ProviderRefused, Transaction

log = logging.getLogger("diandian.checkout")
LOCK_TIMEOUT = "3s"
CONFIRMABLE = {state for state, targets in states.PAYMENT_TRANSITIONS.items() if "confirmed" in targets}


class OrderNotFound(NotFound):
    code = "order.not_found"
    message = "未找到该订单 / Order not found"


class OrderInProgress(Conflict):
    code = "order.in_progress"
    message = "相同的请求正在处理中，请稍后重试 / The same request is being processed; retry shortly"


class IdempotencyKeyReused(Conflict):
    code = "order.idempotency_key_reused"
    message = "该幂等键已用于另一个请求 / This Idempotency-Key was used for a different request"


class PaymentUnavailable(UpstreamError):
    code = "payment.unavailable"
    message = "微信支付暂不可用，请稍后再试 / WeChat Pay is unavailable, try again later"


# --- creating an order ---------------------------------------------------------------------

def create_order(user: User, body: dict, idempotency_key: str) -> tuple[Order, dict[str, str]]:
    """A new order (or the one this key already made) and its ``wx.requestPayment`` parameters."""
    request_hash = request_fingerprint(body)
    claim = IdempotencyKey(user_id=user.id, key=idempotency_key, request_hash=request_hash)
    db.session.add(claim)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        return _replay(user, idempotency_key, request_hash)
    try:
        order, payment = _reserve_and_record(user, body, claim)
    except BaseException:
        db.session.rollback()
        _forget(claim.id)
        raise
    try:
        prepay_id = ext.payments().create(
            out_trade_no=payment.out_trade_no, description=f"碳中和 {order.kg.normalize():f} kg · {order.project.name_zh}",
            total_fen=to_fen(order.amount), openid=user.openid, time_expire=order.expires_at,
            attach=order.public_id)
    except ProviderError as exc:
        _abandon(order, payment, reason=str(exc))
        _forget(claim.id)
        raise PaymentUnavailable(details={"provider": exc.code or "unreachable"}) from exc
    payment.prepay_id = prepay_id
    states.move(payment, states.PAYMENT_TRANSITIONS, "pending")
    states.move(order, states.ORDER_TRANSITIONS, "awaiting_payment")
    db.session.commit()
    return order, ext.payments().client_params(prepay_id)


def request_fingerprint(body: dict) -> str:
    """What makes two order requests "the same" for an Idempotency-Key: the validated body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _reserve_and_record(user: User, body: dict, claim: IdempotencyKey) -> tuple[Order, Payment]:
    settings = ext.settings()
    footprint = _footprint(user, body.get("footprint_id"))
    wanted_kg = Decimal(footprint.result["neutralize_kg"]) if footprint else body["kg"]
    scene = scenes.footprint_facts(body["scene"]) if body.get("scene") else {}
    if footprint and not scene and footprint.scene_id:
        scene = {"scene_id": footprint.scene_id, "channel": footprint.channel or ""}
    project = _project(body.get("project_id"), scene.get("scene_id"))
    units = int(credits.ceil_units(wanted_kg, project.unit_kg))
    if units * project.unit_kg > settings.MAX_ORDER_KG:
        raise ValidationError(details={"kg": [f"单笔最多 / At most {settings.MAX_ORDER_KG} kg per order"]})
    now = utcnow()
    order = Order(user_id=user.id, project=project, footprint_id=footprint.id if footprint else None,
                  scene_id=scene.get("scene_id"), channel=scene.get("channel"), units=units,
                  kg=kg(units * project.unit_kg), amount=Decimal(0),
                  beneficiary_name=body.get("beneficiary_name") or user.nickname or "点点用户",
                  purpose=body.get("purpose") or _purpose(scene), created_at=now,
                  expires_at=now + timedelta(minutes=settings.ORDER_RESERVATION_MINUTES))
    db.session.add(order)
    db.session.flush()
    price = credits.reserve(project, order.id, units, order.expires_at)
    order.amount = max(cny_ceil(price), cny(settings.MIN_ORDER_AMOUNT))
    payment = Payment(order=order, provider=ext.payments().name, out_trade_no=_out_trade_no(),
                      amount=order.amount)
    db.session.add(payment)
    claim.order_id = order.id
    db.session.commit()  # the payment row exists before WeChat Pay hears of it
    return order, payment


def _replay(user: User, key: str, request_hash: str) -> tuple[Order, dict[str, str]]:
    claim = db.session.scalar(select(IdempotencyKey).where(IdempotencyKey.user_id == user.id,
                                                           IdempotencyKey.key == key))
    if claim is None:
        raise OrderInProgress()
    if claim.request_hash != request_hash:
        raise IdempotencyKeyReused()
    order = db.session.get(Order, claim.order_id) if claim.order_id else None
    if order is None or order.status == "created":
        raise OrderInProgress(details={"retry_after_seconds": 2})
    return order, payment_params(order)


def _forget(claim_id: int) -> None:
    """Drop a claim whose request failed, so the client may retry with the same key."""
    db.session.rollback()
    claim = db.session.get(IdempotencyKey, claim_id)
    if claim is not None:
        db.session.delete(claim)
        db.session.commit()


def _abandon(order: Order, payment: Payment, reason: str) -> None:
    db.session.rollback()
    states.move(payment, states.PAYMENT_TRANSITIONS, "failed")
    payment.provider_data = {"error": reason}
    states.move(order, states.ORDER_TRANSITIONS, "cancelled")
    order.closed_at = utcnow()
    credits.release(order)
    db.session.commit()


def _footprint(user: User, public_id: str | None) -> Footprint | None:
    if not public_id:
        return None
    footprint = db.session.scalar(select(Footprint).where(Footprint.public_id == public_id))
    if footprint is None or footprint.user_id != user.id:
        raise ValidationError(code="order.unknown_footprint", details={"footprint_id": ["未找到 / Not found"]})
    return footprint


def _project(public_id: str | None, scene_id: int | None) -> Project:
    if public_id:
        project = db.session.scalar(select(Project).where(Project.public_id == public_id,
                                                          Project.status == "active"))
        if project is None:
            raise ValidationError(details={"project_id": ["未知项目 / Unknown project"]})
        return project
    if scene_id:
        offered = scenes.offered_projects(scene_id)
        if offered:
            return offered[0]
    on_offer = credits.active_projects()
    if not on_offer:
        raise ValidationError(details={"project_id": ["暂无可售项目 / No project on offer"]})
    return on_offer[0]


def _purpose(scene: dict) -> str:
    name = scenes.scene_name(scene["scene_id"]) if scene.get("scene_id") else None
    return f"{name}，个人碳中和 / personal carbon neutrality" if name else "个人碳中和 / personal carbon neutrality"


def _out_trade_no() -> str:
    return "DD" + utcnow().astimezone(CHINA_TZ).strftime("%Y%m%d%H%M%S") + secrets.token_hex(7).upper()


def payment_params(order: Order) -> dict[str, str]:
    payment = _live_payment(order)
    return ext.payments().client_params(payment.prepay_id) if payment and payment.prepay_id else {}


def _live_payment(order: Order) -> Payment | None:
    return next((p for p in reversed(order.payments) if p.status in ("pending", "confirmed")), None)


def get_order(user: User, public_id: str) -> Order:
    order = db.session.scalar(select(Order).where(Order.public_id == public_id))
    if order is None or order.user_id != user.id:
        raise OrderNotFound()
    return order


def orders_of(user: User, limit: int = 20) -> list[Order]:
    return list(db.session.scalars(select(Order).where(Order.user_id == user.id)
                                   .order_by(Order.id.desc()).limit(limit)))


# --- confirmation: exactly once ----------------------------------------------------------------

def handle_notify(headers: dict[str, str], body: bytes) -> tuple[int, dict | None]:
    """A WeChat Pay notification → (HTTP status, JSON answer). 204 on success and on duplicates;
    4xx with ``{"code": "FAIL"}`` when it cannot be trusted; 5xx when it cannot be processed now."""
    try:
        notification = ext.payments().parse_notify(headers, body)
    except NotifyRejected as exc:
        log.warning("notify rejected", extra={"fields": {"reason": exc.reason}})
        return 401, {"code": "FAIL", "message": f"验签失败 / rejected: {exc.reason}"}
    transaction = notification.transaction
    if transaction is None or notification.event_type != "TRANSACTION.SUCCESS":
        return 204, None  # other events: nothing to do here
    try:
        outcome = confirm(transaction, event_id=notification.event_id)
    except PaymentMismatch as exc:
        log.warning("notify mismatch", extra={"fields": {"reason": exc.reason,
                                                          "out_trade_no": transaction.out_trade_no}})
        return 400, {"code": "FAIL", "message": f"与订单不符 / mismatch: {exc.reason}"}
    except OperationalError as exc:  # lock timeout, or the database is unreachable
        db.session.rollback()
        log.warning("notify deferred", extra={"fields": {"error": type(exc.orig).__name__}})
        return 503, {"code": "FAIL", "message": "稍后重试 / busy, retry later"}
    log.info("notify processed", extra={"fields": {"outcome": outcome, "out_trade_no": transaction.out_trade_no}})
    return 204, None


class PaymentMismatch(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def confirm(transaction: Transaction, *, event_id: str | None = None) -> str:
    """Confirm a paid transaction at most once: under the payment's row lock, after checking that
    amount, currency, appid and mchid are ours; then retire, post, mark paid, queue — one commit.

    On PostgreSQL the ``checkout_confirm`` function takes these steps server-side as one statement
    in its own transaction (decision 0008); elsewhere they run here in the session. Both write the
    same rows; tests hold them to it."""
    confirm_path = _confirm_in_database if _confirms_in_database() else _confirm_in_session
    outcome, detail = confirm_path(transaction, event_id)
    if outcome == "mismatch":
        raise PaymentMismatch(detail)
    if outcome == "refused":
        raise states.TransitionRefused(details={"status": [f"{detail} → paid"]})
    if outcome == "orphaned":  # paid after we gave the order up: the money is queued for a refund
        log.error("payment for a closed order", extra={"fields": {"out_trade_no": transaction.out_trade_no}})
    return outcome


def _confirms_in_database() -> bool:
    return ext.settings().CONFIRM_IN_DATABASE and on_postgresql()


# Sent as driver SQL (psycopg placeholders): this is the hottest statement of the payment path.
CONFIRM_CALL = (
    "SELECT outcome, detail FROM checkout_confirm(%(out_trade_no)s, %(trade_state)s, %(transaction_id)s, "
    "%(total_fen)s, %(currency)s, %(appid)s, %(mchid)s, %(event_id)s, %(provider_data)s::json, %(expected_appid)s, "
    "%(expected_mchid)s, string_to_array(%(confirmable)s, ','), string_to_array(%(payable)s, ','), "
    "%(fee_rate)s::numeric, %(now)s, %(today)s, %(lock_timeout)s)")
CONFIRMABLE_LIST = ",".join(sorted(CONFIRMABLE))
PAYABLE_LIST = ",".join(sorted(state for state, targets in states.ORDER_TRANSITIONS.items() if "paid" in targets))


def _confirm_in_database(transaction: Transaction, event_id: str | None) -> tuple[str, str | None]:
    """One statement, committed on its own (autocommit): one round trip. A process that dies before
    it answers has either confirmed (WeChat's retry is then a duplicate) or written nothing."""
    settings = ext.settings()
    now = utcnow()
    failpoint("checkout.confirm.before_commit")
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        outcome, detail = connection.exec_driver_sql(CONFIRM_CALL, {
            "out_trade_no": transaction.out_trade_no, "trade_state": transaction.trade_state,
            "transaction_id": transaction.transaction_id, "total_fen": transaction.total_fen,
            "currency": transaction.currency, "appid": transaction.appid, "mchid": transaction.mchid,
            "event_id": event_id, "provider_data": json.dumps(transaction.raw, ensure_ascii=False),
            "expected_appid": settings.WECHAT_APPID, "expected_mchid": settings.WECHATPAY_MCHID,
            "confirmable": CONFIRMABLE_LIST, "payable": PAYABLE_LIST, "fee_rate": settings.PLATFORM_FEE_RATE,
            "now": now, "today": now.astimezone(CHINA_TZ).date(), "lock_timeout": LOCK_TIMEOUT}).one()
    db.session.expire_all()  # what the session holds of this payment and order is now stale
    return outcome, detail


def _confirm_in_session(transaction: Transaction, event_id: str | None) -> tuple[str, str | None]:
    settings = ext.settings()
    payment = _locked_payment(transaction.out_trade_no)
    problems = ["unknown out_trade_no"] if payment is None else [name for name, ok in (
        ("amount", transaction.total_fen == to_fen(payment.amount)), ("currency", transaction.currency == "CNY"),
        ("appid", transaction.appid == settings.WECHAT_APPID), ("mchid", transaction.mchid == settings.WECHATPAY_MCHID),
    ) if not ok]
    if problems:
        db.session.rollback()
        return "mismatch", ", ".join(problems)
    outcome = _outcome(payment, transaction)
    if event_id:
        db.session.add(NotifyEvent(provider=payment.provider, event_id=event_id, out_trade_no=payment.out_trade_no,
                                   outcome=outcome))
    if outcome == "orphaned":
        db.session.add(OutboxEvent(kind="payment.needs_refund", payload={
            "out_trade_no": payment.out_trade_no, "transaction_id": transaction.transaction_id,
            "total_fen": transaction.total_fen}))
    if outcome == "confirmed":
        with db.session.no_autoflush:  # one flush at the end: fewer round trips
            _confirm(payment, transaction)
        failpoint("checkout.confirm.before_commit")
    try:
        db.session.commit()
    except IntegrityError:  # the same event id, recorded by a concurrent delivery
        db.session.rollback()
        if outcome == "confirmed":
            raise
    return outcome, None


def _outcome(payment: Payment, transaction: Transaction) -> str:
    if payment.status == "confirmed":
        return "duplicate"
    if transaction.trade_state != "SUCCESS":
        return "ignored"
    if payment.status not in CONFIRMABLE:
        return "orphaned"
    return "confirmed"


def _confirm(payment: Payment, transaction: Transaction) -> None:
    order = payment.order
    states.move(payment, states.PAYMENT_TRANSITIONS, "confirmed")
    payment.transaction_id = transaction.transaction_id
    payment.provider_data = transaction.raw
    payment.confirmed_at = utcnow()
    states.move(order, states.ORDER_TRANSITIONS, "paid")
    order.paid_at = payment.confirmed_at
    retirements = credits.retire(order)
    _post_payment(order, payment)
    if order.scene_id:
        scene_stats.add(order.scene_id, order.channel or "", grams_neutralized=kg_to_grams(order.kg),
                        money_raised=order.amount)
    db.session.add(OutboxEvent(kind="order.paid", payload={"order": order.public_id,
                                                           "retirements": [r.public_id for r in retirements]}))
    db.session.flush()


def _post_payment(order: Order, payment: Payment) -> None:
    fee = cny(payment.amount * Decimal(ext.settings().PLATFORM_FEE_RATE))
    ledger.post("payment", order.public_id, [
        ("cash:wechatpay", "CNY", payment.amount),
        (settlement.payable_account(order.project), "CNY", -(payment.amount - fee)),
        ("revenue:platform_fee", "CNY", -fee),
        (f"retired:user:{order.user_id}", "kg", order.kg),
        (f"inventory:project:{order.project.public_id}", "kg", -order.kg),
    ], memo=f"{payment.out_trade_no} {payment.transaction_id}")


def _locked_payment(out_trade_no: str) -> Payment | None:
    """The payment (with its order and project), read under its write lock so a concurrent
    confirmation is seen, never raced: SELECT … FOR UPDATE on PostgreSQL, where a wait longer than
    LOCK_TIMEOUT fails (→ 503, WeChat retries); on SQLite a no-op UPDATE takes the database lock."""
    query = (select(Payment).where(Payment.out_trade_no == out_trade_no)
             .options(joinedload(Payment.order).joinedload(Order.project))
             .execution_options(populate_existing=True))
    if on_postgresql():
        db.session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        return db.session.scalar(query.with_for_update(of=Payment))
    db.session.execute(update(Payment).where(Payment.out_trade_no == out_trade_no).values(status=Payment.status))
    return db.session.scalar(query)


# --- jobs -----------------------------------------------------------------------------------

def expire_orders() -> dict[str, int]:
    """Close unpaid orders past their reservation at WeChat Pay and release their serials.
    An order WeChat says was paid meanwhile is confirmed instead. Orders left ``created`` (the
    process died before WeChat Pay answered) are cancelled the same way."""
    counts = {"expired": 0, "confirmed": 0, "deferred": 0}
    due = list(db.session.scalars(select(Order.id).where(Order.status.in_(("created", "awaiting_payment")),
                                                         Order.expires_at <= utcnow())))
    for order_id in due:
        order = db.session.get(Order, order_id)
        payment = next((p for p in reversed(order.payments) if p.status in ("created", "pending")), None)
        try:
            if payment is not None:
                ext.payments().close(payment.out_trade_no)
        except ProviderRefused as exc:
            if exc.code == "ORDERPAID":
                counts[_settle_from_query(payment)] += 1
                continue
            if exc.code != "ORDER_NOT_EXIST":
                counts["deferred"] += 1
                continue
        except ProviderError:
            counts["deferred"] += 1
            continue
        if payment is not None:
            states.move(payment, states.PAYMENT_TRANSITIONS, "canceled")
        states.move(order, states.ORDER_TRANSITIONS, "expired" if order.status == "awaiting_payment" else "cancelled")
        order.closed_at = utcnow()
        credits.release(order)
        db.session.commit()
        counts["expired"] += 1
    return counts


def reconcile_payments(older_than_minutes: int = 10) -> dict[str, int]:
    """Ask WeChat Pay about payments still pending after a while (a notify may have been lost)."""
    counts = {"confirmed": 0, "pending": 0, "deferred": 0}
    cutoff = utcnow() - timedelta(minutes=older_than_minutes)
    pending = list(db.session.scalars(select(Payment).where(Payment.status == "pending",
                                                            Payment.created_at <= cutoff)))
    for payment in pending:
        counts[_settle_from_query(payment)] += 1
    return counts


def _settle_from_query(payment: Payment) -> str:
    try:
        transaction = ext.payments().query(payment.out_trade_no)
    except ProviderError:
        return "deferred"
    if transaction is None or transaction.trade_state != "SUCCESS":
        return "pending"
    try:
        outcome = confirm(transaction)
        return "confirmed" if outcome in ("confirmed", "duplicate") else "pending"
    except (PaymentMismatch, OperationalError):
        db.session.rollback()
        return "deferred"


def refund_order(order_public_id: str, reason: str) -> Order:
    """Refund a paid order in full. Retired credits stay retired (a retirement is final); the
    money is reversed in the ledger and the order marked refunded (the certificate is revoked)."""
    order = db.session.scalar(select(Order).where(Order.public_id == order_public_id))
    if order is None:
        raise OrderNotFound()
    if not reason.strip():
        raise ValidationError(details={"reason": ["需要理由 / A reason is required"]})
    states.move(order, states.ORDER_TRANSITIONS, "refunded")  # only a paid order: refused otherwise
    payment = next(p for p in order.payments if p.status == "confirmed")
    states.move(payment, states.PAYMENT_TRANSITIONS, "refunded")
    try:
        ext.payments().refund(out_trade_no=payment.out_trade_no, out_refund_no=f"R{payment.out_trade_no}"[:32],
                              refund_fen=to_fen(payment.amount), total_fen=to_fen(payment.amount), reason=reason)
    except ProviderError as exc:
        db.session.rollback()
        raise PaymentUnavailable(details={"provider": exc.code or "unreachable"}) from exc
    original = db.session.scalars(select(LedgerTransaction).where(LedgerTransaction.reference == order.public_id,
                                                                 LedgerTransaction.kind == "payment")).one()
    # The money goes back as it came in (whatever the fee rate is today); the kg stay retired.
    ledger.post("refund", order.public_id, [(p.account, p.unit, -p.amount) for p in original.postings
                                            if p.unit == "CNY"], memo=f"refund of {original.public_id}: {reason}")
    db.session.add(OutboxEvent(kind="order.refunded", payload={"order": order.public_id, "reason": reason}))
    db.session.commit()
    return order

