"""created_date on deal and account (local calendar date of remote_created_at), store_meta

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 08:40:00

Existing rows get their created_date in UTC and store_meta records that zone;
core.metrics.localdates recomputes every row when CRMSYNC_TIMEZONE differs.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('store_meta',
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_date', sa.Date(), nullable=True))
        batch_op.create_index('ix_account_created', ['created_date'], unique=False)
    with op.batch_alter_table('deal', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_date', sa.Date(), nullable=True))
    utc_date = (
        "date(remote_created_at)" if op.get_bind().dialect.name == "sqlite"
        else "CAST(remote_created_at AT TIME ZONE 'UTC' AS date)"
    )
    for table in ('account', 'deal'):
        op.execute(f"UPDATE {table} SET created_date = {utc_date} "
                   "WHERE remote_created_at IS NOT NULL")
    op.execute("INSERT INTO store_meta (key, value) VALUES ('created_date_timezone', 'UTC')")


def downgrade() -> None:
    with op.batch_alter_table('deal', schema=None) as batch_op:
        batch_op.drop_column('created_date')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_index('ix_account_created')
        batch_op.drop_column('created_date')
    op.drop_table('store_meta')
