"""Post balanced transactions; derive balances. Postings are never changed: a correction reverses.

The database guards the same rules (decision 0009): on PostgreSQL a deferred constraint trigger
refuses a transaction whose postings do not sum to zero per unit at commit; everywhere a check
refuses zero postings and ``(kind, reference)`` is unique, so one business event posts once."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, insert, select

from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.ids import new_public_id
from carbon.ledger.models import LedgerTransaction, Posting

UNITS = {"CNY": Decimal("0.01"), "kg": Decimal("0.001")}


class Unbalanced(ValueError):
    """The postings of one transaction do not sum to zero in every unit."""


class Posted(NamedTuple):
    id: int
    public_id: str


def post(kind: str, reference: str, entries: list[tuple[str, str, Decimal]], memo: str = "",
         reverses: LedgerTransaction | None = None) -> Posted:
    """Add a transaction of ``(account, unit, signed amount)`` entries in the caller's transaction:
    two statements (the transaction row, then its postings in one executemany)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    postings = []
    for account, unit, amount in entries:
        if unit not in UNITS or amount != amount.quantize(UNITS[unit]):
            raise ValueError(f"{amount} is not a whole number of {unit} places")
        if amount == 0:
            continue
        totals[unit] += amount
        postings.append({"account": account, "unit": unit, "amount": amount})
    if not postings:
        raise ValueError("a transaction needs postings")
    unbalanced = {unit: total for unit, total in totals.items() if total != 0}
    if unbalanced:
        raise Unbalanced(f"postings do not balance: {unbalanced}")
    now, public_id = utcnow(), new_public_id("ltx")
    transactions, rows = LedgerTransaction.__table__, Posting.__table__
    sql = db.session.connection()
    transaction_id = sql.execute(insert(transactions).values(
        public_id=public_id, kind=kind, reference=reference, memo=memo[:256], created_at=now,
        reverses_id=reverses.id if reverses else None).returning(transactions.c.id)).scalar_one()
    sql.execute(insert(rows), [{**posting, "transaction_id": transaction_id, "created_at": now}
                                      for posting in postings])
    return Posted(transaction_id, public_id)


def reverse(transaction_id: int, memo: str) -> Posted:
    """Cancel a transaction by its mirror image (the original stays, as every posting does)."""
    transaction = db.session.get(LedgerTransaction, transaction_id)
    return post("reversal", transaction.reference,
                [(p.account, p.unit, -p.amount) for p in transaction.postings], memo, reverses=transaction)


def balance(account: str, unit: str) -> Decimal:
    """The account's balance (exact on PostgreSQL; SQLite sums NUMERIC as floats, rounded back here)."""
    total = db.session.scalar(select(func.coalesce(func.sum(Posting.amount), 0))
                              .where(Posting.account == account, Posting.unit == unit))
    return Decimal(total).quantize(UNITS[unit])


def balances(prefix: str = "") -> dict[tuple[str, str], Decimal]:
    rows = db.session.execute(select(Posting.account, Posting.unit, func.sum(Posting.amount))
                              .where(Posting.account.startswith(prefix)).group_by(Posting.account, Posting.unit))
    return {(account, unit): Decimal(total).quantize(UNITS[unit]) for account, unit, total in rows}


def unbalanced_transactions() -> list[int]:
    """Ids of transactions whose postings do not sum to zero per unit (always empty; tests check).

    Summed here in Decimal: SQLite sums NUMERIC columns as floats."""
    totals: dict[tuple[int, str], Decimal] = defaultdict(Decimal)
    for transaction_id, unit, amount in db.session.execute(select(Posting.transaction_id, Posting.unit,
                                                                  Posting.amount)):
        totals[(transaction_id, unit)] += Decimal(amount)
    return sorted({transaction_id for (transaction_id, _), total in totals.items() if total != 0})
