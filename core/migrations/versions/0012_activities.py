"""activity: calls, meetings, tasks, emails and notes of reps (the optional activities
stream; docs/evaluation.md, Activities)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    stamp = sa.DateTime(timezone=True)
    op.create_table(
        'activity',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('remote_id', text(length=100), nullable=False),
        sa.Column('raw', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()),
                                                'postgresql'), nullable=True),
        sa.Column('remote_modified_at', stamp, nullable=True),
        sa.Column('first_seen_at', stamp, nullable=False),
        sa.Column('last_synced_at', stamp, nullable=False),
        sa.Column('deleted_at', stamp, nullable=True),
        sa.Column('type', text(length=10), nullable=False),
        sa.Column('kind', text(), nullable=True),
        sa.Column('subject', text(), nullable=True),
        sa.Column('occurred_at', stamp, nullable=True),
        sa.Column('activity_date', sa.Date(), nullable=True),
        sa.Column('done', sa.Boolean(), nullable=True),
        sa.Column('completed_at', stamp, nullable=True),
        sa.Column('duration_seconds', sa.Integer(), nullable=True),
        sa.Column('owner_remote_id', text(), nullable=True),
        sa.Column('owner_email', text(length=320), nullable=True),
        sa.Column('owner_name', text(), nullable=True),
        sa.Column('owner_person_id', sa.Integer(), nullable=True),
        sa.Column('deal_remote_id', text(length=100), nullable=True),
        sa.Column('account_remote_id', text(length=100), nullable=True),
        sa.Column('remote_created_at', stamp, nullable=True),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['owner_person_id'], ['person.id']),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('connection_id', 'remote_id'),
    )
    op.create_index('ix_activity_person_date', 'activity', ['owner_person_id', 'activity_date'])
    op.create_index('ix_activity_date', 'activity', ['activity_date', 'connection_id'])
    op.create_index('ix_activity_modified', 'activity', ['connection_id', 'remote_modified_at'])
    op.create_index('ix_activity_deal', 'activity', ['connection_id', 'deal_remote_id'])


def downgrade() -> None:
    for name in ('ix_activity_deal', 'ix_activity_modified', 'ix_activity_date',
                 'ix_activity_person_date'):
        op.drop_index(name, table_name='activity')
    op.drop_table('activity')
