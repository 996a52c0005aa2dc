"""Gauges read from the database at scrape time: a handful of grouped queries over indexed status
columns (the inbox and outbox) or small tables (open orders, holds), so a scrape costs a few
milliseconds however many requests were served. Only the scraping process runs them."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from decimal import Decimal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import case, func, select
from sqlalchemy.exc import SQLAlchemyError

from carbon.checkout.models import InboxEntry, Order, Refund
from carbon.checkout.states import REFUND_DONE_WITH, OrderStatus, RefundStatus
from carbon.core.clock import as_utc, utcnow
from carbon.core.db import db
from carbon.credits.models import Project, Reservation, SerialBlock, Vintage
from carbon.jobs.models import OutboxEvent

log = logging.getLogger("diandian.metrics")
WAITING = ("pending", "failed")  # inbox and outbox rows not done
REFUND_CAUSES = ("operator", "late_payment", "double_charge")  # Refund.cause


class DatabaseCollector(Collector):
    """The service's state as Prometheus gauges (``diandian_database_up`` 0 when it cannot be read)."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            families = list(self._families())
        except SQLAlchemyError as exc:
            from carbon.core.http import end_session

            end_session(remove=False)
            log.warning("metrics: database unreadable", extra={"fields": {"error": type(exc).__name__}})
            families = []
        up = GaugeMetricFamily("diandian_database_up", "1 when the scrape could read the database")
        up.add_metric([], 1 if families else 0)
        yield up
        yield from families

    def _families(self) -> Iterator[GaugeMetricFamily]:
        now = utcnow()
        session = db.session

        inbox_depth = GaugeMetricFamily("diandian_inbox_entries", "Payment inbox entries not done, by status "
                                        "(pending: waiting for a worker; failed: an operator must look)",
                                        labels=["status"])
        inbox_age = GaugeMetricFamily("diandian_inbox_oldest_pending_seconds",
                                      "Age of the oldest pending inbox entry (0 when none)")
        rows = {status: (count, oldest) for status, count, oldest in session.execute(
            select(InboxEntry.status, func.count(), func.min(InboxEntry.received_at))
            .where(InboxEntry.status.in_(WAITING)).group_by(InboxEntry.status))}
        for status in WAITING:
            inbox_depth.add_metric([status], rows.get(status, (0, None))[0])
        inbox_age.add_metric([], _age(now, rows.get("pending", (0, None))[1]))

        outbox_depth = GaugeMetricFamily("diandian_outbox_events", "Outbox events not done, by status "
                                         "(failed: out of attempts, `flask outbox failed` lists them)",
                                         labels=["status"])
        outbox_age = GaugeMetricFamily("diandian_outbox_oldest_pending_seconds",
                                       "Age of the oldest pending outbox event (0 when none)")
        retrying = GaugeMetricFamily("diandian_outbox_retrying_events",
                                     "Pending outbox events whose handler failed at least once")
        rows = {status: (count, oldest, again) for status, count, oldest, again in session.execute(
            select(OutboxEvent.status, func.count(), func.min(OutboxEvent.created_at),
                   func.coalesce(func.sum(case((OutboxEvent.attempts > 0, 1), else_=0)), 0))
            .where(OutboxEvent.status.in_(WAITING)).group_by(OutboxEvent.status))}
        for status in WAITING:
            outbox_depth.add_metric([status], rows.get(status, (0,))[0])
        pending = rows.get("pending", (0, None, 0))
        outbox_age.add_metric([], _age(now, pending[1]))
        retrying.add_metric([], int(pending[2]))

        orders = GaugeMetricFamily("diandian_orders", "Orders by state", labels=["state"])
        counted = dict(session.execute(select(Order.status, func.count()).group_by(Order.status)).all())
        for state in OrderStatus:
            orders.add_metric([state.value], counted.get(state.value, 0))

        refunds = GaugeMetricFamily("diandian_refunds_open", "Refunds whose money has not gone back yet, by status "
                                    "(abnormal: an operator completes it at WeChat Pay; failed: flask refund-retry) "
                                    "and cause (operator, late_payment, double_charge)", labels=["status", "cause"])
        open_refunds = {(status, cause): count for status, cause, count in session.execute(
            select(Refund.status, Refund.cause, func.count()).where(Refund.status.not_in(REFUND_DONE_WITH))
            .group_by(Refund.status, Refund.cause))}
        for status in RefundStatus:
            if status not in REFUND_DONE_WITH:
                for cause in REFUND_CAUSES:
                    refunds.add_metric([status.value, cause], open_refunds.get((status.value, cause), 0))

        held = GaugeMetricFamily("diandian_credits_held_kg", "Credits held for unpaid orders (active reservations)")
        overdue = GaugeMetricFamily("diandian_credits_holds_overdue",
                                    "Active holds past their expiry (expire-orders has not run)")
        units_kg = (Reservation.last_serial - Reservation.first_serial + 1) * Project.unit_kg
        kg, late = session.execute(
            select(func.coalesce(func.sum(units_kg), 0),
                   func.coalesce(func.sum(case((Reservation.expires_at < now, 1), else_=0)), 0))
            .select_from(Reservation).join(SerialBlock, SerialBlock.id == Reservation.block_id)
            .join(Vintage, Vintage.id == SerialBlock.vintage_id).join(Project, Project.id == Vintage.project_id)
            .where(Reservation.status == "active")).one()
        held.add_metric([], float(Decimal(kg)))
        overdue.add_metric([], int(late))
        session.rollback()  # a read: end the transaction so the connection holds no snapshot
        yield from (inbox_depth, inbox_age, outbox_depth, outbox_age, retrying, orders, refunds, held, overdue)


def _age(now, oldest) -> float:
    return max(0.0, (now - as_utc(oldest)).total_seconds()) if oldest is not None else 0.0
