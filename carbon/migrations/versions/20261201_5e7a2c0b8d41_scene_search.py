"""scene search: coordinates, the normalized search text, and the search channel of every scene

Existing scenes get their search text (the same function the model runs on every save,
carbon.scenes.search; `flask reindex-scenes` recomputes it) and a `search` channel.

Revision ID: 5e7a2c0b8d41
Revises: 3b9f6c1e2d8a
Create Date: 2026-12-01 11:48:48.768741

"""
from datetime import UTC, datetime

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '5e7a2c0b8d41'
down_revision = '3b9f6c1e2d8a'
branch_labels = None
depends_on = None

scenes = sa.table('scenes', sa.column('id', sa.Integer), sa.column('organization_id', sa.Integer),
                  sa.column('name_zh', sa.String), sa.column('name_en', sa.String), sa.column('city', sa.String),
                  sa.column('search_text', sa.Text), sa.column('search_city', sa.String))
organizations = sa.table('organizations', sa.column('id', sa.Integer), sa.column('name', sa.String))
channels = sa.table('scene_channels', sa.column('scene_id', sa.Integer), sa.column('slug', sa.String),
                    sa.column('label', sa.String), sa.column('created_at', sa.DateTime(timezone=True)))


def upgrade():
    # Plain ALTER TABLE ADD COLUMN, no batch: on SQLite a batch recreates the table, and dropping the
    # old one with foreign keys on would cascade to scene_channels and scene_daily_stats.
    op.add_column('scenes', sa.Column('latitude', sa.Numeric(precision=9, scale=6), nullable=True))
    op.add_column('scenes', sa.Column('longitude', sa.Numeric(precision=9, scale=6), nullable=True))
    op.add_column('scenes', sa.Column('search_text', sa.Text(), nullable=False, server_default=''))
    op.add_column('scenes', sa.Column('search_city', sa.String(length=64), nullable=False, server_default=''))
    op.create_index(op.f('ix_scenes_search_city'), 'scenes', ['search_city'], unique=False)

    from carbon.scenes.search import city_key, index_text

    bind = op.get_bind()
    rows = bind.execute(sa.select(scenes.c.id, scenes.c.name_zh, scenes.c.name_en, scenes.c.city, organizations.c.name)
                        .select_from(scenes.outerjoin(organizations, organizations.c.id == scenes.c.organization_id)))
    for scene_id, name_zh, name_en, city, organizer in rows.all():
        bind.execute(scenes.update().where(scenes.c.id == scene_id).values(
            search_text=index_text(name_zh=name_zh, name_en=name_en or '', organizer=organizer or '',
                                   city=city or ''),
            search_city=city_key(city or '')))
    has_search = sa.select(channels.c.scene_id).where(channels.c.slug == 'search')
    missing = bind.execute(sa.select(scenes.c.id).where(scenes.c.id.not_in(has_search))).scalars().all()
    if missing:
        now = datetime.now(UTC)
        op.bulk_insert(channels, [{'scene_id': scene_id, 'slug': 'search', 'label': '搜索 / Search', 'created_at': now}
                                  for scene_id in missing])


def downgrade():
    op.execute(channels.delete().where(channels.c.slug == 'search'))
    op.drop_index(op.f('ix_scenes_search_city'), table_name='scenes')
    for column in ('search_city', 'search_text', 'longitude', 'latitude'):
        op.drop_column('scenes', column)  # SQLite ≥ 3.35 drops a column in place, without recreating the table
