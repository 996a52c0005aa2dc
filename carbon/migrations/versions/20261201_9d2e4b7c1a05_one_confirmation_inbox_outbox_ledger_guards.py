"""one confirmation in Python; payment inbox, refunds, outbox dispatch; ledger guards

Revision ID: 9d2e4b7c1a05
Revises: 5c1e0a7d9b3f
Create Date: 2026-12-01 09:00:00

Drops the PL/pgSQL confirmation (decision 0009 replaces 0008) and the notify_events table (the
inbox takes its place); adds the inbox, refunds, the outbox's dispatch columns, one spelling of
"canceled", and the database's guards on the ledger.
"""
import importlib.util
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = '9d2e4b7c1a05'
down_revision = '5c1e0a7d9b3f'
branch_labels = None
depends_on = None

BALANCED = r"""
CREATE FUNCTION ledger_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM postings WHERE transaction_id = NEW.transaction_id
               GROUP BY unit HAVING sum(amount) <> 0) THEN
        RAISE EXCEPTION 'ledger transaction % does not balance', NEW.transaction_id
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$
"""


def upgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS checkout_confirm")
        op.execute("DROP FUNCTION IF EXISTS diandian_public_id")
    op.drop_table('notify_events')
    op.create_table('payment_inbox',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=True),
    sa.Column('external_id', sa.String(length=64), nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.String(length=256), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_payment_inbox')),
    sa.UniqueConstraint('provider', 'event_id', name=op.f('uq_payment_inbox_provider_event_id')),
    sa.UniqueConstraint('provider', 'kind', 'external_id', name=op.f('uq_payment_inbox_provider_kind_external_id'))
    )
    op.create_index('ix_payment_inbox_status', 'payment_inbox', ['status', 'id'], unique=False)
    op.create_table('refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('payment_id', sa.Integer(), nullable=False),
    sa.Column('out_refund_no', sa.String(length=64), nullable=False),
    sa.Column('charge_transaction_id', sa.String(length=64), nullable=False),
    sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
    sa.Column('cause', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=80), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('refund_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['payment_id'], ['payments.id'], name=op.f('fk_refunds_payment_id_payments'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('out_refund_no', name=op.f('uq_refunds_out_refund_no')),
    sa.UniqueConstraint('public_id', name=op.f('uq_refunds_public_id'))
    )
    op.create_index(op.f('ix_refunds_payment_id'), 'refunds', ['payment_id'], unique=False)

    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('handler', sa.String(length=64), nullable=False, server_default=''))
        batch_op.add_column(sa.Column('status', sa.String(length=8), nullable=False, server_default='pending'))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False,
                                      server_default='1970-01-01 00:00:00+00:00'))
        batch_op.add_column(sa.Column('last_error', sa.String(length=512), nullable=True))
    op.execute("UPDATE outbox_events SET status = 'done' WHERE processed_at IS NOT NULL")
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.alter_column('handler', server_default=None)
        batch_op.alter_column('status', server_default=None)
        batch_op.alter_column('attempts', server_default=None)
        batch_op.alter_column('next_attempt_at', server_default=None)
        batch_op.create_index('ix_outbox_events_status_due', ['status', 'next_attempt_at'], unique=False)

    op.execute("UPDATE orders SET status = 'canceled' WHERE status = 'cancelled'")

    op.create_index('uq_ledger_transactions_kind_reference', 'ledger_transactions', ['kind', 'reference'],
                    unique=True)
    if postgresql:
        op.execute("ALTER TABLE postings ADD CONSTRAINT ck_postings_nonzero CHECK (amount <> 0)")
        op.execute(BALANCED)
        op.execute("CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON postings "
                   "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_balanced()")
    else:
        with op.batch_alter_table('postings', schema=None) as batch_op:
            batch_op.create_check_constraint(op.f('ck_postings_nonzero'), 'amount <> 0')


def downgrade():
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        op.execute("DROP TRIGGER IF EXISTS postings_balanced ON postings")
        op.execute("DROP FUNCTION IF EXISTS ledger_balanced()")
        op.execute("ALTER TABLE postings DROP CONSTRAINT IF EXISTS ck_postings_nonzero")
    else:
        with op.batch_alter_table('postings', schema=None) as batch_op:
            batch_op.drop_constraint(op.f('ck_postings_nonzero'), type_='check')
    op.drop_index('uq_ledger_transactions_kind_reference', table_name='ledger_transactions')
    op.execute("UPDATE orders SET status = 'cancelled' WHERE status = 'canceled'")
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_status_due')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('status')
        batch_op.drop_column('handler')
    op.drop_index(op.f('ix_refunds_payment_id'), table_name='refunds')
    op.drop_table('refunds')
    op.drop_index('ix_payment_inbox_status', table_name='payment_inbox')
    op.drop_table('payment_inbox')
    op.create_table('notify_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('provider', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=False),
    sa.Column('out_trade_no', sa.String(length=32), nullable=False),
    sa.Column('outcome', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notify_events')),
    sa.UniqueConstraint('provider', 'event_id', name=op.f('uq_notify_events_provider_event_id'))
    )
    if postgresql:  # the functions as revision 5c1e0a7d9b3f made them
        path = Path(__file__).with_name("20261126_5c1e0a7d9b3f_checkout_confirm_function.py")
        spec = importlib.util.spec_from_file_location("checkout_confirm_function", path)
        previous = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(previous)
        previous.upgrade()
