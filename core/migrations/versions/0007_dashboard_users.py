"""dashboard users (docs/dashboard.md): dashboard_user, login_link, web_session,
login_failure

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 04:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def _when(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'dashboard_user',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('name', sa.String(), nullable=False),
        sa.Column('role', sa.String(length=20), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=True),
        sa.Column('teams', JSON, nullable=True),
        sa.Column('password_hash', sa.String(), nullable=True),
        _when('disabled_at', nullable=True),
        _when('created_at'),
        _when('updated_at'),
        _when('last_login_at', nullable=True),
        sa.ForeignKeyConstraint(['person_id'], ['person.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('email'),
    )
    op.create_table(
        'login_link',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('purpose', sa.String(length=20), nullable=False),
        _when('created_at'),
        _when('expires_at'),
        _when('used_at', nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['dashboard_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_login_link_user_id', 'login_link', ['user_id'])
    op.create_table(
        'web_session',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('csrf_token', sa.String(length=64), nullable=False),
        _when('created_at'),
        _when('expires_at'),
        sa.ForeignKeyConstraint(['user_id'], ['dashboard_user.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('token_hash'),
    )
    op.create_index('ix_web_session_user_id', 'web_session', ['user_id'])
    op.create_table(
        'login_failure',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=False),
        _when('at'),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_login_failure_email_at', 'login_failure', ['email', 'at'])


def downgrade() -> None:
    op.drop_index('ix_login_failure_email_at', table_name='login_failure')
    op.drop_table('login_failure')
    op.drop_index('ix_web_session_user_id', table_name='web_session')
    op.drop_table('web_session')
    op.drop_index('ix_login_link_user_id', table_name='login_link')
    op.drop_table('login_link')
    op.drop_table('dashboard_user')
