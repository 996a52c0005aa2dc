"""The database: Flask-SQLAlchemy with SQLAlchemy 2 typed models and a naming convention."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import DateTime, MetaData, TypeDecorator
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
def kept_after_commit() -> Iterator[None]:
    """A commit leaves the session's objects loaded instead of expiring them, so what has just been
    written is not read back before it is answered. Chosen per request kind: a write route that
    answers the rows it writes (log in, save a footprint, create an order) is decorated with
    ``@kept_after_commit()``; services and workers keep the default. Inside it, a value another
    transaction may change meanwhile must be read again explicitly."""
    session = db.session()
    before = session.expire_on_commit
    session.expire_on_commit = False
    try:
        yield
    finally:
        session.expire_on_commit = before
