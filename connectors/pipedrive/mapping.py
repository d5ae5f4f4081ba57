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

from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from connectors.pipedrive.wire import CUSTOM_FIELD_KEY, parse_time
from connectors.values import decimal
from core.records import AccountRecord, DealRecord, Deletion, StageRecord, UserRecord
from core.types import DealStatus

STATUS = {"open": DealStatus.OPEN, "won": DealStatus.WON, "lost": DealStatus.LOST}
OUTCOMES = ((DealStatus.WON, "Won", Decimal(100)), (DealStatus.LOST, "Lost", Decimal(0)))
OUTCOME_ORDER = 1000  # outcome stages sort after every real stage of their pipeline
INDUSTRY = "industry"  # §2: the organization custom field read as the industry


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
