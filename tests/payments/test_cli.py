"""The operator's commands: a refused input ends in one line naming the error's code (exit status 1,
or click's 2 for a malformed option), never a traceback, and writes nothing."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from carbon.core.db import db
from carbon.credits.models import SerialBlock
from carbon.ledger.models import LedgerTransaction
from carbon.organizers.models import Organizer
from tests.payments.conftest import seed_project
from tests.payments.test_jobs import _paid_order


def invoke(app, *args: str, input: str | None = None):
    result = app.test_cli_runner().invoke(args=list(args), input=input)
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


@pytest.mark.parametrize("price, code", [
    ("-60", "validation_error"), ("0", "validation_error"), ("NaN", "validation_error"),
    ("Infinity", "validation_error"), ("1e40", "validation_error"), ("sixty", "validation_error"),
    ("60.001", "validation_error"), ("10000000000", "validation_error"),
])
def test_a_serial_block_needs_a_positive_price_in_whole_fen(app, price, code):
    project_id = seed_project(app, units=100)
    result = invoke(app, "add-serial-block", project_id, "--vintage", "2022", "--first", "101", "--last", "200",
                    "--price-per-tonne", price)
    assert result.exit_code == 1 and f"Error: {code}" in result.output and "price_per_tonne" in result.output
    assert count(app, SerialBlock) == 1


@pytest.mark.parametrize("first, last, vintage, code", [
    ("300", "201", "2022", "validation_error"),  # first after last
    ("0", "10", "2022", "validation_error"),
    ("-5", "10", "2022", "validation_error"),
    ("201", "300", "", "validation_error"),
    ("201", "300", "x" * 33, "validation_error"),
    ("50", "150", "2022", "credits.serials_overlap"),  # overlaps the seeded 1-100
])
def test_a_serial_block_is_a_fresh_non_empty_range(app, first, last, vintage, code):
    project_id = seed_project(app, units=100)
    result = invoke(app, "add-serial-block", project_id, "--vintage", vintage, "--first", first, "--last", last,
                    "--price-per-tonne", "60")
    assert result.exit_code == 1 and f"Error: {code}" in result.output, result.output
    assert count(app, SerialBlock) == 1


def test_a_serial_block_for_an_unknown_project_is_refused_and_a_good_one_is_added(app):
    project_id = seed_project(app, units=100)
    unknown = invoke(app, "add-serial-block", "prj_nobody", "--vintage", "2022", "--first", "101", "--last", "200",
                     "--price-per-tonne", "60")
    assert unknown.exit_code == 1 and "Error: project.not_found" in unknown.output
    added = invoke(app, "add-serial-block", project_id, "--vintage", "2022", "--first", "101", "--last", "200",
                   "--price-per-tonne", "60.50")
    assert added.exit_code == 0 and added.output.endswith(": 100 units\n")
    with app.app_context():
        block = db.session.scalar(select(SerialBlock).order_by(SerialBlock.id.desc()).limit(1))
        assert (block.first_serial, block.last_serial, str(block.price_per_tonne)) == (101, 200, "60.50")


@pytest.mark.parametrize("args, code", [
    (["abc"], "validation_error"), (["NaN"], "validation_error"), (["Infinity"], "validation_error"),
    (["1e30"], "validation_error"), (["0.001"], "validation_error"), (["--reference", "BANK-1", "--", "-5"], "validation_error"),
    (["5", "--reference", " "], "validation_error"), (["5", "--reference", "B" * 65], "validation_error"),
    (["5.00"], "settlement.overpayment"),  # nothing is owed yet
])
def test_a_payout_is_a_positive_amount_no_more_than_is_owed(app, args, code):
    project_id = seed_project(app, units=100)
    if "--reference" not in args:
        args = [*args, "--reference", "BANK-1"]
    result = invoke(app, "record-payout", project_id, *args)
    assert result.exit_code == 1 and f"Error: {code}" in result.output, result.output
    unknown = invoke(app, "record-payout", "prj_nobody", "5", "--reference", "BANK-1")
    assert unknown.exit_code == 1 and "Error: project.not_found" in unknown.output
    assert count(app, LedgerTransaction) == 0


def test_refunding_an_unknown_or_refunded_order_says_why(live, sandbox):
    seed_project(live.app, units=100)
    order_id = _paid_order(live, sandbox, "o_cli_refund", "2")
    unknown = invoke(live.app, "refund-order", "ord_nobody", "--reason", "test")
    assert unknown.exit_code == 1 and "Error: order.not_found" in unknown.output
    too_long = invoke(live.app, "refund-order", order_id, "--reason", "长" * 201)
    assert too_long.exit_code == 1 and "Error: validation_error" in too_long.output and "reason" in too_long.output
    refunded = invoke(live.app, "refund-order", order_id, "--reason", "买错了")
    assert refunded.exit_code == 0 and refunded.output == f"{order_id} refunded\n"
    again = invoke(live.app, "refund-order", order_id, "--reason", "买错了")
    assert again.exit_code == 1 and "Error: order.transition_refused" in again.output
    assert "refunded → refunded" in again.output


@pytest.mark.parametrize("email, password, name, field", [
    ("not-an-email", "long enough password", "Owner", "email"),
    ("owner@forum.example", "short", "Owner", "password"),
    ("owner@forum.example", "long enough password", "", "display_name"),
])
def test_an_organizer_is_created_by_the_consoles_rules(app, email, password, name, field):
    result = invoke(app, "create-organizer", "--organization", "论坛", "--email", email, "--name", name,
                    input=f"{password}\n{password}\n")
    assert result.exit_code == 1 and "Error: validation_error" in result.output and field in result.output
    assert count(app, Organizer) == 0


def test_an_organizers_email_is_taken_once(app):
    args = ["create-organizer", "--organization", "论坛", "--email", "Owner@Forum.example", "--name", "Owner"]
    created = invoke(app, *args, input="correct horse battery\ncorrect horse battery\n")
    assert created.exit_code == 0 and "organizer owner@forum.example" in created.output
    taken = invoke(app, *args, input="correct horse battery\ncorrect horse battery\n")
    assert taken.exit_code == 1 and "Error: organizer.email_taken" in taken.output
    assert count(app, Organizer) == 1


def test_the_outbox_commands_refuse_unknown_queues_and_bad_limits(app):
    bogus = invoke(app, "outbox", "run", "-q", "bogus")
    assert bogus.exit_code == 2 and "unknown queue 'bogus'" in bogus.output
    negative = invoke(app, "outbox", "failed", "--limit", "-1")
    assert negative.exit_code == 2 and "--limit" in negative.output
    assert invoke(app, "outbox", "run", "-q", "default").exit_code == 0


def test_a_worker_raising_its_priority_without_the_privilege_says_what_it_needs(app, monkeypatch):
    """``--nice -5`` (the inbox above the app server, as deploy/systemd runs it) needs root or
    CAP_SYS_NICE; without it the worker does not start at the wrong priority: one line, status 2."""
    import os

    def refused(increment: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "nice", refused)
    result = invoke(app, "worker", "-q", "inbox", "--nice", "-5")
    assert result.exit_code == 2 and "CAP_SYS_NICE" in result.output and "--nice" in result.output
    assert invoke(app, "worker", "--nice", "-21").exit_code == 2
