"""The database: Flask-SQLAlchemy with SQLAlchemy 2 typed models and a naming convention."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import Connection, DateTime, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

from carbon.core.clock import as_utc

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return as_utc(value)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)


db = SQLAlchemy(model_class=Base)


def on_postgresql() -> bool:
    """Whether the app's database is PostgreSQL (the production database) rather than SQLite."""
    return db.engine.dialect.name == "postgresql"


@contextmanager
def reading(mapper=None) -> Iterator[Connection]:
    """A connection for plain (Core) reads. Once the request's session has begun (or holds changes,
    flushed first as an ORM query would), its own connection, in its transaction. Before, a pooled
    connection given back as soon as the reads are done: a request that only reads this way never
    begins a session transaction (nor ends one at teardown). Either way the reads see what is
    committed when they run."""
    session = db.session()
    if session.in_transaction() or session.new or session.dirty or session.deleted:
        if session.autoflush:
            session.flush()
        yield session.connection(bind_arguments={"mapper": mapper} if mapper is not None else None)
        return
    with session.get_bind(mapper=mapper).connect() as connection:
        yield connection
