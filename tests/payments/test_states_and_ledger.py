"""The transition tables, every pair; the ledger's rules; the database's guards on serials and postings."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from itertools import product
from types import SimpleNamespace

import pytest
from sqlalchemy import bindparam, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from carbon.checkout.states import (
    ORDER_TRANSITIONS,
    PAYMENT_TRANSITIONS,
    REFUND_TRANSITIONS,
    TransitionRefused,
    move,
)
from carbon.core.clock import utcnow
from carbon.core.db import db
from carbon.core.ids import new_public_id
from carbon.credits.models import Reservation, Retirement, SerialBlock
from carbon.ledger import service as ledger
from carbon.ledger.models import LedgerTransaction, Posting
from tests.payments.conftest import seed_project

ORDER_ALLOWED = {("created", "awaiting_payment"), ("created", "canceled"), ("awaiting_payment", "paid"),
                 ("awaiting_payment", "expired"), ("awaiting_payment", "canceled"), ("paid", "fulfilled"),
                 ("paid", "refunded"), ("fulfilled", "refunded")}
PAYMENT_ALLOWED = {("created", "pending"), ("created", "failed"), ("created", "canceled"), ("pending", "confirmed"),
                   ("pending", "failed"), ("pending", "canceled"), ("confirmed", "refunded")}


REFUND_ALLOWED = {("requested", "processing"), ("requested", "abnormal"), ("requested", "succeeded"),
                  ("requested", "failed"), ("processing", "abnormal"), ("processing", "succeeded"),
                  ("processing", "failed"), ("abnormal", "succeeded"), ("abnormal", "failed"),
                  ("failed", "retried")}


MACHINES = {"order": (ORDER_TRANSITIONS, ORDER_ALLOWED), "payment": (PAYMENT_TRANSITIONS, PAYMENT_ALLOWED),
            "refund": (REFUND_TRANSITIONS, REFUND_ALLOWED)}


@pytest.mark.parametrize(("machine", "start", "end"), [
    (machine, start, end) for machine, (table, _) in MACHINES.items() for start, end in product(table, repeat=2)])
def test_every_transition(machine, start, end):
    table, allowed = MACHINES[machine]
    thing = SimpleNamespace(status=start)
    if (start, end) in allowed:
        move(thing, table, end)
        assert thing.status == end
    else:
        with pytest.raises(TransitionRefused):
            move(thing, table, end)
        assert thing.status == start


def test_ledger_refuses_unbalanced_and_inexact_transactions(app):
    with app.app_context():
        with pytest.raises(ledger.Unbalanced):
            ledger.post("payment", "x", [("cash:wechatpay", "CNY", Decimal("1.00")),
                                         ("revenue:platform_fee", "CNY", Decimal("-0.99"))])
        with pytest.raises(ledger.Unbalanced):  # balanced in CNY is not enough: kg too
            ledger.post("payment", "x", [("cash:wechatpay", "CNY", Decimal("1.00")),
                                         ("revenue:platform_fee", "CNY", Decimal("-1.00")),
                                         ("retired:user:1", "kg", Decimal("2.000"))])
        with pytest.raises(ValueError, match="places"):
            ledger.post("payment", "x", [("a", "CNY", Decimal("0.001")), ("b", "CNY", Decimal("-0.001"))])
        db.session.rollback()
        assert db.session.scalar(select(Posting)) is None


def test_a_reversal_cancels_a_transaction_and_balances_are_derived(app):
    with app.app_context():
        original = ledger.post("payment", "ord_1", [("cash:wechatpay", "CNY", Decimal("5.00")),
                                                   ("payable:project:p", "CNY", Decimal("-5.00"))])
        db.session.commit()
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("5.00")
        reversal = ledger.reverse(original.id, "wrong project")
        db.session.commit()
        assert db.session.get(LedgerTransaction, reversal.id).reverses_id == original.id
        assert ledger.balance("cash:wechatpay", "CNY") == 0 and ledger.balance("payable:project:p", "CNY") == 0
        assert len(db.session.scalars(select(Posting)).all()) == 4  # nothing was deleted
        assert ledger.unbalanced_transactions() == []


def test_postings_cannot_be_changed_or_deleted_on_postgresql(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the append-only trigger guards the production database, PostgreSQL")
    with app.app_context():
        ledger.post("payment", "ord_2", [("cash:wechatpay", "CNY", Decimal("1.00")),
                                         ("payable:project:p", "CNY", Decimal("-1.00"))])
        db.session.commit()
        for statement in ("UPDATE postings SET amount = 0", "DELETE FROM postings",
                          "DELETE FROM ledger_transactions"):
            with pytest.raises(DBAPIError, match="append-only"):
                db.session.execute(text(statement))
            db.session.rollback()
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("1.00")


def _raw_transaction(kind: str, reference: str) -> int:
    """A ledger transaction row written in SQL, bypassing ledger.post()."""
    statement = text("INSERT INTO ledger_transactions (public_id, kind, reference, memo, created_at) "
                     "VALUES (:public_id, :kind, :reference, '', :now) RETURNING id").bindparams(
        bindparam("now", type_=Posting.created_at.type))
    return db.session.execute(statement, {"public_id": new_public_id("ltx"), "kind": kind, "reference": reference,
                                          "now": utcnow()}).scalar_one()


def _raw_posting(transaction_id: int, account: str, unit: str, amount: str) -> None:
    statement = text("INSERT INTO postings (transaction_id, account, unit, amount, created_at) "
                     "VALUES (:t, :a, :u, :amount, :now)").bindparams(
        bindparam("amount", type_=Posting.amount.type), bindparam("now", type_=Posting.created_at.type))
    db.session.execute(statement, {"t": transaction_id, "a": account, "u": unit, "amount": Decimal(amount),
                                   "now": utcnow()})


def test_the_database_refuses_an_unbalanced_transaction_at_commit_on_postgresql(app, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("a deferred constraint trigger: PostgreSQL (SQLite relies on ledger.post's check)")
    with app.app_context():
        transaction_id = _raw_transaction("payment", "sql-unbalanced")
        _raw_posting(transaction_id, "cash:wechatpay", "CNY", "1.00")
        _raw_posting(transaction_id, "revenue:platform_fee", "CNY", "-0.99")
        with pytest.raises(IntegrityError, match="does not balance"):
            db.session.commit()  # deferred: checked when the transaction ends, not per row
        db.session.rollback()
        balanced_in_cny_only = _raw_transaction("payment", "sql-kg")
        _raw_posting(balanced_in_cny_only, "cash:wechatpay", "CNY", "1.00")
        _raw_posting(balanced_in_cny_only, "revenue:platform_fee", "CNY", "-1.00")
        _raw_posting(balanced_in_cny_only, "retired:user:1", "kg", "2.000")
        with pytest.raises(IntegrityError, match="does not balance"):
            db.session.commit()
        db.session.rollback()
        fine = _raw_transaction("payment", "sql-fine")
        _raw_posting(fine, "cash:wechatpay", "CNY", "1.00")
        _raw_posting(fine, "revenue:platform_fee", "CNY", "-1.00")
        db.session.commit()
        assert ledger.balance("cash:wechatpay", "CNY") == Decimal("1.00")


def test_the_database_refuses_zero_postings_and_posting_one_event_twice(app):
    with app.app_context():
        transaction_id = _raw_transaction("payment", "sql-zero")
        with pytest.raises(IntegrityError):
            _raw_posting(transaction_id, "cash:wechatpay", "CNY", "0.00")
        db.session.rollback()
        _raw_transaction("payment", "ord_same")
        db.session.commit()
        with pytest.raises(IntegrityError):  # (kind, reference) is unique: one payment posts once
            _raw_transaction("payment", "ord_same")
        db.session.rollback()
        with pytest.raises(IntegrityError):  # and through the service the same
            ledger.post("payment", "ord_same", [("a", "CNY", Decimal("1.00")), ("b", "CNY", Decimal("-1.00"))])
        db.session.rollback()


def _block_and_order(app, login_openid="o_guard"):
    """A project block and an order row to hang reservations and retirements on."""
    from carbon.accounts.models import User
    from carbon.checkout.models import Order
    from carbon.credits.models import Project

    project_id = seed_project(app, units=100)
    user = User(openid=login_openid)
    project = db.session.scalar(select(Project).where(Project.public_id == project_id))
    order = Order(project=project, units=1, kg=Decimal(1), amount=Decimal("1.00"),
                  beneficiary_name="x", purpose="x", expires_at=utcnow() + timedelta(minutes=15))
    db.session.add(user)
    db.session.flush()
    order.user_id = user.id
    db.session.add(order)
    db.session.commit()
    return db.session.scalar(select(SerialBlock)), order, user


def test_a_serial_is_retired_at_most_once_by_the_database(app):
    with app.app_context():
        block, order, user = _block_and_order(app)

        def retirement(first, last):
            return Retirement(block_id=block.id, order_id=order.id, project_id=order.project_id, vintage_label="2021",
                              first_serial=first, last_serial=last, quantity=last - first + 1,
                              kg=Decimal(last - first + 1), beneficiary_user_id=user.id, beneficiary_name="x",
                              purpose="x")
        db.session.add(retirement(10, 20))
        db.session.commit()
        for first, last in ((20, 25), (5, 10), (12, 13), (1, 100)):
            db.session.add(retirement(first, last))
            with pytest.raises((IntegrityError, DBAPIError)):
                db.session.commit()
            db.session.rollback()
        db.session.add(retirement(21, 30))
        db.session.commit()


def test_active_reservations_cannot_overlap_but_released_ones_free_their_serials(app):
    with app.app_context():
        block, order, _ = _block_and_order(app)

        def hold(first, last, status="active"):
            return Reservation(block_id=block.id, order_id=order.id, first_serial=first, last_serial=last,
                               status=status, expires_at=utcnow())
        db.session.add(hold(1, 10))
        db.session.commit()
        db.session.add(hold(5, 6))
        with pytest.raises((IntegrityError, DBAPIError)):
            db.session.commit()
        db.session.rollback()
        first = db.session.scalar(select(Reservation))
        first.status = "released"
        db.session.commit()
        db.session.add(hold(5, 6))
        db.session.commit()


def test_blocks_never_overlap(app):
    from carbon.credits import service as credits

    with app.app_context():
        project_id = seed_project(app, units=100, first=1)
        with pytest.raises(credits.SerialsOverlap):
            credits.add_block(project_id, "2022", 50, 150, Decimal(60))
        credits.add_block(project_id, "2022", 101, 150, Decimal(60))


def test_free_serials_are_the_gaps_between_holds_and_retirements_lowest_first(app):
    from carbon.credits.service import free_ranges, reserve

    with app.app_context():
        block, order, user = _block_and_order(app)  # serials 1-100
        assert free_ranges(block) == [(1, 100)]
        db.session.add_all([
            Retirement(block_id=block.id, order_id=order.id, project_id=order.project_id, vintage_label="2021",
                       first_serial=first, last_serial=last, quantity=last - first + 1, kg=Decimal(last - first + 1),
                       beneficiary_user_id=user.id, beneficiary_name="x", purpose="x")
            for first, last in ((10, 20), (21, 30), (90, 100))])
        db.session.add_all([Reservation(block_id=block.id, order_id=order.id, first_serial=first, last_serial=last,
                                        status=status, expires_at=utcnow() + timedelta(minutes=5))
                            for first, last, status in ((40, 45, "active"), (31, 35, "released"), (47, 47, "active"))])
        db.session.commit()
        assert free_ranges(block) == [(1, 9), (31, 39), (46, 46), (48, 89)]  # a released hold frees its serials
        reserve(order.project, order.id, 12, utcnow() + timedelta(minutes=5))  # the lowest free first
        db.session.flush()
        assert free_ranges(block) == [(34, 39), (46, 46), (48, 89)]
        held = db.session.execute(select(Reservation.first_serial, Reservation.last_serial).where(
            Reservation.status == "active").order_by(Reservation.first_serial)).all()
        assert [tuple(r) for r in held] == [(1, 9), (31, 33), (40, 45), (47, 47)]
        db.session.add(Retirement(block_id=block.id, order_id=order.id, project_id=order.project_id,
                                  vintage_label="2021", first_serial=48, last_serial=89, quantity=42, kg=Decimal(42),
                                  beneficiary_user_id=user.id, beneficiary_name="x", purpose="x"))
        db.session.flush()
        assert free_ranges(block) == [(34, 39), (46, 46)]  # nothing after the last taken serial
