"""personal data (PIPL): phone numbers encrypted, deleted accounts, names off the chain

- users.phone_number (plain) -> users.phone_ciphertext (AES-GCM, carbon/accounts/phones.py): the
  numbers already stored are encrypted here with the first DIANDIAN_PHONE_KEYS key. (Diandian has
  not run in production yet; development databases may hold sandbox numbers.)
- users.deleted_at: a deleted account (decision 0014).
- certificates.beneficiary_name / beneficiary_salt: the name shown and the salt of the record's
  beneficiary_sha256, off the chain, erasable. Certificates issued before this revision carry the
  plain name in their chain record (which cannot change without breaking the chain): their
  beneficiary_name is copied from it, their salt stays NULL.

The plain column is dropped with ALTER TABLE ... DROP COLUMN (SQLite 3.35+), not a batch copy of
users: a copy would drop the table under its foreign keys.

Revision ID: 3b9f6c1e2d8a
Revises: 9e86211314dc
Create Date: 2026-12-01 12:10:00

"""
import json

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '3b9f6c1e2d8a'
down_revision = '9e86211314dc'
branch_labels = None
depends_on = None

USERS = sa.table('users', sa.column('id'), sa.column('public_id'), sa.column('phone_number'),
                 sa.column('phone_ciphertext'))


def upgrade():
    from carbon.accounts import phones  # runs under the app (flask db upgrade): its keys

    op.add_column('users', sa.Column('phone_ciphertext', sa.String(length=160), nullable=True))
    op.add_column('users', sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True))
    bind = op.get_bind()
    for user_id, public_id, phone in bind.execute(sa.select(USERS.c.id, USERS.c.public_id, USERS.c.phone_number)
                                                  .where(USERS.c.phone_number.is_not(None))).all():
        bind.execute(USERS.update().where(USERS.c.id == user_id)
                     .values(phone_ciphertext=phones.seal(phone, public_id), phone_number=None))
    op.drop_column('users', 'phone_number')

    op.add_column('certificates', sa.Column('beneficiary_name', sa.String(length=64), nullable=True))
    op.add_column('certificates', sa.Column('beneficiary_salt', sa.String(length=32), nullable=True))
    issued = bind.execute(sa.text("SELECT c.id, e.record FROM certificates c "
                                  "JOIN certificate_chain e ON e.seq = c.issue_seq")).all()
    for certificate_id, record in issued:
        bind.execute(sa.text("UPDATE certificates SET beneficiary_name = :name WHERE id = :id"),
                     {"name": json.loads(record).get("beneficiary"), "id": certificate_id})


def downgrade():
    from carbon.accounts import phones

    op.drop_column('certificates', 'beneficiary_salt')
    op.drop_column('certificates', 'beneficiary_name')
    op.add_column('users', sa.Column('phone_number', sa.String(length=32), nullable=True))
    bind = op.get_bind()
    for user_id, public_id, stored in bind.execute(sa.select(USERS.c.id, USERS.c.public_id,
                                                             USERS.c.phone_ciphertext)
                                                   .where(USERS.c.phone_ciphertext.is_not(None))).all():
        bind.execute(USERS.update().where(USERS.c.id == user_id)
                     .values(phone_number=phones.unseal(stored, public_id)))
    op.drop_column('users', 'deleted_at')
    op.drop_column('users', 'phone_ciphertext')
