"""Creating orders (idempotent per ``Idempotency-Key``) and reading them.

The payment row, with our ``out_trade_no``, is committed before WeChat Pay is called, so a
notification can never arrive for a payment we do not know.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload, selectinload
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from carbon import rendering
from carbon.accounts.models import User
from carbon.accounts.service import TokenInvalid
from carbon.certificates.models import Certificate
from carbon.checkout.models import IdempotencyKey, Order, Payment
from carbon.checkout.states import ORDER_TRANSITIONS, PAYMENT_TRANSITIONS, UNPAID, OrderStatus, PaymentStatus, move
from carbon.core import extensions as ext
from carbon.core.clock import CHINA_TZ, utcnow
from carbon.core.db import db
from carbon.core.errors import Conflict, DomainError, NotFound, UpstreamError, ValidationError
from carbon.core.units import cny, cny_ceil, kg, to_fen
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.footprint.calculator import exact_total
from carbon.footprint.models import Footprint
from carbon.organizers.models import Organization
from carbon.scenes import service as scenes
from payments.provider import ProviderError

RESUME_AFTER_SECONDS = 10  # far longer than a request takes to hear from WeChat Pay


class OrderNotFound(NotFound):
    code = "order.not_found"
    message = "未找到该订单 / Order not found"


class OrderInProgress(Conflict):
    code = "order.in_progress"
    message = "相同的请求正在处理中，请稍后重试 / The same request is being processed; retry shortly"


class IdempotencyKeyReused(Conflict):
    code = "order.idempotency_key_reused"
    message = "该幂等键已用于另一个请求 / This Idempotency-Key was used for a different request"


class HoldLimitReached(Conflict):
    code = "order.hold_limit"
    message = "未支付的订单过多，请先支付或等待其过期 / Too many unpaid orders: pay or let one expire first"


class NothingToNeutralize(ValidationError):
    code = "order.nothing_to_neutralize"
    message = "足迹为零，无需购买 / Nothing to neutralize: an order needs at least one credit unit"


class OrderTooLarge(ValidationError):
    code = "order.too_large"
    message = "超过单笔订单上限，请分多笔购买 / More than one order may hold: buy it in several orders"


class BeneficiaryNameRejected(DomainError):
    http_status = 422
    code = "order.beneficiary_name_rejected"
    message = "受益人名称未通过内容安全检查，请修改 / The beneficiary name did not pass WeChat's content check"


class BeneficiaryNameUnprintable(DomainError):
    http_status = 422
    code = "order.beneficiary_name_unprintable"
    message = ("受益人名称含有证书无法印出的字符（如表情符号） / The beneficiary name holds characters the "
               "certificate cannot print (e.g. emoji)")


class PaymentUnavailable(UpstreamError):
    code = "payment.unavailable"
    message = "微信支付暂不可用，请稍后再试 / WeChat Pay is unavailable, try again later"


@dataclass(frozen=True)
class Buyer:
    """Who buys, and is the beneficiary: a guest (paying by JSAPI in the mini-program) or an
    organization (paying by Native: a QR code in the console). Idempotency keys, holds and
    ownership are per buyer; everything else about an order is the same for both."""

    user: User | None = None
    organization: Organization | None = None

    @property
    def user_id(self) -> int | None:
        return self.user.id if self.user else None

    @property
    def organization_id(self) -> int | None:
        return self.organization.id if self.organization else None

    def orders(self):
        return Order.user_id == self.user.id if self.user else Order.organization_id == self.organization.id

    def keys(self):
        return IdempotencyKey.user_id == self.user.id if self.user else \
            IdempotencyKey.organization_id == self.organization.id

    def lock(self) -> None:
        """Take the buyer's row (PostgreSQL ``FOR NO KEY UPDATE``: inserting rows that reference it
        takes only a key share, so they are not blocked): one buyer's orders are made one at a
        time, and a limit counted over them holds under concurrent requests. (SQLite has no row
        locks: there the check is as good as its development use needs.)
        A guest's account deleted since the request was authenticated (its sessions are revoked by
        then) ends the request here: no order is made for an erased payer."""
        if self.user is None:
            db.session.execute(select(Organization.id).where(Organization.id == self.organization.id)
                               .with_for_update(key_share=True))
            return
        deleted_at = db.session.execute(select(User.deleted_at).where(User.id == self.user.id)
                                        .with_for_update(key_share=True)).scalar_one()
        if deleted_at is not None:
            raise TokenInvalid()


@dataclass(frozen=True)
class Wanted:
    """What an order is for, once its request is understood."""

    kg: Decimal
    beneficiary_name: str
    purpose: str
    footprint_id: int | None = None
    scene: dict = field(default_factory=dict)  # scene_id, channel
    project_public_id: str | None = None


def create_order(user: User, body: dict, idempotency_key: str) -> tuple[Order, dict[str, str]]:
    """A new order (or the one this key already made) and its ``wx.requestPayment`` parameters."""
    def record(claim: IdempotencyKey) -> tuple[Order, Payment]:
        _check_beneficiary(user, body.get("beneficiary_name"))
        return _reserve_and_record(user, body, claim)
    return _create(Buyer(user=user), body, idempotency_key, record)


def create_organization_order(organization: Organization, body: dict, idempotency_key: str,
                              understand) -> tuple[Order, dict[str, str]]:
    """An organization's order (or the one this key already made) and its Native ``code_url``;
    ``understand()`` gives what it is for (a quote computed now, in the claim's shadow)."""
    buyer = Buyer(organization=organization)
    return _create(buyer, body, idempotency_key, lambda claim: _record(buyer, claim, understand()))


def _create(buyer: Buyer, body: dict, idempotency_key: str, record) -> tuple[Order, dict[str, str]]:
    request_hash = request_fingerprint(body)
    claim = IdempotencyKey(user_id=buyer.user_id, organization_id=buyer.organization_id, key=idempotency_key,
                           request_hash=request_hash)
    db.session.add(claim)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        if not _release_abandoned(buyer, idempotency_key, request_hash):
            return _replay(buyer, idempotency_key, request_hash)
        return _create(buyer, body, idempotency_key, record)  # the key is free again: this request takes it
    try:
        order, payment = record(claim)
    except (ObjectDeletedError, StaleDataError) as exc:  # so slow that a retry took the key over
        # (_release_abandoned): the retry makes the order
        db.session.rollback()
        raise OrderInProgress() from exc
    except BaseException:
        db.session.rollback()
        _forget(claim.id)
        raise
    try:
        reference = _ask_provider(buyer, order, payment)
    except ProviderError as exc:
        _abandon(order, payment, reason=str(exc))
        _forget(claim.id)
        raise PaymentUnavailable(details={"provider": exc.code or "unreachable", "check": str(exc)}) from exc
    return order, _await_payment(order, payment, reference)


def _ask_provider(buyer: Buyer, order: Order, payment: Payment) -> str:
    """WeChat Pay's order for our payment row: a prepay id (JSAPI, the guest pays) or a code_url
    (Native, for an organization). The same out_trade_no with the same parameters answers the
    same, so asking again after a lost answer is safe."""
    description = f"碳中和 {order.kg.normalize():f} kg · {order.project.name_zh}"
    if buyer.organization is not None:
        return ext.payments().native(out_trade_no=payment.out_trade_no, description=description,
                                     total_fen=to_fen(order.amount), time_expire=order.expires_at,
                                     attach=order.public_id)
    return ext.payments().create(
        out_trade_no=payment.out_trade_no, description=description, total_fen=to_fen(order.amount),
        openid=buyer.user.openid, time_expire=order.expires_at, attach=order.public_id)


def _await_payment(order: Order, payment: Payment, reference: str) -> dict[str, str]:
    if order.organization_id is not None:
        payment.provider_data = {"code_url": reference}
    else:
        payment.prepay_id = reference
    move(payment, PAYMENT_TRANSITIONS, PaymentStatus.PENDING)
    move(order, ORDER_TRANSITIONS, OrderStatus.AWAITING_PAYMENT)
    db.session.commit()
    return _client_params(order, payment)


def _client_params(order: Order, payment: Payment) -> dict[str, str]:
    """What the payer needs: ``wx.requestPayment``'s parameters, or the Native ``code_url``."""
    if order.organization_id is not None:
        code_url = (payment.provider_data or {}).get("code_url")
        return {"code_url": code_url} if code_url and payment.status == PaymentStatus.PENDING else {}
    return ext.payments().client_params(payment.prepay_id) if payment.prepay_id else {}


def request_fingerprint(body: dict) -> str:
    """What makes two order requests "the same" for an Idempotency-Key: the validated body."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _check_beneficiary(user: User, name: str | None) -> None:
    """The beneficiary's name is printed on certificates and share cards: WeChat's text check first."""
    if name is None:
        return
    missing = rendering.unprintable(name)
    if missing:  # the card, the poster and the receipt would drop them or draw boxes
        raise BeneficiaryNameUnprintable(details={"beneficiary_name": [missing]})
    verdict = ext.wechat().check_text(name, openid=user.openid, scene=1, nickname=name)
    if not verdict.passed:
        verdict_text = f"suggest={verdict.suggest}, label={verdict.label}"
        raise BeneficiaryNameRejected(details={"beneficiary_name": [verdict_text]})


def _reserve_and_record(user: User, body: dict, claim: IdempotencyKey) -> tuple[Order, Payment]:
    footprint = _footprint(user, body.get("footprint_id"))
    wanted_kg = exact_total(footprint.result) if footprint else body["kg"]  # rounded up once, in _record
    scene = scenes.footprint_facts(body["scene"]) if body.get("scene") else {}
    if footprint and not scene and footprint.scene_id:
        scene = {"scene_id": footprint.scene_id, "channel": footprint.channel or ""}
    return _record(Buyer(user=user), claim, Wanted(
        kg=wanted_kg, footprint_id=footprint.id if footprint else None, scene=scene,
        project_public_id=body.get("project_id"),
        beneficiary_name=body.get("beneficiary_name") or rendering.printable(user.nickname or "") or "点点用户",
        purpose=body.get("purpose") or _purpose(scene)))


def _record(buyer: Buyer, claim: IdempotencyKey, wanted: Wanted) -> tuple[Order, Payment]:
    """Hold the credits, price them and write the order and its payment row, committed."""
    settings = ext.settings()
    scene = wanted.scene
    project = project_for(wanted.project_public_id, scene.get("scene_id"))
    units = orderable_units(wanted.kg, project)
    now = utcnow()
    _check_holds(buyer, units * project.unit_kg, now)
    order = Order(user_id=buyer.user_id, organization_id=buyer.organization_id, project=project,
                  footprint_id=wanted.footprint_id, scene_id=scene.get("scene_id"), channel=scene.get("channel"),
                  units=units, kg=kg(units * project.unit_kg), amount=Decimal(0),
                  beneficiary_name=wanted.beneficiary_name, purpose=wanted.purpose, created_at=now,
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


def locked_order(public_id: str) -> Order | None:
    """The order, locked after its guest's row (``FOR NO KEY UPDATE``, as the leaderboard refresh
    that follows in the same outbox batch takes it), for the outbox handlers that change an order
    after it was paid (its certificate, its scene counters): guest, order, then certificate and
    chain head is their lock order, as in account deletion (the guest, their orders, their
    certificates). The scene counters' rows are written at the batch's commit, after every order lock."""
    user_id = db.session.scalar(select(Order.user_id).where(Order.public_id == public_id))
    if user_id is not None:
        db.session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    return db.session.scalar(select(Order).where(Order.public_id == public_id).with_for_update())


def orderable_units(wanted_kg: Decimal, project: Project) -> int:
    """The project's units covering ``wanted_kg`` (rounded up), if one order may hold them: at least
    one unit, at most MAX_ORDER_KG (an order and the quote for one answer the same)."""
    limit = ext.settings().MAX_ORDER_KG
    units = int(credits.ceil_units(wanted_kg, project.unit_kg))
    if units < 1:
        raise NothingToNeutralize(details={"kg": ["至少 1 个单位 / at least one unit"]})
    if units * project.unit_kg > limit:
        raise OrderTooLarge(details={"kg": [f"单笔最多 / At most {limit} kg per order"]})
    return units


def _check_holds(buyer: Buyer, wanted_kg: Decimal, now) -> None:
    """One buyer may not hold more than a few unpaid orders, or more than so many kg, at once
    (holds past their expiry do not count: they block nobody). An organization has a guest's limits."""
    settings = ext.settings()
    buyer.lock()  # first in this transaction's lock order: buyer, then the credit blocks (credits.reserve)
    count, held = db.session.execute(select(func.count(), func.coalesce(func.sum(Order.kg), 0)).where(
        buyer.orders(), Order.status.in_(UNPAID), Order.expires_at > now)).one()
    if count >= settings.MAX_OPEN_ORDERS_PER_GUEST or Decimal(held) + wanted_kg > settings.MAX_HELD_KG_PER_GUEST:
        raise HoldLimitReached(details={"open_orders": count, "held_kg": str(kg(Decimal(held))),
                                        "max_open_orders": settings.MAX_OPEN_ORDERS_PER_GUEST,
                                        "max_held_kg": settings.MAX_HELD_KG_PER_GUEST})


def _release_abandoned(buyer: Buyer, key: str, request_hash: str) -> bool:
    """Free a key whose request died between its claim and its order (a server killed then, its
    transaction lost): else every retry would answer ``order.in_progress`` forever. After
    RESUME_AFTER_SECONDS that request is surely over; one retry deletes the claim, and takes the key."""
    freed = db.session.execute(delete(IdempotencyKey).where(
        buyer.keys(), IdempotencyKey.key == key, IdempotencyKey.request_hash == request_hash,
        IdempotencyKey.order_id.is_(None),
        IdempotencyKey.created_at < utcnow() - timedelta(seconds=RESUME_AFTER_SECONDS))).rowcount
    db.session.commit()
    return freed == 1


def _replay(buyer: Buyer, key: str, request_hash: str) -> tuple[Order, dict[str, str]]:
    claim = db.session.scalar(select(IdempotencyKey).where(buyer.keys(), IdempotencyKey.key == key))
    if claim is None:
        raise OrderInProgress()
    if claim.request_hash != request_hash:
        raise IdempotencyKeyReused()
    order = db.session.get(Order, claim.order_id) if claim.order_id else None
    if order is None:
        raise OrderInProgress(details={"retry_after_seconds": 2})
    if order.status == OrderStatus.CREATED:
        return order, _resume(buyer, order)
    return order, payment_params(order)


def _resume(buyer: Buyer, order: Order) -> dict[str, str]:
    """An order left ``created``: its first request is still asking WeChat Pay, or it lost the
    answer (its last commit failed). After RESUME_AFTER_SECONDS the retry asks again itself."""
    payment = next((p for p in order.payments if p.status == PaymentStatus.CREATED), None)
    if payment is None or (utcnow() - order.created_at).total_seconds() < RESUME_AFTER_SECONDS \
            or order.expires_at <= utcnow():
        raise OrderInProgress(details={"retry_after_seconds": 2})
    try:
        reference = _ask_provider(buyer, order, payment)
    except ProviderError as exc:
        raise PaymentUnavailable(details={"provider": exc.code or "unreachable", "check": str(exc)}) from exc
    return _await_payment(order, payment, reference)


def _forget(claim_id: int) -> None:
    """Drop a claim whose request failed, so the client may retry with the same key."""
    db.session.rollback()
    claim = db.session.get(IdempotencyKey, claim_id)
    if claim is not None:
        db.session.delete(claim)
        db.session.commit()


def _abandon(order: Order, payment: Payment, reason: str) -> None:
    db.session.rollback()
    move(payment, PAYMENT_TRANSITIONS, PaymentStatus.FAILED)
    payment.provider_data = {"error": reason}
    move(order, ORDER_TRANSITIONS, OrderStatus.CANCELED)
    order.closed_at = utcnow()
    credits.release([order.id])
    db.session.commit()


def _footprint(user: User, public_id: str | None) -> Footprint | None:
    if not public_id:
        return None
    footprint = db.session.scalar(select(Footprint).where(Footprint.public_id == public_id))
    if footprint is None or footprint.user_id != user.id:
        raise ValidationError(code="order.unknown_footprint", details={"footprint_id": ["未找到 / Not found"]})
    return footprint


def project_for(public_id: str | None, scene_id: int | None) -> Project:
    """The project asked for, else the scene's first offered, else the first on offer."""
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
    payment = live_payment(order)
    return _client_params(order, payment) if payment else {}


def live_payment(order: Order) -> Payment | None:
    return next((p for p in reversed(order.payments)
                 if p.status in (PaymentStatus.PENDING, PaymentStatus.CONFIRMED)), None)


def _mine(user: User, public_id: str) -> tuple:
    """The guest's own order of that id (anyone else's is "not found")."""
    return Order.public_id == public_id, Order.user_id == user.id


def get_order(user: User, public_id: str) -> Order:
    """The guest's order with its project and payments (what it is shown with), in two reads."""
    order = db.session.scalar(select(Order).where(*_mine(user, public_id))
                              .options(joinedload(Order.project), selectinload(Order.payments)))
    if order is None:
        raise OrderNotFound()
    return order


STATUS_READ = (select(Order.public_id.label("id"), Order.status, Order.paid_at,
                      Certificate.number.label("certificate_number"))
               .outerjoin(Certificate, Certificate.order_id == Order.id))


def order_status(user: User, public_id: str) -> dict:
    """What a guest polls after paying: the order's status, and its certificate's number once issued.
    One read of plain columns (the whole order is ``get_order``)."""
    row = db.session.execute(STATUS_READ.where(*_mine(user, public_id))).one_or_none()
    if row is None:
        raise OrderNotFound()
    return row._asdict()


def orders_of(user: User, limit: int = 20) -> list[Order]:
    return list(db.session.scalars(select(Order).where(Order.user_id == user.id)
                                   .order_by(Order.id.desc()).limit(limit)))
