"""people (docs/people.md): person; crm_user.person_id, person_match, mobile;
owner_person_id on deal and account; goal.person_id instead of goal.owner_email; rollups
keyed by owner_person_id

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 10:00:00

Backfill: every existing user gets its person by the automatic rules (core.people.
match_users: email, then mobile, else a person of its own), every owner email on deals
and accounts that no one has gets a person, and owner_person_id is set on every row
(core.people.owner_person). Goals move from their owner email to its person (a person is
made for an email nobody has any more, e.g. of a deleted connection). The rollups stay
until the next refresh rebuilds them: every built month is marked dirty, so metrics read
the deals meanwhile. (The backfill runs core.people on the tables as this revision leaves
them.)

SQLite: columns are added and dropped with ALTER TABLE (no table copy: goal_push's ON
DELETE CASCADE would empty it when goal is copied with foreign keys on). The downgrade
must copy tables there to drop the foreign-key columns, and so loses the goal_push rows.
"""

from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
import sqlmodel
from alembic import op
from sqlmodel import Session

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLLUPS = ('deal_month', 'deal_day', 'account_month', 'account_day')


def _sqlite() -> bool:
    return bool(op.get_bind().dialect.name == 'sqlite')


def _add_person_fk(table: str, column: str) -> None:
    if _sqlite():
        op.execute(f'ALTER TABLE {table} ADD COLUMN {column} INTEGER REFERENCES person (id)')
    else:
        op.add_column(table, sa.Column(column, sa.Integer(), nullable=True))
        op.create_foreign_key(None, table, 'person', [column], ['id'])


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        'person',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', text(), nullable=False),
        sa.Column('email', text(length=320), nullable=True),
        sa.Column('mobile', text(length=40), nullable=True),
        sa.Column('team', text(), nullable=True),
        sa.Column('team_set_by_hand', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('email'),
    )
    op.create_index('ix_person_mobile', 'person', ['mobile'])
    op.add_column('crm_user', sa.Column('mobile', text(length=40), nullable=True))
    op.add_column('crm_user', sa.Column('person_match', text(length=10), nullable=True))
    _add_person_fk('crm_user', 'person_id')
    op.create_index('ix_crm_user_mobile', 'crm_user', ['mobile'])
    op.create_index('ix_crm_user_person_id', 'crm_user', ['person_id'])
    _add_person_fk('deal', 'owner_person_id')
    op.drop_index('ix_deal_owner_close', table_name='deal')
    op.create_index('ix_deal_person_close', 'deal', ['owner_person_id', 'close_date'])
    _add_person_fk('account', 'owner_person_id')
    op.create_index('ix_account_person', 'account', ['owner_person_id'])
    _add_person_fk('goal', 'person_id')
    op.create_index('ix_goal_person_id', 'goal', ['person_id'])
    for name in ROLLUPS:
        op.add_column(name, sa.Column('owner_person_id', sa.Integer(), nullable=True))
        op.drop_column(name, 'owner_email')
    op.execute('INSERT INTO rollup_dirty (month) SELECT month FROM rollup_month')
    _backfill()
    op.drop_index('ix_goal_owner_email', table_name='goal')
    op.drop_column('goal', 'owner_email')


def _backfill() -> None:
    from core import people
    from core.models import Goal

    session = Session(bind=op.get_bind())
    people.match_users(session)
    for table in (people.DEAL, people.ACCOUNT):
        people.ensure_owner_persons(session, table)
        session.execute(sa.update(table).values(owner_person_id=people.owner_person(table)))
    goals = session.execute(sa.text(
        'SELECT id, owner_email, metric, period_start, period_end, live_key FROM goal '
        'WHERE owner_email IS NOT NULL')).all()
    for goal in goals:
        email = str(goal.owner_email)
        person_id = people.person_of_email(session, email)
        if person_id is None:
            person_id = session.execute(sa.insert(people.PERSON).values(
                name=email, email=email).returning(people.PERSON.c.id)).scalar_one()
        live_key = None if goal.live_key is None else Goal.live_key_of(
            person_id, goal.metric, date.fromisoformat(str(goal.period_start)),
            date.fromisoformat(str(goal.period_end)))
        session.execute(sa.text('UPDATE goal SET person_id = :p, live_key = :k WHERE id = :i'),
                        {'p': person_id, 'k': live_key, 'i': goal.id})
    session.flush()


def downgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.add_column('goal', sa.Column('owner_email', text(length=320), nullable=True))
    op.execute('UPDATE goal SET owner_email = (SELECT email FROM person '
               'WHERE person.id = goal.person_id)')
    op.execute("UPDATE goal SET live_key = COALESCE(owner_email, '') || substr(live_key, "
               "instr(live_key, '|')) WHERE live_key IS NOT NULL" if _sqlite() else
               "UPDATE goal SET live_key = COALESCE(owner_email, '') || substr(live_key, "
               "strpos(live_key, '|')) WHERE live_key IS NOT NULL")
    op.create_index('ix_goal_owner_email', 'goal', ['owner_email'])
    for name in ROLLUPS:
        op.add_column(name, sa.Column('owner_email', text(length=320), nullable=True))
        op.drop_column(name, 'owner_person_id')
    op.execute('INSERT INTO rollup_dirty (month) SELECT month FROM rollup_month')
    op.drop_index('ix_goal_person_id', table_name='goal')
    op.drop_index('ix_account_person', table_name='account')
    op.drop_index('ix_deal_person_close', table_name='deal')
    op.create_index('ix_deal_owner_close', 'deal', ['owner_email', 'close_date'])
    op.drop_index('ix_crm_user_person_id', table_name='crm_user')
    op.drop_index('ix_crm_user_mobile', table_name='crm_user')
    for table, column in (('goal', 'person_id'), ('account', 'owner_person_id'),
                          ('deal', 'owner_person_id'), ('crm_user', 'person_id'),
                          ('crm_user', 'person_match'), ('crm_user', 'mobile')):
        if _sqlite():  # a column with a foreign key cannot be dropped by ALTER TABLE
            with op.batch_alter_table(table) as batch:
                batch.drop_column(column)
        else:
            op.drop_column(table, column)
    op.drop_index('ix_person_mobile', table_name='person')
    op.drop_table('person')
