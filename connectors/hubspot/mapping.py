"""HubSpot records -> normalized records. Pure functions (docs/vendors/hubspot.md).

§2: every property value is a string or null, ids numeric strings, datetimes ISO-8601
UTC; `closedate` is a date-only property sent as midnight UTC, kept as that calendar
day. §4: the owner `id` is what deals reference. §5: won/lost from stage metadata
(strings). §6: amount_home is `amount_in_home_currency` where the deal has it, else
`amount` x the currency's conversionRate.
"""

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.hubspot.wire import MERGED_IDS, TIMESTAMP, parse_time
from core.records import (
    AccountRecord,
    ActivityRecord,
    DealRecord,
    DeletedEntity,
    Deletion,
    StageRecord,
    UserRecord,
)
from core.types import ActivityType, DealStatus

RATE_PLACES = Decimal("1e-10")


@dataclass
class Money:
    """The account's company currency and current conversion rates (§6)."""

    home: str
    rates: dict[str, Decimal] = field(default_factory=dict)  # home units per 1 unit


def decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("boolean where a number was expected")
    return Decimal(str(value))


def timestamp(value: Any) -> datetime | None:
    return parse_time(value)


def day(value: Any) -> date | None:
    """§2: a date-only property is midnight UTC of the day picked: that calendar day."""
    if value is None or value == "":
        return None
    text = str(value)
    if text.isdigit():  # epoch milliseconds (older payloads)
        return datetime.fromtimestamp(int(text) / 1000, UTC).date()
    return date.fromisoformat(text[:10])


def _email(value: Any) -> str | None:
    return str(value).strip().lower() if value else None


def _props(raw: dict[str, Any]) -> dict[str, Any]:
    props = raw.get("properties")
    return props if isinstance(props, dict) else {}


def user(raw: dict[str, Any]) -> UserRecord:
    """§4: the owner id (not userId); the primary team is the rep's team."""
    teams = [t for t in raw.get("teams") or [] if isinstance(t, dict)]
    team = next((t.get("name") for t in teams if t.get("primary")), None) or \
        (teams[0].get("name") if teams else None)
    name = " ".join(p for p in (raw.get("firstName"), raw.get("lastName")) if p)
    return UserRecord(
        remote_id=str(raw["id"]),
        name=name or str(raw.get("email") or raw["id"]),
        email=_email(raw.get("email")),
        active=not raw.get("archived", False),
        role=None,
        team=team,
        remote_modified_at=timestamp(raw.get("updatedAt")),
        raw=raw,
    )


def stage(pipeline: dict[str, Any], raw: dict[str, Any]) -> StageRecord:
    """§5: isClosed and probability are strings; won = closed at 1.0, lost = closed below."""
    found = raw.get("metadata")
    meta: dict[str, Any] = found if isinstance(found, dict) else {}
    closed = str(meta.get("isClosed", "false")).lower() == "true"
    probability = decimal(meta.get("probability"))
    if not closed:
        category = DealStatus.OPEN
    else:
        category = DealStatus.WON if probability is not None and probability >= 1 \
            else DealStatus.LOST
    return StageRecord(
        remote_id=f"{pipeline['id']}:{raw['id']}",
        name=str(raw.get("label") or raw["id"]),
        category=category,
        pipeline=pipeline.get("label"),
        sort_order=int(raw.get("displayOrder") or 0),
        probability=None if probability is None else probability * 100,
        remote_modified_at=timestamp(raw.get("updatedAt")),
        raw={"pipeline_id": pipeline["id"], **raw},
    )


def stage_lookup(stages: list[StageRecord]) -> dict[tuple[str | None, str], StageRecord]:
    """Stages by (pipeline id, stage id) and (None, stage id)."""
    found: dict[tuple[str | None, str], StageRecord] = {}
    for s in stages:
        raw = s.raw or {}
        found[(str(raw.get("pipeline_id")), str(raw.get("id")))] = s
        found.setdefault((None, str(raw.get("id"))), s)
    return found


Owners = Mapping[str, UserRecord]


def account(raw: dict[str, Any], owners: Owners) -> AccountRecord:
    props = _props(raw)
    owner = owners.get(str(props.get("hubspot_owner_id") or ""))
    return AccountRecord(
        remote_id=str(raw["id"]),
        name=str(props.get("name") or ""),
        industry=props.get("industry") or None,
        owner_remote_id=props.get("hubspot_owner_id") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        remote_created_at=timestamp(props.get("createdate") or raw.get("createdAt")),
        remote_modified_at=timestamp(props.get("hs_lastmodifieddate") or raw.get("updatedAt")),
        raw=raw,
    )


def deal(raw: dict[str, Any], stages: dict[tuple[str | None, str], StageRecord],
         money: Money, company_id: str | None, owners: Owners) -> DealRecord:
    props = _props(raw)
    owner = owners.get(str(props.get("hubspot_owner_id") or ""))
    amount = decimal(props.get("amount"))
    currency = props.get("deal_currency_code") or money.home
    home_amount = decimal(props.get("amount_in_home_currency"))
    rate = Decimal(1) if currency == money.home else money.rates.get(currency)
    if home_amount is None and amount is not None and rate is not None:
        home_amount = amount * rate  # §6: converted with the account's current rate
    stage_id = str(props.get("dealstage") or "")
    meta = stages.get((str(props.get("pipeline")), stage_id)) or stages.get((None, stage_id))
    return DealRecord(
        remote_id=str(raw["id"]),
        name=str(props.get("dealname") or ""),
        amount=amount,
        currency=currency,
        # the store keeps units of the deal's currency per 1 home unit (Zoho's convention)
        exchange_rate=None if not rate else (Decimal(1) / rate).quantize(RATE_PLACES),
        amount_home=home_amount,
        stage=meta.name if meta else stage_id or None,
        stage_remote_id=meta.remote_id if meta else None,
        status=meta.category if meta else DealStatus.OPEN,
        probability=meta.probability if meta else None,
        close_date=day(props.get("closedate")),
        remote_created_at=timestamp(props.get("createdate") or raw.get("createdAt")),
        remote_modified_at=timestamp(props.get("hs_lastmodifieddate") or raw.get("updatedAt")),
        owner_remote_id=props.get("hubspot_owner_id") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        account_remote_id=company_id,
        pipeline=meta.pipeline if meta else props.get("pipeline"),
        raw=raw,
    )


def archived(entity: DeletedEntity, raw: dict[str, Any]) -> Deletion:
    """§10: an archived record; archivedAt is when it was deleted."""
    at = timestamp(raw.get("archivedAt") or raw.get("updatedAt"))
    if at is None:
        raise ValueError("archived record without archivedAt")
    return Deletion(entity=entity, remote_id=str(raw["id"]), deleted_at=at)


def merged_away(entity: DeletedEntity, raw: dict[str, Any]) -> list[Deletion]:
    """§10: the ids merged into this record are gone, as of its last modification."""
    props = _props(raw)
    ids = [i.strip() for i in str(props.get(MERGED_IDS) or "").split(";") if i.strip()]
    at = timestamp(props.get("hs_lastmodifieddate") or raw.get("updatedAt"))
    if not ids or at is None:
        return []
    return [Deletion(entity=entity, remote_id=i, deleted_at=at) for i in ids if i != raw["id"]]


ACTIVITY_TYPES = {"calls": ActivityType.CALL, "meetings": ActivityType.MEETING,
                  "tasks": ActivityType.TASK, "notes": ActivityType.NOTE}  # §13
SUBJECT_MAX = 255  # a note's subject: the start of its body
_TAGS = re.compile(r"<[^>]+>")


def first_associated(raw: dict[str, Any], to_type: str) -> str | None:
    """§2: the first association to `to_type` of a list answer."""
    links = ((raw.get("associations") or {}).get(to_type) or {}).get("results") or []
    return str(links[0]["id"]) if links and isinstance(links[0], dict) else None


def _note_subject(body: Any) -> str | None:
    """A note has no title (§13): its body's text (HTML tags dropped), cut short."""
    text = " ".join(html.unescape(_TAGS.sub(" ", str(body or ""))).split())
    return text[:SUBJECT_MAX] or None


def _done(value: Any, done: str) -> bool | None:
    return None if value in (None, "") else str(value).upper() == done


def activity(object_type: str, raw: dict[str, Any], owners: Owners, deal_id: str | None,
             company_id: str | None) -> ActivityRecord:
    """§13: a call, meeting, task or note. When: hs_timestamp (a meeting's start, a task's
    due time). Held or completed: a call's hs_call_status COMPLETED, a meeting's
    hs_meeting_outcome COMPLETED, a task's hs_task_status COMPLETED (None when the property
    is empty; a note says nothing). A call's hs_call_duration is milliseconds, a meeting
    lasts from its start to its end time. `kind`: a call's direction, a task's type."""
    props = _props(raw)
    owner = owners.get(str(props.get("hubspot_owner_id") or ""))
    occurred = timestamp(props.get(TIMESTAMP))
    subject: Any = None
    kind: Any = None
    done: bool | None = None
    completed_at = None
    duration: int | None = None
    if object_type == "calls":
        subject, kind = props.get("hs_call_title"), props.get("hs_call_direction")
        done = _done(props.get("hs_call_status"), "COMPLETED")
        millis = decimal(props.get("hs_call_duration"))
        duration = None if millis is None else int(millis) // 1000
    elif object_type == "meetings":
        subject = props.get("hs_meeting_title")
        done = _done(props.get("hs_meeting_outcome"), "COMPLETED")
        start = timestamp(props.get("hs_meeting_start_time")) or occurred
        end = timestamp(props.get("hs_meeting_end_time"))
        occurred = occurred or start
        if start is not None and end is not None and end >= start:
            duration = int((end - start).total_seconds())
    elif object_type == "tasks":
        subject, kind = props.get("hs_task_subject"), props.get("hs_task_type")
        done = _done(props.get("hs_task_status"), "COMPLETED")
        completed_at = timestamp(props.get("hs_task_completion_date")) if done else None
    else:
        subject = _note_subject(props.get("hs_note_body"))
    return ActivityRecord(
        remote_id=str(raw["id"]),
        type=ACTIVITY_TYPES.get(object_type, ActivityType.OTHER),
        occurred_at=occurred,
        subject=str(subject) if subject else None,
        kind=str(kind) if kind else None,
        done=done,
        completed_at=completed_at,
        duration_seconds=duration,
        owner_remote_id=props.get("hubspot_owner_id") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        deal_remote_id=deal_id,
        account_remote_id=company_id,
        remote_created_at=timestamp(props.get("hs_createdate") or raw.get("createdAt")),
        remote_modified_at=timestamp(props.get("hs_lastmodifieddate") or raw.get("updatedAt")),
        raw=raw,
    )
