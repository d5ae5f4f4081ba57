"""rollup_dirty.connection_id: the connection whose rows a write touched, so a refresh after
one connection's sync rebuilds that connection's months only (core.metrics.rollups; null:
every connection's, as marks written before this migration)

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05 15:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: str | None = '0018'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('rollup_dirty') as batch:
        batch.add_column(sa.Column('connection_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('rollup_dirty') as batch:
        batch.drop_column('connection_id')
