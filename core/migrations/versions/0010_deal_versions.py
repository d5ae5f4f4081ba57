"""deal versions (docs/evaluation.md): deal_version, one seeded per existing deal

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 07:00:00

Seed: every deal (tombstoned ones too) gets one version with its current tracked fields,
valid from its creation in the CRM (remote_created_at; else its modified time, else when
crmsync first saw it) and still valid. From then on core.store writes a version for every
change a sync or webhook observes.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRACKED = ('amount', 'currency', 'amount_home', 'stage', 'stage_remote_id', 'status',
           'probability', 'close_date', 'owner_remote_id', 'owner_email', 'owner_person_id',
           'pipeline')


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        'deal_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('connection_id', sa.Integer(), nullable=False),
        sa.Column('deal_remote_id', text(length=100), nullable=False),
        sa.Column('valid_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('valid_to', sa.DateTime(timezone=True), nullable=True),
        sa.Column('amount', sa.BigInteger(), nullable=True),
        sa.Column('currency', text(length=3), nullable=True),
        sa.Column('amount_home', sa.BigInteger(), nullable=True),
        sa.Column('stage', text(), nullable=True),
        sa.Column('stage_remote_id', text(), nullable=True),
        sa.Column('status', text(length=10), nullable=False),
        sa.Column('probability', sa.BigInteger(), nullable=True),
        sa.Column('close_date', sa.Date(), nullable=True),
        sa.Column('owner_remote_id', text(), nullable=True),
        sa.Column('owner_email', text(length=320), nullable=True),
        sa.Column('owner_person_id', sa.Integer(), nullable=True),
        sa.Column('pipeline', text(), nullable=True),
        sa.Column('source', text(length=10), nullable=False),
        sa.ForeignKeyConstraint(['connection_id'], ['connection.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_deal_version_deal', 'deal_version',
                    ['connection_id', 'deal_remote_id', 'valid_from'])
    columns = ', '.join(TRACKED)
    op.execute(
        f"INSERT INTO deal_version (connection_id, deal_remote_id, valid_from, {columns}, "
        f"source) SELECT connection_id, remote_id, "
        f"COALESCE(remote_created_at, remote_modified_at, first_seen_at), {columns}, 'seed' "
        f"FROM deal")


def downgrade() -> None:
    op.drop_index('ix_deal_version_deal', table_name='deal_version')
    op.drop_table('deal_version')
