"""Goal push into Fxiaoke: a custom object, written with /custom/v2/data/create and /update.

Fxiaoke's own goal objects (GoalValueObj and its rules) are not known to be writable
through the Open API (fxiaoke.md §4: "treat write-back as unverified"), so goals go to
a custom object (config `goals_object`, default object_SalesGoal__c) with the fields
of §4's fallback. Fxiaoke has no idempotency keys (§4), so each goal is found again by
its unique `external_id__c` (core.goals' stable key) with one /data/query per 100 goals:
a found record is updated (`_id` and `dataObjectApiName` inside object_data, §4), a
missing one created. A deleted goal's record is voided with /data/invalid (§4: the
first step of a delete; a voided record stays visible as 作废 and stops counting).
Every write is its own call and its own errorCode (§0): one bad goal fails alone.
"""

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from connectors.fxiaoke.wire import BAD_PARAMETER, DESCRIBE_PATH, MAX_LIMIT, day_ms
from core.errors import ConfigError
from core.records import GoalDeletion, GoalOut, PushResult

if TYPE_CHECKING:
    from connectors.fxiaoke.connector import FxiaokeConnector

KEY_FIELD = "external_id__c"
METRIC_LABELS = {"bookings": "Bookings", "deals_won": "Deals Won"}
FIELDS = (  # (API name, field type in Fxiaoke's object designer, what it holds) — §4
    ("name", "主属性 (text)", "rep, metric and period, readable"),
    ("period__c", "日期 (date)", "first day of the period"),
    ("period_type__c", "单选 (select): month, quarter, year", "length of the period"),
    ("employee__c", "人员 (employee)", "the rep (empty for a company goal)"),
    ("department__c", "部门 (department)", "left empty by crmsync"),
    ("target_amount__c", "金额 (currency)", "the target (a number of deals for deals_won)"),
    ("metric__c", "单选 (select): bookings, deals_won", "what the target counts"),
    (KEY_FIELD, "单行文本 (text), unique", "crmsync's goal key"),
)
NAME_LENGTH = 100  # guess: a custom object's name (主属性) holds 100 characters


def setup_message(api_name: str) -> str:
    """What an admin must create when the goals object is missing."""
    fields = "; ".join(f"{name} ({kind})" for name, kind, _ in FIELDS)
    return (f"Fxiaoke has no object with the API name {api_name!r}. Create a custom object "
            f"in the CRM admin console (对象管理 > 新建自定义对象) with the API name "
            f"{api_name} and the fields {fields}, and give the app's acting user "
            "(current_open_user_id) edit rights on it. Or set the connection's config "
            "goals_object to the API name of the object you use for goals.")


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


def record(goal: GoalOut, api_name: str) -> dict[str, Any]:
    """The object_data of a goal (§4 formats: amounts as strings, dates as ms, employee
    fields as lists, selects as option values). Without `owner`: see push_goals."""
    kind = period_type(goal)
    assert kind is not None
    who = goal.owner_name or goal.owner_email or "Company"
    data: dict[str, Any] = {
        "dataObjectApiName": api_name,
        "name": f"{who} - {METRIC_LABELS[goal.metric]} - {_label(goal, kind)}"[:NAME_LENGTH],
        "period__c": day_ms(goal.period_start),  # §3: a day is 00:00 +08:00 in ms
        "period_type__c": kind,
        "target_amount__c": f"{goal.target:f}",
        "metric__c": goal.metric,
        KEY_FIELD: goal.key,
    }
    if goal.owner_remote_id:
        data["employee__c"] = [goal.owner_remote_id]
    return data


async def push_goals(connector: "FxiaokeConnector", goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    """Create or update `goals` in the goals object and void `deletions`
    (connectors.base.GoalPusher)."""
    api_name = connector.config.goals_object
    results: list[PushResult] = []
    sendable = []
    for goal in goals:
        if period_type(goal) is None:
            results.append(PushResult(goal.goal_id, "error", None, (
                f"Fxiaoke's goal object holds calendar months, quarters and years "
                f"(period_type__c); this goal runs {goal.period_start} to {goal.period_end}")))
        else:
            sendable.append(goal)
    for start in range(0, len(sendable), MAX_LIMIT):
        chunk = sendable[start:start + MAX_LIMIT]
        found = await _find(connector, api_name, [g.key for g in chunk])
        results += await asyncio.gather(*(_upsert(connector, api_name, g, found.get(g.key))
                                          for g in chunk))
    results += await asyncio.gather(*(_void_record(connector, api_name, d) for d in deletions))
    return results


async def _find(connector: "FxiaokeConnector", api_name: str,
                keys: list[str]) -> dict[str, dict[str, Any]]:
    """The records already made for these keys, by key (a live one wins over a voided one)."""
    from connectors.fxiaoke.connector import FxiaokeError

    filters = [{"field_name": KEY_FIELD, "operator": "IN", "field_values": keys}]
    try:
        rows = await connector.query(api_name, filters, [{"fieldName": "_id", "isAsc": True}])
    except FxiaokeError as exc:
        if exc.code == BAD_PARAMETER and not await _object_exists(connector, api_name):
            raise ConfigError(setup_message(api_name)) from None
        raise
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = str(row.get(KEY_FIELD) or "")
        if key and (key not in found or _voided(found[key])):
            found[key] = row
    return found


async def _object_exists(connector: "FxiaokeConnector", api_name: str) -> bool:
    from connectors.fxiaoke.connector import FxiaokeError

    try:
        await connector.call(DESCRIBE_PATH, {"apiName": api_name, "includeDetail": False})
    except FxiaokeError as exc:
        if exc.code == BAD_PARAMETER:
            return False
        raise
    return True


def _voided(row: dict[str, Any]) -> bool:
    return row.get("life_status") == "invalid" or row.get("is_deleted") is True


async def _upsert(connector: "FxiaokeConnector", api_name: str, goal: GoalOut,
                  existing: dict[str, Any] | None) -> PushResult:
    from connectors.fxiaoke.connector import FxiaokeError

    data = record(goal, api_name)
    trigger = {"triggerWorkFlow": False, "triggerApprovalFlow": False}  # §4: machine writes
    try:
        if existing is None:
            # §4: owner is required on create and cannot be changed by /update later.
            data["owner"] = [goal.owner_remote_id or await connector.open_user_id()]
            body = await connector.call(f"{_paths(api_name)}/create",
                                        {**trigger, "data": {"object_data": data}})
            return PushResult(goal.goal_id, "inserted", str(body.get("dataId") or "") or None)
        remote_id = str(existing["_id"])
        if _voided(existing):
            return PushResult(goal.goal_id, "error", remote_id, (
                f"the Fxiaoke record {remote_id} of this goal was voided (作废) in the CRM; "
                "restore it there, or delete it for good, then push again"))
        data["_id"] = remote_id  # §4: _id and dataObjectApiName inside object_data
        await connector.call(f"{_paths(api_name)}/update",
                             {**trigger, "data": {"object_data": data}})
        return PushResult(goal.goal_id, "updated", remote_id)
    except FxiaokeError as exc:
        return PushResult(goal.goal_id, "error", str(existing["_id"]) if existing else None,
                          str(exc))


async def _void_record(connector: "FxiaokeConnector", api_name: str,
                       deletion: GoalDeletion) -> PushResult:
    """§4 /data/invalid; a record already voided or gone counts as deleted."""
    from connectors.fxiaoke.connector import FxiaokeError

    try:
        await connector.call(f"{_paths(api_name)}/invalid", {"data": {
            "dataObjectApiName": api_name, "object_data_id": deletion.remote_id}})
    except FxiaokeError as exc:
        if exc.code == BAD_PARAMETER and await _gone(connector, api_name, deletion.remote_id):
            return PushResult(deletion.goal_id, "deleted", deletion.remote_id)
        return PushResult(deletion.goal_id, "error", deletion.remote_id, str(exc))
    return PushResult(deletion.goal_id, "deleted", deletion.remote_id)


async def _gone(connector: "FxiaokeConnector", api_name: str, remote_id: str) -> bool:
    """Whether a record is voided or no longer exists (/data/get answers 10006 for it)."""
    from connectors.fxiaoke.connector import FxiaokeError

    try:
        row = await connector.get_record(api_name, remote_id)
    except FxiaokeError as exc:
        return exc.code == BAD_PARAMETER
    return _voided(row)
