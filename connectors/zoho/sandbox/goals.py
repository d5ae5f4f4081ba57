"""The Zoho sandbox's goals custom module (docs/vendors/zoho.md §9): upsert, list, delete by ids.

The module (default Sales_Goals) has the fields §9 lists: Name (the default mandatory
field of a custom module), Goal_Key (unique text), Sales_Rep (User lookup),
Period_Start, Period_End (dates), Target_Amount (currency) and Metric (picklist).
Upsert answers one element per record, in order, in Zoho's envelopes (§9; errors such as
MANDATORY_NOT_FOUND and INVALID_DATA carry details.api_name and json_path, §7). A sandbox
made with goals_module=None has no such module: every call answers INVALID_MODULE.
Its records are exposed at GET /_sandbox/goals (and goal_records(app)) for tests;
DELETE /_sandbox/goals empties the module.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.sandbox.control import PREFIX as CONTROL_PREFIX
from connectors.sandbox.dataset import ORG_PREFIX
from connectors.zoho.sandbox.auth import authenticated
from connectors.zoho.sandbox.errors import ZohoError, json_response, missing
from connectors.zoho.sandbox.records import MAX_IDS, MAX_PER_PAGE, int_param, list_records
from connectors.zoho.sandbox.state import RESERVED, ZohoState
from connectors.zoho.sandbox.wire import API

MAX_RECORDS = 100  # §9: at most 100 records per upsert call
METRICS = ("Bookings", "Deals Won")  # the Metric picklist's values
FIELDS = ("Name", "Goal_Key", "Sales_Rep", "Period_Start", "Period_End", "Target_Amount",
          "Metric", "Owner")
# A multi-currency org adds Currency (ISO code, the home currency unless given) to every
# module with currency fields (https://www.zoho.com/crm/developer/docs/api/v8/
# enable-multi-currency.html); a one-currency org has no such field.
CURRENCY = "Currency"
UNIQUE = ("Goal_Key",)  # "Do not allow duplicate values" (§9); Name is the default check
TEXT_LIMIT = 120  # guess: single-line fields hold 120 characters (Goal_Key: 255)


@dataclass
class GoalsModule:
    """The records of the custom module, by id."""

    api_name: str = "Sales_Goals"
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_id: int = ORG_PREFIX + 7_000_001

    def new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id - 1)

    def find(self, name: str, value: Any) -> dict[str, Any] | None:
        return next((r for r in self.records.values() if value is not None
                     and r.get(name) == value), None)


def goal_routes(state: ZohoState, module: GoalsModule | None) -> list[Route]:
    """Routes to place before the sandbox's generic /crm/v8/{module} routes."""

    def target(request: Request) -> GoalsModule:
        name = request.path_params["module"]
        if module is None or name.lower() != module.api_name.lower():
            if name.lower() in RESERVED:  # /users, /org ...: no such method there (§7)
                raise ZohoError(400, "INVALID_REQUEST_METHOD",
                                "The http request method type is not a valid one")
            state.module(name)  # INVALID_MODULE for a module that does not exist
            raise ZohoError(400, "NOT_SUPPORTED",  # guess: only the goals module is writable
                            "the sandbox writes only the goals module")
        return module

    async def upsert(request: Request, _: ZohoState) -> Response:
        return _upsert(state, target(request), await _body(request))

    async def delete(request: Request, _: ZohoState) -> Response:
        return _delete(target(request), request)

    async def listing(request: Request, zoho: ZohoState) -> Response:
        name = request.path_params["module"]
        if module is None or name.lower() != module.api_name.lower():
            return await list_records(request, zoho)
        return _list(module, request, zoho)

    async def control(request: Request) -> Response:
        if module is not None and request.method == "DELETE":
            module.records.clear()
        return JSONResponse({"module": module.api_name if module else None,
                             "records": list(module.records.values()) if module else []})

    return [
        Route(f"{API}/{{module}}/upsert", authenticated(upsert), methods=["POST"]),
        Route(f"{API}/{{module}}", authenticated(delete), methods=["DELETE"]),
        Route(f"{API}/{{module}}", authenticated(listing), methods=["GET"]),
        Route(f"{CONTROL_PREFIX}/goals", control, methods=["GET", "DELETE"]),  # DELETE: empty
    ]


def goal_records(app: Any) -> list[dict[str, Any]]:
    """The goals module's records of a sandbox app (tests)."""
    module: GoalsModule | None = app.state.zoho_goals
    return list(module.records.values()) if module else []


async def _body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"null")
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "body is not a valid JSON",
                        {"json_path": "$"}) from None


def _upsert(state: ZohoState, module: GoalsModule, body: Any) -> Response:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list) or not body["data"]:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required field not found",
                        {"api_name": "data", "json_path": "$.data"})
    if len(body["data"]) > MAX_RECORDS:  # §9: at most 100 per call
        raise ZohoError(400, "LIMIT_EXCEEDED", "the number of records exceeds the limit",
                        {"limit": MAX_RECORDS, "api_name": "data", "json_path": "$.data"})
    checks = body.get("duplicate_check_fields") or ["Name"]  # §9: Name is the default
    if not isinstance(checks, list) or any(c not in ("Name", *UNIQUE) for c in checks):
        raise ZohoError(400, "INVALID_DATA", "invalid data",
                        {"api_name": "duplicate_check_fields",
                         "json_path": "$.duplicate_check_fields"})
    elements = [_upsert_one(state, module, item, i, checks)
                for i, item in enumerate(body["data"])]
    return json_response({"data": elements}, _status(elements))


def _status(elements: list[dict[str, Any]]) -> int:
    """200 all good, 400 all bad, else 207 (zoho/crm-oas v8.0/record/operations/
    upsertRecords and deleteRecords: examples response-200-success, response-207-
    mixedresults, response-400-multipleerrors)."""
    ok = sum(e["status"] == "success" for e in elements)
    return 200 if ok == len(elements) else 400 if ok == 0 else 207


def _error(code: str, message: str, api_name: str, index: int, **extra: Any) -> dict[str, Any]:
    path = f"$.data[{index}]" + (f".{api_name}" if api_name else "")
    return {"code": code, "details": {"api_name": api_name, "json_path": path, **extra},
            "message": message, "status": "error"}


def _fields(state: ZohoState) -> tuple[str, ...]:
    return (*FIELDS, CURRENCY) if state.multi_currency else FIELDS


def _upsert_one(state: ZohoState, module: GoalsModule, item: Any, i: int,
                checks: list[str]) -> dict[str, Any]:
    if not isinstance(item, dict):
        return _error("INVALID_DATA", "invalid data", "", i)
    problem = _validate(state, item, i)
    if problem is not None:
        return problem
    now = state.wire.dt(datetime.now(UTC))
    manager = state.company.manager
    user = {"name": manager.full_name, "id": manager.id}
    existing, matched = None, None
    for name in checks:
        existing = module.find(name, item.get(name))
        if existing is not None:
            matched = name
            break
    values = {k: v for k, v in item.items() if k != "id"}
    if isinstance(values.get("Sales_Rep"), dict):  # lookups read back as {"name","id"}
        rep = state.company.rep_by_id[str(values["Sales_Rep"]["id"])]
        values["Sales_Rep"] = {"name": rep.full_name, "id": rep.id}
    if existing is None:
        if not item.get("Name"):
            return _error("MANDATORY_NOT_FOUND", "required field not found", "Name", i)
        defaults: dict[str, Any] = {f: None for f in _fields(state) if f != "Owner"}
        if state.multi_currency:
            defaults[CURRENCY] = state.company.home_currency
        record = {"id": module.new_id(), "Owner": {**user, "email": manager.email},
                  **defaults, **values,
                  "Created_Time": now, "Modified_Time": now}
        module.records[record["id"]] = record
        return {"code": "SUCCESS", "duplicate_field": None, "action": "insert",
                "details": {"Modified_Time": now, "Modified_By": user, "Created_Time": now,
                            "id": record["id"], "Created_By": user},
                "message": "record added", "status": "success"}
    existing.update(values, Modified_Time=now)
    return {"code": "SUCCESS", "duplicate_field": matched, "action": "update",
            "details": {"Modified_Time": now, "Modified_By": user,
                        "Created_Time": existing["Created_Time"], "id": existing["id"],
                        "Created_By": user},
            "message": "record updated", "status": "success"}


def _validate(state: ZohoState, item: dict[str, Any], i: int) -> dict[str, Any] | None:
    """The first error of one record (§7: details.api_name, json_path, expected type)."""
    known = _fields(state)
    for name, value in item.items():
        if name not in known and name != "id":  # e.g. Currency in a one-currency org; the
            # element as in zoho/crm-oas v8.0/record/operations/upsertRecords/examples/
            # response-207-mixedresults (INVALID_DATA, details api_name and json_path)
            return _error("INVALID_DATA", "invalid data", name, i)
        if name in ("Name", "Goal_Key") and value is not None and (
                not isinstance(value, str) or len(value) > (255 if name == "Goal_Key"
                                                            else TEXT_LIMIT)):
            return _error("INVALID_DATA", "invalid data", name, i, expected_data_type="text")
    if "Name" in item and not item["Name"]:
        return _error("MANDATORY_NOT_FOUND", "required field not found", "Name", i)
    for name in ("Period_Start", "Period_End"):
        value = item.get(name)
        if value is not None and not _is_date(value):
            return _error("INVALID_DATA", "invalid data", name, i, expected_data_type="date")
    amount = item.get("Target_Amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int | float)):
        return _error("INVALID_DATA", "invalid data", "Target_Amount", i,
                      expected_data_type="double")
    rep = item.get("Sales_Rep")
    if rep is not None and (not isinstance(rep, dict)
                            or str(rep.get("id")) not in state.company.rep_by_id):
        return _error("INVALID_DATA", "the related id given seems to be invalid", "Sales_Rep",
                      i)
    currency = item.get(CURRENCY)
    if CURRENCY in item and currency not in state.company.currencies:  # active ISO codes only
        return _error("INVALID_DATA", "invalid data", CURRENCY, i)
    metric = item.get("Metric")
    if metric is not None and metric not in METRICS:  # a restricted picklist
        return _error("INVALID_DATA", "invalid data", "Metric", i)
    return None


def _is_date(value: Any) -> bool:
    try:
        return isinstance(value, str) and len(value) == 10 and bool(date.fromisoformat(value))
    except ValueError:
        return False


def _delete(module: GoalsModule, request: Request) -> Response:
    raw = request.query_params.get("ids")
    if not raw:
        raise missing("ids")
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if len(ids) > MAX_IDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "ids limit exceeded",
                        {"limit": MAX_IDS, "param_name": "ids"})
    elements = []
    for record_id in ids:
        if module.records.pop(record_id, None) is None:
            # zoho/crm-oas v8.0/record/operations/deleteRecords/examples/
            # response-207-mixedresults
            elements.append({"code": "INVALID_DATA", "details": {"id": record_id},
                             "message": "record not deleted", "status": "error"})
        else:
            elements.append({"code": "SUCCESS", "details": {"id": record_id},
                             "message": "record deleted", "status": "success"})
    return json_response({"data": elements}, _status(elements))


def _list(module: GoalsModule, request: Request, state: ZohoState) -> Response:
    """§2: `fields` is mandatory; page/per_page up to 200; 204 when there is nothing."""
    raw = request.query_params.get("fields")
    if not raw or not raw.strip():
        raise missing("fields")
    wanted = [f.strip() for f in raw.split(",") if f.strip() in _fields(state)]
    per_page = min(int_param(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page = int_param(request, "page", 1)
    rows = sorted(module.records.values(), key=lambda r: r["id"], reverse=True)  # §2: id desc
    chunk = rows[(page - 1) * per_page:page * per_page]
    if not chunk:
        return Response(None, 204)
    data = [{"id": r["id"], **{f: r.get(f) for f in wanted}} for r in chunk]
    return json_response({"data": data, "info": {"per_page": per_page, "count": len(data),
                                                 "page": page,
                                                 "more_records": page * per_page < len(rows)}})
