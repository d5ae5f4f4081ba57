"""goal_push: the CRM's own figure for a pushed goal (crm_actual, crm_currency,
crm_read_at, crm_error; connectors.base.GoalResults, docs/goals.md)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('goal_push') as batch:
        batch.add_column(sa.Column('crm_actual', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('crm_currency', sa.String(length=3), nullable=True))
        batch.add_column(sa.Column('crm_read_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('crm_error', sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('goal_push') as batch:
        for name in ('crm_error', 'crm_read_at', 'crm_currency', 'crm_actual'):
            batch.drop_column(name)
