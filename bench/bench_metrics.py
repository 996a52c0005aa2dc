"""What a Prometheus scrape of /metrics costs as the tables grow.

A migrated scratch database (SQLite, or the PostgreSQL URL given as the first argument) filled
with N orders (a tenth awaiting payment with an active hold, the rest fulfilled with a consumed
one), N done inbox entries and 2N done outbox events, plus a small backlog (vacuumed and analyzed
on PostgreSQL, as autovacuum would); then GET /metrics in process (test client: the route, the
counters and the database gauges), median and worst of 30.
"""
from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal

from harness import scratch_database

SIZES = (1_000, 20_000)


def fill(app, n: int, offset: int) -> None:
    from sqlalchemy import insert, select

    from carbon.accounts.models import User
    from carbon.checkout.models import InboxEntry, Order
    from carbon.core.clock import utcnow
    from carbon.core.db import db
    from carbon.credits.models import Project, Reservation, SerialBlock, Vintage
    from carbon.jobs.models import OutboxEvent

    now = utcnow()
    with app.app_context():
        user = db.session.scalar(select(User)) or User(openid="o_bench")
        project = db.session.scalar(select(Project)) or Project(
            registry_name="CDCER", name_zh="基准", name_en="bench", methodology="-", location="成都",
            price_per_tonne=Decimal(60), unit_kg=Decimal(1))
        db.session.add_all([user, project])
        db.session.flush()
        vintage = Vintage(project_id=project.id, label=f"v{offset}")
        db.session.add(vintage)
        db.session.flush()
        block = SerialBlock(vintage_id=vintage.id, first_serial=offset * 10 + 1, last_serial=offset * 10 + n * 10,
                            price_per_tonne=Decimal(60))
        db.session.add(block)
        db.session.flush()
        first_order = (db.session.scalar(select(db.func.max(Order.id))) or 0) + 1
        db.session.execute(insert(Order), [
            {"id": first_order + i, "user_id": user.id, "project_id": project.id, "units": 5, "kg": Decimal(5),
             "amount": Decimal("0.30"), "status": "awaiting_payment" if i % 10 == 0 else "fulfilled",
             "beneficiary_name": "x", "purpose": "bench", "expires_at": now + timedelta(minutes=15)}
            for i in range(n)])
        db.session.execute(insert(Reservation), [
            {"block_id": block.id, "order_id": first_order + i, "first_serial": block.first_serial + i * 10,
             "last_serial": block.first_serial + i * 10 + 4, "status": "active" if i % 10 == 0 else "consumed",
             "expires_at": now + timedelta(minutes=15)} for i in range(n)])
        db.session.execute(insert(InboxEntry), [
            {"provider": "wechatpay", "kind": "transaction", "event_id": f"ev{offset}-{i}",
             "external_id": f"tx{offset}-{i}", "out_trade_no": f"o{i}", "source": "notify", "payload": {},
             "status": "pending" if i < 3 else "done"} for i in range(n)])
        db.session.execute(insert(OutboxEvent), [
            {"kind": "order.paid", "handler": "h", "payload": {}, "status": "pending" if i < 3 else "done"}
            for i in range(2 * n)])
        db.session.commit()
        if db.engine.dialect.name == "postgresql":  # as autovacuum would have left it
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.exec_driver_sql("VACUUM ANALYZE")


def scrape_ms(client, times: int = 30) -> tuple[float, float]:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        response = client.get("/metrics")
        spent.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200 and b"diandian_orders" in response.data
    return statistics.median(spent), max(spent)


def main() -> None:
    from app import create_app

    with scratch_database(sys.argv[1] if len(sys.argv) > 1 else None) as url:
        app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
        client = app.test_client()
        kind = url.split(":", 1)[0].split("+")[0]
        done = 0
        for size in SIZES:
            fill(app, size - done, done)
            done = size
            median, worst = scrape_ms(client)
            print(f"GET /metrics on {kind}, {size:,} orders (+{size:,} inbox, {2 * size:,} outbox rows): "
                  f"median {median:.1f} ms, worst {worst:.1f} ms of 30")


if __name__ == "__main__":
    main()
