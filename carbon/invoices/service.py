"""Receipts, invoice profiles and invoice requests (decision 0017).

A receipt is drawn from the order as it is (paid, or paid then refunded). An invoice request is
for an order the organization bought itself (``orders.organization_id``); the organization's
members list and export them, owners record the profile and say what finance did. Every query is
scoped to the caller's organization: another organization's requests are not found."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import select

from carbon.certificates.models import Certificate
from carbon.checkout.models import Order, Payment, Refund
from carbon.checkout.orders import OrderNotFound
from carbon.checkout.states import OrderStatus, PaymentStatus
from carbon.core.clock import CHINA_TZ, utcnow
from carbon.core.db import db
from carbon.core.errors import Conflict, NotFound, ValidationError
from carbon.core.spreadsheet import csv_text
from carbon.core.text import unstorable, unstorable_message
from carbon.core.units import cny
from carbon.invoices import taxid
from carbon.invoices.models import InvoiceProfile, InvoiceRequest
from carbon.invoices.states import INVOICE_TRANSITIONS, STATUS_NAMES, InvoiceStatus, move
from carbon.organizers.models import Organization
from carbon.organizers.service import Principal

PAID_STATES = (OrderStatus.PAID, OrderStatus.FULFILLED, OrderStatus.REFUNDED)  # a receipt exists
INVOICEABLE_STATES = (OrderStatus.PAID, OrderStatus.FULFILLED)  # a new request may be made
REFUND_NAMES = {"requested": "退款处理中 / Refund requested", "processing": "退款处理中 / Refund processing",
                "abnormal": "退款处理中 / Refund delayed", "succeeded": "已退款 / Refunded",
                "failed": "退款失败 / Refund failed", "retried": "退款重新发起 / Refund asked again"}


class OrderNotPaid(Conflict):
    code = "order.not_paid"
    message = "订单尚未支付，暂无收据 / The order is not paid: there is no receipt"


class InvoiceProfileMissing(Conflict):
    code = "invoice.profile_missing"
    message = "请先填写发票抬头和纳税人识别号 / Record the invoice title and taxpayer id first"


class InvoiceAlreadyRequested(Conflict):
    code = "invoice.already_requested"
    message = "该订单已申请发票 / This order already has an invoice request"


class InvoiceNotAllowed(Conflict):
    code = "invoice.order_not_invoiceable"
    message = "只有本组织已支付、未退款的订单可以申请发票 / Only a paid, unrefunded order of the organization"


class InvoiceRequestNotFound(NotFound):
    code = "invoice.not_found"
    message = "未找到该发票申请 / Invoice request not found"


def _text(errors: dict, field: str, value) -> str:
    """A form field as one line of text; a NUL or control character is a field error."""
    value = value if isinstance(value, str) else ""
    bad = unstorable(value)
    if bad:
        errors[field] = [unstorable_message(bad)]
        return ""
    return " ".join(value.split())


# --- receipts -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReceiptFacts:
    """What a receipt states, read from the rows (money as Decimal, times in China's time)."""

    order: str
    paid_at: datetime
    payer: str
    project_zh: str
    project_en: str
    kg: Decimal
    unit_price_per_tonne: Decimal
    amount: Decimal
    transaction_id: str
    certificate: str | None
    refund: str | None  # the refund's state in words, None when not refunded
    refund_amount: Decimal | None


def receipt_facts(order: Order) -> ReceiptFacts:
    if order.status not in PAID_STATES or order.paid_at is None:
        raise OrderNotPaid(details={"status": [order.status]})
    payment = next((p for p in order.payments if p.status in (PaymentStatus.CONFIRMED, PaymentStatus.REFUNDED)
                    and p.transaction_id), None)
    if payment is None:
        raise OrderNotPaid(details={"status": [order.status]})
    if order.organization_id is not None:
        payer = db.session.get(Organization, order.organization_id).name
    else:
        payer = order.beneficiary_name  # the guest's public name (已注销用户 once the account is deleted)
    certificate = db.session.scalar(select(Certificate.number).where(Certificate.order_id == order.id))
    refund = db.session.scalar(select(Refund).join(Payment).where(Payment.order_id == order.id)
                               .order_by(Refund.id.desc()).limit(1)) if order.status == OrderStatus.REFUNDED else None
    per_tonne = cny(order.amount / order.kg * 1000) if order.kg else cny(0)
    return ReceiptFacts(order=order.public_id, paid_at=order.paid_at.astimezone(CHINA_TZ), payer=payer,
                        project_zh=order.project.name_zh, project_en=order.project.name_en or "",
                        kg=order.kg, unit_price_per_tonne=per_tonne, amount=order.amount,
                        transaction_id=payment.transaction_id, certificate=certificate,
                        refund=REFUND_NAMES.get(refund.status, refund.status) if refund else None,
                        refund_amount=refund.amount if refund else None)


def receipt_pdf(order: Order) -> bytes:
    from carbon.invoices.receipt import render

    return render(receipt_facts(order))


# --- the invoice profile -------------------------------------------------------------------------

def profile(principal: Principal) -> InvoiceProfile | None:
    return db.session.scalar(select(InvoiceProfile).where(InvoiceProfile.organization_id
                                                          == principal.organization.id))


def save_profile(principal: Principal, title: str, tax_id: str) -> InvoiceProfile:
    """Record the invoice title and taxpayer id (owners only); field errors name ``title`` and ``tax_id``."""
    principal.require_owner()
    errors: dict[str, list[str]] = {}
    title = _text(errors, "title", title)
    tax_id = taxid.normalize(_text(errors, "tax_id", tax_id))
    if "title" not in errors and not 2 <= len(title) <= 128:
        errors["title"] = ["发票抬头需 2-128 个字符 / The invoice title needs 2-128 characters"]
    problem = taxid.problem(tax_id)
    if problem and "tax_id" not in errors:
        errors["tax_id"] = [problem]
    if errors:
        raise ValidationError(details=errors)
    found = profile(principal) or InvoiceProfile(organization_id=principal.organization.id)
    found.title, found.tax_id = title, tax_id
    found.updated_by_id = principal.organizer.id if principal.organizer else None
    found.updated_at = utcnow()
    db.session.add(found)
    db.session.commit()
    return found


# --- invoice requests ---------------------------------------------------------------------------

def invoiceable_orders(principal: Principal) -> list[Order]:
    """The organization's own paid orders that carry no live request (none, or a rejected one)."""
    asked = select(InvoiceRequest.order_id).where(InvoiceRequest.status != InvoiceStatus.REJECTED)
    return list(db.session.scalars(select(Order).where(
        Order.organization_id == principal.organization.id, Order.status.in_(INVOICEABLE_STATES),
        Order.id.not_in(asked)).order_by(Order.id.desc())))


def request_invoice(principal: Principal, order_public_id: str) -> InvoiceRequest:
    """Ask for a fapiao for one of the organization's own paid orders, with the profile as it is now.
    A rejected request is asked again (the same row, moved back to ``requested``)."""
    order = db.session.scalar(select(Order).where(Order.public_id == order_public_id,
                                                  Order.organization_id == principal.organization.id)
                              .with_for_update())
    if order is None:
        raise OrderNotFound()
    if order.status not in INVOICEABLE_STATES:
        raise InvoiceNotAllowed(details={"status": [order.status]})
    current = profile(principal)
    if current is None:
        raise InvoiceProfileMissing()
    found = db.session.scalar(select(InvoiceRequest).where(InvoiceRequest.order_id == order.id))
    if found is not None and found.status != InvoiceStatus.REJECTED:
        raise InvoiceAlreadyRequested(details={"request": [found.public_id]})
    if found is None:
        found = InvoiceRequest(order_id=order.id, organization_id=principal.organization.id,
                               status=InvoiceStatus.REQUESTED)
        db.session.add(found)
    else:
        move(found, INVOICE_TRANSITIONS, InvoiceStatus.REQUESTED)
        found.fapiao_number = found.issued_on = found.reason = found.decided_by_id = found.decided_at = None
    found.title, found.tax_id, found.amount = current.title, current.tax_id, order.amount
    found.requested_by_id = principal.organizer.id if principal.organizer else None
    found.requested_at = utcnow()
    db.session.commit()
    return found


def requests(principal: Principal, status: str | None = None) -> list[InvoiceRequest]:
    query = select(InvoiceRequest).where(InvoiceRequest.organization_id == principal.organization.id)
    if status:
        query = query.where(InvoiceRequest.status == status)
    return list(db.session.scalars(query.order_by(InvoiceRequest.id.desc())))


def get_request(principal: Principal, public_id: str, *, lock: bool = False) -> InvoiceRequest:
    query = select(InvoiceRequest).where(InvoiceRequest.public_id == public_id,
                                         InvoiceRequest.organization_id == principal.organization.id)
    found = db.session.scalar(query.with_for_update() if lock else query)
    if found is None:
        raise InvoiceRequestNotFound()
    return found


def mark_issued(principal: Principal, public_id: str, fapiao_number: str, issued_on: date | None = None
                ) -> InvoiceRequest:
    """Finance made out the fapiao (owners only): its number (8-20 digits or capital letters) and date."""
    principal.require_owner()
    errors: dict[str, list[str]] = {}
    number = taxid.normalize(_text(errors, "fapiao_number", fapiao_number))
    if not (8 <= len(number) <= 20 and number.isascii() and number.isalnum()):
        errors.setdefault("fapiao_number", ["发票号码为 8-20 位数字或字母 / A fapiao number has 8-20 digits or letters"])
    today = utcnow().astimezone(CHINA_TZ).date()
    if issued_on is not None and issued_on > today:
        errors["issued_on"] = ["开票日期不能晚于今天 / The fapiao cannot be dated after today (China)"]
    return _decide(principal, public_id, errors, InvoiceStatus.ISSUED, fapiao_number=number,
                   issued_on=issued_on or today)


def reject(principal: Principal, public_id: str, reason: str) -> InvoiceRequest:
    """Finance will not make it out (owners only), with the reason the organization sees."""
    principal.require_owner()
    errors: dict[str, list[str]] = {}
    reason = _text(errors, "reason", reason)
    if not 1 <= len(reason) <= 200:
        errors.setdefault("reason", ["需要理由（至多 200 字） / A reason is required (at most 200)"])
    return _decide(principal, public_id, errors, InvoiceStatus.REJECTED, reason=reason)


def _decide(principal: Principal, public_id: str, errors: dict, status: InvoiceStatus, **outcome) -> InvoiceRequest:
    """Record finance's outcome: field errors first, then the move (locked), then who and when."""
    if errors:
        raise ValidationError(details=errors)
    found = get_request(principal, public_id, lock=True)
    if status == InvoiceStatus.ISSUED and found.order.status not in INVOICEABLE_STATES:  # refunded meanwhile
        raise InvoiceNotAllowed(details={"status": [str(found.order.status)]})
    move(found, INVOICE_TRANSITIONS, status)
    for name, value in outcome.items():
        setattr(found, name, value)
    found.decided_by_id = principal.organizer.id if principal.organizer else None
    found.decided_at = utcnow()
    db.session.commit()
    return found


CSV_HEADER = ("申请 / request", "订单 / order", "状态 / status", "发票抬头 / title", "纳税人识别号 / tax id",
              "金额 / amount (CNY)", "订单状态 / order status", "已退款 / refunded", "发票号码 / fapiao number",
              "开票日期 / issued on", "驳回理由 / reason", "申请时间 / requested at", "申请人 / requested by",
              "处理时间 / decided at", "处理人 / decided by")


def _china(moment: datetime | None) -> str | None:
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S") if moment else None


def export_csv(principal: Principal) -> str:
    """One row per request for the finance team: UTF-8 with BOM, amounts as fixed-point text, times in
    China's time, formula-like text neutralized (carbon.core.spreadsheet)."""
    rows = []
    for found in sorted(requests(principal), key=lambda r: r.id):
        rows.append((found.public_id, found.order.public_id, STATUS_NAMES[found.status], found.title, found.tax_id,
                     found.amount, found.order.status, "是 / yes" if found.order.status == OrderStatus.REFUNDED
                     else "否 / no", found.fapiao_number, found.issued_on.isoformat() if found.issued_on else None,
                     found.reason, _china(found.requested_at),
                     found.requested_by.email if found.requested_by else None, _china(found.decided_at),
                     found.decided_by.email if found.decided_by else None))
    return csv_text(CSV_HEADER, rows)
