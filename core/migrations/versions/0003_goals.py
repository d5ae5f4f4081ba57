"""goal and goal_push tables (M3)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('goal',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('owner_email', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=True),
    sa.Column('metric', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
    sa.Column('period_start', sa.Date(), nullable=False),
    sa.Column('period_end', sa.Date(), nullable=False),
    sa.Column('target', sa.BigInteger(), nullable=False),
    sa.Column('currency', sqlmodel.sql.sqltypes.AutoString(length=3), nullable=True),
    sa.Column('live_key', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('live_key')
    )
    op.create_index('ix_goal_owner_email', 'goal', ['owner_email'], unique=False)
    op.create_table('goal_push',
    sa.Column('goal_id', sa.Integer(), nullable=False),
    sa.Column('connection_id', sa.Integer(), nullable=False),
    sa.Column('remote_id', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('pushed_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('pushed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['goal_id'], ['goal.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('goal_id', 'connection_id')
    )


def downgrade() -> None:
    op.drop_table('goal_push')
    op.drop_index('ix_goal_owner_email', table_name='goal')
    op.drop_table('goal')
