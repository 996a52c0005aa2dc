"""What the console reads beyond the scene service: an organization's orders, payments, refunds,
failed background events and settlement; projects and their inventory. Every query is scoped to
the caller's organization: orders placed through its scenes, for projects it owns, or by itself."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.sql import ColumnElement

from carbon import jobs
from carbon.certificates.models import Certificate
from carbon.checkout.models import InboxEntry, Order, Payment, Refund
from carbon.checkout.orders import OrderNotFound
from carbon.core.db import db
from carbon.credits import service as credits
from carbon.credits.models import Project
from carbon.jobs.models import OutboxEvent
from carbon.ledger.models import LedgerTransaction
from carbon.organizers.service import Principal
from carbon.scenes.models import Scene


def _ours(principal: Principal) -> ColumnElement[bool]:
    """Orders the organization sees: placed through it (``_placed_through``) or for projects it owns."""
    organization = principal.organization.id
    return or_(_placed_through(principal),
               Order.project_id.in_(select(Project.id).where(Project.owner_organization_id == organization)))


def _placed_through(principal: Principal) -> ColumnElement[bool]:
    """Orders through the organization's scenes or bought by it: the ones it may refund. A project's
    owner sees the orders for its credits (its settlement) but refunds none of another's guests."""
    organization = principal.organization.id
    return or_(Order.organization_id == organization,
               Order.scene_id.in_(select(Scene.id).where(Scene.organization_id == organization)))


# --- orders, payments, refunds -----------------------------------------------------------

def orders(principal: Principal, status: str | None = None, limit: int = 200) -> list[Order]:
    query = select(Order).where(_ours(principal)).order_by(Order.id.desc()).limit(limit)
    if status:
        query = query.where(Order.status == status)
    return list(db.session.scalars(query))


def order(principal: Principal, public_id: str) -> Order:
    found = db.session.scalar(select(Order).where(Order.public_id == public_id, _ours(principal)))
    if found is None:
        raise OrderNotFound()
    return found


def may_refund(principal: Principal, found: Order) -> bool:
    """Whether the organization may refund this order it sees: only one placed through it."""
    return db.session.scalar(select(Order.id).where(Order.id == found.id, _placed_through(principal))) is not None


def orders_it_may_refund(principal: Principal, listed: list[Order]) -> set[str]:
    """Of the listed orders, those placed through the organization (``_placed_through``)."""
    return set(db.session.scalars(select(Order.public_id).where(
        Order.id.in_([found.id for found in listed]), _placed_through(principal))))


@dataclass(frozen=True)
class Step:
    at: datetime
    what: str
    state: str
    note: str = ""


def history(found: Order, with_reasons: bool = True) -> list[Step]:
    """The order's states as the rows record them: its own times, each payment's, what WeChat Pay
    told us (the inbox), the ledger's postings and the refunds, oldest first. Without reasons (for
    a project's owner, who sees another organization's order for its settlement) the refund's typed
    reason and the ledger's memos, which hold it, are left out."""
    steps = [Step(found.created_at, "订单 / order", "created")]
    if found.paid_at:
        steps.append(Step(found.paid_at, "订单 / order", "paid"))
    if found.closed_at:
        steps.append(Step(found.closed_at, "订单 / order", found.status))
    trade_nos = [payment.out_trade_no for payment in found.payments]
    for payment in found.payments:
        steps.append(Step(payment.created_at, f"支付 / payment {payment.out_trade_no}", "created"))
        if payment.confirmed_at:
            steps.append(Step(payment.confirmed_at, f"支付 / payment {payment.out_trade_no}", "confirmed",
                              payment.transaction_id or ""))
    if trade_nos:
        for entry in db.session.scalars(select(InboxEntry).where(InboxEntry.out_trade_no.in_(trade_nos))):
            steps.append(Step(entry.received_at, f"微信支付通知 / WeChat Pay {entry.source}",
                              f"{entry.kind}: {entry.status}", entry.outcome or entry.last_error or ""))
    for transaction in db.session.scalars(select(LedgerTransaction)
                                          .where(LedgerTransaction.reference == found.public_id)):
        steps.append(Step(transaction.created_at, "账本 / ledger", transaction.kind,
                          transaction.memo if with_reasons else ""))
    for refund in refunds_of(found):
        steps.append(Step(refund.created_at, f"退款 / refund {refund.public_id}", "requested",
                          refund.reason if with_reasons else ""))
        if refund.completed_at:
            steps.append(Step(refund.completed_at, f"退款 / refund {refund.public_id}", refund.status))
    return sorted(steps, key=lambda step: step.at)


def refunds_of(found: Order) -> list[Refund]:
    return list(db.session.scalars(select(Refund).join(Payment).where(Payment.order_id == found.id)
                                   .order_by(Refund.id)))


def refunds(principal: Principal, limit: int = 200) -> list[Refund]:
    return list(db.session.scalars(select(Refund).join(Payment).join(Order).where(_ours(principal))
                                   .order_by(Refund.id.desc()).limit(limit)))


def refunds_placed_through(principal: Principal, listed: list[Refund]) -> set[str]:
    """Of the listed refunds, those of orders placed through the organization (``_placed_through``):
    the ones it may retry, and whose typed reasons it may read."""
    return set(db.session.scalars(select(Refund.public_id).join(Payment).join(Order).where(
        Refund.id.in_([refund.id for refund in listed]), _placed_through(principal))))


def retry_refund(principal: Principal, refund_id: str) -> Refund:
    """Ask WeChat Pay again for one of this organization's refunds that it closed (the one rule:
    carbon.checkout.operations.retry_refund); LookupError for a refund not ours."""
    from carbon.checkout import operations

    found = db.session.scalar(select(Refund.public_id).join(Payment).join(Order)
                              .where(_placed_through(principal), Refund.public_id == refund_id))
    if found is None:
        raise LookupError(refund_id)
    return operations.retry_refund(found)


# --- failed background events ------------------------------------------------------------

def failed_events(principal: Principal) -> list[OutboxEvent]:
    """Failed outbox events about orders placed through this organization (``_placed_through``): the
    ones it may replay. An event about no order of ours is not shown, nor one about an order a
    project's owner only sees for its settlement."""
    events = jobs.failed(limit=500)
    mine = {public_id for public_id, in db.session.execute(
        select(Order.public_id).where(Order.public_id.in_({_order_of(event) for event in events} - {None}),
                                      _placed_through(principal)))}
    return [event for event in events if _order_of(event) in mine]


def replay(principal: Principal, event_id: int) -> str:
    if event_id not in {event.id for event in failed_events(principal)}:
        raise LookupError(event_id)
    return jobs.replay(event_id)


def _order_of(event: OutboxEvent) -> str | None:
    """The order an event is about: ``order``, or through its refund or certificate."""
    payload = event.payload if isinstance(event.payload, dict) else {}
    if isinstance(payload.get("order"), str):
        return payload["order"]
    if isinstance(payload.get("refund"), str):
        return db.session.scalar(select(Order.public_id).join(Payment).join(Refund, Refund.payment_id == Payment.id)
                                 .where(Refund.public_id == payload["refund"]))
    if isinstance(payload.get("number"), str):
        return db.session.scalar(select(Order.public_id).join(Certificate, Certificate.order_id == Order.id)
                                 .where(Certificate.number == payload["number"]))
    return None


# --- projects, inventory, settlement -----------------------------------------------------

def projects() -> list[dict]:
    """Every project (they are offered to any scene) with its blocks and units."""
    return [{"project": project, "blocks": credits.blocks_of(project), **credits.inventory(project)}
            for project in db.session.scalars(select(Project).order_by(Project.id))]
