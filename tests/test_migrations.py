"""The migrations build exactly the schema the models describe, and every revision downgrades."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade

from app import create_app
from carbon.core.db import db


def test_models_and_migrations_agree(database_url):
    app = create_app({"ENV": "testing", "DATABASE_URL": database_url, "LOG_REQUESTS": False})
    with app.app_context(), db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, db.metadata)
    assert diff == []


def test_downgrade_to_base_and_back(tmp_path):
    url = f"sqlite:///{tmp_path}/roundtrip.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        upgrade()
        downgrade(revision="base")
        from sqlalchemy import inspect

        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade()
        assert "users" in inspect(db.engine).get_table_names()


def test_flask_db_commands_run_through_the_app_cli(tmp_path):
    """`flask db …` is Flask-Migrate's group, imported when it runs: `db upgrade` builds the schema."""
    url = f"sqlite:///{tmp_path}/cli.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    runner = app.test_cli_runner()
    assert "Perform database migrations." in runner.invoke(args=["--help"]).output
    assert "upgrade" in runner.invoke(args=["db", "--help"]).output
    assert runner.invoke(args=["db", "upgrade"]).exit_code == 0
    with app.app_context():
        from alembic.script import ScriptDirectory
        from sqlalchemy import inspect, text

        head = ScriptDirectory.from_config(app.extensions["migrate"].migrate.get_config()).get_current_head()
        assert "users" in inspect(db.engine).get_table_names()
        with db.engine.connect() as conn:
            assert conn.scalar(text("SELECT version_num FROM alembic_version")) == head


def test_a_sqlite_database_with_rows_keeps_them_through_the_table_rebuilds(tmp_path):
    """SQLite rebuilds a table for some changes (copy, drop, rename): with foreign keys enforced, the
    drop deleted the rows pointing at it (a guest's sessions and footprints at 9e86211314dc, an
    order's holds and idempotency keys at 6f3a9c2e8b17) or refused the migration (a payment)."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/rows.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    now = "2026-12-01 10:00:00.000000"
    rows = [
        "INSERT INTO users (id, public_id, openid, created_at) VALUES (1, 'usr_1', 'o1', :now)",
        "INSERT INTO auth_sessions (token_id, user_id, created_at, expires_at) VALUES ('t1', 1, :now, :now)",
        ("INSERT INTO footprints (id, public_id, user_id, kind, dataset_version, total_grams, request, result, "
        "created_at) VALUES (1, 'fp_1', 1, 'trip', 'v1', 1000, '{}', '{}', :now)"),
        ("INSERT INTO projects (id, public_id, registry, name_zh, name_en, methodology, location, description, "
        "price_per_tonne, unit_kg, status, created_at) VALUES (1, 'prj_1', 'CCER', 'z', 'e', 'm', 'l', '', 50, 1, "
        "'active', :now)"),
        "INSERT INTO vintages (id, project_id, label) VALUES (1, 1, '2021')",
        ("INSERT INTO serial_blocks (id, vintage_id, first_serial, last_serial, price_per_tonne, registry_reference, "
        "lock_version, created_at) VALUES (1, 1, 1, 1000, 50, '', 0, :now)"),
        ("INSERT INTO orders (id, public_id, user_id, project_id, footprint_id, units, kg, amount, currency, status, "
        "beneficiary_name, purpose, created_at, expires_at) VALUES (1, 'ord_1', 1, 1, 1, 10, 10, 0.5, 'CNY', "
        "'created', 'Li', 'p', :now, :now)"),
        ("INSERT INTO reservations (block_id, order_id, first_serial, last_serial, status, expires_at, created_at) "
        "VALUES (1, 1, 1, 10, 'active', :now, :now)"),
        "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id, created_at) VALUES (1, 'k1', 'h', 1, :now)",
        ("INSERT INTO payments (order_id, provider, out_trade_no, amount, currency, status, created_at) "
        "VALUES (1, 'wechatpay', 'otn1', 0.5, 'CNY', 'created', :now)"),
    ]
    counted = ("auth_sessions", "footprints", "reservations", "idempotency_keys", "payments")
    with app.app_context():
        upgrade(revision="c12a3051e1fe")  # before the first of those rebuilds
        with db.engine.begin() as connection:
            for statement in rows:
                connection.execute(text(statement), {"now": now})
        upgrade()
        with db.engine.connect() as connection:
            assert {table: connection.scalar(text(f"SELECT count(*) FROM {table}")) for table in counted} == \
                dict.fromkeys(counted, 1)
            assert connection.scalar(text("SELECT footprint_id FROM orders")) == 1
            assert connection.scalar(text("PRAGMA foreign_keys")) == 1  # enforced again on the pooled connection
        db.engine.dispose()


def test_events_queued_before_the_outbox_had_handlers_are_settled_not_left_pending(tmp_path):
    """Events from before 9d2e4b7c1a05 got no handler: none can run them. An order.paid was counted
    by the confirmation of then (done); any other waits for an operator (failed, saying what to do)."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/events.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    with app.app_context():
        upgrade(revision="5c1e0a7d9b3f")
        with db.engine.begin() as connection:
            for kind in ("order.paid", "payment.needs_refund"):
                connection.execute(text("INSERT INTO outbox_events (kind, payload, created_at) "
                                        "VALUES (:kind, '{}', '2026-11-30 10:00:00')"), {"kind": kind})
        upgrade()
        with db.engine.connect() as connection:
            settled = dict(connection.execute(text("SELECT kind, status FROM outbox_events")).all())
            refund_note = connection.scalar(text("SELECT last_error FROM outbox_events "
                                                 "WHERE kind = 'payment.needs_refund'"))
        assert settled == {"order.paid": "done", "payment.needs_refund": "failed"}
        assert "refund it by hand" in refund_note
        db.engine.dispose()


def test_orders_get_what_their_counter_events_did_and_a_refund_that_ran_first_is_added_back(tmp_path):
    """e3c7a1f9b5d2 sets orders.counted from the scene counters' events: counted unless the count is
    still to run, no longer once the refund's handler ran; a refund whose handler ran before the
    count took the order off counters that never held it, and is added back (the late count adds
    nothing)."""
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path}/counted.sqlite3"
    app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
    now, paid = "2026-12-01 10:00:00.000000", "2026-12-01 17:00:00.000000"  # paid on 2 December in Shanghai
    rows = [
        "INSERT INTO users (id, public_id, openid, created_at) VALUES (1, 'usr_1', 'o1', :now)",
        ("INSERT INTO projects (id, public_id, registry, name_zh, name_en, methodology, location, description, "
         "price_per_tonne, unit_kg, status, created_at) VALUES (1, 'prj_1', 'CCER', 'z', 'e', 'm', 'l', '', 50, 1, "
         "'active', :now)"),
        "INSERT INTO organizations (id, public_id, name, created_at) VALUES (1, 'org_1', 'o', :now)",
        ("INSERT INTO scenes (id, public_id, organization_id, code, slug, kind, name_zh, name_en, description, city, "
         "preset, organizer_pledges_venue, pledge_note, status, created_at, updated_at) VALUES (1, 'scn_1', 1, "
         "'abc123', 'abc123', 'conference', 'z', 'e', '', '', '{}', 0, '', 'live', :now, :now)"),
        ("INSERT INTO scene_daily_stats (scene_id, channel, day, visits, logins, footprints, grams_neutralized, "
         "money_raised) VALUES (1, 'door', '2026-12-02', 0, 0, 0, 4000, 1.00)"),  # a, d; c off again; e off first
    ]
    orders = {"ord_a": ("fulfilled", 5, "1.25"), "ord_b": ("paid", 1, "0.25"), "ord_c": ("refunded", 2, "0.50"),
              "ord_d": ("refunded", 3, "0.75"), "ord_e": ("refunded", 4, "1.00"), "ord_f": ("awaiting_payment", 1, "0.25")}
    events = [("order.paid", "count_paid_order", "ord_a", "done"), ("order.paid", "count_paid_order", "ord_b", "pending"),
              ("order.paid", "count_paid_order", "ord_c", "done"),
              ("order.refunded", "uncount_refunded_order", "ord_c", "done"),
              ("order.paid", "count_paid_order", "ord_d", "done"),
              ("order.refunded", "uncount_refunded_order", "ord_d", "pending"),
              ("order.paid", "count_paid_order", "ord_e", "failed"),
              ("order.refunded", "uncount_refunded_order", "ord_e", "done")]
    with app.app_context():
        upgrade(revision="d4e8a2f6c9b1")
        with db.engine.begin() as connection:
            for statement in rows:
                connection.execute(text(statement), {"now": now})
            for public_id, (status, kg, amount) in orders.items():
                connection.execute(text(
                    "INSERT INTO orders (public_id, user_id, project_id, scene_id, channel, units, kg, amount, currency, "
                    "status, beneficiary_name, purpose, created_at, expires_at, paid_at) VALUES (:o, 1, 1, 1, 'door', "
                    ":kg, :kg, :amount, 'CNY', :status, 'Li', 'p', :now, :now, :paid)"),
                    {"o": public_id, "kg": kg, "amount": amount, "status": status, "now": now,
                     "paid": None if status == "awaiting_payment" else paid})
            for kind, handler, public_id, status in events:
                connection.execute(text(
                    "INSERT INTO outbox_events (kind, handler, queue, payload, status, attempts, next_attempt_at, "
                    "created_at) VALUES (:kind, :handler, 'default', :payload, :status, 1, :now, :now)"),
                    {"kind": kind, "handler": f"carbon.scenes.stats.{handler}", "status": status, "now": now,
                     "payload": f'{{"order": "{public_id}", "scene_id": 1}}'})
        upgrade()
        with db.engine.connect() as connection:
            counted = dict(connection.execute(text("SELECT public_id, counted FROM orders")).all())
            totals = connection.execute(text("SELECT grams_neutralized, money_raised FROM scene_daily_stats")).one()
        assert counted == {"ord_a": 1, "ord_b": None, "ord_c": 0, "ord_d": 1, "ord_e": 0, "ord_f": None}
        assert (totals[0], f"{totals[1]:.2f}") == (8000, "2.00")  # a and d: what the counters hold from now on
        db.engine.dispose()
