"""Types shared by the store and the code: the closed sets of values the store's text
columns hold, and aware UTC times. The column types that store them are in core.columns:
connectors and their sandboxes import this module, and start without SQLAlchemy.

Convention: a closed set of values is a StrEnum when its values are stored, iterated or
shown in the OpenAPI (its members are the strings themselves: they compare equal to
them and serialize as them), a Literal for a small internal union.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class Stream(StrEnum):
    """What a source reads (core.records.Source.read), in this order."""

    USERS = "users"
    STAGES = "stages"
    ACCOUNTS = "accounts"
    DEALS = "deals"
    ACTIVITIES = "activities"  # optional: only connectors with the activities capability
    DELETIONS = "deletions"


class ActivityType(StrEnum):
    """What kind of sales activity an ActivityRecord is (docs/evaluation.md, Activities):
    the vendor's own type is kept beside it (ActivityRecord.kind)."""

    CALL = "call"
    MEETING = "meeting"  # meetings, events, visits in person
    TASK = "task"
    EMAIL = "email"
    NOTE = "note"  # follow-up records and notes
    OTHER = "other"


class DealStatus(StrEnum):
    """A deal's status, and a stage's category."""

    OPEN = "open"
    WON = "won"
    LOST = "lost"


class ConnectionStatus(StrEnum):
    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"  # the credentials were refused: an admin must give new ones
    ERROR = "error"  # the last sync failed otherwise


class SyncMode(StrEnum):
    FULL = "full"
    INCREMENTAL = "incremental"
    WEBHOOK = "webhook"  # a processed batch of webhook events (core.webhooks.record_run)


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WebhookStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    FAILED = "failed"


class GoalMetric(StrEnum):
    BOOKINGS = "bookings"
    DEALS_WON = "deals_won"


class PushStatus(StrEnum):
    """What the last push of a goal did on one connection (core.goals.push)."""

    INSERTED = "inserted"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"
    ERROR = "error"
    DELETED = "deleted"


class PersonMatch(StrEnum):
    """How a CRM user was matched to its person (core.people); hand: mapped by an admin."""

    EMAIL = "email"
    MOBILE = "mobile"
    NEW = "new"
    HAND = "hand"


def as_utc(value: datetime) -> datetime:
    """The same instant as an aware UTC datetime (naive means UTC)."""
    if value.tzinfo is UTC:
        return value
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def from_epoch_ms(value: Any) -> datetime:
    """The instant of epoch milliseconds a vendor sent (an int); now when it sent none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, UTC)
    return utcnow()
