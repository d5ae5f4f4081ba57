"""digests (docs/digests.md): digest_channel (chat robots, sealed webhook), digest_delivery
(one row per channel and scheduled period)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'digest_channel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('platform', sa.String(length=20), nullable=False),
        sa.Column('language', sa.String(length=5), nullable=False),
        sa.Column('cadence', sa.String(length=10), nullable=False),
        sa.Column('day', sa.Integer(), nullable=False),
        sa.Column('hour', sa.Integer(), nullable=False),
        sa.Column('team', sa.String(length=200), nullable=True),
        sa.Column('sections', JSON, nullable=False),
        sa.Column('webhook_encrypted', sa.String(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        _when('created_at'),
        _when('updated_at'),
        _when('last_sent_at', nullable=True),
        sa.Column('last_error', sa.String(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'),
    )
    op.create_table(
        'digest_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=20), nullable=False),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        _when('next_attempt_at'),
        _when('claimed_at', nullable=True),
        _when('sent_at', nullable=True),
        sa.Column('error', sa.String(), nullable=True),
        _when('created_at'),
        sa.ForeignKeyConstraint(['channel_id'], ['digest_channel.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('channel_id', 'period'),
    )
    op.create_index('ix_digest_delivery_channel_id', 'digest_delivery', ['channel_id'])


def downgrade() -> None:
    op.drop_index('ix_digest_delivery_channel_id', table_name='digest_delivery')
    op.drop_table('digest_delivery')
    op.drop_table('digest_channel')
