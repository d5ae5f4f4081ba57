"""Goal push into Fxiaoke: a custom object, written with /custom/v2/data/create and /update.

Fxiaoke's own goal objects (GoalValueObj and its rules) are not known to be writable
through the Open API (docs/vendors/fxiaoke.md §4: "treat write-back as unverified"), so goals go to
a custom object (config `goals_object`, default object_SalesGoal__c) with the fields
of §4's fallback. Fxiaoke has no idempotency keys (§4), so each goal is found again by
its unique external-ID field (core.goals' stable key) with one /data/query per 100 goals:
a found record is updated (`_id` and `dataObjectApiName` inside object_data, §4), a
missing one created. A deleted goal's record is voided with /data/invalid (§4: the
first step of a delete; a voided record stays visible as 作废 and stops counting).
Every write is its own call and its own errorCode (§0): one bad goal fails alone.
"""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from connectors.fxiaoke.client import FxiaokeClient, FxiaokeError
from connectors.fxiaoke.mapping import describe_fields
from connectors.fxiaoke.wire import (
    BAD_PARAMETER,
    DESCRIBE_PATH,
    GOAL_OBJECT_FIELDS,
    MAX_LIMIT,
    day_ms,
)
from core.errors import ConfigError
from core.records import GoalDeletion, GoalOut, PushResult
from core.types import PushStatus

METRIC_LABELS = {"bookings": "Bookings", "deals_won": "Deals Won"}
OPTIONS: dict[str, dict[str, tuple[str, ...]]] = {  # our value -> option labels accepted
    "period_type": {"month": ("Month", "月"), "quarter": ("Quarter", "季度"),
                    "year": ("Year", "年")},
    "metric": {"bookings": ("Bookings", "成交额"), "deals_won": ("Deals won", "赢单数")},
}
NAME_LENGTH = 100  # guess: a custom object's name (主属性) holds 100 characters


@dataclass
class Schema:
    """The goals object as describe shows it: API names and option codes."""

    fields: dict[str, str]
    options: dict[str, dict[str, str]]
    currency: bool  # the object has mc_currency (a multi-currency tenant)


def setup_message(api_name: str, missing: str | None = None) -> str:
    """What an admin must create (the object, or the one field missing)."""
    steps = "; ".join(f"{labels[0]} ({kind})" for kind, labels, _ in GOAL_OBJECT_FIELDS.values())
    what = (f"The Fxiaoke goals object {api_name} has no field labelled {missing!r}"
            if missing else f"Fxiaoke has no object with the API name {api_name!r}")
    return (f"{what}. In the CRM admin console (对象管理 > 新建自定义对象) the object "
            f"{api_name} needs the fields {steps} (labels in English or Chinese; their "
            "generated API names are found by label), and the app's acting user "
            "(current_open_user_id) needs edit rights on it. Or set config goals_object, "
            "and goals_fields (e.g. {\"target\": \"field_x__c\"}) for fields labelled "
            "otherwise.")


def _norm(text: Any) -> str:
    return str(text or "").strip().casefold()


def schema(described: dict[str, dict[str, Any]], api_name: str,
           overrides: dict[str, str]) -> Schema:
    """Find each logical field by config override, then by label, then by its old name."""
    by_label = {_norm(f.get("label")): name for name, f in described.items()}
    fields: dict[str, str] = {}
    for key, (_, labels, old) in GOAL_OBJECT_FIELDS.items():
        found = overrides.get(key) or next(
            (by_label[_norm(lbl)] for lbl in labels if _norm(lbl) in by_label), None) or \
            (old if old in described else None)
        if found is None or found not in described:
            raise ConfigError(setup_message(api_name, overrides.get(key) or labels[0]))
        fields[key] = found
    options: dict[str, dict[str, str]] = {}
    for key, wanted in OPTIONS.items():
        field_label = str(described[fields[key]].get("label") or fields[key])
        codes = {_norm(o.get("label")): str(o["value"])
                 for o in described[fields[key]].get("options") or []
                 if isinstance(o, dict) and o.get("value") is not None}
        codes.update({_norm(v): v for v in list(codes.values())})  # old option values
        options[key] = {}
        for value, labels in wanted.items():
            code = next((codes[_norm(lbl)] for lbl in (value, *labels) if _norm(lbl) in codes),
                        None)
            if code is None:
                raise ConfigError(f"The Fxiaoke goals field {field_label!r} has no option "
                                  f"labelled {labels[0]!r}; add it. "
                                  + setup_message(api_name))
            options[key][value] = code
    return Schema(fields, options, "mc_currency" in described)


def _paths(api_name: str) -> str:
    """§2/§4: custom (`__c`) objects have their own /custom/v2 paths."""
    return "/cgi/crm/custom/v2/data" if api_name.endswith("__c") else "/cgi/crm/v2/data"


def period_type(goal: GoalOut) -> str | None:
    """month, quarter or year for whole calendar months (any start month: fiscal years)."""
    start, end = goal.period_start, goal.period_end
    if start.day != 1 or (end + timedelta(days=1)).day != 1:
        return None
    months = (end.year - start.year) * 12 + end.month - start.month + 1
    return {1: "month", 3: "quarter", 12: "year"}.get(months)


def _label(goal: GoalOut, kind: str) -> str:
    start = goal.period_start
    if kind == "month":
        return f"{start:%Y-%m}"
    if kind == "quarter" and start.month % 3 == 1:
        return f"{start.year}-Q{(start.month + 2) // 3}"
    if kind == "year" and start.month == 1:
        return str(start.year)
    return f"{start.isoformat()} to {goal.period_end.isoformat()}"


def record(goal: GoalOut, api_name: str, found: Schema) -> dict[str, Any]:
    """The object_data of a goal (§4 formats: amounts as strings, dates as ms, employee
    fields as lists, selects as option codes). Without `owner`: see push_goals.
    A bookings target arrives in the connection's home currency (core.goals.push); a
    multi-currency tenant's record says so in mc_currency, others take the number only."""
    kind = period_type(goal)
    assert kind is not None
    who = goal.owner_name or goal.owner_email or "Company"
    f = found.fields
    data: dict[str, Any] = {
        "dataObjectApiName": api_name,
        "name": f"{who} - {METRIC_LABELS[goal.metric]} - {_label(goal, kind)}"[:NAME_LENGTH],
        f["period"]: day_ms(goal.period_start),  # §3: a day is 00:00 +08:00 in ms
        f["period_type"]: found.options["period_type"][kind],
        f["target"]: f"{goal.target:f}",
        f["metric"]: found.options["metric"][goal.metric],
        f["external_id"]: goal.key,
    }
    if goal.owner_remote_id:
        data[f["employee"]] = [goal.owner_remote_id]
    if found.currency and goal.currency:
        data["mc_currency"] = goal.currency
    return data


async def push_goals(connector: FxiaokeClient, goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    """Create or update `goals` in the goals object and void `deletions`
    (connectors.base.GoalPusher)."""
    api_name = connector.config.goals_object
    results: list[PushResult] = []
    sendable = []
    for goal in goals:
        if period_type(goal) is None:
            results.append(PushResult(goal.goal_id, PushStatus.ERROR, None, (
                f"Fxiaoke's goal object holds calendar months, quarters and years "
                f"(period_type__c); this goal runs {goal.period_start} to {goal.period_end}")))
        else:
            sendable.append(goal)
    found = await _schema(connector, api_name) if sendable else None
    for start in range(0, len(sendable), MAX_LIMIT):
        assert found is not None
        chunk = sendable[start:start + MAX_LIMIT]
        rows = await _find(connector, api_name, found, [g.key for g in chunk])
        results += await asyncio.gather(*(_upsert(connector, api_name, found, g,
                                                  rows.get(g.key)) for g in chunk))
    results += await asyncio.gather(*(_void_record(connector, api_name, d) for d in deletions))
    return results


async def _schema(connector: FxiaokeClient, api_name: str) -> Schema:
    """Describe the goals object (one call per push) and find its fields by label."""
    try:
        body = await connector.call(DESCRIBE_PATH, {"apiName": api_name, "includeDetail": True})
    except FxiaokeError as exc:
        if exc.code == BAD_PARAMETER:
            raise ConfigError(setup_message(api_name)) from None
        raise
    return schema(describe_fields(body), api_name, connector.config.goals_fields)


async def _find(connector: FxiaokeClient, api_name: str, found: Schema,
                keys: list[str]) -> dict[str, dict[str, Any]]:
    """The records already made for these keys, by key (a live one wins over a voided one)."""
    key_field = found.fields["external_id"]
    filters = [{"field_name": key_field, "operator": "IN", "field_values": keys}]
    rows = await connector.query(api_name, filters, [{"fieldName": "_id", "isAsc": True}])
    by_key: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = str(row.get(key_field) or "")
        if key and (key not in by_key or _voided(by_key[key])):
            by_key[key] = row
    return by_key


def _voided(row: dict[str, Any]) -> bool:
    return row.get("life_status") == "invalid" or row.get("is_deleted") is True


async def _upsert(connector: FxiaokeClient, api_name: str, found: Schema, goal: GoalOut,
                  existing: dict[str, Any] | None) -> PushResult:
    data = record(goal, api_name, found)
    # Machine writes trigger no workflow: triggerWorkFlow (and on create
    # triggerApprovalFlow) are top-level parameters next to `data`, default true
    # (https://developer.fxiaoke.com/openapi_v2/en/object/CustomCapabilities/CustomObj/update.html;
    # the update page documents triggerWorkFlow only).
    try:
        if existing is None:
            # §4: owner is required on create and cannot be changed by /update later.
            data["owner"] = [goal.owner_remote_id or await connector.open_user_id()]
            body = await connector.call(f"{_paths(api_name)}/create", {
                "triggerWorkFlow": False, "triggerApprovalFlow": False,
                "data": {"object_data": data}})
            return PushResult(goal.goal_id, PushStatus.INSERTED,
                              str(body.get("dataId") or "") or None)
        remote_id = str(existing["_id"])
        if _voided(existing):
            return PushResult(goal.goal_id, PushStatus.ERROR, remote_id, (
                f"the Fxiaoke record {remote_id} of this goal was voided (作废) in the CRM; "
                "restore it there, or delete it for good, then push again"))
        data["_id"] = remote_id  # §4: _id and dataObjectApiName inside object_data
        await connector.call(f"{_paths(api_name)}/update",
                             {"triggerWorkFlow": False, "data": {"object_data": data}})
        return PushResult(goal.goal_id, PushStatus.UPDATED, remote_id)
    except FxiaokeError as exc:
        return PushResult(goal.goal_id, PushStatus.ERROR,
                          str(existing["_id"]) if existing else None, str(exc))


async def _void_record(connector: FxiaokeClient, api_name: str,
                       deletion: GoalDeletion) -> PushResult:
    """§4 /data/invalid; a record already voided or gone counts as deleted."""
    try:
        await connector.call(f"{_paths(api_name)}/invalid", {"data": {
            "dataObjectApiName": api_name, "object_data_id": deletion.remote_id}})
    except FxiaokeError as exc:
        if exc.code == BAD_PARAMETER and await _gone(connector, api_name, deletion.remote_id):
            return PushResult(deletion.goal_id, PushStatus.DELETED, deletion.remote_id)
        return PushResult(deletion.goal_id, PushStatus.ERROR, deletion.remote_id, str(exc))
    return PushResult(deletion.goal_id, PushStatus.DELETED, deletion.remote_id)


async def _gone(connector: FxiaokeClient, api_name: str, remote_id: str) -> bool:
    """Whether a record is voided or no longer exists (/data/get answers 10006 for it)."""
    try:
        row = await connector.get_record(api_name, remote_id)
    except FxiaokeError as exc:
        return exc.code == BAD_PARAMETER
    return _voided(row)
