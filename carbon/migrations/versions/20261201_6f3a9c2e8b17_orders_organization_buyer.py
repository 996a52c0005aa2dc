"""orders: an organization can buy (organization orders, issue 15)

orders.organization_id (nullable, FK organizations, RESTRICT) and orders.user_id nullable; the
check ``one_buyer`` wants exactly one of them. The buyer is the beneficiary: a guest's order is
retired in the guest's name, an organization's in the organization's.

Revision ID: 6f3a9c2e8b17
Revises: 0a7e1a9e5b11
Create Date: 2026-12-01 15:10:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '6f3a9c2e8b17'
down_revision = '0a7e1a9e5b11'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('organization_id', sa.Integer(), nullable=True))
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=True)
        batch_op.create_foreign_key(batch_op.f('fk_orders_organization_id_organizations'), 'organizations',
                                    ['organization_id'], ['id'], ondelete='RESTRICT')
        batch_op.create_index(batch_op.f('ix_orders_organization_id'), ['organization_id'], unique=False)
        batch_op.create_check_constraint('one_buyer', '(user_id IS NULL) <> (organization_id IS NULL)')


def downgrade():
    # an organization's orders have no guest: the NOT NULL below refuses them (no order is dropped)
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_orders_one_buyer'), type_='check')
        batch_op.drop_index(batch_op.f('ix_orders_organization_id'))
        batch_op.drop_constraint(batch_op.f('fk_orders_organization_id_organizations'), type_='foreignkey')
        batch_op.drop_column('organization_id')
        batch_op.alter_column('user_id', existing_type=sa.Integer(), nullable=False)
