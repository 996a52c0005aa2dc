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


class Entry(NamedTuple):
    """One transaction to post: ``(account, unit, signed amount)`` entries for one business event."""

    kind: str
    reference: str
    entries: list[tuple[str, str, Decimal]]
    memo: str = ""
    reverses_id: int | None = None


def post(kind: str, reference: str, entries: list[tuple[str, str, Decimal]], memo: str = "",
         reverses: LedgerTransaction | None = None) -> Posted:
    """Add one balanced transaction in the caller's transaction (see ``post_many``)."""
    return post_many([Entry(kind, reference, entries, memo, reverses.id if reverses else None)])[0]


def post_many(transactions: list[Entry]) -> list[Posted]:
    """Add balanced transactions in the caller's transaction, whatever their number, in two
    statements: the transaction rows (one INSERT … RETURNING), then all their postings (one executemany)."""
    checked = [_postings(transaction) for transaction in transactions]
    now = utcnow()
    public_ids = [new_public_id("ltx") for _ in transactions]
    table, rows = LedgerTransaction.__table__, Posting.__table__
    sql = db.session.connection()
    ids = list(sql.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), [
        {"public_id": public_id, "kind": t.kind, "reference": t.reference, "memo": t.memo[:256], "created_at": now,
         "reverses_id": t.reverses_id} for public_id, t in zip(public_ids, transactions, strict=True)]).scalars())
    sql.execute(insert(rows), [{**posting, "transaction_id": transaction_id, "created_at": now}
                               for transaction_id, postings in zip(ids, checked, strict=True) for posting in postings])
    return [Posted(transaction_id, public_id) for transaction_id, public_id in zip(ids, public_ids, strict=True)]


def _postings(transaction: Entry) -> list[dict]:
    """The rule every posted transaction obeys: exact places, no zero postings, zero sum per unit."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    postings = []
    for account, unit, amount in transaction.entries:
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
    return postings


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
