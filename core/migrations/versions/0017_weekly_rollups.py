"""weekly metric rollups: deal_week and account_week (core.metrics.rollups);
ix_deal_close also holds deleted_at and connection_id (a SQLite drill-down filters its page in
the index, then reads only the rows of the page)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05 12:30:00

Every built month is marked dirty, so the next refresh (after the next sync, or the
scheduled rollup job) builds the weeks; until then metrics read as before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _common() -> list[sa.Column]:
    return [sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('connection_id', sa.Integer(), nullable=False),
            sa.Column('owner_person_id', sa.Integer(), nullable=True),
            sa.Column('owner_name', sqlmodel.sql.sqltypes.AutoString(), nullable=True)]


def _keys() -> list[sa.Constraint]:
    return [sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
            sa.PrimaryKeyConstraint('id')]


def upgrade() -> None:
    op.create_table(
        'deal_week', *_common(),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column('probability', sa.BigInteger(), nullable=True),
        sa.Column('deals', sa.Integer(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=True),
        sa.Column('cycle_days', sa.Integer(), nullable=False),
        sa.Column('cycle_deals', sa.Integer(), nullable=False),
        sa.Column('week', sa.Integer(), nullable=False),
        *_keys())
    op.create_index('ix_deal_week', 'deal_week', ['week', 'connection_id'])
    op.create_table(
        'account_week', *_common(),
        sa.Column('accounts', sa.Integer(), nullable=False),
        sa.Column('week', sa.Integer(), nullable=False),
        *_keys())
    op.create_index('ix_account_week', 'account_week', ['week', 'connection_id'])
    op.execute('INSERT INTO rollup_dirty (month) SELECT month FROM rollup_month')
    op.drop_index('ix_deal_close', table_name='deal')
    op.create_index('ix_deal_close', 'deal', ['close_date', 'status', 'deleted_at',
                                              'connection_id'])


def downgrade() -> None:
    op.drop_index('ix_deal_close', table_name='deal')
    op.create_index('ix_deal_close', 'deal', ['close_date', 'status'])
    op.drop_table('account_week')
    op.drop_table('deal_week')
