"""Command-line tasks: ``flask --app app:create_app <command>``."""
from __future__ import annotations

import functools
import json

import click
import marshmallow
from flask import Flask
from flask.cli import AppGroup

from carbon.core.errors import DomainError


def _refusal(exc: DomainError | marshmallow.ValidationError) -> click.ClickException:
    """The one-line message (exit status 1) a command prints for a refused input, instead of a traceback."""
    if isinstance(exc, marshmallow.ValidationError):
        return click.ClickException(f"validation_error: {json.dumps(exc.messages, ensure_ascii=False)}")
    details = f" {json.dumps(exc.details, ensure_ascii=False, default=str)}" if exc.details else ""
    return click.ClickException(f"{exc.code}: {exc.message}{details}")


def _answer_refusals(command: click.Command) -> None:
    """Wrap a command (each of a group's) so the services' refusals reach the operator as ``_refusal``."""
    for sub in getattr(command, "commands", {}).values():
        _answer_refusals(sub)
    if command.callback is None:
        return
    callback = command.callback

    @functools.wraps(callback)
    def answered(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except (DomainError, marshmallow.ValidationError) as exc:
            raise _refusal(exc) from exc

    command.callback = answered


def register(app: Flask) -> None:
    builtin = set(app.cli.commands)
    @app.cli.command("seed-demo")
    def seed_demo() -> None:
        """Create the demo data (idempotent: a second run changes nothing)."""
        from carbon.demo import seed

        for line in seed():
            click.echo(line)

    @app.cli.command("reindex-scenes")
    def reindex_scenes() -> None:
        """Recompute every scene's search text (e.g. after the Chinese converters were upgraded)."""
        from carbon.scenes.service import reindex_search

        click.echo(f"{reindex_search()} scenes reindexed")

    @app.cli.command("create-organizer")
    @click.option("--organization", required=True, help="the organization's name")
    @click.option("--email", required=True)
    @click.option("--name", "display_name", required=True, help="the owner's display name")
    @click.password_option()
    def create_organizer(organization: str, email: str, display_name: str, password: str) -> None:
        """Create an organization and its first owner (the console's rules for a member's email,
        password and name)."""
        from carbon.organizers.service import create_organization
        from schemas.organizers import NewOrganizationIn

        given = NewOrganizationIn().load({"organization": organization, "email": email, "password": password,
                                          "display_name": display_name})
        member = create_organization(given["organization"], owner_email=given["email"],
                                     owner_password=given["password"], owner_name=given["display_name"])
        click.echo(f"organizer {member.email} ({member.public_id}) owns {member.organization.public_id}")

    @app.cli.command("expire-orders")
    def expire_orders() -> None:
        """Close unpaid orders past their reservation and release their credits."""
        from carbon.checkout.operations import expire_orders as run

        click.echo(run())

    @app.cli.command("reconcile-payments")
    @click.option("--older-than-minutes", default=10, show_default=True)
    def reconcile_payments(older_than_minutes: int) -> None:
        """Query WeChat Pay about payments pending longer than N minutes and confirm the paid ones."""
        from carbon.checkout.operations import reconcile_payments as run

        click.echo(run(older_than_minutes))

    @app.cli.command("refund-order")
    @click.argument("order_id")
    @click.option("--reason", required=True)
    def refund_order(order_id: str, reason: str) -> None:
        """Refund a paid order in full (credits stay retired; the money is reversed)."""
        from carbon.checkout.operations import refund_order as run

        order = run(order_id, reason)
        click.echo(f"{order.public_id} {order.status}")

    @app.cli.command("refund-retry")
    @click.argument("refund_id")
    def refund_retry(refund_id: str) -> None:
        """Ask WeChat Pay again for a refund it closed (status failed), under a new out_refund_no."""
        from carbon.checkout.operations import retry_refund

        retry = retry_refund(refund_id)
        click.echo(f"{refund_id} retried as {retry.public_id} ({retry.out_refund_no}) {retry.status}")

    @app.cli.command("worker")
    @click.option("-q", "--queue", "queues", multiple=True, metavar="NAME",
                  help="serve this lane: inbox (payment confirmations) or an outbox queue (default); "
                       "repeat for more, in priority order; all of them when none is given")
    @click.option("--nice", default=0, type=click.IntRange(-20, 19),
                  help="change the CPU priority by this much (os.nice): negative for the inbox above the app "
                       "server (needs root or CAP_SYS_NICE; systemd's Nice= does it for a unit), positive for "
                       "a slow lane")
    def worker(queues: tuple[str, ...], nice: int) -> None:
        """Confirm payments from the inbox and dispatch outbox events (for DIANDIAN_JOBS=workers)."""
        import os

        from flask import current_app

        from carbon.core import extensions as ext
        from carbon.jobs.worker import lanes, work

        unknown = sorted(set(queues) - set(lanes()))
        if unknown:
            raise click.BadParameter(f"unknown lane {unknown[0]!r} (known: {', '.join(lanes())})", param_hint="-q")
        if nice:
            try:
                os.nice(nice)
            except PermissionError:
                raise click.BadParameter(f"{nice} raises the priority, which needs root or CAP_SYS_NICE "
                                         "(systemd: Nice= in the unit)", param_hint="--nice") from None
        served = list(queues) or lanes()
        click.echo(f"worker: {', '.join(served)} ({'RQ on Redis' if ext.job_queue() else 'table sweep'}, nice {nice})")
        work(current_app._get_current_object(), queues=served)

    outbox = AppGroup("outbox", help="Events after a payment: list failures, replay, run what is due.")
    app.cli.add_command(outbox)

    @outbox.command("failed")
    @click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100_000),
                  help="list at most this many, oldest first")
    def outbox_failed(limit: int) -> None:
        """Events that ran out of attempts, with their last error."""
        from carbon import jobs

        for event in jobs.failed(limit):
            click.echo(f"{event.id}\t{event.queue}\t{event.kind}\t{event.handler}\t{event.attempts}\t"
                       f"{event.last_error}")

    @outbox.command("replay")
    @click.argument("event_id", type=int)
    def outbox_replay(event_id: int) -> None:
        """Run a failed event again, from a fresh count of attempts."""
        from carbon import jobs

        try:
            click.echo(jobs.replay(event_id))
        except LookupError as exc:
            raise click.ClickException(str(exc)) from exc

    @outbox.command("run")
    @click.option("-q", "--queue", "queues", multiple=True, metavar="NAME", help="only this queue (repeatable)")
    def outbox_run(queues: tuple[str, ...]) -> None:
        """Dispatch every due event (of the queues given, or all) here and now, batch after batch."""
        from carbon import jobs

        unknown = sorted(set(queues) - set(jobs.queue_names()))
        if unknown:
            raise click.BadParameter(f"unknown queue {unknown[0]!r} (known: {', '.join(jobs.queue_names())})",
                                     param_hint="-q")
        total: dict[str, int] = {}
        while True:
            counts = jobs.run_due(queues=list(queues) or None)
            for outcome, count in counts.items():
                total[outcome] = total.get(outcome, 0) + count
            if sum(counts.values()) < jobs.DISPATCH_BATCH:  # a short batch: nothing more is due
                break
        click.echo(total)

    pii = AppGroup("pii", help="Personal data (PIPL): retention and the phone-number key.")
    app.cli.add_command(pii)

    @pii.command("purge")
    def pii_purge() -> None:
        """Delete what is past its retention period (docs/OPERATIONS.md); run daily from cron."""
        from carbon.accounts.privacy import purge

        click.echo(purge())

    @pii.command("rotate")
    def pii_rotate() -> None:
        """Re-encrypt every phone number under the first DIANDIAN_PHONE_KEYS key."""
        from carbon.accounts.phones import rotate

        done = rotate()
        click.echo(f"phone numbers: {done['rotated']} re-encrypted, {done['current']} already under the first key, "
                   f"{done['changed']} bound again or erased meanwhile, {done['failed']} under no configured key")
        if done["failed"]:
            raise click.ClickException("some numbers are under a key DIANDIAN_PHONE_KEYS no longer holds")

    @app.cli.command("settlement-report")
    @click.option("--start", "start", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
    @click.option("--end", "end", required=True, type=click.DateTime(formats=["%Y-%m-%d"]))
    def settlement_report(start, end) -> None:
        """What each project owner is owed for [start, end) (China time), as CSV."""
        from carbon.core.clock import CHINA_TZ
        from carbon.ledger.settlement import report_csv

        click.echo(report_csv(start.replace(tzinfo=CHINA_TZ), end.replace(tzinfo=CHINA_TZ)), nl=False)

    @app.cli.command("record-payout")
    @click.argument("project_id")
    @click.argument("amount")
    @click.option("--reference", required=True, help="the bank transfer's reference")
    def record_payout(project_id: str, amount: str, reference: str) -> None:
        """Record money paid to a project owner (AMOUNT in CNY, e.g. 1234.50)."""
        from carbon.ledger.settlement import record_payout as run

        click.echo(run(project_id, amount, reference).public_id)

    @app.cli.command("add-serial-block")
    @click.argument("project_id")
    @click.option("--vintage", required=True)
    @click.option("--first", "first_serial", required=True, type=int)
    @click.option("--last", "last_serial", required=True, type=int)
    @click.option("--price-per-tonne", required=True)
    def add_serial_block(project_id: str, vintage: str, first_serial: int, last_serial: int,
                         price_per_tonne: str) -> None:
        """Add a block of unit serials (global positions, never overlapping) to a project's vintage."""
        from carbon.credits.service import add_block

        block = add_block(project_id, vintage, first_serial, last_serial, price_per_tonne)
        click.echo(f"block {block.id}: {block.size} units")

    leaderboards = AppGroup("leaderboards", help="Ranks by kilograms retired: rebuild the indexes.")
    app.cli.add_command(leaderboards)

    @leaderboards.command("rebuild")
    def leaderboards_rebuild() -> None:
        """Recompute this week's, this month's and the all-time boards from the retirements (table
        and Redis), e.g. after Redis lost its data or was unreachable while guests paid."""
        from carbon.leaderboards.service import rebuild

        boards = rebuild()
        click.echo(f"{len(boards)} boards rebuilt, {sum(boards.values())} places")

    for name in set(app.cli.commands) - builtin:
        _answer_refusals(app.cli.commands[name])
