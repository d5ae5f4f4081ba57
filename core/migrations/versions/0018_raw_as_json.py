"""raw of the synced tables as json instead of jsonb (PostgreSQL; SQLite keeps its JSON):
the record as it was written, not parsed into a tree when a row is written. jsonb's parse
was about 8 us per record of a sync's PostgreSQL CPU (docs/benchmarks.md, "Sync"); raw is
only ever read whole, by Python. The change rewrites each table once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0018'
down_revision: str | None = '0017'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('crm_user', 'stage', 'account', 'deal', 'activity')


def _retype(kind: str) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN raw TYPE {kind} USING raw::{kind}')


def upgrade() -> None:
    _retype('json')


def downgrade() -> None:
    _retype('jsonb')
