"""organization purchases: what an organization's order retires, certifies and is computed from

- retirements.beneficiary_organization_id (FK organizations), beneficiary_user_id nullable, check
  ``one_beneficiary``: exactly one of them.
- certificates.organization_id (FK organizations), user_id nullable.
- footprints.organization_id (FK organizations, CASCADE): a ``host`` footprint (the event itself,
  entered by its organizer); user_id nullable.
- idempotency_keys.organization_id, user_id nullable, unique (organization_id, key).

On SQLite the batch copy of ``retirements`` drops its overlap trigger: it is created again.

Revision ID: 7c4d2b9e1f60
Revises: 6f3a9c2e8b17
Create Date: 2026-12-01 15:20:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '7c4d2b9e1f60'
down_revision = '6f3a9c2e8b17'
branch_labels = None
depends_on = None

SQLITE_RETIREMENTS_OVERLAP = """
CREATE TRIGGER retirements_no_overlap BEFORE INSERT ON retirements
WHEN EXISTS (SELECT 1 FROM retirements AS other WHERE
                   other.first_serial <= NEW.last_serial AND NEW.first_serial <= other.last_serial)
BEGIN SELECT RAISE(ABORT, 'retirements: serial range overlaps an existing one'); END
"""


def _organization_column(table: str, column: str, ondelete: str, user_column: str, *, index: bool = True):
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
        batch_op.alter_column(user_column, existing_type=sa.Integer(), nullable=True)
        batch_op.create_foreign_key(batch_op.f(f'fk_{table}_{column}_organizations'), 'organizations',
                                    [column], ['id'], ondelete=ondelete)
        if index:
            batch_op.create_index(batch_op.f(f'ix_{table}_{column}'), [column], unique=False)
        yield batch_op


def upgrade():
    sqlite = op.get_bind().dialect.name == "sqlite"
    for batch_op in _organization_column('retirements', 'beneficiary_organization_id', 'RESTRICT',
                                         'beneficiary_user_id'):
        batch_op.create_check_constraint(
            'one_beneficiary', '(beneficiary_user_id IS NULL) <> (beneficiary_organization_id IS NULL)')
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS retirements_no_overlap")
        op.execute(SQLITE_RETIREMENTS_OVERLAP)
    for _ in _organization_column('certificates', 'organization_id', 'RESTRICT', 'user_id'):
        pass
    for _ in _organization_column('footprints', 'organization_id', 'CASCADE', 'user_id'):
        pass
    for batch_op in _organization_column('idempotency_keys', 'organization_id', 'CASCADE', 'user_id', index=False):
        batch_op.create_unique_constraint(batch_op.f('uq_idempotency_keys_organization_id_key'),
                                          ['organization_id', 'key'])


def _drop_organization_column(table: str, column: str, user_column: str, *, index: bool = True):
    with op.batch_alter_table(table, schema=None) as batch_op:
        yield batch_op
        if index:
            batch_op.drop_index(batch_op.f(f'ix_{table}_{column}'))
        batch_op.drop_constraint(batch_op.f(f'fk_{table}_{column}_organizations'), type_='foreignkey')
        batch_op.drop_column(column)
        batch_op.alter_column(user_column, existing_type=sa.Integer(), nullable=False)


def downgrade():
    # an organization's rows have no guest: the NOT NULLs below refuse them (nothing is dropped)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for batch_op in _drop_organization_column('idempotency_keys', 'organization_id', 'user_id', index=False):
        batch_op.drop_constraint(batch_op.f('uq_idempotency_keys_organization_id_key'), type_='unique')
    for _ in _drop_organization_column('footprints', 'organization_id', 'user_id'):
        pass
    for _ in _drop_organization_column('certificates', 'organization_id', 'user_id'):
        pass
    for batch_op in _drop_organization_column('retirements', 'beneficiary_organization_id', 'beneficiary_user_id'):
        batch_op.drop_constraint(batch_op.f('ck_retirements_one_beneficiary'), type_='check')
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS retirements_no_overlap")
        op.execute(SQLITE_RETIREMENTS_OVERLAP)
