"""The normalized store as SQLModel tables.

Every synced row carries connection_id, remote_id, raw, remote_modified_at,
first_seen_at, last_synced_at and deleted_at; (connection_id, remote_id) is unique.
Timestamps are aware UTC (UTCDateTime). Money uses ScaledDecimal so sums are exact everywhere.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Index,
    Table,
    UniqueConstraint,
    and_,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from core.columns import DecimalText, EnumText, Money, Percent, UTCDateTime
from core.types import (
    ActivityType,
    ConnectionStatus,
    DealStatus,
    GoalMetric,
    PersonMatch,
    PushStatus,
    RunStatus,
    SyncMode,
    WebhookStatus,
    utcnow,
)

JSONType = JSON().with_variant(JSONB(), "postgresql")


def table_of(model: type[Any]) -> Table:
    """The SQLAlchemy Table of a SQLModel table class (for Core statements)."""
    table: Table = model.__table__
    return table


def _json() -> Any:
    return Field(default=None, sa_type=JSONType)


def _now() -> Any:
    return Field(default_factory=utcnow, sa_type=UTCDateTime)


def _ts() -> Any:
    return Field(default=None, sa_type=UTCDateTime)


class Connection(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    provider: str = Field(max_length=40)
    name: str = Field(max_length=200, unique=True)
    config: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    secrets_encrypted: str = ""
    home_currency: str | None = Field(default=None, max_length=3)
    status: ConnectionStatus = Field(default=ConnectionStatus.ACTIVE,
                                     sa_type=EnumText(ConnectionStatus, 20))
    last_error: str | None = None
    created_at: datetime = _now()
    updated_at: datetime = _now()
    last_synced_at: datetime | None = _ts()


class SyncedRow(SQLModel):
    """Columns every synced row has."""

    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    remote_id: str = Field(max_length=100)
    # json, not jsonb: kept as the text it was written as, never parsed into a tree on
    # the way in (about 8 us a row of a sync's PostgreSQL CPU; migration 0018)
    raw: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    remote_modified_at: datetime | None = _ts()
    first_seen_at: datetime = _now()
    last_synced_at: datetime = _now()
    deleted_at: datetime | None = _ts()


class Person(SQLModel, table=True):
    """One human, whatever CRMs they are in (core.people; docs/people.md).

    email is lower-cased and unique, mobile normalized (core.people.normalize_mobile).
    name, email and mobile come from the first CRM user (or deal owner) of the person and
    change only by hand; team follows the CRM users' team unless team_set_by_hand."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = ""
    email: str | None = Field(default=None, max_length=320, unique=True)
    mobile: str | None = Field(default=None, max_length=40, index=True)
    team: str | None = None
    team_set_by_hand: bool = False
    created_at: datetime = _now()
    updated_at: datetime = _now()


class User(SyncedRow, table=True):
    __tablename__ = "crm_user"
    __table_args__ = (
        UniqueConstraint("connection_id", "remote_id"),
        Index("ix_crm_user_email", "email"),
        Index("ix_crm_user_mobile", "mobile"),
    )
    name: str = ""
    email: str | None = Field(default=None, max_length=320)
    active: bool = True
    role: str | None = None
    team: str | None = None
    mobile: str | None = Field(default=None, max_length=40)  # normalized (core.people)
    # The person this user is (core.people): set right after the user is first stored, and
    # how: email | mobile (matched automatically), new (a person of its own), hand (mapped
    # by an admin; syncs never change it).
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    person_match: PersonMatch | None = Field(default=None, sa_type=EnumText(PersonMatch, 10))


class Account(SyncedRow, table=True):
    __table_args__ = (
        UniqueConstraint("connection_id", "remote_id"),
        Index("ix_account_modified", "connection_id", "remote_modified_at"),
        Index("ix_account_created", "created_date"),
        Index("ix_account_person", "owner_person_id"),
    )
    name: str = ""
    industry: str | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = Field(default=None, max_length=320)
    owner_name: str | None = None
    owner_person_id: int | None = None  # core.people sets it (no foreign key: migration 0015)
    remote_created_at: datetime | None = _ts()
    created_date: date | None = None  # remote_created_at's date in the store's zone (localdates)


class Stage(SyncedRow, table=True):
    __table_args__ = (UniqueConstraint("connection_id", "remote_id"),)
    pipeline: str | None = None
    name: str = ""
    sort_order: int = 0
    probability: Decimal | None = Field(default=None, sa_type=Percent)
    category: DealStatus = Field(default=DealStatus.OPEN, sa_type=EnumText(DealStatus, 10))


class DealState(SQLModel):
    """The fields of a deal that its versions keep (DealVersion; core.store.TRACKED)."""

    amount: Decimal | None = Field(default=None, sa_type=Money)
    currency: str | None = Field(default=None, max_length=3)
    amount_home: Decimal | None = Field(default=None, sa_type=Money)
    stage: str | None = None
    stage_remote_id: str | None = None
    status: DealStatus = Field(default=DealStatus.OPEN, sa_type=EnumText(DealStatus, 10))
    probability: Decimal | None = Field(default=None, sa_type=Percent)
    close_date: date | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = Field(default=None, max_length=320)
    pipeline: str | None = None


LIVE_OPEN = "deleted_at IS NULL AND status = 'open'"
"""The live open deals: the predicate of ix_deal_open."""


def live_open(deals: Any) -> ColumnElement[bool]:
    """LIVE_OPEN over `deals` (the deal table or a select of its columns), with 'open'
    written into the SQL: PostgreSQL uses a partial index only where it can prove the
    index's predicate from the query's, and a bound parameter proves nothing in a prepared
    statement's generic plan (psycopg prepares a statement a connection ran five times)."""
    return and_(deals.c.deleted_at.is_(None), deals.c.status == literal_column("'open'"))

OPEN_COLUMNS = (
    "owner_person_id", "connection_id", "stage_remote_id", "probability", "amount_home",
    "amount", "close_date", "remote_modified_at", "owner_remote_id", "owner_email",
    "account_remote_id", "account_name", "pipeline", "stage", "status", "deleted_at",
)
"""The columns of ix_deal_open: what the open pipeline by stage (core.metrics.definitions.
pipeline) and the hygiene counts (core.hygiene.hygiene_counts) read of a deal, so both are
index-only scans of the live open deals instead of scans of the whole deal table (SQLite
covers a query only when the predicate's columns are in the index too)."""


class Deal(SyncedRow, DealState, table=True):
    __table_args__ = (
        UniqueConstraint("connection_id", "remote_id"),
        # deleted_at, connection_id too: SQLite filters a drill-down's page in the
        # index, then reads only the rows it returns (migration 0017)
        Index("ix_deal_close", "close_date", "status", "deleted_at", "connection_id"),
        Index("ix_deal_person_close", "owner_person_id", "close_date"),
        Index("ix_deal_modified", "connection_id", "remote_modified_at"),
        Index("ix_deal_open", *OPEN_COLUMNS, postgresql_where=text(LIVE_OPEN),
              sqlite_where=text(LIVE_OPEN)),
    )
    name: str = ""
    exchange_rate: Decimal | None = Field(default=None, sa_type=DecimalText)
    remote_created_at: datetime | None = _ts()
    created_date: date | None = None  # remote_created_at's date in the store's zone (localdates)
    owner_name: str | None = None
    owner_person_id: int | None = None  # core.people sets it (no foreign key: migration 0015)
    account_remote_id: str | None = None
    account_name: str | None = None


class Activity(SyncedRow, table=True):
    """A call, meeting, task, email or note of a rep (the optional activities stream;
    docs/evaluation.md, Activities). activity_date is occurred_at's date in the store's zone
    (core.metrics.localdates; a task due on a date only, occurred_at at 00:00 UTC, keeps
    that date in every zone). The deal and account are kept by remote id: the deal may
    arrive after its activities, so readers join deal on (connection_id, deal_remote_id)."""

    __table_args__ = (
        UniqueConstraint("connection_id", "remote_id"),
        Index("ix_activity_person_date", "owner_person_id", "activity_date"),
        Index("ix_activity_date", "activity_date", "connection_id"),
        Index("ix_activity_modified", "connection_id", "remote_modified_at"),
        Index("ix_activity_deal", "connection_id", "deal_remote_id"),
    )
    type: ActivityType = Field(default=ActivityType.OTHER, sa_type=EnumText(ActivityType, 10))
    kind: str | None = None  # the vendor's own type (ActivityRecord.kind)
    subject: str | None = None
    occurred_at: datetime | None = _ts()
    activity_date: date | None = None
    done: bool | None = None  # None: the CRM does not say
    completed_at: datetime | None = _ts()
    duration_seconds: int | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = Field(default=None, max_length=320)
    owner_name: str | None = None
    owner_person_id: int | None = None  # core.people sets it (no foreign key: migration 0015)
    deal_remote_id: str | None = Field(default=None, max_length=100)
    account_remote_id: str | None = Field(default=None, max_length=100)
    remote_created_at: datetime | None = _ts()


class DealStageChange(SQLModel, table=True):
    __tablename__ = "deal_stage_change"
    __table_args__ = (
        UniqueConstraint("connection_id", "deal_remote_id", "changed_at", "to_stage"),
    )
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE", index=True)
    deal_remote_id: str = Field(max_length=100)
    from_stage: str | None = None
    to_stage: str | None = None
    changed_at: datetime = Field(sa_type=UTCDateTime)
    source: str = Field(default="sync", max_length=10)


class DealVersion(DealState, table=True):
    """One version of a deal's tracked fields (core.store.TRACKED; docs/evaluation.md): what
    the deal showed from valid_from until valid_to (None: still). A sync or webhook page
    writes a version only for a deal that is new or whose tracked fields changed, in the
    same statement as its merge, and closes the one before it; migration 0010 seeded one
    per deal that existed then. A deal's first version is valid from its creation in the
    CRM (remote_created_at), the others from the modified time of the copy that changed it.
    """

    __tablename__ = "deal_version"
    __table_args__ = (
        Index("ix_deal_version_deal", "connection_id", "deal_remote_id", "valid_from"),
    )
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    deal_remote_id: str = Field(max_length=100)
    valid_from: datetime = Field(sa_type=UTCDateTime)
    valid_to: datetime | None = _ts()
    owner_person_id: int | None = None  # the owner's person when the version was written
    source: str = Field(default="sync", max_length=10)  # sync | webhook | seed


class SyncState(SQLModel, table=True):
    __tablename__ = "sync_state"
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE", primary_key=True)
    stream: str = Field(primary_key=True, max_length=40)
    cursor: dict[str, Any] | None = _json()
    updated_at: datetime = _now()


class SyncRun(SQLModel, table=True):
    __tablename__ = "sync_run"
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE", index=True)
    mode: SyncMode = Field(sa_type=EnumText(SyncMode, 12))
    status: RunStatus = Field(default=RunStatus.QUEUED, sa_type=EnumText(RunStatus, 12))
    created_at: datetime = _now()
    started_at: datetime | None = _ts()
    finished_at: datetime | None = _ts()
    counts: dict[str, Any] | None = _json()
    api_calls: int = 0
    error: str | None = None


class ApiKey(SQLModel, table=True):
    __tablename__ = "api_key"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    key_hash: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    scopes: str = "read"
    created_at: datetime = _now()
    last_used_at: datetime | None = _ts()
    revoked_at: datetime | None = _ts()


class DashboardUser(SQLModel, table=True):
    """A human who signs in to the dashboard (core.accounts; docs/dashboard.md), apart
    from API keys. role: admin (everything), manager (the people of `teams`, or everyone
    when teams is null), rep (only `person_id`'s own numbers, deals and goals)."""

    __tablename__ = "dashboard_user"
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True)
    name: str = ""
    role: str = Field(max_length=20)
    person_id: int | None = Field(default=None, foreign_key="person.id", ondelete="SET NULL")
    teams: list[str] | None = _json()
    password_hash: str | None = None
    disabled_at: datetime | None = _ts()
    created_at: datetime = _now()
    updated_at: datetime = _now()
    last_login_at: datetime | None = _ts()


class LoginLink(SQLModel, table=True):
    """A one-time link that lets its holder set a password (an invitation or a reset)."""

    __tablename__ = "login_link"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="dashboard_user.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    purpose: str = Field(max_length=20)
    created_at: datetime = _now()
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = _ts()


class WebSession(SQLModel, table=True):
    """A signed-in browser: the cookie holds the token, only its sha256 is stored."""

    __tablename__ = "web_session"
    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="dashboard_user.id", ondelete="CASCADE", index=True)
    token_hash: str = Field(max_length=64, unique=True)
    csrf_token: str = Field(max_length=64)
    created_at: datetime = _now()
    expires_at: datetime = Field(sa_type=UTCDateTime)


class LoginFailure(SQLModel, table=True):
    """A failed sign-in, counted to slow down password guessing (core.accounts)."""

    __tablename__ = "login_failure"
    __table_args__ = (Index("ix_login_failure_email_at", "email", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320)
    address: str = Field(default="", max_length=64)
    at: datetime = _now()


class FxRate(SQLModel, table=True):
    __tablename__ = "fx_rate"
    code: str = Field(primary_key=True, max_length=3)
    rate_to_reporting: Decimal = Field(sa_type=DecimalText)
    updated_at: datetime = _now()


class StoreMeta(SQLModel, table=True):
    """Facts about the store itself, e.g. the time zone its created_date columns are in."""

    __tablename__ = "store_meta"
    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=200)


SYNCED_TABLES: dict[str, type[SyncedRow]] = {
    "users": User,
    "stages": Stage,
    "accounts": Account,
    "deals": Deal,
    "activities": Activity,
}


# --- goals (M3): Goal, GoalPush; migration 0003 ---
class Goal(SQLModel, table=True):
    """A sales goal (core.goals) of a person (None: the whole company). Deletion is a
    tombstone until every CRM copy is deleted.

    target is Money for both metrics: an amount in `currency` (the reporting currency) for
    bookings, a whole number of deals for deals_won (currency null). live_key is
    "person_id|metric|start|end" (live_key_of) while the goal is live and NULL once deleted,
    so the unique constraint allows one live goal per person, metric and period on SQLite
    and PostgreSQL.
    """

    id: int | None = Field(default=None, primary_key=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    metric: GoalMetric = Field(sa_type=EnumText(GoalMetric, 20))
    period_start: date
    period_end: date
    target: Decimal = Field(sa_type=Money)
    currency: str | None = Field(default=None, max_length=3)
    live_key: str | None = Field(default=None, max_length=400, unique=True)
    created_at: datetime = _now()
    updated_at: datetime = _now()
    deleted_at: datetime | None = _ts()

    @staticmethod
    def live_key_of(person_id: int | None, metric: str, start: date, end: date) -> str:
        return f"{person_id or ''}|{metric}|{start}|{end}"


class GoalPush(SQLModel, table=True):
    """What the last push of a goal did on one connection (its copy in that CRM)."""

    __tablename__ = "goal_push"
    goal_id: int = Field(foreign_key="goal.id", ondelete="CASCADE", primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE",
                               primary_key=True)
    remote_id: str | None = Field(default=None, max_length=100)
    pushed_hash: str | None = Field(default=None, max_length=64)
    pushed_at: datetime | None = _ts()
    status: PushStatus = Field(sa_type=EnumText(PushStatus, 10))
    error: str | None = None
    # The CRM's own figure for the goal (connectors.base.GoalResults), read after a push:
    # in crm_currency for bookings, a count for deals_won; crm_error when it could not be read.
    crm_actual: Decimal | None = Field(default=None, sa_type=Money)
    crm_currency: str | None = Field(default=None, max_length=3)
    crm_read_at: datetime | None = _ts()
    crm_error: str | None = None



# --- webhooks and CRM notification channels (M5); migration 0004 ---


class WebhookEvent(SQLModel, table=True):
    """A vendor callback as received: stored before the answer, processed by a job."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        UniqueConstraint("connection_id", "dedupe_key"),
        Index("ix_webhook_event_pending", "connection_id", "status"),
    )
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    provider: str = Field(max_length=40)
    dedupe_key: str = Field(max_length=128)
    payload: dict[str, Any] | None = _json()
    status: WebhookStatus = Field(default=WebhookStatus.RECEIVED,
                                  sa_type=EnumText(WebhookStatus, 10))
    attempts: int = 0
    error: str | None = None
    received_at: datetime = _now()
    claimed_at: datetime | None = _ts()  # a job is working on it (a lease)
    processed_at: datetime | None = _ts()


class NotificationChannel(SQLModel, table=True):
    """A CRM-side subscription (Zoho actions/watch) that calls our webhook route."""

    __tablename__ = "notification_channel"
    __table_args__ = (UniqueConstraint("connection_id", "channel_id"),)
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE", index=True)
    channel_id: str = Field(max_length=40)
    token_encrypted: str  # SecretBox-sealed {"token": ...}
    events: list[str] = Field(default_factory=list, sa_type=JSONType)
    notify_url: str
    expires_at: datetime = Field(sa_type=UTCDateTime)
    created_at: datetime = _now()
    renewed_at: datetime = _now()


class WebhookRejection(SQLModel, table=True):
    """Callbacks of a connection refused in one UTC hour (not verified, replays), counted
    for the Operations page's webhook health; migration 0008. Refused callbacks are not
    stored one by one: a storm of forged ones costs one row an hour."""

    __tablename__ = "webhook_rejection"
    __table_args__ = (UniqueConstraint("connection_id", "hour"),)
    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    hour: datetime = Field(sa_type=UTCDateTime)
    count: int = 0
    last_status: int = 0
    last_reason: str | None = None
    last_at: datetime = _now()


# --- metric rollups (M2); migration 0005 (weekly ones: 0017; by connection first: 0020) ---


class DealRollup(SQLModel):
    """Live deals of one connection, owner (person), status and (open deals) probability,
    summed (core.metrics.rollups): per month of close_date (deal_month), per week (deal_week,
    Monday to Sunday) and per day (deal_day)."""

    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    owner_person_id: int | None = None
    owner_name: str | None = None
    status: DealStatus = Field(sa_type=EnumText(DealStatus, 10))
    probability: Decimal | None = Field(default=None, sa_type=Percent)
    deals: int = 0
    amount: Decimal | None = Field(default=None, sa_type=Money)
    cycle_days: int = 0
    cycle_deals: int = 0


class DealMonth(DealRollup, table=True):
    __tablename__ = "deal_month"
    __table_args__ = (Index("ix_deal_month", "month", "connection_id"),
                      Index("ix_deal_month_connection", "connection_id", "month"))
    month: int  # year x 12 + month - 1


class DealWeek(DealRollup, table=True):
    __tablename__ = "deal_week"
    __table_args__ = (Index("ix_deal_week", "week", "connection_id"),
                      Index("ix_deal_week_connection", "connection_id", "week"))
    week: int  # whole weeks since 0001-01-01, a Monday (core.metrics.rollups.week_of)


class DealDay(DealRollup, table=True):
    __tablename__ = "deal_day"
    __table_args__ = (Index("ix_deal_day", "day", "connection_id"),
                      Index("ix_deal_day_connection", "connection_id", "day"))
    day: date


class AccountRollup(SQLModel):
    """Live accounts of one connection and owner (person), counted (core.metrics.rollups): per
    month of created_date (account_month), per week (account_week) and per day (account_day)."""

    id: int | None = Field(default=None, primary_key=True)
    connection_id: int = Field(foreign_key="connection.id", ondelete="CASCADE")
    owner_person_id: int | None = None
    owner_name: str | None = None
    accounts: int = 0


class AccountMonth(AccountRollup, table=True):
    __tablename__ = "account_month"
    __table_args__ = (Index("ix_account_month", "month", "connection_id"),
                      Index("ix_account_month_connection", "connection_id", "month"))
    month: int


class AccountWeek(AccountRollup, table=True):
    __tablename__ = "account_week"
    __table_args__ = (Index("ix_account_week", "week", "connection_id"),
                      Index("ix_account_week_connection", "connection_id", "week"))
    week: int


class AccountDay(AccountRollup, table=True):
    __tablename__ = "account_day"
    __table_args__ = (Index("ix_account_day", "day", "connection_id"),
                      Index("ix_account_day_connection", "connection_id", "day"))
    day: date


class RollupMonth(SQLModel, table=True):
    """A month whose rollups were built (core.metrics.rollups)."""

    __tablename__ = "rollup_month"
    month: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    built_at: datetime = _now()


class RollupDirty(SQLModel, table=True):
    """A month a write touched since its rollups were built, the day in it (null: the whole
    month; migration 0021) and the connection whose rows it touched (null: every
    connection's); append-only; core.metrics.rollups."""

    __tablename__ = "rollup_dirty"
    id: int | None = Field(default=None, primary_key=True)
    month: int = Field(index=True)
    connection_id: int | None = None
    day: date | None = None


# --- incentives (M8): plans, versions, locked periods, adjustments; migration 0009 ---


class IncentivePlan(SQLModel, table=True):
    """A commission plan (core.incentives; docs/incentives.md); its text lives in versions."""

    __tablename__ = "incentive_plan"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    name: str = ""
    version: int = 1  # the current version
    created_at: datetime = _now()
    updated_at: datetime = _now()


class PlanVersion(SQLModel, table=True):
    """One version of a plan: the validated document (Plan.document) and the text as sent."""

    __tablename__ = "incentive_plan_version"
    __table_args__ = (UniqueConstraint("plan_id", "version"),)
    id: int | None = Field(default=None, primary_key=True)
    plan_id: int = Field(foreign_key="incentive_plan.id", ondelete="CASCADE")
    version: int
    document: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    source: str = ""
    created_at: datetime = _now()


class PeriodLock(SQLModel, table=True):
    """A closed commission period (core.incentives.periods): its statements are snapshots."""

    __tablename__ = "period_lock"
    period: str = Field(primary_key=True, max_length=10)  # 2027-Q1, 2027-01, 2027
    kind: str = Field(max_length=10)  # month | quarter | year
    period_start: date
    period_end: date
    locked_at: datetime = _now()


class LockedStatement(SQLModel, table=True):
    """A statement as it was when its period was locked; never changes afterwards.
    person_id is the person then (no foreign key: the snapshot outlives a merge)."""

    __tablename__ = "locked_statement"
    __table_args__ = (UniqueConstraint("period", "plan_key", "person_id"),)
    id: int | None = Field(default=None, primary_key=True)
    period: str = Field(max_length=10, index=True)
    plan_key: str = Field(max_length=64)
    plan_version: int
    person_id: int
    statement: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    # plan-currency units per 1 unit of each home currency when locked: later FX changes
    # never read as differences in the period's deals
    fx: dict[str, Any] = Field(default_factory=dict, sa_type=JSONType)
    locked_at: datetime = _now()


class CommissionAdjustment(SQLModel, table=True):
    """A difference found in a locked statement (a deal edited, lost, deleted or synced
    late), paid or clawed back in `target_period`, the first open period after it.
    difference is the full change; amount what is paid (0 for a decrease outside the
    plan's clawback window)."""

    __tablename__ = "commission_adjustment"
    __table_args__ = (Index("ix_commission_adjustment_target", "target_period", "plan_key"),)
    id: int | None = Field(default=None, primary_key=True)
    locked_statement_id: int = Field(foreign_key="locked_statement.id", ondelete="CASCADE",
                                     index=True)
    plan_key: str = Field(max_length=64)
    person_id: int
    period: str = Field(max_length=10)  # the locked period corrected
    target_period: str = Field(max_length=10)
    deal_id: int | None = None
    deal_remote_id: str | None = Field(default=None, max_length=100)
    reason: str
    difference: Decimal = Field(sa_type=Money)
    amount: Decimal = Field(sa_type=Money)
    observed_on: date
    created_at: datetime = _now()


# --- sales hygiene (M9); migration 0012 ---


class HygieneRule(SQLModel, table=True):
    """An admin's setting of one hygiene rule (core.hygiene; docs/evaluation.md): switched
    off, or another threshold than the default. A rule without a row has its defaults."""

    __tablename__ = "hygiene_rule"
    key: str = Field(primary_key=True, max_length=40)
    enabled: bool = True
    threshold: int | None = None  # None: the rule's default
    updated_at: datetime = _now()


class DigestChannel(SQLModel, table=True):
    """Where a scheduled digest goes (core/digests/, docs/digests.md): a chat robot's
    webhook on one platform, its URL and signing secret sealed with SecretBox
    ({"url": ..., "secret": ...}, never returned by the API); weekly on `day` 0-6
    (Monday 0) or monthly on `day` 1-28, at `hour` in CRMSYNC_TIMEZONE; everyone or one
    team; migration 0014."""

    __tablename__ = "digest_channel"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    platform: str = Field(max_length=20)
    language: str = Field(default="en", max_length=5)
    cadence: str = Field(default="weekly", max_length=10)  # weekly | monthly
    day: int = 0
    hour: int = 9
    team: str | None = Field(default=None, max_length=200)  # None: everyone
    sections: list[str] = Field(default_factory=list, sa_type=JSONType)
    webhook_encrypted: str = ""
    enabled: bool = True
    created_at: datetime = _now()
    updated_at: datetime = _now()
    last_sent_at: datetime | None = _ts()
    last_error: str | None = None


class DigestDelivery(SQLModel, table=True):
    """One scheduled digest of a channel: one row per channel and period (the local date
    of the scheduled moment), so two workers or a restart never send a period twice.
    status: pending (claimed_at is a worker's lease; next_attempt_at after a transient
    failure), sent or failed."""

    __tablename__ = "digest_delivery"
    __table_args__ = (UniqueConstraint("channel_id", "period"),)
    id: int | None = Field(default=None, primary_key=True)
    channel_id: int = Field(foreign_key="digest_channel.id", ondelete="CASCADE", index=True)
    period: str = Field(max_length=20)
    status: str = Field(default="pending", max_length=10)
    attempts: int = 0
    next_attempt_at: datetime = _now()
    claimed_at: datetime | None = _ts()
    sent_at: datetime | None = _ts()
    error: str | None = None
    created_at: datetime = _now()
