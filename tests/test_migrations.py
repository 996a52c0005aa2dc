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
