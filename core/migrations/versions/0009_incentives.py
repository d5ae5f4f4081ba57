"""incentives (docs/incentives.md): incentive_plan, incentive_plan_version, period_lock,
locked_statement, commission_adjustment

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _when(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        'incentive_plan',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        _when('created_at'),
        _when('updated_at'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('key'),
    )
    op.create_table(
        'incentive_plan_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('plan_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('document', JSON, nullable=False),
        sa.Column('source', sa.String(), nullable=False),
        _when('created_at'),
        sa.ForeignKeyConstraint(['plan_id'], ['incentive_plan.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('plan_id', 'version'),
    )
    op.create_table(
        'period_lock',
        sa.Column('period', sa.String(length=10), nullable=False),
        sa.Column('kind', sa.String(length=10), nullable=False),
        sa.Column('period_start', sa.Date(), nullable=False),
        sa.Column('period_end', sa.Date(), nullable=False),
        _when('locked_at'),
        sa.PrimaryKeyConstraint('period'),
    )
    op.create_table(
        'locked_statement',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=10), nullable=False),
        sa.Column('plan_key', sa.String(length=64), nullable=False),
        sa.Column('plan_version', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('statement', JSON, nullable=False),
        sa.Column('fx', JSON, nullable=False),
        _when('locked_at'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('period', 'plan_key', 'person_id'),
    )
    op.create_index('ix_locked_statement_period', 'locked_statement', ['period'])
    op.create_table(
        'commission_adjustment',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('locked_statement_id', sa.Integer(), nullable=False),
        sa.Column('plan_key', sa.String(length=64), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.String(length=10), nullable=False),
        sa.Column('target_period', sa.String(length=10), nullable=False),
        sa.Column('deal_id', sa.Integer(), nullable=True),
        sa.Column('deal_remote_id', sa.String(length=100), nullable=True),
        sa.Column('reason', sa.String(), nullable=False),
        sa.Column('difference', sa.BigInteger(), nullable=False),
        sa.Column('amount', sa.BigInteger(), nullable=False),
        sa.Column('observed_on', sa.Date(), nullable=False),
        _when('created_at'),
        sa.ForeignKeyConstraint(['locked_statement_id'], ['locked_statement.id'],
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_commission_adjustment_locked_statement_id', 'commission_adjustment',
                    ['locked_statement_id'])
    op.create_index('ix_commission_adjustment_target', 'commission_adjustment',
                    ['target_period', 'plan_key'])


def downgrade() -> None:
    op.drop_index('ix_commission_adjustment_target', table_name='commission_adjustment')
    op.drop_index('ix_commission_adjustment_locked_statement_id',
                  table_name='commission_adjustment')
    op.drop_table('commission_adjustment')
    op.drop_index('ix_locked_statement_period', table_name='locked_statement')
    op.drop_table('locked_statement')
    op.drop_table('period_lock')
    op.drop_table('incentive_plan_version')
    op.drop_table('incentive_plan')
