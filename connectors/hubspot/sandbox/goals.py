"""The HubSpot sandbox's goal targets (docs/vendors/hubspot.md §9): the `goal_targets`
object with list, read, search and batch create, update and archive, behind the goals
scopes. A batch answers 200/201 when every input worked, else 207 with `errors`, each
naming its inputs in `context.ids` (update) or `context.inputIndexes` (create; guess)."""

import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.hubspot.sandbox.errors import json_response, not_found, validation
from connectors.hubspot.sandbox.records import iso_ms_now
from connectors.hubspot.sandbox.state import HubSpotState
from connectors.hubspot.sandbox.wire import matcher
from connectors.hubspot.wire import BATCH_LIMIT, parse_time

READ, WRITE = "crm.objects.goals.read", "crm.objects.goals.write"
REQUIRED = ("hs_goal_name", "hs_target_amount", "hs_start_datetime", "hs_end_datetime")
TEMPLATE_FIELDS = ("hs_template_id", "hs_kpi_metric_type", "hs_kpi_property_name",
                   "hs_kpi_tracking_method", "hs_kpi_unit_type")  # §9 (3p)


def _record(goal_id: str, properties: dict[str, Any], archived: bool = False) -> dict[str, Any]:
    return {"id": goal_id, "properties": {**properties, "hs_object_id": goal_id},
            "createdAt": properties.get("hs_createdate"),
            "updatedAt": properties.get("hs_lastmodifieddate"), "archived": archived}


async def _inputs(request: Request) -> list[Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise validation("Invalid input JSON on line 1") from None
    inputs = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(inputs, list) or not inputs or len(inputs) > BATCH_LIMIT:
        raise validation(f"inputs must hold 1 to {BATCH_LIMIT} objects")
    return inputs


def _check(state: HubSpotState, properties: Any, creating: bool) -> str | None:
    """What is wrong with these properties, or None."""
    if not isinstance(properties, dict) or not all(
            isinstance(v, str | int | float) or v is None for v in properties.values()):
        return "properties must be an object of strings"
    missing = [n for n in REQUIRED if creating and not properties.get(n)]
    if missing:
        return f"missing required properties: {', '.join(missing)}"
    if creating and state.require_goal_template and not properties.get("hs_template_id"):
        return "hs_template_id is required: create goals from a goal template"
    try:
        if "hs_target_amount" in properties:
            Decimal(str(properties["hs_target_amount"]))
        for name in ("hs_start_datetime", "hs_end_datetime"):
            if name in properties:
                parse_time(properties[name])
    except (InvalidOperation, ValueError):
        return "hs_target_amount must be a number and the datetimes ISO-8601"
    owner = properties.get("hubspot_owner_id")
    if owner and str(owner) not in state.company.rep_by_id:  # §4: a userId is refused
        return f"{owner} is not a valid owner id"
    return None


def _stamp(properties: dict[str, Any], created: bool) -> dict[str, Any]:
    now = iso_ms_now()
    out = {k: None if v is None else str(v) for k, v in properties.items()}
    out["hs_lastmodifieddate"] = now
    if created:
        out["hs_createdate"] = now
    return out


async def batch_create(request: Request, state: HubSpotState) -> Response:
    results, errors = [], []
    for index, item in enumerate(await _inputs(request)):
        properties = item.get("properties") if isinstance(item, dict) else None
        problem = _check(state, properties, creating=True)
        if problem:
            errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": problem,
                           "context": {"inputIndexes": [str(index)]}})
            continue
        assert isinstance(properties, dict)
        goal_id = state.new_goal_id()
        state.goal_targets[goal_id] = _stamp(properties, created=True)
        results.append(_record(goal_id, state.goal_targets[goal_id]))
    return _batch_answer(results, errors, 201)


async def batch_update(request: Request, state: HubSpotState) -> Response:
    results, errors = [], []
    for item in await _inputs(request):
        goal_id = str(item.get("id")) if isinstance(item, dict) else ""
        properties = item.get("properties") if isinstance(item, dict) else None
        if goal_id not in state.goal_targets:
            errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                           "message": "Object not found", "context": {"ids": [goal_id]}})
            continue
        problem = _check(state, properties, creating=False)
        if problem:
            errors.append({"status": "error", "category": "VALIDATION_ERROR", "message": problem,
                           "context": {"ids": [goal_id]}})
            continue
        assert isinstance(properties, dict)
        state.goal_targets[goal_id].update(_stamp(properties, created=False))
        results.append(_record(goal_id, state.goal_targets[goal_id]))
    return _batch_answer(results, errors, 200)


async def batch_archive(request: Request, state: HubSpotState) -> Response:
    """§9: 204; ids already archived or unknown are no error (guess)."""
    for item in await _inputs(request):
        goal_id = str(item.get("id")) if isinstance(item, dict) else ""
        if goal_id in state.goal_targets:
            state.archived_goals[goal_id] = state.goal_targets.pop(goal_id)
    return Response(status_code=204)


def _batch_answer(results: list[Any], errors: list[Any], ok: int) -> Response:
    now = iso_ms_now()
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now,
                            "completedAt": now}
    if errors:
        body.update(numErrors=len(errors), errors=errors)
        return json_response(body, 207)
    return json_response(body, ok)


async def list_goals(request: Request, state: HubSpotState) -> Response:
    ids = sorted(state.goal_targets, key=int)
    after = request.query_params.get("after")
    start = ids.index(after) + 1 if after in ids else 0
    page = ids[start:start + 100]
    body: dict[str, Any] = {"results": [_record(i, state.goal_targets[i]) for i in page]}
    if start + 100 < len(ids):
        body["paging"] = {"next": {"after": page[-1]}}
    return json_response(body)


async def get_goal(request: Request, state: HubSpotState) -> Response:
    goal_id = str(request.path_params["goal_id"])
    if goal_id not in state.goal_targets:
        raise not_found("Object")
    return json_response(_record(goal_id, state.goal_targets[goal_id]))


def _indexed(state: HubSpotState, properties: dict[str, Any]) -> bool:
    """§3: new records take a few moments to appear in search (`search_lag` seconds here): a
    target created since is not found yet (one changed since is, by what did not change)."""
    created = parse_time(properties.get("hs_createdate"))
    return not state.search_lag or created is None or \
        created.timestamp() <= time.time() - state.search_lag


async def search_goals(request: Request, state: HubSpotState) -> Response:
    """§9: search by any stored property (EQ, IN, ...), 200 a page."""
    try:
        body = json.loads(await request.body() or b"{}")
        groups = body.get("filterGroups") or []
        predicates = [[(f["propertyName"], matcher(f["operator"], "", f))
                       for f in g["filters"]] for g in groups]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise validation("filterGroups: [{filters: [{propertyName, operator, value}]}]") from None
    found = [(i, p) for i, p in sorted(state.goal_targets.items(), key=lambda kv: int(kv[0]))
             if _indexed(state, p)
             and (not predicates or any(all(test(p.get(name)) for name, test in tests)
                                        for tests in predicates))]
    offset = int(str(body.get("after") or 0))
    limit = int(body.get("limit") or 10)
    page = found[offset:offset + limit]
    answer: dict[str, Any] = {"total": len(found), "results": [_record(i, p) for i, p in page]}
    if offset + limit < len(found):
        answer["paging"] = {"next": {"after": str(offset + limit)}}
    return json_response(answer)
