"""Normalized records and the source protocol the sync engine drives.

Connectors map vendor JSON to these records; core/sync.py writes them to the store.
"""

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from core.types import ActivityType, DealStatus, GoalMetric, PushStatus, Stream

STREAMS = tuple(Stream)
OPTIONAL_STREAMS = (Stream.ACTIVITIES,)
"""Streams a connector reads only when it declares their capability (connectors.registry)."""
REQUIRED_STREAMS = tuple(s for s in Stream if s not in OPTIONAL_STREAMS)
# Webhooks: a connector's resolve_webhook_events answers ("unresolved", Page(unresolved=[(event
# payload, error), ...])) for events whose record it could not read; core.webhooks leaves
# those events pending with the error instead of marking them processed.
UNRESOLVED = "unresolved"


@dataclass(slots=True)
class UserRecord:
    remote_id: str
    name: str
    email: str | None
    active: bool = True
    role: str | None = None
    team: str | None = None
    remote_modified_at: datetime | None = None
    raw: dict[str, Any] | None = None
    mobile: str | None = None


@dataclass(slots=True)
class StageRecord:
    remote_id: str
    name: str
    category: DealStatus  # from vendor metadata
    pipeline: str | None = None
    sort_order: int = 0
    probability: Decimal | None = None
    remote_modified_at: datetime | None = None
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class AccountRecord:
    remote_id: str
    name: str
    industry: str | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None
    deleted_at: datetime | None = None  # a vendor record that arrives already voided
    raw: dict[str, Any] | None = None


@dataclass(slots=True)
class DealRecord:
    remote_id: str
    name: str
    amount: Decimal | None = None
    currency: str | None = None
    exchange_rate: Decimal | None = None
    amount_home: Decimal | None = None
    stage: str | None = None
    stage_remote_id: str | None = None
    status: DealStatus = DealStatus.OPEN
    probability: Decimal | None = None
    close_date: date | None = None
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    account_remote_id: str | None = None
    account_name: str | None = None
    pipeline: str | None = None
    deleted_at: datetime | None = None
    raw: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StageChangeRecord:
    """A move of a deal into `to_stage` (stage names, as on deals) at `changed_at`, as the
    CRM's own stage history keeps it (connectors.base.StageHistory); `from_stage` is None
    for the stage the deal was created in."""

    deal_remote_id: str
    from_stage: str | None
    to_stage: str | None
    changed_at: datetime


@dataclass(slots=True)
class ActivityRecord:
    """A call, meeting, task, email or note of a rep (the optional `activities` stream).

    `occurred_at` is when it happened or is due (a call's start, a meeting's start, a task's
    due time; a date-only due date at midnight UTC); `done` whether it was held / completed
    (None when the CRM does not say); `kind` the vendor's own type (a Zoho Call_Type, a
    Pipedrive activity type key_string...). The deal and account it relates to by their remote
    ids (None when it relates to neither)."""

    remote_id: str
    type: ActivityType
    occurred_at: datetime | None = None
    subject: str | None = None
    kind: str | None = None
    done: bool | None = None
    completed_at: datetime | None = None
    duration_seconds: int | None = None
    owner_remote_id: str | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    deal_remote_id: str | None = None
    account_remote_id: str | None = None
    remote_created_at: datetime | None = None
    remote_modified_at: datetime | None = None
    deleted_at: datetime | None = None
    raw: dict[str, Any] | None = None


DeletedEntity = Literal["accounts", "deals", "activities"]


@dataclass(slots=True)
class Deletion:
    """A record the vendor reports as deleted: becomes a tombstone."""

    entity: DeletedEntity
    remote_id: str
    deleted_at: datetime


Record = UserRecord | StageRecord | AccountRecord | DealRecord | ActivityRecord
Unresolved = tuple[Mapping[str, Any], str]
"""A webhook event whose record could not be read, and why (see UNRESOLVED)."""


@dataclass(slots=True)
class Page:
    """One vendor page, mapped: records of one stream. `cursor` is the stream state to
    commit with it."""

    records: Sequence[Record] = field(default_factory=list)
    deletions: Sequence[Deletion] = field(default_factory=list)
    cursor: dict[str, Any] | None = None
    unresolved: Sequence[Unresolved] = field(default_factory=list)


@dataclass(slots=True)
class SourceInfo:
    """What a source says about the account it reads (checked before a sync)."""

    home_currency: str | None
    organization: str | None = None
    # Problems that do not stop a sync but mean it may miss data (e.g. the acting user
    # cannot see every record); the sync engine shows them on the connection.
    warnings: list[str] = field(default_factory=list)


class Source(Protocol):
    """What the sync engine needs from a connector (connectors/base.py extends it)."""

    @property
    def api_calls(self) -> int: ...

    async def check(self) -> SourceInfo: ...

    def read(self, stream: Stream, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Pages of `stream` from `cursor` (None: from the beginning), oldest change first."""
        ...


# --- goal push (M3): what core.goals hands a connector's push_goals, and what comes back ---
GOAL_METRICS = tuple(GoalMetric)


@dataclass(slots=True)
class GoalOut:
    """A live goal as one CRM connection should hold it (connectors.base.GoalPusher).

    `key` is stable for the goal's life (edits keep it), so a CRM record found by it is
    updated, never duplicated. `owner_remote_id` is the owner's user id in that CRM
    (None for a company-wide goal). `target` is an amount in `currency` for bookings,
    a whole number of deals for deals_won (currency None).
    """

    goal_id: int
    key: str
    owner_email: str | None
    owner_remote_id: str | None
    owner_name: str | None
    metric: GoalMetric
    period_start: date
    period_end: date
    target: Decimal
    currency: str | None
    previous_remote_id: str | None = None
    """The CRM record this goal was last pushed to on this connection (None: never). A CRM
    that finds a goal's record by a natural key (owner, period) rather than by `key` uses
    it to remove the old record when the goal's owner or period moved; not part of the
    goal's content (core.goals.push.content_hash)."""


@dataclass(slots=True)
class GoalDeletion:
    """A deleted goal whose copy in the CRM (`remote_id`) must be deleted."""

    goal_id: int
    key: str
    remote_id: str


@dataclass(slots=True)
class GoalResult:
    """A CRM's own figure for a goal it holds (connectors.base.GoalResults): `actual` in
    the CRM's terms (the goal's currency for bookings, a count for deals_won), or None
    with `error` when it could not be read."""

    goal_id: int
    actual: Decimal | None
    error: str | None = None


@dataclass(slots=True)
class PushResult:
    """What happened to one goal in one CRM: a connector answers inserted, updated, deleted
    or error; core.goals.push also decides unchanged and skipped."""

    goal_id: int
    status: PushStatus
    remote_id: str | None = None
    error: str | None = None
