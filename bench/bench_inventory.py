"""Finding a block's free serials (``credits.free_ranges``) as retirements pile up in it.

Each order takes the project's block lock, then asks for the lowest free serials; what that costs
while the lock is held bounds how fast a morning's orders go through one project. Prints the app's
CPU and the wall time per call at 100 to 10,000 retirements in one block (a fresh PostgreSQL
database, ``BENCH_ADMIN_URL`` or the default), with the calibration loop first.
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from harness import calibration_ms, fresh_postgres

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SIZES = (100, 1_000, 3_000, 10_000)


def main() -> None:
    from flask_migrate import upgrade
    from sqlalchemy import insert, select

    from app import create_app
    from carbon.accounts.models import User
    from carbon.checkout.models import Order
    from carbon.core.clock import utcnow
    from carbon.core.db import db
    from carbon.credits import service as credits
    from carbon.credits.models import Project, Retirement, SerialBlock
    from tests.payments.conftest import seed_project

    print(f"calibration sum(range(10**6)): {calibration_ms():.1f} ms; load average "
          f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    with fresh_postgres(ADMIN_URL, "diandian_inventory") as url:
        app = create_app({"ENV": "testing", "DATABASE_URL": url, "LOG_REQUESTS": False})
        with app.app_context():
            upgrade()
        seed_project(app, units=1_000_000)
        with app.app_context():
            project, block = db.session.scalar(select(Project)), db.session.scalar(select(SerialBlock))
            user = User(openid="o_inventory")
            db.session.add(user)
            db.session.flush()
            order = Order(project=project, units=1, kg=Decimal(1), amount=Decimal("1.00"), user_id=user.id,
                          beneficiary_name="x", purpose="x", expires_at=utcnow() + timedelta(minutes=15))
            db.session.add(order)
            db.session.commit()
            done = 0
            for size in SIZES:  # retirements of 10 serials in a row; every 100th leaves 2 free (a hold released)
                db.session.execute(insert(Retirement), [
                    {"public_id": f"ret_{n:09d}", "block_id": block.id, "order_id": order.id,
                     "project_id": project.id, "vintage_label": "2021", "first_serial": 1 + 10 * n,
                     "last_serial": 10 + 10 * n - (2 if n % 100 == 99 else 0), "quantity": 10, "kg": Decimal(10),
                     "beneficiary_user_id": user.id, "beneficiary_name": "x", "purpose": "x",
                     "retired_at": utcnow()} for n in range(done, size)])
                db.session.commit()
                done = size
                credits.free_ranges(block)
                cpu, wall = [], []
                for _ in range(30):
                    started, began = time.thread_time(), time.perf_counter()
                    gaps = credits.free_ranges(block)
                    cpu.append((time.thread_time() - started) * 1000)
                    wall.append((time.perf_counter() - began) * 1000)
                    db.session.rollback()
                print(f"{size:>6} retirements in the block ({len(gaps)} free ranges): app CPU "
                      f"{statistics.median(cpu):.2f} ms, wall {statistics.median(wall):.2f} ms per call (median of 30)")
            db.session.remove()
            db.engine.dispose()


if __name__ == "__main__":
    main()
