"""pictures are drawn on their first request: the render lane's waiting events are done

Revision ID: e5a1c9d3b7f2
Revises: b4c8e2f71a3d
Create Date: 2026-12-01 23:00:00

"""
from alembic import op


# revision identifiers, used by Alembic.
revision = 'e5a1c9d3b7f2'
down_revision = 'b4c8e2f71a3d'
branch_labels = None
depends_on = None


def upgrade():
    # The share card is no longer drawn ahead (decision 0015, amended): a card still waiting for the
    # render lane is drawn when first asked for, like every card from now on.
    op.execute("UPDATE outbox_events SET status = 'done', "
               "last_error = 'handler removed: the card is drawn on its first request' "
               "WHERE handler = 'carbon.certificates.service.render_share_images' AND status <> 'done'")


def downgrade():
    pass  # nothing to restore: a card not drawn ahead is drawn on its first request
