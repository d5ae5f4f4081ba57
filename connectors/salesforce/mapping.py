"""Salesforce records -> normalized records. Pure functions (docs/vendors/salesforce.md,
cited as §n).

§3: won and lost come from IsClosed/IsWon (the stage's flags, copied on every
opportunity), never from a stage's name. §4: times arrive as `...000+0000`. §5: a
multi-currency org's Amount is in the record's CurrencyIsoCode; `Rates` converts it to the
corporate currency with CurrencyType's rate, or with advanced currency management the
DatedConversionRate range holding the opportunity's CloseDate (what Salesforce itself
uses for opportunities).
"""

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.salesforce.wire import parse_date, parse_datetime
from core.errors import SourceError
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


def decimal(value: Any, what: str = "number", record_id: Any = None) -> Decimal | None:
    """A JSON number (or numeric string) exactly as written, never through float maths."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise SourceError(f"Salesforce record {record_id}: {what} is a boolean")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise SourceError(f"Salesforce record {record_id}: {what} {value!r} is not a "
                          "number") from None
    if not number.is_finite():
        raise SourceError(f"Salesforce record {record_id}: {what} {value!r} is not a number")
    return number


def timestamp(value: Any) -> datetime | None:
    return parse_datetime(str(value)) if value else None


def day(value: Any) -> date | None:
    return parse_date(str(value)) if value else None


def status(is_closed: Any, is_won: Any) -> DealStatus:
    """§3: open unless IsClosed; won when IsWon, else lost."""
    if not is_closed:
        return DealStatus.OPEN
    return DealStatus.WON if is_won else DealStatus.LOST


@dataclass
class Rates:
    """§5: conversion to the corporate currency. `current` is CurrencyType's rate per ISO
    code (units per one corporate unit); `dated` holds, per code, the sorted range starts
    and their rates when advanced currency management is on."""

    home: str
    current: dict[str, Decimal] = field(default_factory=dict)
    dated: dict[str, tuple[list[date], list[Decimal]]] = field(default_factory=dict)

    def rate(self, currency: str, on: date | None) -> Decimal:
        if currency == self.home:
            return Decimal(1)
        ranges = self.dated.get(currency)
        if ranges and on is not None:
            index = bisect_right(ranges[0], on) - 1
            if index >= 0:
                return ranges[1][index]
        rate = self.current.get(currency)
        if rate is None or rate <= 0:
            raise SourceError(f"Salesforce has no conversion rate for {currency} "
                              "(CurrencyType); add the currency in Setup > Manage Currencies")
        return rate


def rates(home: str, currency_types: list[dict[str, Any]],
          dated_rows: list[dict[str, Any]]) -> Rates:
    found = Rates(home)
    for row in currency_types:
        rate = decimal(row.get("ConversionRate"), "ConversionRate", row.get("Id"))
        if row.get("IsoCode") and rate is not None:
            found.current[str(row["IsoCode"])] = rate
    by_code: dict[str, list[tuple[date, Decimal]]] = {}
    for row in dated_rows:
        start, rate = day(row.get("StartDate")), decimal(row.get("ConversionRate"),
                                                          "ConversionRate", row.get("Id"))
        if row.get("IsoCode") and start is not None and rate is not None:
            by_code.setdefault(str(row["IsoCode"]), []).append((start, rate))
    for code, ranges in by_code.items():
        ranges.sort()
        found.dated[code] = ([s for s, _ in ranges], [r for _, r in ranges])
    return found


def user(raw: dict[str, Any]) -> UserRecord:
    email = raw.get("Email")
    return UserRecord(
        remote_id=str(raw["Id"]),
        name=str(raw.get("Name") or raw["Id"]),
        email=str(email).strip().lower() if email else None,
        active=bool(raw.get("IsActive")),
        role=raw.get("Title") or None,
        team=raw.get("Department") or None,
        remote_modified_at=timestamp(raw.get("SystemModstamp")),
        raw=raw,
    )


def stage(raw: dict[str, Any]) -> StageRecord:
    """§3 OpportunityStage: the label may be renamed; IsClosed/IsWon decide the outcome."""
    order = decimal(raw.get("SortOrder"), "SortOrder", raw.get("Id"))
    return StageRecord(
        remote_id=str(raw["Id"]),
        name=str(raw.get("MasterLabel") or raw.get("ApiName") or raw["Id"]),
        category=status(raw.get("IsClosed"), raw.get("IsWon")),
        pipeline=None,  # §3: stages are one org-wide picklist
        sort_order=int(order) if order is not None else 0,
        probability=decimal(raw.get("DefaultProbability"), "DefaultProbability", raw.get("Id")),
        remote_modified_at=timestamp(raw.get("SystemModstamp")),
        raw=raw,
    )


def account(raw: dict[str, Any], users: dict[str, UserRecord]) -> AccountRecord:
    owner = users.get(str(raw.get("OwnerId") or ""))
    return AccountRecord(
        remote_id=str(raw["Id"]),
        name=str(raw.get("Name") or ""),
        industry=raw.get("Industry") or None,
        owner_remote_id=raw.get("OwnerId") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        remote_created_at=timestamp(raw.get("CreatedDate")),
        remote_modified_at=timestamp(raw.get("SystemModstamp")),
        raw=raw,
    )


def deal(raw: dict[str, Any], stages: dict[str, StageRecord], users: dict[str, UserRecord],
         found_rates: Rates) -> DealRecord:
    """`stages` by ApiName (what StageName holds, §3); the account by id only (the store
    links it to the account stream's record)."""
    record_id = raw["Id"]
    amount = decimal(raw.get("Amount"), "Amount", record_id)
    close = day(raw.get("CloseDate"))
    currency = str(raw.get("CurrencyIsoCode") or found_rates.home)
    rate = found_rates.rate(currency, close)
    known = stages.get(str(raw.get("StageName") or ""))
    owner = users.get(str(raw.get("OwnerId") or ""))
    account_id = raw.get("AccountId") or None
    return DealRecord(
        remote_id=str(record_id),
        name=str(raw.get("Name") or ""),
        amount=amount,
        currency=currency,
        exchange_rate=rate,
        amount_home=None if amount is None else amount / rate,
        stage=known.name if known else raw.get("StageName"),
        stage_remote_id=known.remote_id if known else None,
        status=status(raw.get("IsClosed"), raw.get("IsWon")),
        probability=decimal(raw.get("Probability"), "Probability", record_id),
        close_date=close,
        remote_created_at=timestamp(raw.get("CreatedDate")),
        remote_modified_at=timestamp(raw.get("SystemModstamp")),
        owner_remote_id=raw.get("OwnerId") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        account_remote_id=account_id,
        pipeline=None,
        raw=raw,
    )


def deletion(entity: DeletedEntity, raw: dict[str, Any]) -> Deletion:
    """§4: a queryAll row with IsDeleted = true; its SystemModstamp is the deletion."""
    deleted_at = timestamp(raw.get("SystemModstamp"))
    if deleted_at is None:
        raise SourceError(f"Salesforce deleted record {raw.get('Id')} has no SystemModstamp")
    return Deletion(entity=entity, remote_id=str(raw["Id"]), deleted_at=deleted_at)


# §12: the key prefixes of what an activity's WhatId names
OPPORTUNITY_PREFIX, ACCOUNT_PREFIX = "006", "001"
TASK_TYPES = {"Call": ActivityType.CALL, "Email": ActivityType.EMAIL,
              "ListEmail": ActivityType.EMAIL}  # §12 TaskSubtype; other subtypes are tasks


def activity(object_name: str, raw: dict[str, Any], users: dict[str, UserRecord]
             ) -> ActivityRecord:
    """§12: a Task (a call when its TaskSubtype is Call, an email when Email or ListEmail,
    else a task; due on its ActivityDate, a date: 00:00 UTC; done when IsClosed) or an Event
    (a meeting from StartDateTime for DurationInMinutes; Salesforce does not say whether it
    was held). WhatId names the deal (006...) or the account (001...); AccountId the
    account Salesforce derived."""
    record_id = raw["Id"]
    owner = users.get(str(raw.get("OwnerId") or ""))
    what = str(raw.get("WhatId") or "")
    due = day(raw.get("ActivityDate"))
    event = object_name == "Event"
    if event:
        minutes = decimal(raw.get("DurationInMinutes"), "DurationInMinutes", record_id)
        kind_value, kind = raw.get("EventSubtype"), ActivityType.MEETING
        occurred = timestamp(raw.get("StartDateTime") or raw.get("ActivityDateTime"))
        duration = None if minutes is None else int(minutes) * 60
        done: bool | None = None
        completed = None
    else:
        seconds = decimal(raw.get("CallDurationInSeconds"), "CallDurationInSeconds", record_id)
        kind_value = raw.get("TaskSubtype")
        kind = TASK_TYPES.get(str(kind_value or ""), ActivityType.TASK)
        occurred = datetime.combine(due, time(), UTC) if due else None
        duration = None if seconds is None else int(seconds)
        done = bool(raw.get("IsClosed"))
        completed = timestamp(raw.get("CompletedDateTime")) if done else None
    return ActivityRecord(
        remote_id=str(record_id),
        type=kind,
        occurred_at=occurred,
        subject=raw.get("Subject") or None,
        kind=str(kind_value) if kind_value else None,
        done=done,
        completed_at=completed,
        duration_seconds=duration,
        owner_remote_id=raw.get("OwnerId") or None,
        owner_email=owner.email if owner else None,
        owner_name=owner.name if owner else None,
        deal_remote_id=what if what.startswith(OPPORTUNITY_PREFIX) else None,
        account_remote_id=what if what.startswith(ACCOUNT_PREFIX)
        else raw.get("AccountId") or None,
        remote_created_at=timestamp(raw.get("CreatedDate")),
        remote_modified_at=timestamp(raw.get("SystemModstamp")),
        raw=raw,
    )
