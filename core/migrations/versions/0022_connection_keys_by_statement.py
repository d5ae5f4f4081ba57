"""PostgreSQL: the bulk-written tables' keys to connection checked once a statement, not
once a row (docs/architecture.md, "Keys to a connection").

A foreign key makes PostgreSQL run one lookup of the connection for every row inserted
(an SPI query that locks the row FOR KEY SHARE): 7-9 us a row on the CI machine, two a
deal in a first sync (deal and its first deal_version), about a fifth of the database's
CPU in a 100,000-deal sync (docs/benchmarks.md). Each of these tables' key becomes:

- an AFTER INSERT trigger for each statement (its name the constraint's) that locks the
  connections of the rows it inserted FOR KEY SHARE, as the key's check did, and fails
  with foreign_key_violation (23503) when one is missing: one query a statement, over the
  statement's new rows (a transition table; 15-25 us more than a key for a statement of
  one row, 17 us for a statement that inserts none, nothing measurable for 4,000);
- a BEFORE UPDATE trigger that refuses a row moved to another connection (no code does;
  its WHEN clause costs nothing to the updates that leave connection_id alone);
- the ON DELETE CASCADE: one AFTER DELETE trigger on connection deletes their rows.

Same outcome as the keys, concurrent deletes included: an insert waits for a connection
being deleted and then fails, a delete waits for the inserts into the connection's tables
and then deletes their rows too. SQLite keeps its keys (checked in process, cheaply). The
models still declare the keys (core.db.compared_with_models leaves them out of the
comparison with the models).

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 12:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = '0022'
down_revision: str | None = '0021'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ('crm_user', 'account', 'stage', 'deal', 'activity', 'deal_version',
          'deal_stage_change', 'deal_day', 'deal_week', 'deal_month', 'account_day',
          'account_week', 'account_month')

CHECK = """
CREATE FUNCTION crmsync_connection_key() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT FROM (SELECT DISTINCT connection_id FROM new_rows) AS wanted
               LEFT JOIN LATERAL (SELECT id FROM connection WHERE id = wanted.connection_id
                                  FOR KEY SHARE) AS locked ON true
               WHERE locked.id IS NULL) THEN
        RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"',
            TG_TABLE_NAME, TG_NAME
            USING ERRCODE = 'foreign_key_violation',
                  DETAIL = 'Key (connection_id) is not present in table "connection".';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION crmsync_connection_key_fixed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a row of "%" never moves to another connection', TG_TABLE_NAME
        USING ERRCODE = 'foreign_key_violation';
END $$;
"""


def _cascade() -> str:
    deletes = "\n".join(f"    DELETE FROM {table} WHERE connection_id IN "
                        f"(SELECT id FROM old_rows);" for table in TABLES)
    return f"""
CREATE FUNCTION crmsync_connection_rows_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
{deletes}
    RETURN NULL;
END $$;
CREATE TRIGGER connection_rows_deleted AFTER DELETE ON connection
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crmsync_connection_rows_deleted();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute(CHECK)
    for table in TABLES:
        key = f'{table}_connection_id_fkey'
        op.drop_constraint(key, table, type_='foreignkey')
        op.execute(f"""
CREATE TRIGGER {key} AFTER INSERT ON {table}
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
    EXECUTE FUNCTION crmsync_connection_key();
CREATE TRIGGER {table}_connection_id_fixed BEFORE UPDATE OF connection_id ON {table}
    FOR EACH ROW WHEN (NEW.connection_id IS DISTINCT FROM OLD.connection_id)
    EXECUTE FUNCTION crmsync_connection_key_fixed();
""")
    op.execute(_cascade())


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    op.execute("DROP TRIGGER connection_rows_deleted ON connection")
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_connection_id_fkey ON {table}")
        op.execute(f"DROP TRIGGER {table}_connection_id_fixed ON {table}")
        op.create_foreign_key(f'{table}_connection_id_fkey', table, 'connection',
                              ['connection_id'], ['id'], ondelete='CASCADE')
    op.execute("DROP FUNCTION crmsync_connection_rows_deleted(), crmsync_connection_key(), "
               "crmsync_connection_key_fixed()")
