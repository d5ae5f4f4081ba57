"""Zoho records -> normalized records. Pure functions.

docs/vendors/zoho.md §2: ids are strings, dates "YYYY-MM-DD", datetimes ISO-8601 with the
org's offset (tolerating a trailing Z), lookups {"name","id"} and the owner
lookup {"name","id","email"}, empty values null. §8: Amount is in the record's
currency and amount_home = Amount / Exchange_Rate; single-currency orgs have no
Currency or Exchange_Rate (rate 1). §4: won/lost come from forecast_type.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.values import decimal as decimal  # also mapping.decimal for client.py
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

CATEGORY = {"Open": DealStatus.OPEN, "Closed Won": DealStatus.WON, "Closed Lost": DealStatus.LOST}


def instant(value: Any) -> datetime | None:
    """An ISO-8601 datetime as it is sent, aware (naive means UTC), in its own offset:
    instants compare without converting them (the connector's newest Modified_Time)."""
    if not value:
        return None
    at = datetime.fromisoformat(value if type(value) is str else str(value))  # "Z" too
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def timestamp(value: Any) -> datetime | None:
    at = instant(value)
    return at if at is None or at.tzinfo is UTC else at.astimezone(UTC)


def day(value: Any) -> date | None:
    return date.fromisoformat(str(value)[:10]) if value else None


def _lookup(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _email(value: Any) -> str | None:
    return str(value).strip().lower() if value else None


def user(raw: dict[str, Any]) -> UserRecord:
    name = raw.get("full_name") or " ".join(
        p for p in (raw.get("first_name"), raw.get("last_name")) if p
    )
    role = _lookup(raw.get("role")).get("name")
    return UserRecord(
        remote_id=str(raw["id"]),
        name=str(name or raw.get("email") or raw["id"]),
        email=_email(raw.get("email")),
        active=raw.get("status") == "active",
        role=role,
        team=role,  # Zoho roles are the sales hierarchy; the role is the rep's team
        remote_modified_at=timestamp(raw.get("Modified_Time")),
        raw=raw,
        mobile=raw.get("mobile") or raw.get("phone") or None,  # core.people normalizes it
    )


def stage(
    pipeline: dict[str, Any], entry: dict[str, Any], probabilities: dict[str, Decimal | None]
) -> StageRecord:
    name = str(entry.get("display_value") or entry.get("actual_value"))
    forecast_type = entry.get("forecast_type") or "Open"
    return StageRecord(
        remote_id=f"{pipeline.get('id')}:{entry.get('id')}",
        name=name,
        category=CATEGORY.get(str(forecast_type), DealStatus.OPEN),
        pipeline=pipeline.get("display_value"),
        sort_order=int(entry.get("sequence_number") or 0),
        probability=decimal(entry.get("probability", probabilities.get(name))),
        raw={"pipeline_id": pipeline.get("id"), **entry},
    )


def stage_lookup(stages: list[StageRecord]) -> dict[tuple[str | None, str], StageRecord]:
    """Stages by (pipeline, value) and (None, value), for both of a pipeline map's values.

    A stage's `display_value` (what users see, our stage name) and `actual_value` may differ
    (zoho/crm-oas v8.0/pipeline/operations/getPipelines/examples/response-200-
    pipelinegetresponse: display "Identify Decision Makers", actual "Id. Decision Makers");
    a record's Stage may carry either, so a deal matches on both."""
    found: dict[tuple[str | None, str], StageRecord] = {}
    for s in stages:
        for value in dict.fromkeys((s.name, str((s.raw or {}).get("actual_value") or s.name))):
            found[(s.pipeline, value)] = s
            found.setdefault((None, value), s)
    return found


def stage_key(raw: dict[str, Any]) -> tuple[str | None, str]:
    """A deal's (pipeline name, stage value), as stage_lookup keys stages."""
    pipeline = raw.get("Pipeline")
    if isinstance(pipeline, dict):
        pipeline = pipeline.get("name")
    return pipeline, str(raw.get("Stage") or "")


def known_stage(stages: dict[tuple[str | None, str], StageRecord],
                key: tuple[str | None, str]) -> bool:
    """Whether deal() finds the stage of `key` in `stages`."""
    return key in stages or (None, key[1]) in stages


def account(raw: dict[str, Any]) -> AccountRecord:
    owner = _lookup(raw.get("Owner"))
    return AccountRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("Account_Name") or ""),
        industry=raw.get("Industry"),
        owner_remote_id=owner.get("id"),
        owner_email=_email(owner.get("email")),
        owner_name=owner.get("name"),
        remote_created_at=timestamp(raw.get("Created_Time")),
        remote_modified_at=timestamp(raw.get("Modified_Time")),
        raw=raw,
    )


def deal(
    raw: dict[str, Any],
    stages: dict[tuple[str | None, str], StageRecord],
    home_currency: str | None,
) -> DealRecord:
    owner = _lookup(raw.get("Owner"))
    account_ref = _lookup(raw.get("Account_Name"))
    amount = decimal(raw.get("Amount"))
    rate = decimal(raw.get("Exchange_Rate")) or Decimal(1)
    pipeline, stage_name = stage_key(raw)
    meta = stages.get((pipeline, stage_name)) or stages.get((None, stage_name))
    probability = decimal(raw.get("Probability"))
    if probability is None and meta is not None:
        probability = meta.probability
    return DealRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("Deal_Name") or ""),
        amount=amount,
        currency=raw.get("Currency") or home_currency,
        exchange_rate=rate,
        amount_home=None if amount is None else amount / rate,
        stage=meta.name if meta else stage_name or None,
        stage_remote_id=meta.remote_id if meta else None,
        status=meta.category if meta else DealStatus.OPEN,
        probability=probability,
        close_date=day(raw.get("Closing_Date")),
        remote_created_at=timestamp(raw.get("Created_Time")),
        remote_modified_at=timestamp(raw.get("Modified_Time")),
        owner_remote_id=owner.get("id"),
        owner_email=_email(owner.get("email")),
        owner_name=owner.get("name"),
        account_remote_id=account_ref.get("id"),
        account_name=account_ref.get("name"),
        pipeline=pipeline,
        raw=raw,
    )


ACTIVITY_TYPES = {"Calls": ActivityType.CALL, "Events": ActivityType.MEETING,
                  "Tasks": ActivityType.TASK}
CALL_NOT_HELD = {"Scheduled", "Overdue", "Cancelled"}  # §14 Outgoing_Call_Status


def activity(module: str, raw: dict[str, Any]) -> ActivityRecord:
    """§14: a record of Calls, Events or Tasks. What_Id links a deal or an account, as
    `$se_module` says. A call was held unless its Outgoing_Call_Status is Scheduled, Overdue
    or Cancelled or it was Missed; Zoho does not say whether a meeting was held (done None);
    a task is done when Completed, dated by its Due_Date (at 00:00 UTC), else by when it
    was closed, else created."""
    owner, related = _lookup(raw.get("Owner")), _lookup(raw.get("What_Id"))
    module_of = raw.get("$se_module")
    created = timestamp(raw.get("Created_Time"))
    record = ActivityRecord(
        remote_id=str(raw["id"]), type=ACTIVITY_TYPES[module],
        owner_remote_id=owner.get("id"), owner_email=_email(owner.get("email")),
        owner_name=owner.get("name"),
        deal_remote_id=related.get("id") if module_of == "Deals" else None,
        account_remote_id=related.get("id") if module_of == "Accounts" else None,
        remote_created_at=created, remote_modified_at=timestamp(raw.get("Modified_Time")),
        raw=raw)
    if module == "Calls":
        record.subject, record.kind = raw.get("Subject"), raw.get("Call_Type")
        record.occurred_at = timestamp(raw.get("Call_Start_Time"))
        record.done = not (record.kind == "Missed"
                           or raw.get("Outgoing_Call_Status") in CALL_NOT_HELD)
        seconds = raw.get("Call_Duration_in_seconds")
        record.duration_seconds = None if seconds is None else int(seconds)
    elif module == "Events":
        record.subject = raw.get("Event_Title")
        record.occurred_at = timestamp(raw.get("Start_DateTime"))
        end = timestamp(raw.get("End_DateTime"))
        if record.occurred_at and end:
            record.duration_seconds = max(0, int((end - record.occurred_at).total_seconds()))
    else:
        record.subject = raw.get("Subject")
        record.done = raw.get("Status") == "Completed"
        record.completed_at = timestamp(raw.get("Closed_Time"))
        due = day(raw.get("Due_Date"))
        record.occurred_at = (datetime(due.year, due.month, due.day, tzinfo=UTC) if due
                              else record.completed_at or created)
    return record


def deletion(entity: DeletedEntity, raw: dict[str, Any]) -> Deletion:
    deleted_at = timestamp(raw.get("deleted_time"))
    if deleted_at is None:
        raise ValueError("deleted record without deleted_time")
    return Deletion(entity=entity, remote_id=str(raw["id"]), deleted_at=deleted_at)
