"""webhook_event and notification channel tables (M5)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'webhook_event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('provider', sa.String(length=40), nullable=False),
        sa.Column('dedupe_key', sa.String(length=128), nullable=False),
        sa.Column('payload', JSON, nullable=True),
        sa.Column('status', sa.String(length=10), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('error', sa.String(), nullable=True),
        sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('processed_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connection_id', 'dedupe_key'),
    )
    op.create_index('ix_webhook_event_pending', 'webhook_event', ['connection_id', 'status'])
    op.create_table(
        'notification_channel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('channel_id', sa.String(length=40), nullable=False),
        sa.Column('token_encrypted', sa.String(), nullable=False),
        sa.Column('events', JSON, nullable=False),
        sa.Column('notify_url', sa.String(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connection_id', 'channel_id'),
    )
    op.create_index('ix_notification_channel_connection_id', 'notification_channel',
                    ['connection_id'])


def downgrade() -> None:
    op.drop_index('ix_notification_channel_connection_id', table_name='notification_channel')
    op.drop_table('notification_channel')
    op.drop_index('ix_webhook_event_pending', table_name='webhook_event')
    op.drop_table('webhook_event')
