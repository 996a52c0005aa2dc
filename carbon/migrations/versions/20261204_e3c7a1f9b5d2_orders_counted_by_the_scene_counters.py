"""orders.counted: whether the scene's kg and money counters hold the order (NULL: not yet counted)

Existing orders get what their counter events did: an order paid so far is counted (by its
order.paid counter handler, or by the confirmation of before the handlers), unless that handler has
yet to run (pending, or failed until replayed); a refunded order whose order.refunded counter
handler ran is no longer counted. A refund whose handler ran before the count did took the order
off counters that never held it: it is added back here, and the late count adds nothing.

Revision ID: e3c7a1f9b5d2
Revises: d4e8a2f6c9b1
Create Date: 2026-12-04 20:30:00

"""
from decimal import Decimal

from alembic import op
import sqlalchemy as sa

from carbon.core.clock import CHINA_TZ, as_utc
from carbon.core.units import kg_to_grams


# revision identifiers, used by Alembic.
revision = 'e3c7a1f9b5d2'
down_revision = 'd4e8a2f6c9b1'
branch_labels = None
depends_on = None

COUNT, UNCOUNT = 'carbon.scenes.stats.count_paid_order', 'carbon.scenes.stats.uncount_refunded_order'
orders = sa.table('orders', sa.column('id', sa.Integer), sa.column('scene_id', sa.Integer),
                  sa.column('channel', sa.String), sa.column('paid_at', sa.DateTime(timezone=True)),
                  sa.column('kg', sa.Numeric(14, 3)), sa.column('amount', sa.Numeric(12, 2)),
                  sa.column('counted', sa.Boolean))
stats = sa.table('scene_daily_stats', sa.column('scene_id', sa.Integer), sa.column('channel', sa.String),
                 sa.column('day', sa.Date), sa.column('grams_neutralized', sa.BigInteger),
                 sa.column('money_raised', sa.Numeric(14, 2)))


def upgrade():
    # Plain ALTER TABLE ADD COLUMN, no batch: on SQLite a batch recreates the table (see 5e7a2c0b8d41).
    op.add_column('orders', sa.Column('counted', sa.Boolean(), nullable=True))
    bind = op.get_bind()
    order_of = ("e.payload->>'order'" if bind.dialect.name == 'postgresql'
                else "json_extract(e.payload, '$.order')")

    def handled(kind: str, handler: str, done: bool) -> str:
        return (f"EXISTS (SELECT 1 FROM outbox_events e WHERE e.kind = '{kind}' AND e.handler = '{handler}' "
                f"AND e.status {'=' if done else '<>'} 'done' AND {order_of} = orders.public_id)")

    yes, no = {'yes': True}, {'no': False}
    bind.execute(sa.text("UPDATE orders SET counted = :yes WHERE status IN ('paid', 'fulfilled', 'refunded') "
                         f"AND NOT {handled('order.paid', COUNT, False)}"), yes)
    taken_back = f"status = 'refunded' AND {handled('order.refunded', UNCOUNT, True)}"
    bind.execute(sa.text(f"UPDATE orders SET counted = :no WHERE counted = :yes AND {taken_back}"), {**yes, **no})
    refunded_first = bind.execute(sa.text(
        f"SELECT id FROM orders WHERE counted IS NULL AND {taken_back}")).scalars().all()
    for order in bind.execute(sa.select(orders).where(orders.c.id.in_(refunded_first))).all():
        if order.scene_id and order.paid_at is not None:
            bind.execute(stats.update().where(
                stats.c.scene_id == order.scene_id, stats.c.channel == (order.channel or ''),
                stats.c.day == as_utc(order.paid_at).astimezone(CHINA_TZ).date()).values(
                grams_neutralized=stats.c.grams_neutralized + kg_to_grams(order.kg),
                money_raised=stats.c.money_raised + Decimal(order.amount)))
    if refunded_first:
        bind.execute(orders.update().where(orders.c.id.in_(refunded_first)).values(counted=False))


def downgrade():
    op.drop_column('orders', 'counted')  # SQLite ≥ 3.35 drops a column in place, without recreating the table
