"""The Fxiaoke sandbox's goals object writes (docs/vendors/fxiaoke.md §4): create, update
and void records of the custom object GOALS_OBJECT (fields: wire.GOAL_FIELDS)."""

import secrets
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.responses import Response

from connectors.fxiaoke.sandbox.errors import FxError, success
from connectors.fxiaoke.sandbox.records import data_of, object_name
from connectors.fxiaoke.sandbox.state import FxiaokeState
from connectors.fxiaoke.sandbox.wire import GOAL_KEY_FIELD, GOALS_OBJECT, MODIFIED
from connectors.fxiaoke.wire import BAD_PARAMETER

SYSTEM_FIELDS = frozenset({"_id", "dataObjectApiName", "create_time", MODIFIED, "created_by",
                           "last_modified_by", "life_status", "is_deleted", "lock_status",
                           "record_type", "object_describe_api_name"})


def _check_goal_fields(values: dict[str, Any], state: FxiaokeState) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for name, value in values.items():
        if name in SYSTEM_FIELDS:
            continue
        known = state.goal_fields()
        if name not in known:
            raise FxError(BAD_PARAMETER, f"字段{name}不存在")
        kind, _, choices = known[name]
        options = [code for code, _ in choices]
        if value is None:
            continue
        if kind == "currency":  # §4 [INF]: amounts as strings (numbers tolerated)
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                raise FxError(BAD_PARAMETER, f"字段{name}必须是数字") from None
            if not amount.is_finite():
                raise FxError(BAD_PARAMETER, f"字段{name}必须是数字")
            value = f"{amount.quantize(Decimal('0.01')):.2f}"
        elif kind == "date" and (isinstance(value, bool) or not isinstance(value, int)):
            raise FxError(BAD_PARAMETER, f"字段{name}必须是毫秒时间戳")  # §4: dates as ms
        elif kind == "select_one" and value not in options:
            raise FxError(BAD_PARAMETER, f"字段{name}的选项{value!r}不存在")
        elif kind == "employee":  # §4: employee fields are lists
            if not isinstance(value, list) or not all(v in state.tenant.rep_of for v in value):
                raise FxError(BAD_PARAMETER, f"字段{name}必须是员工ID列表")
        elif kind in ("text", "department") and not isinstance(value, str | int):
            raise FxError(BAD_PARAMETER, f"字段{name}类型错误")
        clean[name] = value
    return clean


def _object_data(body: dict[str, Any]) -> dict[str, Any]:
    data = data_of(body)
    record = data.get("object_data")
    if not isinstance(record, dict):
        raise FxError(BAD_PARAMETER, "object_data不能为空")
    return record


def _unique_external_id(state: FxiaokeState, api_name: str, values: dict[str, Any],
                        own_id: str | None) -> None:
    ext = values.get(GOAL_KEY_FIELD)
    if ext is None:
        return
    for row in state.custom.get(api_name, {}).values():
        if row.get(GOAL_KEY_FIELD) == ext and row["_id"] != own_id:
            raise FxError(BAD_PARAMETER, f"{GOAL_KEY_FIELD} {ext!r} 已存在")  # unique field


def _run_workflows(body: dict[str, Any], state: FxiaokeState) -> None:
    """triggerWorkFlow is a top-level parameter next to `data`, default true (the custom
    object create/update pages, e.g.
    https://developer.fxiaoke.com/openapi_v2/en/object/CustomCapabilities/CustomObj/update.html);
    placed anywhere else it is not read (inside object_data it is an unknown field)."""
    if body.get("triggerWorkFlow") is not False:
        state.workflow_runs += 1


async def create_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    record = _object_data(body)
    api_name = object_name(record.get("dataObjectApiName"), custom=True)
    if api_name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    values = _check_goal_fields(record, state)
    if not values.get("owner"):
        raise FxError(BAD_PARAMETER, "负责人(owner)不能为空")
    if not values.get("name"):
        raise FxError(BAD_PARAMETER, "name不能为空")
    _unique_external_id(state, api_name, values, None)
    now = int(time.time() * 1000)
    record_id = secrets.token_hex(12)
    row = {"_id": record_id, **values, "create_time": now, MODIFIED: now,
           "created_by": [body["currentOpenUserId"]], "last_modified_by": [
               body["currentOpenUserId"]], "life_status": "normal", "lock_status": "0",
           "is_deleted": False, "record_type": "default__c",
           "object_describe_api_name": api_name}
    state.custom.setdefault(api_name, {})[record_id] = row
    state._custom_version += 1
    _run_workflows(body, state)
    state.notify("add", api_name, record_id)
    return success(dataId=record_id)


async def update_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    record = _object_data(body)
    if not record.get("_id") or not record.get("dataObjectApiName"):
        # §4: fx-crm-sync got a NullPointerException until both sat inside object_data
        raise FxError(BAD_PARAMETER, "java.lang.NullPointerException")
    api_name = object_name(record["dataObjectApiName"], custom=True)
    row = state.custom.get(api_name, {}).get(str(record["_id"]))
    if row is None:
        raise FxError(BAD_PARAMETER, "数据不存在")
    if row.get("life_status") == "invalid":
        raise FxError(BAD_PARAMETER, "数据已作废，不能编辑")  # guess: voided records are read-only
    if "owner" in record:  # §4: the owner changes only through changeOwner
        raise FxError(BAD_PARAMETER, "负责人不能通过编辑修改，请使用更换负责人接口")
    values = _check_goal_fields(record, state)
    _unique_external_id(state, api_name, values, row["_id"])
    row.update(values)
    row[MODIFIED] = max(int(time.time() * 1000), row[MODIFIED] + 1)
    row["last_modified_by"] = [body["currentOpenUserId"]]
    state._custom_version += 1
    _run_workflows(body, state)
    state.notify("update", api_name, row["_id"])
    return success(dataId=row["_id"])


async def invalid_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /custom/v2/data/invalid {dataObjectApiName, object_data_id} voids a record; it
    stays queryable with life_status "invalid" (§2)."""
    data = data_of(body)
    api_name = object_name(data.get("dataObjectApiName"), custom=True)
    row = state.custom.get(api_name, {}).get(str(data.get("object_data_id") or ""))
    if row is None or row.get("life_status") == "invalid":
        raise FxError(BAD_PARAMETER, "数据不存在或已作废")  # guess: as for standard objects
    row["life_status"] = "invalid"
    row[MODIFIED] = max(int(time.time() * 1000), row[MODIFIED] + 1)
    row["last_modified_by"] = [body["currentOpenUserId"]]
    state._custom_version += 1
    state.notify("invalid", api_name, row["_id"])
    return success()


