"""Pipedrive records -> normalized records. Pure functions (docs/vendors/pipedrive.md §n).

- §2: ids are integers (stored as strings); v2 times are RFC 3339, v1 times
  "YYYY-MM-DD HH:MM:SS" UTC; custom fields are keyed by 40-character hashes, which never
  reach a mapped field: the raw copy kept with a record names them by their field names.
- §4: a deal's outcome is its `status`; a won or lost deal keeps its stage. The stages
  stream adds one "Won" and one "Lost" stage per pipeline (`{pipeline_id}:won`), so the
  store knows every outcome from metadata as it does for other CRMs.
- §8: deals carry their own currency and no rate: a deal in the connection's home
  currency gets amount_home = amount; any other is converted with crmsync's FX table
  when it is stored (core.store), as docs/pipedrive.md explains.
"""

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, Protocol

from connectors.pipedrive.wire import CUSTOM_FIELD_KEY, parse_time
from connectors.values import decimal
from core.records import (
    AccountRecord,
    ActivityRecord,
    DealRecord,
    Deletion,
    StageChangeRecord,
    StageRecord,
    UserRecord,
)
from core.types import ActivityType, DealStatus

STATUS = {"open": DealStatus.OPEN, "won": DealStatus.WON, "lost": DealStatus.LOST}
OUTCOMES = ((DealStatus.WON, "Won", Decimal(100)), (DealStatus.LOST, "Lost", Decimal(0)))
OUTCOME_ORDER = 1000  # outcome stages sort after every real stage of their pipeline
INDUSTRY = "industry"  # §2: the organization custom field read as the industry
# §12: the activity types every company starts with (key_string); custom ones are "other"
ACTIVITY_TYPES = {"call": ActivityType.CALL, "meeting": ActivityType.MEETING,
                  "lunch": ActivityType.MEETING, "task": ActivityType.TASK,
                  "deadline": ActivityType.TASK, "email": ActivityType.EMAIL}


def _id(value: Any) -> str | None:
    if isinstance(value, dict):  # v1 expands references into objects
        value = value.get("id") or value.get("value")
    return None if value is None or value == "" else str(value)


def _email(value: Any) -> str | None:
    return str(value).strip().lower() if value else None


def named_fields(raw: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """`raw` with custom fields under their names: hash keys (§2), in `custom_fields` (v2)
    or at the top level (v1), never kept; a hash with no known name is dropped."""
    clean = {k: v for k, v in raw.items() if not CUSTOM_FIELD_KEY.match(str(k))}
    custom: dict[str, Any] = {}
    for source in (raw.get("custom_fields") or {}, raw):
        for key, value in source.items():
            if CUSTOM_FIELD_KEY.match(str(key)) and key in names:
                custom[names[key]] = value
    if "custom_fields" in raw or custom:
        clean["custom_fields"] = custom
    return clean


def team_of_users(teams: list[dict[str, Any]]) -> dict[str, str]:
    """§10: user id -> the name of their team: active teams only, the lowest team id
    first when a user is in several (crmsync keeps one team per user)."""
    found: dict[str, str] = {}
    for team in sorted(teams, key=lambda t: int(t.get("id") or 0)):
        if not team.get("active_flag", 1) or team.get("deleted_flag") or not team.get("name"):
            continue
        for user_id in team.get("users") or []:
            found.setdefault(str(user_id), str(team["name"]))
    return found


def user(raw: dict[str, Any], teams: dict[str, str] | None = None) -> UserRecord:
    remote_id = str(raw["id"])
    return UserRecord(
        remote_id=remote_id,
        name=str(raw.get("name") or raw.get("email") or remote_id),
        email=_email(raw.get("email")),
        active=bool(raw.get("active_flag", True)) and not raw.get("is_deleted"),
        role="admin" if raw.get("is_admin") else None,
        team=(teams or {}).get(remote_id),
        remote_modified_at=parse_time(raw.get("modified")),
        raw=raw,
    )


def stage(raw: dict[str, Any], pipelines: dict[str, str]) -> StageRecord:
    """§4: a real stage; always open (outcomes are statuses)."""
    return StageRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("name") or raw["id"]),
        category=DealStatus.OPEN,
        pipeline=pipelines.get(str(raw.get("pipeline_id"))),
        sort_order=int(raw.get("order_nr") or 0),
        probability=decimal(raw.get("deal_probability")),
        remote_modified_at=parse_time(raw.get("update_time")),
        raw=raw,
    )


def outcome_stages(pipeline_id: str, name: str) -> list[StageRecord]:
    """§4: the won and lost outcomes of one pipeline, as stages of those categories."""
    return [StageRecord(remote_id=f"{pipeline_id}:{category.value}", name=label,
                        category=category, pipeline=name, sort_order=OUTCOME_ORDER + i,
                        probability=probability, raw={"pipeline_id": pipeline_id,
                                                      "outcome": category.value})
            for i, (category, label, probability) in enumerate(OUTCOMES)]


class Lookups(Protocol):
    """The company metadata mapping needs (connectors.pipedrive.client.Meta)."""

    @property
    def deal_fields(self) -> dict[str, str]: ...
    @property
    def org_fields(self) -> dict[str, str]: ...
    @property
    def pipelines(self) -> dict[str, str]: ...
    @property
    def stages(self) -> dict[str, StageRecord]: ...
    @property
    def owners(self) -> dict[str, tuple[str | None, str]]: ...


def _owner(raw: dict[str, Any], meta: Lookups) -> dict[str, Any]:
    """owner_remote_id, and the owner's email and name from the users list (§2: v2 records
    carry only owner_id), so people match across CRMs by email."""
    remote_id = _id(raw.get("owner_id") or raw.get("user_id"))
    email, name = meta.owners.get(remote_id or "", (None, None))
    return {"owner_remote_id": remote_id, "owner_email": _email(email), "owner_name": name}


def account(raw: dict[str, Any], meta: Lookups) -> AccountRecord:
    clean = named_fields(raw, meta.org_fields)
    industry = next((v for k, v in (clean.get("custom_fields") or {}).items()
                     if k.lower() == INDUSTRY), None)
    return AccountRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("name") or ""),
        industry=str(industry) if industry not in (None, "") else None,
        **_owner(raw, meta),
        remote_created_at=parse_time(raw.get("add_time")),
        remote_modified_at=parse_time(raw.get("update_time")),
        deleted_at=parse_time(raw.get("update_time")) if raw.get("is_deleted") else None,
        raw=clean,
    )


def deal(raw: dict[str, Any], meta: Lookups, home_currency: str | None) -> DealRecord:
    """§2, §4, §8: one v2 deal."""
    stages, pipelines = meta.stages, meta.pipelines
    status_text = str(raw.get("status") or "open")
    status = STATUS.get(status_text, DealStatus.OPEN)
    kept = stages.get(str(raw.get("stage_id")))
    amount = decimal(raw.get("value"))
    currency = str(raw.get("currency") or home_currency or "") or None
    at_home = currency is not None and currency == home_currency and amount is not None
    probability = decimal(raw.get("probability"))
    if probability is None and kept is not None:
        probability = kept.probability
    deleted = bool(raw.get("is_deleted")) or status_text == "deleted"
    return DealRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("title") or ""),
        amount=amount,
        currency=currency,
        exchange_rate=Decimal(1) if at_home else None,
        amount_home=amount if at_home else None,  # otherwise the FX table (core.store)
        stage=kept.name if kept else None,
        stage_remote_id=kept.remote_id if kept else _id(raw.get("stage_id")),
        status=status,
        probability=probability,
        close_date=close_date(raw, status),
        remote_created_at=parse_time(raw.get("add_time")),
        remote_modified_at=parse_time(raw.get("update_time")),
        **_owner(raw, meta),
        account_remote_id=_id(raw.get("org_id")),
        pipeline=pipelines.get(str(raw.get("pipeline_id"))),
        deleted_at=parse_time(raw.get("update_time")) if deleted else None,
        raw=named_fields(raw, meta.deal_fields),
    )


def close_date(raw: dict[str, Any], status: DealStatus) -> date | None:
    """Won: won_time's date; lost: lost_time's; open: expected_close_date (§2, §4; UTC dates)."""
    moment = parse_time(raw.get("won_time") if status == DealStatus.WON else
                        raw.get("lost_time") if status == DealStatus.LOST else None)
    if moment is not None:
        return moment.date()
    expected = raw.get("expected_close_date")
    return date.fromisoformat(str(expected)[:10]) if expected else None


def deletion(raw: dict[str, Any], fallback: Any = None) -> Deletion:
    """§3: a deal of status=deleted; its update_time is when it was deleted."""
    deleted_at = parse_time(raw.get("update_time")) or parse_time(fallback)
    if deleted_at is None:
        raise ValueError("deleted deal without update_time")
    return Deletion(entity="deals", remote_id=str(raw["id"]), deleted_at=deleted_at)


def stage_changes(deal_id: str, rows: list[dict[str, Any]], stages: dict[str, StageRecord],
                  current_stage: Any = None) -> list[StageChangeRecord]:
    """§11: a deal's stage path from its flow, oldest first, with the stage names deals
    carry (a stage since deleted keeps its id as the name): its creation (the `add_time`
    change) in the stage it started in (the first move's old stage, else `current_stage`,
    the flow's related deal), then each `stage_id` change."""
    def name(value: Any) -> str | None:
        if value in (None, ""):
            return None
        known = stages.get(str(value))
        return known.name if known else str(value)

    created = None
    moves = []
    for row in rows:
        data = row.get("data")
        change: dict[str, Any] = data if isinstance(data, dict) else row
        if row.get("object", "dealChange") != "dealChange":
            continue
        at = parse_time(change.get("log_time") or row.get("timestamp"))
        if at is None:
            continue
        if change.get("field_key") == "add_time":
            created = at if created is None else min(created, at)
        elif change.get("field_key") == "stage_id":
            moves.append((at, int(change.get("id") or 0), name(change.get("old_value")),
                          name(change.get("new_value"))))
    moves.sort(key=lambda m: (m[0], m[1]))
    out = []
    first = moves[0][2] if moves else name(current_stage)
    if created is not None and first is not None:
        out.append(StageChangeRecord(deal_id, None, first, created))
    out += [StageChangeRecord(deal_id, old, new, at) for at, _, old, new in moves
            if new is not None and old != new]
    return out


def activity(raw: dict[str, Any], meta: Lookups, custom: frozenset[str]) -> ActivityRecord:
    """§12: one v2 activity; `custom` the key_strings of the company's custom types."""
    kind = str(raw.get("type") or "") or None
    return ActivityRecord(
        remote_id=str(raw["id"]),
        type=ActivityType.OTHER if kind is None or kind in custom
        else ACTIVITY_TYPES.get(kind, ActivityType.OTHER),
        occurred_at=due_at(raw.get("due_date"), raw.get("due_time")),
        subject=str(raw.get("subject") or "") or None,
        kind=kind,
        done=bool(raw.get("done")),
        completed_at=parse_time(raw.get("marked_as_done_time")),
        duration_seconds=duration_seconds(raw.get("duration")),
        **_owner(raw, meta),
        deal_remote_id=_id(raw.get("deal_id")),
        account_remote_id=_id(raw.get("org_id")),
        remote_created_at=parse_time(raw.get("add_time")),
        remote_modified_at=parse_time(raw.get("update_time")),
        raw={k: v for k, v in raw.items() if k not in ("note", "public_description",
                                                       "attendees", "participants")},
    )


def activity_deletion(raw: dict[str, Any]) -> Deletion:
    """§12: an activity flagged is_deleted. Deleting does not bump update_time (§12), so
    the time is its last change, the closest the API tells."""
    at = parse_time(raw.get("update_time")) or parse_time(raw.get("add_time"))
    if at is None:
        raise ValueError("deleted activity without update_time or add_time")
    return Deletion(entity="activities", remote_id=str(raw["id"]), deleted_at=at)


def due_at(day: Any, clock: Any) -> datetime | None:
    """§12: due_date (YYYY-MM-DD) and due_time (HH:MM, UTC); no time: midnight UTC."""
    if not day:
        return None
    moment = datetime.combine(date.fromisoformat(str(day)[:10]), time(0), UTC)
    if clock:
        parts = [int(p) for p in str(clock).split(":")[:3]]
        moment = moment.replace(hour=parts[0], minute=parts[1] if len(parts) > 1 else 0,
                                second=parts[2] if len(parts) > 2 else 0)
    return moment


def duration_seconds(value: Any) -> int | None:
    """§12: a duration "HH:MM" (or "HH:MM:SS"); empty: None."""
    if not value:
        return None
    parts = [int(p) for p in str(value).split(":")[:3]]
    parts += [0] * (3 - len(parts))
    return parts[0] * 3600 + parts[1] * 60 + parts[2]
