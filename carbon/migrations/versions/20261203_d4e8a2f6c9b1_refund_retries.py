"""a refund WeChat Pay closed can be asked again: refunds.retry_of_id names the failed one it replaces

Revision ID: d4e8a2f6c9b1
Revises: a7f3c1d9e2b4
Create Date: 2026-12-03 15:10:00

"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd4e8a2f6c9b1'
down_revision = 'a7f3c1d9e2b4'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('retry_of_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_refunds_retry_of_id'), ['retry_of_id'])
        batch_op.create_foreign_key(batch_op.f('fk_refunds_retry_of_id_refunds'), 'refunds', ['retry_of_id'], ['id'])


def downgrade():
    with op.batch_alter_table('refunds', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_refunds_retry_of_id_refunds'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_refunds_retry_of_id'), type_='unique')
        batch_op.drop_column('retry_of_id')
