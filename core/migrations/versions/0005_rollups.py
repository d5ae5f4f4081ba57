"""metric rollups kept by the sync (M2): deal_month, deal_day, account_month, account_day,
rollup_month, rollup_dirty (core.metrics.rollups)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 09:50:00

The tables start empty: until the first refresh (after the next sync) metrics read the
deals themselves, as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    for name, period in (('deal_month', sa.Integer()), ('deal_day', sa.Date())):
        key = 'month' if name.endswith('month') else 'day'
        op.create_table(
            name,
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('connection_id', sa.Integer(), nullable=False),
            sa.Column('owner_email', text(length=320), nullable=True),
            sa.Column('owner_name', text(), nullable=True),
            sa.Column('status', text(length=10), nullable=False),
            sa.Column('probability', sa.BigInteger(), nullable=True),
            sa.Column('deals', sa.Integer(), nullable=False),
            sa.Column('amount', sa.BigInteger(), nullable=True),
            sa.Column('cycle_days', sa.Integer(), nullable=False),
            sa.Column('cycle_deals', sa.Integer(), nullable=False),
            sa.Column(key, period, nullable=False),
            sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id'),
        )
        op.create_index(f'ix_{name}', name, [key, 'connection_id'])
    for name, period in (('account_month', sa.Integer()), ('account_day', sa.Date())):
        key = 'month' if name.endswith('month') else 'day'
        op.create_table(
            name,
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('connection_id', sa.Integer(), nullable=False),
            sa.Column('owner_email', text(length=320), nullable=True),
            sa.Column('owner_name', text(), nullable=True),
            sa.Column('accounts', sa.Integer(), nullable=False),
            sa.Column(key, period, nullable=False),
            sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id'),
        )
        op.create_index(f'ix_{name}', name, [key, 'connection_id'])
    op.create_table(
        'rollup_month',
        sa.Column('month', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('built_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('month'),
    )
    op.create_table(
        'rollup_dirty',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('month', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_rollup_dirty_month', 'rollup_dirty', ['month'])


def downgrade() -> None:
    for name in ('rollup_dirty', 'rollup_month', 'account_day', 'account_month', 'deal_day',
                 'deal_month'):
        op.drop_table(name)
