"""Post balanced transactions; derive balances. Postings are never changed: a correction reverses."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from sqlalchemy import func, select

from carbon.core.db import db
from carbon.ledger.models import LedgerTransaction, Posting

UNITS = {"CNY": Decimal("0.01"), "kg": Decimal("0.001")}


class Unbalanced(ValueError):
    """The postings of one transaction do not sum to zero in every unit."""


def post(kind: str, reference: str, entries: list[tuple[str, str, Decimal]], memo: str = "",
         reverses: LedgerTransaction | None = None) -> LedgerTransaction:
    """Add a transaction of ``(account, unit, signed amount)`` entries (in the caller's unit of work)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    postings = []
    for account, unit, amount in entries:
        if unit not in UNITS or amount != amount.quantize(UNITS[unit]):
            raise ValueError(f"{amount} is not a whole number of {unit} places")
        if amount == 0:
            continue
        totals[unit] += amount
        postings.append(Posting(account=account, unit=unit, amount=amount))
    if not postings:
        raise ValueError("a transaction needs postings")
    unbalanced = {unit: total for unit, total in totals.items() if total != 0}
    if unbalanced:
        raise Unbalanced(f"postings do not balance: {unbalanced}")
    transaction = LedgerTransaction(kind=kind, reference=reference, memo=memo, postings=postings,
                                    reverses_id=reverses.id if reverses else None)
    db.session.add(transaction)
    return transaction


def reverse(transaction: LedgerTransaction, memo: str) -> LedgerTransaction:
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
