"""Acme's JSON -> normalized records. Pure functions.

Ids are strings; times are acmecrm.wire stamps; a deal's `value` is a decimal string
`amount` in its `currency` with `rate`, units of that currency per unit of the home
currency; a stage's `outcome` is open, won or lost.
"""

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from acmecrm.wire import parse_stamp

from connectors.base import AccountRecord, DealRecord, Deletion, StageRecord, UserRecord

ENTITIES = {"account": "accounts", "deal": "deals"}


def _decimal(value: Any) -> Decimal | None:
    return None if value is None or value == "" else Decimal(str(value))


def _time(value: Any) -> datetime | None:
    return parse_stamp(str(value)) if value else None


def _email(value: Any) -> str | None:
    return str(value).strip().lower() if value else None


def user(raw: dict[str, Any]) -> UserRecord:
    return UserRecord(remote_id=str(raw["id"]), name=str(raw.get("name") or raw["id"]),
                      email=_email(raw.get("email")), active=bool(raw.get("active")),
                      role=raw.get("role"), team=raw.get("team"),
                      remote_modified_at=_time(raw.get("updated_at")), raw=raw)


def stage(raw: dict[str, Any]) -> StageRecord:
    return StageRecord(remote_id=str(raw["id"]), name=str(raw["name"]),
                       category=str(raw["outcome"]), pipeline=raw.get("pipeline"),
                       sort_order=int(raw.get("position") or 0),
                       probability=_decimal(raw.get("probability")), raw=raw)


def account(raw: dict[str, Any]) -> AccountRecord:
    owner = raw.get("owner") or {}
    return AccountRecord(remote_id=str(raw["id"]), name=str(raw.get("name") or ""),
                         industry=raw.get("industry"), owner_remote_id=owner.get("id"),
                         owner_email=_email(owner.get("email")), owner_name=owner.get("name"),
                         remote_created_at=_time(raw.get("created_at")),
                         remote_modified_at=_time(raw.get("updated_at")), raw=raw)


def deal(raw: dict[str, Any], stages: Mapping[str, StageRecord]) -> DealRecord:
    """A deal; its status, stage name and pipeline come from the stage metadata."""
    value, owner = raw.get("value") or {}, raw.get("owner") or {}
    amount, rate = _decimal(value.get("amount")), _decimal(value.get("rate")) or Decimal(1)
    meta = stages.get(str(raw.get("stage_id")))
    return DealRecord(
        remote_id=str(raw["id"]),
        name=str(raw.get("title") or ""),
        amount=amount,
        currency=value.get("currency"),
        exchange_rate=rate,
        amount_home=None if amount is None else amount / rate,
        stage=meta.name if meta else None,
        stage_remote_id=meta.remote_id if meta else None,
        status=meta.category if meta else "open",
        probability=_decimal(raw.get("probability")),
        close_date=date.fromisoformat(raw["close_date"]) if raw.get("close_date") else None,
        remote_created_at=_time(raw.get("created_at")),
        remote_modified_at=_time(raw.get("updated_at")),
        owner_remote_id=owner.get("id"),
        owner_email=_email(owner.get("email")),
        owner_name=owner.get("name"),
        account_remote_id=raw.get("account_id"),
        account_name=raw.get("account_name"),
        pipeline=meta.pipeline if meta else None,
        raw=raw,
    )


def deletion(raw: dict[str, Any]) -> Deletion:
    return Deletion(entity=ENTITIES[str(raw["type"])], remote_id=str(raw["id"]),
                    deleted_at=parse_stamp(str(raw["deleted_at"])))
