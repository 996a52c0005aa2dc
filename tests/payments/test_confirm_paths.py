"""On PostgreSQL a payment is confirmed by the ``checkout_confirm`` database function; on SQLite by
the session path in Python. Both must leave the same rows: here the same scenario (a mismatch, an
unpaid state, the confirmation, a duplicate, money for an abandoned order, an unknown payment) runs
through each path on PostgreSQL, from empty tables and a frozen clock, and the two results are compared."""
from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select

from carbon.accounts.models import User
from carbon.checkout import service as checkout
from carbon.checkout import states
from carbon.checkout.models import NotifyEvent, Order, OutboxEvent, Payment
from carbon.core import extensions as ext
from carbon.core.clock import clock
from carbon.core.db import db
from carbon.core.errors import DomainError
from carbon.credits.models import Reservation, Retirement
from carbon.ledger.models import LedgerTransaction, Posting
from carbon.scenes.models import SceneDailyStat
from payments.provider import Transaction
from tests.conftest import empty_all_tables
from tests.payments.conftest import guest_token, live_scene, seed_project

RANDOM_IDS = re.compile(r"\b[a-z]{3}_[0-9a-z]{12}\b|\bDD\d{14}[0-9A-F]{14}\b")


def transaction(payment: Payment, **changes) -> Transaction:
    settings = ext.settings()
    fields = {"out_trade_no": payment.out_trade_no, "trade_state": "SUCCESS", "appid": settings.WECHAT_APPID,
              "mchid": settings.WECHATPAY_MCHID, "total_fen": int(payment.amount * 100), "currency": "CNY",
              "transaction_id": f"4200000000{payment.id:018d}", "payer_openid": "o_paths",
              "success_time": "2026-11-26T12:00:00+08:00"}
    fields.update(changes)
    return Transaction(**fields, raw={"out_trade_no": fields["out_trade_no"], "trade_state": fields["trade_state"],
                                      "amount": {"total": fields["total_fen"], "currency": "CNY"}})


def attempt(tx: Transaction, event_id: str | None) -> str:
    try:
        return checkout.confirm(tx, event_id=event_id)
    except checkout.PaymentMismatch as exc:
        return f"mismatch: {exc.reason}"
    except DomainError as exc:
        return f"refused: {exc.code}"


def scenario(app, client, sandbox, *, in_database: bool, moment: datetime) -> dict:
    """Everything from empty tables: a scene with a project, a guest, two orders, six deliveries."""
    app.extensions["diandian.settings"] = dataclasses.replace(app.extensions["diandian.settings"],
                                                              CONFIRM_IN_DATABASE=in_database)
    clock.set(moment)
    project_id = seed_project(app, units=100, price="60.00")
    token = guest_token(client, sandbox, "o_paths")
    assert token
    with app.app_context():
        live_scene(project_id, "paths", "paths@x.example")
        user = db.session.scalar(select(User).where(User.openid == "o_paths"))
        paid, _ = checkout.create_order(user, {"kg": Decimal("7.5"), "scene": "s%3Dpaths%26c%3Ddoor"}, "k1")
        abandoned, _ = checkout.create_order(user, {"kg": Decimal(3)}, "k2")
        payment, late = paid.payments[0], abandoned.payments[0]
        states.move(late, states.PAYMENT_TRANSITIONS, "canceled")  # as the expiry job leaves it
        states.move(abandoned, states.ORDER_TRANSITIONS, "expired")
        db.session.commit()
        outcomes = [
            attempt(transaction(payment, total_fen=1), "EV-1"),
            attempt(transaction(payment, appid="wx0000000000000000", mchid="1"), "EV-2"),
            attempt(transaction(payment, trade_state="NOTPAY"), "EV-3"),
            attempt(transaction(payment), "EV-4"),
            attempt(transaction(payment), "EV-4"),
            attempt(transaction(payment), None),
            attempt(transaction(late), "EV-5"),
            attempt(transaction(payment, out_trade_no="DD00000000000000UNKNOWN"), "EV-6"),
        ]
        db.session.expire_all()
        return {"outcomes": outcomes, "rows": rows()}


def rows() -> dict:
    def of(model, *columns, order_by=None):
        query = select(*[getattr(model, c) for c in columns]).order_by(order_by or model.id)
        return [tuple(row) for row in db.session.execute(query)]

    return {
        "payments": of(Payment, "order_id", "status", "out_trade_no", "amount", "transaction_id", "provider_data",
                       "confirmed_at"),
        "orders": of(Order, "public_id", "status", "paid_at", "units", "kg", "amount"),
        "reservations": of(Reservation, "order_id", "first_serial", "last_serial", "status"),
        "retirements": of(Retirement, "public_id", "block_id", "order_id", "project_id", "vintage_label",
                          "first_serial", "last_serial", "quantity", "kg", "beneficiary_user_id", "beneficiary_name",
                          "purpose", "retired_at"),
        "ledger": of(LedgerTransaction, "public_id", "kind", "reference", "memo", "reverses_id", "created_at"),
        "postings": of(Posting, "transaction_id", "account", "unit", "amount", "created_at"),
        "outbox": of(OutboxEvent, "kind", "payload", "created_at", "processed_at"),
        "notify_events": of(NotifyEvent, "provider", "event_id", "out_trade_no", "outcome", "received_at"),
        "scene_stats": of(SceneDailyStat, "scene_id", "channel", "day", "grams_neutralized", "money_raised"),
    }


def with_stable_ids(value, seen: dict[str, str]):
    """Random public ids and out_trade_nos replaced by their order of first appearance."""
    if isinstance(value, str):
        return RANDOM_IDS.sub(lambda m: seen.setdefault(m.group(0), f"<id{len(seen)}>"), value)
    if isinstance(value, dict):
        return {key: with_stable_ids(item, seen) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(with_stable_ids(item, seen) for item in value)
    return value


def test_the_database_function_and_the_session_path_leave_the_same_rows(app, client, sandbox, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the checkout_confirm function exists on PostgreSQL only")
    moment = datetime.now(UTC).replace(microsecond=0)
    in_session = scenario(app, client, sandbox, in_database=False, moment=moment)
    with app.app_context():
        db.session.remove()
        empty_all_tables(db.engine)
    in_database = scenario(app, client, sandbox, in_database=True, moment=moment)

    assert in_session["outcomes"] == [
        "mismatch: amount", "mismatch: appid, mchid", "ignored", "confirmed", "duplicate", "duplicate", "orphaned",
        "mismatch: unknown out_trade_no"]
    rows_written = in_session["rows"]
    assert [r[5:9] for r in rows_written["retirements"]] == [(1, 8, 8, Decimal("8.000"))]
    assert [(kind, payload.get("total_fen")) for kind, payload, *_ in rows_written["outbox"]] == [
        ("order.paid", None), ("payment.needs_refund", 100)]  # the minimum charge
    assert [(r[1], r[2], r[3]) for r in rows_written["postings"]] == [
        ("cash:wechatpay", "CNY", Decimal("1.000")), (rows_written["postings"][1][1], "CNY", Decimal("-0.950")),
        ("revenue:platform_fee", "CNY", Decimal("-0.050")), (rows_written["postings"][3][1], "kg", Decimal("8.000")),
        (rows_written["postings"][4][1], "kg", Decimal("-8.000"))]
    assert [r[3:5] for r in rows_written["scene_stats"]] == [(8000, Decimal("1.00"))]
    by_function, by_session = with_stable_ids(in_database, {}), with_stable_ids(in_session, {})
    for table, written in by_session["rows"].items():
        assert by_function["rows"][table] == written, table
    for row in in_database["rows"]["retirements"] + in_database["rows"]["ledger"]:
        assert re.fullmatch(r"(ret|ltx)_[0-9a-hjkmnp-tv-z]{12}", row[0])  # the same id alphabet as Python's
