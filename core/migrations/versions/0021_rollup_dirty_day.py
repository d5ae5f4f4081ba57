"""rollup_dirty.day: the day a write touched, so a connection's refresh rebuilds the dirty
days and re-sums only the weeks and months holding them (core.metrics.rollups; null: the
whole month, as marks written before this migration)

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 20:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0021'
down_revision: str | None = '0020'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('rollup_dirty') as batch:
        batch.add_column(sa.Column('day', sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rollup_dirty') as batch:
        batch.drop_column('day')
