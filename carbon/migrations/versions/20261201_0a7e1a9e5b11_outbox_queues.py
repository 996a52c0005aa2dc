"""outbox queues (lanes): each event row names the queue its handler runs on

Revision ID: 0a7e1a9e5b11
Revises: 5e7a2c0b8d41
Create Date: 2026-12-01 12:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0a7e1a9e5b11'
down_revision = '5e7a2c0b8d41'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=16), server_default='default', nullable=False))
        batch_op.drop_index('ix_outbox_events_status_due')
        batch_op.create_index('ix_outbox_events_status_queue_due', ['status', 'queue', 'next_attempt_at'],
                              unique=False)
    # pictures already waiting go to their new lane
    op.execute("UPDATE outbox_events SET queue = 'render' "
               "WHERE handler = 'carbon.certificates.service.render_share_images'")


def downgrade():
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_status_queue_due')
        batch_op.create_index('ix_outbox_events_status_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.drop_column('queue')
