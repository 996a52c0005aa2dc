"""A backup is only as good as its restore: dump the PostgreSQL database the way docs/OPERATIONS.md
says (pg_dump, custom format), restore it into a fresh database, and the books still balance, the
certificate chain still verifies, and the restored service carries on (the migrations are at head)."""
from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from carbon.certificates import service as certificates
from carbon.checkout.models import Order
from carbon.core.db import db
from carbon.ledger import service as ledger
from tests.certificates.test_certificates import paid_order
from tests.conftest import dispose_app, make_config
from tests.payments.conftest import live, seed_project  # noqa: F401 - the live service fixture


def _libpq(url) -> list[str]:
    return ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]


def test_a_dump_restores_into_a_fresh_database_with_balanced_books(live, sandbox, database_url, tmp_path):  # noqa: F811
    source = make_url(database_url)
    if source.get_backend_name() != "postgresql" or not shutil.which("pg_dump"):
        pytest.skip("a PostgreSQL backup (needs TEST_DATABASE_URL and pg_dump)")
    seed_project(live.app, units=1000)
    for n in range(3):
        paid_order(live, sandbox, f"o_backup_{n}", {"kg": str(n + 2)})
    with live.app.app_context():
        expected = {"balances": ledger.balances(), "chain": list(certificates.chain())}

    dump = tmp_path / "diandian.dump"
    subprocess.run(["pg_dump", *_libpq(source), "-Fc", "-f", str(dump), source.database], check=True, timeout=120)
    restored_name = f"diandian_restore_{uuid.uuid4().hex[:8]}"
    admin = create_engine(source, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{restored_name}"'))
    try:
        subprocess.run(["pg_restore", *_libpq(source), "--no-owner", "--exit-on-error", "-d", restored_name,
                        str(dump)], check=True, timeout=120)
        from app import create_app

        restored_url = source.set(database=restored_name).render_as_string(hide_password=False)
        restored = create_app(make_config(restored_url, sandbox.url))
        with restored.app_context():
            assert ledger.unbalanced_transactions() == []
            assert ledger.balances() == expected["balances"]
            lines = list(certificates.chain())
            assert lines == expected["chain"] and certificates.check_chain(lines) is None
            assert db.session.scalar(select(func.count()).select_from(Order)) == 3
            heads = db.session.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
            script = ScriptDirectory.from_config(restored.extensions["migrate"].migrate.get_config())
            assert heads == [script.get_current_head()]
            # the restored PostgreSQL still guards the books: an unbalanced posting is refused
            with pytest.raises(Exception, match="balance"):
                db.session.execute(text(
                    "INSERT INTO postings (transaction_id, account, unit, amount, created_at) "
                    "SELECT id, 'cash:wechatpay', 'CNY', 1, now() FROM ledger_transactions LIMIT 1"))
                db.session.commit()
            db.session.rollback()
        dispose_app(restored)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{restored_name}" WITH (FORCE)'))
        admin.dispose()
