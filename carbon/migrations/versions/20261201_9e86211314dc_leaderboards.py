"""leaderboards: the SQL index of ranks (derived from retirements) and the guest's opt-out

Revision ID: 9e86211314dc
Revises: c12a3051e1fe
Create Date: 2026-12-01 11:46:49.622961

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '9e86211314dc'
down_revision = 'c12a3051e1fe'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('leaderboard_scores',
    sa.Column('board', sa.String(length=40), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('grams', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_leaderboard_scores_user_id_users'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('board', 'user_id', name=op.f('pk_leaderboard_scores'))
    )
    with op.batch_alter_table('leaderboard_scores', schema=None) as batch_op:
        batch_op.create_index('ix_leaderboard_scores_rank', ['board', 'grams', 'user_id'], unique=False)
    op.create_table('leaderboard_score_counts',
    sa.Column('board', sa.String(length=40), nullable=False),
    sa.Column('grams', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('guests', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('board', 'grams', name=op.f('pk_leaderboard_score_counts'))
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('leaderboard_hidden', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('leaderboard_hidden')
    op.drop_table('leaderboard_score_counts')
    with op.batch_alter_table('leaderboard_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_leaderboard_scores_rank')
    op.drop_table('leaderboard_scores')
