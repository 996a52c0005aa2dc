"""A guest's rights over their data (PIPL, decision 0014): export everything held about them, delete
the account; and the retention periods (docs/OPERATIONS.md), enforced by ``purge``.

Deleting keeps what others rely on — orders, payments, refunds, retirements, certificates and the
ledger stay as they are, pointing at the same user row — and empties every personal field: the
openid becomes a tombstone no WeChat login can match (openids never hold ``:``), unionid,
session_key, nickname, avatar and phone go, sessions are revoked and lose their address,
footprints are deleted, names on orders, retirements and certificates become 已注销用户, and WeChat
Pay's raw bodies (which name the payer's openid) are emptied. The chain is not touched: its records
hold only a salted hash of the name, and the salt goes with the name.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, null, or_, select, update

from carbon.accounts import phones
from carbon.accounts.models import AuthSession, User
from carbon.certificates import service as certificates
from carbon.certificates.models import Certificate
from carbon.checkout.models import IdempotencyKey, InboxEntry, Order, Payment, Refund
from carbon.checkout.states import OrderStatus
from carbon.core import extensions as ext
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.errors import Conflict, RateLimited
from carbon.core.ids import new_token
from carbon.credits.models import Project, Retirement
from carbon.footprint.models import Footprint
from carbon.organizers.models import OrganizerSession
from carbon.scenes.models import Scene

TOMBSTONE_PREFIX = "deleted:"  # an openid from WeChat is [A-Za-z0-9_-]: a tombstone never matches one
OPEN_ORDER_STATES = (OrderStatus.CREATED, OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID)
EXPORTS_PER_HOUR = 10

# Retention (docs/OPERATIONS.md "Personal data"): what is kept how long after it stopped being needed.
SESSION_DAYS = 30  # a guest's or organizer's session (with the client address), after it expired or was revoked
PROVIDER_BODY_DAYS = 90  # WeChat Pay's raw bodies, after receipt: as long as its bills can be downloaded
FAILED_PROVIDER_BODY_DAYS = 365  # an inbox entry that failed (a mismatch to investigate), after receipt


class OrdersStillOpen(Conflict):
    code = "account.orders_open"
    message = ("有订单尚未完成（待支付或正在出证），请在其完成或过期（15 分钟）后再注销 / An order is still open "
               "(awaiting payment or its certificate); delete the account once it is done or expired (15 minutes)")


class ExportsTooFrequent(RateLimited):
    code = "account.export_rate_limited"
    message = "导出过于频繁，请稍后再试 / Too many exports, try again later"


# --- export -------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _row(item, *names: str, **renamed: str) -> dict:
    """The attributes named (``renamed``: key=attribute), JSON-ready."""
    return {key: _plain(getattr(item, attribute)) for key, attribute in [*zip(names, names), *renamed.items()]}


def _all(model, *where):
    return db.session.scalars(select(model).where(*where).order_by(model.id))


def export(user: User) -> dict:
    """Everything held about the guest, as JSON-ready data (the phone masked, session tokens left out)."""
    ext.rate_limiter().hit(f"privacy:export:{user.id}", EXPORTS_PER_HOUR, 3600, error=ExportsTooFrequent)
    orders = list(_all(Order, Order.user_id == user.id))
    order_ids = {order.id: order.public_id for order in orders}
    payments = list(_all(Payment, Payment.order_id.in_(order_ids)))
    trade_nos = {payment.id: payment.out_trade_no for payment in payments}
    projects = dict(db.session.execute(select(Project.id, Project.public_id)).all())
    scenes = dict(db.session.execute(select(Scene.id, Scene.code).where(
        Scene.id.in_({order.scene_id for order in orders if order.scene_id}))).all())
    footprints = dict(db.session.execute(select(Footprint.id, Footprint.public_id).where(
        Footprint.user_id == user.id)).all())
    return {
        "generated_at": _plain(utcnow()),
        "profile": {**_row(user, "openid", "unionid", "nickname", "avatar_url", "phone_country_code",
                           "leaderboard_hidden", "created_at", "last_login_at", id="public_id"),
                    "phone_number": phones.masked(user)},
        "sessions": [_row(session, "created_at", "expires_at", "revoked_at", "client_ip")
                     for session in _all(AuthSession, AuthSession.user_id == user.id)],
        "footprints": [_row(footprint, "kind", "scene_code", "channel", "dataset_version", "total_grams", "request",
                            "result", "created_at", id="public_id")
                       for footprint in _all(Footprint, Footprint.user_id == user.id)],
        "orders": [{"project_id": projects[order.project_id], "scene_code": scenes.get(order.scene_id),
                    "footprint_id": footprints.get(order.footprint_id), **_row(
                        order, "status", "units", "kg", "amount", "currency", "beneficiary_name", "purpose",
                        "channel", "created_at", "expires_at", "paid_at", "closed_at", id="public_id")}
                   for order in orders],
        "payments": [{"order_id": order_ids[payment.order_id], **_row(
            payment, "provider", "out_trade_no", "amount", "currency", "status", "transaction_id", "created_at",
            "confirmed_at")} for payment in payments],
        "refunds": [{"out_trade_no": trade_nos[refund.payment_id], **_row(
            refund, "amount", "cause", "reason", "status", "created_at", "completed_at", id="public_id")}
            for refund in _all(Refund, Refund.payment_id.in_(trade_nos))],
        "retirements": [{"order_id": order_ids.get(retirement.order_id), "project_id": projects[retirement.project_id],
                         **_row(retirement, "vintage_label", "first_serial", "last_serial", "quantity", "kg",
                                "beneficiary_name", "purpose", "retired_at", id="public_id")}
                        for retirement in _all(Retirement, Retirement.beneficiary_user_id == user.id)],
        "certificates": [certificates.view(number, viewer_id=user.id) for number in db.session.scalars(
            select(Certificate.number).where(Certificate.user_id == user.id).order_by(Certificate.id))],
    }


# --- deletion -----------------------------------------------------------------------------------

def delete_account(user: User) -> None:
    """Delete the guest's account (see the module's docstring); 409 while an order is still open."""
    user = db.session.scalar(select(User).where(User.id == user.id).with_for_update())
    still_open = list(db.session.scalars(select(Order.public_id).where(Order.user_id == user.id,
                                                                        Order.status.in_(OPEN_ORDER_STATES))))
    if still_open:
        raise OrdersStillOpen(details={"orders": still_open})
    now = utcnow()
    user.openid = TOMBSTONE_PREFIX + new_token(24)
    user.unionid = user.session_key = user.nickname = user.avatar_url = None
    user.phone_ciphertext = user.phone_country_code = None
    user.deleted_at = now
    db.session.execute(update(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
                       .values(revoked_at=now))
    db.session.execute(update(AuthSession).where(AuthSession.user_id == user.id).values(client_ip=None))
    # The guest, their orders, then their certificates: the certificate handlers' lock order too.
    db.session.execute(update(Order).where(Order.user_id == user.id)
                       .values(footprint_id=None, beneficiary_name=certificates.ERASED_NAME))
    db.session.execute(delete(Footprint).where(Footprint.user_id == user.id))
    db.session.execute(delete(IdempotencyKey).where(IdempotencyKey.user_id == user.id))
    db.session.execute(update(Retirement).where(Retirement.beneficiary_user_id == user.id)
                       .values(beneficiary_name=certificates.ERASED_NAME))
    certificates.erase_beneficiary_names(user.id)
    theirs = select(Payment.out_trade_no).join(Order).where(Order.user_id == user.id)
    _empty_provider_data(Payment.out_trade_no.in_(theirs))
    # Entries stay (a notify WeChat Pay repeats is still known) without the bodies that name the payer;
    # a pending one keeps its payer until it is processed (the purge takes it later).
    for entry in _all(InboxEntry, InboxEntry.out_trade_no.in_(theirs), InboxEntry.status != "pending"):
        entry.payload = {**entry.payload, "raw": {}, **({"payer_openid": None} if "payer_openid" in entry.payload
                                                          else {})}
    db.session.commit()


def _empty_provider_data(where) -> int:
    """Forget WeChat Pay's raw transaction bodies (they name the payer) on the payments ``where``."""
    return db.session.execute(update(Payment).where(where, Payment.provider_data.is_not(None))
                              .values(provider_data=null()).execution_options(synchronize_session=False)).rowcount


# --- retention ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Purged:
    guest_sessions: int
    organizer_sessions: int
    provider_bodies: int

    def __str__(self) -> str:
        return (f"purged: {self.guest_sessions} guest sessions, {self.organizer_sessions} organizer sessions, "
                f"{self.provider_bodies} WeChat Pay bodies")


def purge(now: datetime | None = None) -> Purged:
    """Delete what is past its retention period (the constants above), as of ``now``."""
    now = now or utcnow()
    ended = now - timedelta(days=SESSION_DAYS)
    guests = db.session.execute(delete(AuthSession).where(or_(
        AuthSession.expires_at < ended, AuthSession.revoked_at < ended))).rowcount
    organizers = db.session.execute(delete(OrganizerSession).where(or_(
        OrganizerSession.expires_at < ended, OrganizerSession.revoked_at < ended))).rowcount
    received = now - timedelta(days=PROVIDER_BODY_DAYS)
    bodies = _empty_provider_data(Payment.confirmed_at < received) + db.session.execute(delete(InboxEntry).where(or_(
        (InboxEntry.status == "done") & (InboxEntry.received_at < received),
        (InboxEntry.status == "failed") & (InboxEntry.received_at < now - timedelta(days=FAILED_PROVIDER_BODY_DAYS))
    ))).rowcount
    db.session.commit()
    return Purged(guests, organizers, bodies)
