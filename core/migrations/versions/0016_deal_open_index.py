"""ix_deal_open: a partial index on the live open deals with every column the open
pipeline by stage and the hygiene counts read (core.models.OPEN_COLUMNS), so both read it
alone (index-only) instead of the whole deal table (docs/benchmarks.md, Dashboard pages)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05 12:15:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_OPEN = "deleted_at IS NULL AND status = 'open'"
COLUMNS = [
    'owner_person_id', 'connection_id', 'stage_remote_id', 'probability', 'amount_home',
    'amount', 'close_date', 'remote_modified_at', 'owner_remote_id', 'owner_email',
    'account_remote_id', 'account_name', 'pipeline', 'stage', 'status', 'deleted_at',
]


def upgrade() -> None:
    op.create_index('ix_deal_open', 'deal', COLUMNS, postgresql_where=sa.text(LIVE_OPEN),
                    sqlite_where=sa.text(LIVE_OPEN))


def downgrade() -> None:
    op.drop_index('ix_deal_open', table_name='deal')
