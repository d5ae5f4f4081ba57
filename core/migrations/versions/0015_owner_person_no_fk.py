"""deal, account and activity: owner_person_id without a foreign key (docs/benchmarks.md,
"Sync"). The key was checked for every row a sync merges (about 10-18 us per deal of
PostgreSQL's CPU, a tenth of a full sync's); owner_person_id is only ever set by
core.people (the merge statement looks the person up, core.people._merge moves the rows
before it deletes a person), like deal_version.owner_person_id, which never had one.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05 12:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('deal', 'account', 'activity')
# SQLite's keys have no names: batch mode names them by this convention to drop one.
CONVENTION = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    for table in TABLES:
        if op.get_bind().dialect.name == 'sqlite':
            with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
                batch.drop_constraint(f'fk_{table}_owner_person_id_person', type_='foreignkey')
        else:
            op.drop_constraint(f'{table}_owner_person_id_fkey', table, type_='foreignkey')


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.create_foreign_key(f'{table}_owner_person_id_fkey', 'person',
                                     ['owner_person_id'], ['id'])
