"""What each project owner is owed, per period, and the payouts that settle it."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from carbon.core.db import db
from carbon.core.errors import Conflict, ValidationError
from carbon.core.spreadsheet import csv_text
from carbon.core.units import cny
from carbon.credits.models import Project
from carbon.credits.service import ProjectNotFound
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction, Posting


def payable_account(project_public_id: str) -> str:
    return f"payable:project:{project_public_id}"


def report(start: datetime, end: datetime, owner_organization_id: int | None = None) -> list[dict]:
    """Per project (of one owner, when given): owed at the start, earned (payments less fees, less
    refunds) and paid out in [start, end), owed at the end. Owed is the credit balance of
    ``payable:project:<id>``."""
    rows = []
    projects = select(Project).order_by(Project.id)
    if owner_organization_id is not None:
        projects = projects.where(Project.owner_organization_id == owner_organization_id)
    for project in db.session.scalars(projects):
        account = payable_account(project.public_id)
        opening = -_sum(account, until=start)
        moved = dict(db.session.execute(
            select(LedgerTransaction.kind, func.sum(Posting.amount)).join(Posting.transaction)
            .where(Posting.account == account, Posting.unit == "CNY", Posting.created_at >= start,
                   Posting.created_at < end).group_by(LedgerTransaction.kind)).all())
        earned = -Decimal(moved.get("payment", 0)) - Decimal(moved.get("refund", 0))
        paid_out = Decimal(moved.get("payout", 0))
        rows.append({"project": project.public_id, "name": project.name_zh, "registry": project.registry_name,
                     "opening_owed": cny(opening), "earned": cny(earned), "paid_out": cny(paid_out),
                     "closing_owed": cny(opening + earned - paid_out)})
    return rows


def report_csv(start: datetime, end: datetime, owner_organization_id: int | None = None) -> str:
    fields = ["project", "name", "registry", "opening_owed", "earned", "paid_out", "closing_owed"]
    return csv_text(fields, ([row[name] for name in fields] for row in report(start, end, owner_organization_id)))


def record_payout(project_public_id: str, amount: Decimal | str, reference: str) -> LedgerTransaction:
    """Money sent to the project owner: it leaves our WeChat Pay balance and reduces what is owed."""
    project = db.session.scalar(select(Project).where(Project.public_id == project_public_id))
    if project is None:
        raise ProjectNotFound(details={"project": [project_public_id]})
    try:
        amount = cny(amount)
    except (TypeError, ValueError, ArithmeticError):  # not a finite number, or too many digits for the fen
        amount = Decimal(0)
    errors = {}
    if amount <= 0:
        errors["amount"] = ["需为正数 / a positive amount of CNY"]
    if not 1 <= len(reference.strip()) <= 64 or reference != reference.strip():
        errors["reference"] = ["转账凭证为 1 至 64 个字符 / the transfer's reference, 1 to 64 characters"]
    if errors:
        raise ValidationError(details=errors)
    # The project's row lock (PostgreSQL; on SQLite the database's write lock) before reading what is
    # owed: two payouts recorded at once are checked one after the other.
    db.session.execute(update(Project).where(Project.id == project.id).values(status=Project.status))
    owed = -ledger.balance(payable_account(project.public_id), "CNY")
    if amount > owed:
        raise Conflict(code="settlement.overpayment", message="超过应付金额 / More than is owed",
                       details={"owed": str(owed)})
    transaction = ledger.post("payout", reference, [(payable_account(project.public_id), "CNY", amount),
                                                    ("cash:wechatpay", "CNY", -amount)],
                              memo=f"payout to {project.public_id}")
    try:
        db.session.commit()
    except IntegrityError as exc:  # (kind, reference) is unique: one bank transfer is recorded once
        db.session.rollback()
        raise Conflict(code="settlement.duplicate_payout", message="该转账凭证已登记 / This transfer is already "
                       "recorded", details={"reference": [reference]}) from exc
    return transaction


def _sum(account: str, *, until: datetime) -> Decimal:
    return Decimal(db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))
                                     .where(Posting.account == account, Posting.unit == "CNY",
                                            Posting.created_at < until)))
