"""The Fxiaoke sandbox's read API and standard-object writes: the directory (§3), object
queries, gets and describes (§2, §3), voiding and deleting records (§4), following
docs/vendors/fxiaoke.md (§n)."""

from typing import Any

from starlette.responses import Response

from connectors.fxiaoke.sandbox.errors import FxError, json_response, success
from connectors.fxiaoke.sandbox.state import FxiaokeState
from connectors.fxiaoke.sandbox.wire import (
    GOALS_OBJECT,
    READ_ONLY,
    STANDARD,
    dataset_id,
    hex_id,
    parse_filters,
    parse_orders,
    project,
)
from connectors.fxiaoke.wire import BAD_PARAMETER, MAX_LIMIT, MAX_OFFSET, MISSING_TOKEN
from connectors.sandbox.dataset import Deal


# ---- directory (§3) --------------------------------------------------------------------------
async def department_list(_: dict[str, Any], state: FxiaokeState) -> Response:
    return json_response({"errorCode": 0, "errorMessage": "success",
                          "departments": state.tenant.departments()})


async def user_list(body: dict[str, Any], state: FxiaokeState) -> Response:
    tenant = state.tenant
    try:
        dept = int(body.get("departmentId"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FxError(BAD_PARAMETER, "departmentId参数错误") from None
    known = {d["id"]: d for d in tenant.departments()}
    if dept not in known:
        raise FxError(BAD_PARAMETER, "departmentId不存在")
    wanted = {dept}
    if body.get("fetchChild") is True:
        wanted |= {d for d, row in known.items() if row.get("parentId") == dept}
    users = [tenant.user(r) for r in state.company.reps if tenant.department[r.team] in wanted]
    return json_response({"errorCode": 0, "errorMessage": "success", "userList": users})


async def user_by_mobile(body: dict[str, Any], state: FxiaokeState) -> Response:
    mobile = str(body.get("mobile") or "").strip()
    if not mobile:
        raise FxError(BAD_PARAMETER, "mobile不能为空")
    found = [state.tenant.user(r) for r in state.company.reps
             if state.tenant.user(r)["mobile"] == mobile]
    return json_response({"errorCode": 0, "errorMessage": "success", "empList": found})


# ---- CRM objects (§2, §4) --------------------------------------------------------------------
def object_name(value: Any, *, custom: bool) -> str:
    name = str(value or "")
    if not name:
        raise FxError(BAD_PARAMETER, "dataObjectApiName不能为空")
    if name.endswith("__c") != custom:  # §2/§8.3: custom objects have their own paths
        raise FxError(BAD_PARAMETER, f"对象{name}请使用{'custom/' if not custom else ''}v2接口")
    return name


def data_of(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data")
    if not isinstance(data, dict):
        raise FxError(BAD_PARAMETER, "data参数错误")
    return data


def _int_param(info: dict[str, Any], name: str, default: int) -> int:
    value = info.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FxError(BAD_PARAMETER, f"{name}参数错误")
    return value


async def _query(body: dict[str, Any], state: FxiaokeState, *, custom: bool) -> Response:
    data = data_of(body)
    api_name = object_name(data.get("dataObjectApiName"), custom=custom)
    if not custom and api_name not in STANDARD and api_name not in READ_ONLY:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    if custom and api_name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{api_name}不存在")
    info = data.get("search_query_info")
    if not isinstance(info, dict):
        raise FxError(BAD_PARAMETER, "search_query_info不能为空")
    limit, offset = _int_param(info, "limit", 20), _int_param(info, "offset", 0)
    if not 1 <= limit <= MAX_LIMIT:  # §2: limit <= 100 (strict to the likeliest form)
        raise FxError(BAD_PARAMETER, f"limit must be between 1 and {MAX_LIMIT}")
    if offset > MAX_OFFSET:  # §2: exact body from the docs
        raise FxError(MISSING_TOKEN, "offset out of range 10000")
    if offset < 0 or offset % limit:  # §2: offset must be a multiple of limit
        raise FxError(BAD_PARAMETER, "offset must be a non-negative multiple of limit")
    filters = parse_filters(info.get("filters"))
    orders = parse_orders(info.get("orders"))
    fields = info.get("fieldProjection")
    if fields is not None and not (isinstance(fields, list)
                                   and all(isinstance(f, str) for f in fields)):
        raise FxError(BAD_PARAMETER, "fieldProjection must be a list of field names")
    chosen = state.table(api_name).select(filters, orders)
    if not custom:
        chosen = state.visible(body, chosen)
    page = [project(r, fields) for r in chosen[offset:offset + limit]]
    total = len(chosen) if data.get("find_explicit_total_num") is True else 0  # §2
    return success(data={"dataList": page, "total": total, "offset": offset, "limit": limit})


async def query_standard(body: dict[str, Any], state: FxiaokeState) -> Response:
    return await _query(body, state, custom=False)


async def query_custom(body: dict[str, Any], state: FxiaokeState) -> Response:
    return await _query(body, state, custom=True)


async def describe(body: dict[str, Any], state: FxiaokeState) -> Response:
    api_name = str(body.get("apiName") or "")
    if api_name in STANDARD or api_name in READ_ONLY:
        return success(data={"describe": state.tenant.describe(api_name)})
    if api_name == GOALS_OBJECT:
        fields = {name: {"api_name": name, "type": kind, "label": label,
                         **({"options": [{"value": c, "label": lbl} for c, lbl in options]}
                            if options else {})}
                  for name, (kind, label, options) in state.goal_fields().items()}
        return success(data={"describe": {"api_name": api_name, "fields": fields}})
    raise FxError(BAD_PARAMETER, f"对象{api_name or '(空)'}不存在")


async def get_record(body: dict[str, Any], state: FxiaokeState) -> Response:
    data = data_of(body)
    name = str(data.get("dataObjectApiName") or "")
    if name not in STANDARD and name not in READ_ONLY and name != GOALS_OBJECT:
        raise FxError(BAD_PARAMETER, f"对象{name or '(空)'}不存在")
    wanted = str(data.get("objectDataId") or "")
    rows = [r for r in state.table(name).rows if r["_id"] == wanted]
    row = next(iter(rows if name == GOALS_OBJECT else state.visible(body, rows)), None)
    if row is None:  # guess: the generic 10006 (§6), for a missing or hidden record alike
        raise FxError(BAD_PARAMETER, "数据不存在或没有权限")
    return success(data=row)


def _standard_target(data: dict[str, Any]) -> tuple[str, str]:
    name = object_name(data.get("dataObjectApiName"), custom=False)
    if name not in STANDARD:
        raise FxError(BAD_PARAMETER, f"对象{name}不存在")
    return STANDARD[name], name


async def invalid_record(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /data/invalid {object_data_id} voids a record (it stays queryable, §2)."""
    data = data_of(body)
    entity, _ = _standard_target(data)
    record_id = dataset_id(str(data.get("object_data_id") or ""))
    pool: dict[str, Any] = state.company.deals if entity == "deals" else state.company.accounts
    if record_id is None or record_id not in pool:
        raise FxError(BAD_PARAMETER, "数据不存在或已作废")
    if entity == "deals":
        state.company.delete_deal(record_id)
    else:
        state.company.delete_account(record_id)
    return success()


async def delete_records(body: dict[str, Any], state: FxiaokeState) -> Response:
    """§4: /data/delete {idList}: only voided records can be deleted; then they are gone."""
    data = data_of(body)
    entity, api_name = _standard_target(data)
    ids = data.get("idList")
    if not isinstance(ids, list) or not ids:
        raise FxError(BAD_PARAMETER, "idList不能为空")
    chosen = [dataset_id(str(i)) for i in ids]
    for record_id in chosen:
        voided = state.voided.get(record_id or "")
        if record_id is None or voided is None or record_id in state.purged or (
                (entity == "deals") != isinstance(voided[0], Deal)):
            raise FxError(BAD_PARAMETER, "只能删除已作废的数据")
    for record_id in chosen:
        state.purged.add(str(record_id))
        state.notify("delete", api_name, hex_id(str(record_id)))  # [INF] event name
    return success()


