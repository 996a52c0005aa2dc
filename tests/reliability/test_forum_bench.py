"""bench/bench_forum.py cannot rot: a tiny forum morning (3 guests at once for 2 s, then 10 guests in 5 s)
through gunicorn, the `flask worker` lanes, the WeChat sandbox in its own process and PostgreSQL
(Redis too when TEST_REDIS_URL is set), then the database, read with the service's own checks:
every flow completed, every order paid once, one certificate each on one chain, the ledger balanced."""
from __future__ import annotations

import sys

import pytest
from sqlalchemy import func, select

from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[2] / "bench"))


@pytest.fixture
def forum_database():
    if not TEST_DATABASE_URL:
        pytest.skip("the forum bench runs on PostgreSQL (set TEST_DATABASE_URL)")
    import bench_forum

    with bench_forum.fresh_postgres(TEST_DATABASE_URL) as url:
        bench_forum.prepare(url)
        yield url


def test_a_tiny_forum_morning_completes_every_flow_once(forum_database):
    import bench_forum

    from app import create_app
    from carbon.certificates import service as certificates
    from carbon.certificates.models import Certificate, CertificateImage
    from carbon.checkout.models import Order, Payment
    from carbon.core.db import db
    from carbon.credits.models import Retirement
    from carbon.jobs.models import OutboxEvent
    from carbon.ledger import service as ledger

    lines: list[str] = []
    result = bench_forum.run(TEST_DATABASE_URL, TEST_REDIS_URL or "none", steps=[3], step_seconds=2.0, guests=10,
                             duration=5.0, bare_seconds=0, drain_seconds=30.0, database_url=forum_database,
                             echo=lines.append)
    flows = [result.warmup, *result.flows]
    assert len(flows) >= 11 and [f.error for f in flows if f.error] == [], "\n".join(lines)
    assert all(f.number and set(bench_forum.STEPS) <= set(f.timings) for f in flows)
    assert {p.name for p in result.phases} == {"step: 3 guests at once", "burst: 10 guests in 5 s"}
    app = create_app({"ENV": "testing", "DATABASE_URL": forum_database, "LOG_REQUESTS": False})
    with app.app_context():
        orders = {o.public_id: o for o in db.session.scalars(select(Order))}
        assert set(orders) == {f.order_id for f in flows}  # one order per guest, no other
        assert {o.status for o in orders.values()} == {"fulfilled"}
        confirmed = db.session.execute(select(Payment.order_id, func.count()).where(Payment.status == "confirmed")
                                       .group_by(Payment.order_id)).all()
        assert len(confirmed) == len(orders) and {n for _, n in confirmed} == {1}  # paid once each
        assert db.session.scalar(select(func.count(func.distinct(Retirement.order_id)))) == len(orders)
        numbers = dict(db.session.execute(select(Certificate.order_id, Certificate.number)).all())
        assert len(numbers) == len(orders) == db.session.scalar(select(func.count()).select_from(Certificate))
        assert {f.number for f in flows} == set(numbers.values())  # each guest saw their own
        assert certificates.check_chain(certificates.chain()) is None
        assert db.session.scalar(select(func.count()).select_from(CertificateImage)
                                 .where(CertificateImage.kind == "card")) == len(orders)
        assert ledger.unbalanced_transactions() == []
        assert set(db.session.scalars(select(OutboxEvent.status))) == {"done"}
        db.session.remove()
        db.engine.dispose()
