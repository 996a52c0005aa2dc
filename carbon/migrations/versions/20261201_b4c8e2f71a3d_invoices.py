"""invoices: an organization's invoice profile, and invoice requests (one per order)

Revision ID: b4c8e2f71a3d
Revises: 7c4d2b9e1f60
Create Date: 2026-12-01 15:30:00

"""
from alembic import op
import sqlalchemy as sa



# revision identifiers, used by Alembic.
revision = 'b4c8e2f71a3d'
down_revision = '7c4d2b9e1f60'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'invoice_profiles',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=128), nullable=False),
        sa.Column('tax_id', sa.String(length=20), nullable=False),
        sa.Column('updated_by_id', sa.Integer(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['updated_by_id'], ['organizers.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('organization_id'),
    )
    op.create_table(
        'invoice_requests',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('public_id', sa.String(length=32), nullable=False),
        sa.Column('order_id', sa.Integer(), nullable=False),
        sa.Column('organization_id', sa.Integer(), nullable=False),
        sa.Column('title', sa.String(length=128), nullable=False),
        sa.Column('tax_id', sa.String(length=20), nullable=False),
        sa.Column('amount', sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column('status', sa.String(length=12), nullable=False),
        sa.Column('fapiao_number', sa.String(length=32), nullable=True),
        sa.Column('issued_on', sa.Date(), nullable=True),
        sa.Column('reason', sa.String(length=200), nullable=True),
        sa.Column('requested_by_id', sa.Integer(), nullable=True),
        sa.Column('requested_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('decided_by_id', sa.Integer(), nullable=True),
        sa.Column('decided_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], ondelete='RESTRICT'),
        sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['requested_by_id'], ['organizers.id'], ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['decided_by_id'], ['organizers.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('public_id'),
        sa.UniqueConstraint('order_id'),
    )
    op.create_index('ix_invoice_requests_organization_id', 'invoice_requests', ['organization_id'], unique=False)


def downgrade():
    op.drop_index('ix_invoice_requests_organization_id', table_name='invoice_requests')
    op.drop_table('invoice_requests')
    op.drop_table('invoice_profiles')
