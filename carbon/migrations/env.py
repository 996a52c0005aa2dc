"""Alembic environment for Flask-Migrate. Logging is left to the app (no fileConfig)."""
import logging

from alembic import context
from flask import current_app

config = context.config
logger = logging.getLogger("alembic.env")
db = current_app.extensions["migrate"].db
engine = db.engine
config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))


def render_item(type_, obj, autogen_context):
    """Write our column types as plain SQLAlchemy types, so revisions import nothing of ours."""
    if type_ == "type" and type(obj).__name__ == "UTCDateTime":
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=db.metadata,
                      literal_binds=True, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    def skip_empty(context_, revision, directives):
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(current_app.extensions["migrate"].configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty)
    conf_args.setdefault("compare_type", True)
    conf_args.setdefault("render_item", render_item)
    conf_args.setdefault("render_as_batch", True)
    with engine.connect() as connection:
        # SQLite: a batch operation copies a table and drops the old one; with foreign keys enforced
        # (app._sqlite_pragmas) that DROP deletes, nulls or refuses the rows pointing at it. Off for the
        # migration (outside any transaction, where the pragma takes effect), checked after, and on
        # again before the connection goes back to the pool.
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=db.metadata, **conf_args)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"the migration broke foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                connection.rollback()  # nothing is open after a commit; after a failure, end it
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
