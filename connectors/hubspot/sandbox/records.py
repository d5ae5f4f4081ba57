"""The HubSpot sandbox's read API (docs/vendors/hubspot.md): owners (§4), pipelines (§5),
currencies (§6), object lists and archived lists (§2, §10), batch read (§2) with property
histories (§11), search (§3), deal-to-company associations (§2), merges (§10), and the web
app's deal record pages (§12)."""

import json
import time
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from connectors.hubspot.sandbox.errors import HubSpotError, json_response, not_found, validation
from connectors.hubspot.sandbox.state import HubSpotState
from connectors.hubspot.sandbox.wire import (
    OPERATORS,
    association_type,
    iso_ms,
    matcher,
    stage_label,
)
from connectors.hubspot.wire import (
    ACTIVITY_SCOPE,
    ASSOCIATION_BATCH_LIMIT,
    BATCH_LIMIT,
    HISTORY_BATCH_LIMIT,
    HISTORY_LIMIT_MESSAGE,
    LIST_LIMIT,
    MAX_FILTER_GROUPS,
    MAX_FILTERS,
    MAX_FILTERS_PER_GROUP,
    MAX_SEARCH_BODY,
    OBJECT_ID,
    OBJECT_TYPES,
    OWNERS_LIMIT,
    SEARCH_LIMIT,
)
from connectors.sandbox.dataset import ActivityKind, Deal, Entity

ENTITY: dict[str, Entity] = {"deals": "deals", "companies": "accounts"}
# §13: the activity objects and the company's activity kind each one holds
ACTIVITY_KIND: dict[str, ActivityKind] = {"calls": "call", "meetings": "meeting",
                                          "tasks": "task", "notes": "note"}
Target = tuple[Entity, ActivityKind | None]
SINGULAR = {"deals": "deal", "companies": "company", "calls": "call", "meetings": "meeting",
            "tasks": "task", "notes": "note"}  # §2: how association errors name an object


def target_of(request: Request, state: HubSpotState) -> Target:
    """The object type of the path: (entity, activity kind or None). §13: the activity
    objects need their scope (403 MISSING_SCOPES without it)."""
    name = OBJECT_TYPES.get(str(request.path_params["object_type"]).lower())
    if name is None:
        raise validation(f"Unable to infer object type from: "
                         f"{request.path_params['object_type']}")
    if name not in ACTIVITY_KIND:
        return ENTITY[name], None
    if ACTIVITY_SCOPE not in state.scopes:
        raise HubSpotError(403, "MISSING_SCOPES", "This app hasn't been granted all required "
                           "scopes to make this call.", errors=[{
                               "message": "One or more of the following scopes are required.",
                               "context": {"requiredScopes": [ACTIVITY_SCOPE]}}])
    return "activities", ACTIVITY_KIND[name]


def entity_of(request: Request) -> Entity:
    """The entity of a deal or company path (merges: §10)."""
    name = OBJECT_TYPES.get(str(request.path_params["object_type"]).lower())
    if name not in ENTITY:
        raise validation(f"Unable to infer object type from: "
                         f"{request.path_params['object_type']}")
    return ENTITY[name]


def _limit(request: Request, default: int, most: int) -> int:
    raw = request.query_params.get("limit", str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= most:
        raise validation(f"limit must be between 1 and {most}")  # §2
    return int(raw)


def _names(raw: str | None) -> list[str] | None:
    names = [n.strip() for n in (raw or "").split(",") if n.strip()]
    return names or None


async def _body(request: Request) -> tuple[dict[str, Any], int]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise validation("Invalid input JSON on line 1") from None
    if not isinstance(body, dict):
        raise validation("the body must be a JSON object")
    return body, len(raw.decode("utf-8", "replace"))


# ---- owners, pipelines, currencies ---------------------------------------------------------

async def list_owners(request: Request, state: HubSpotState) -> Response:
    """§4: active owners, or with archived=true the deactivated ones; 500 a page."""
    limit = _limit(request, 100, OWNERS_LIMIT)
    archived = request.query_params.get("archived", "false").lower() == "true"
    reps = sorted((r for r in state.company.reps if r.active != archived), key=lambda r: r.id)
    start = int(request.query_params.get("after") or 0)
    page = reps[start:start + limit]
    body: dict[str, Any] = {"results": [state.wire.owner(r) for r in page]}
    if start + limit < len(reps):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return json_response(body)


async def pipelines(_: Request, state: HubSpotState) -> Response:
    return json_response({"results": state.wire.pipelines()})  # §5


async def company_currency(_: Request, state: HubSpotState) -> Response:
    return json_response({"currencyCode": state.company.home_currency,  # §6
                          "createdAt": "2024-01-01T00:00:00Z",
                          "updatedAt": "2024-01-01T00:00:00Z"})


async def exchange_rates(_: Request, state: HubSpotState) -> Response:
    return json_response({"results": state.wire.exchange_rates()})  # §6


# ---- lists (§2, §10) -------------------------------------------------------------------------

async def list_objects(request: Request, state: HubSpotState) -> Response:
    entity, kind = target_of(request, state)
    limit = _limit(request, 10, LIST_LIMIT)
    after = request.query_params.get("after")
    wanted = _names(request.query_params.get("properties"))
    associations = _names(request.query_params.get("associations")) or []
    if request.query_params.get("archived", "false").lower() == "true":
        return _archived(state, (entity, kind), limit, after)
    window = state.company.index(entity, "id", kind).window()
    if after:
        if not after.isdigit():
            raise validation("after must be a paging cursor from an earlier answer")
        page = window.after((0, after), limit, descending=False)
    else:
        page = window.page(0, limit, descending=False)
    body: dict[str, Any] = {"results": [state.wire.record(r, wanted, associations)
                                        for r in page.items]}
    if page.more and page.last_key is not None:
        body["paging"] = {"next": {"after": page.last_key[1],
                                   "link": f"{request.url.path}?after={page.last_key[1]}"}}
    return json_response(body)


def _archived(state: HubSpotState, target: Target, limit: int, after: str | None) -> Response:
    """§10: archived records with `archived: true` and `archivedAt`."""
    rows = state.archived(*target)
    start = int(after) if after and after.isdigit() else 0
    name = {"deals": "dealname", "accounts": "name"}.get(target[0], OBJECT_ID)
    results = [{"id": d.id, "properties": {name: d.display_name, OBJECT_ID: d.id},
                "createdAt": iso_ms(d.deleted_at), "updatedAt": iso_ms(d.deleted_at),
                "archived": True, "archivedAt": iso_ms(d.deleted_at)}
               for d in rows[start:start + limit]]
    body: dict[str, Any] = {"results": results}
    if start + limit < len(rows):
        body["paging"] = {"next": {"after": str(start + limit)}}
    return json_response(body)


async def get_object(request: Request, state: HubSpotState) -> Response:
    """One record; a merged-away id answers the primary record (§10)."""
    record = state.find(*target_of(request, state), str(request.path_params["object_id"]))
    if record is None:
        raise not_found("Object")
    return json_response(state.wire.record(
        record, _names(request.query_params.get("properties")),
        _names(request.query_params.get("associations")) or []))


async def batch_read(request: Request, state: HubSpotState) -> Response:
    """§2: 200 with every record, 207 with `errors` naming ids not found."""
    target = target_of(request, state)
    body, _ = await _body(request)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or len(inputs) > BATCH_LIMIT:
        raise validation(f"inputs must hold 1 to {BATCH_LIMIT} objects")
    wanted = body.get("properties") if isinstance(body.get("properties"), list) else None
    history = body.get("propertiesWithHistory") or []
    if not isinstance(history, list) or not all(isinstance(n, str) for n in history):
        raise validation("propertiesWithHistory must be a list of property names")
    if history and len(inputs) > HISTORY_BATCH_LIMIT:
        raise validation(HISTORY_LIMIT_MESSAGE)  # §11
    results, missing = [], []
    for item in inputs:
        object_id = str(item.get("id")) if isinstance(item, dict) else ""
        record = state.find(*target, object_id)
        if record is None:
            missing.append(object_id)
        else:
            results.append(state.wire.record(record, wanted, history=history))
    now = iso_ms_now()
    answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now,
                              "completedAt": now}
    if missing:
        answer["numErrors"] = 1
        answer["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                             "message": "Could not get some objects, they may be deleted or "
                                        "not exist.", "context": {"ids": missing}}]
        return json_response(answer, 207)
    return json_response(answer)


def iso_ms_now() -> str:
    from_epoch = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(from_epoch)) + \
        f".{int(from_epoch * 1000) % 1000:03d}Z"


async def associations(request: Request, state: HubSpotState) -> Response:
    """§2: POST /crm/v4/associations/{fromObjectType}/{toObjectType}/batch/read: a deal's
    company, an activity's deal or company (§13). An input without one (or unknown) is not
    in `results` but in `errors` (NO_ASSOCIATIONS_FOUND), and the answer is then a 207."""
    source = target_of(request, state)
    from_name = OBJECT_TYPES[str(request.path_params["object_type"]).lower()]
    to = OBJECT_TYPES.get(str(request.path_params["to_type"]).lower())
    if to not in ("deals", "companies") or source[0] == "accounts" or \
            (source[0] == "deals" and to == "deals"):
        raise validation(f"no associations from {request.path_params['object_type']} to "
                         f"{request.path_params['to_type']}")
    body, _ = await _body(request)
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs or len(inputs) > ASSOCIATION_BATCH_LIMIT:
        # §2: the changelog of 2025-02-10 gives the limit, not the error's body (a guess)
        raise validation(f"inputs must hold 1 to {ASSOCIATION_BATCH_LIMIT} objects")
    results, errors = [], []
    for item in inputs:
        object_id = str(item.get("id")) if isinstance(item, dict) else ""
        record = state.find(*source, object_id)
        linked = state.wire.associated(record, to) if record is not None else None
        type_id = association_type(source, str(to))
        if record is not None and linked:
            results.append({"from": {"id": record.id}, "to": [
                {"toObjectId": int(linked), "associationTypes": [
                    {"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]}]})
        else:  # §2: one error an input (3p: the body real accounts answer, see the notes)
            errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                           "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                           "message": f"No {SINGULAR[str(to)]} is associated with "
                                      f"{SINGULAR[from_name]} {object_id}.",
                           "context": {"fromObjectId": [object_id],
                                       "fromObjectType": [SINGULAR[from_name]],
                                       "toObjectType": [SINGULAR[str(to)]]}})
    now = iso_ms_now()
    answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": now,
                              "completedAt": now}
    if errors:
        answer["numErrors"], answer["errors"] = len(errors), errors
        return json_response(answer, 207)
    return json_response(answer)


# ---- search (§3) ---------------------------------------------------------------------------

async def search(request: Request, state: HubSpotState) -> Response:
    target = target_of(request, state)
    body, size = await _body(request)
    if size > MAX_SEARCH_BODY:
        raise validation(f"the request body is over {MAX_SEARCH_BODY} characters")
    limit = body.get("limit", 10)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= SEARCH_LIMIT:
        raise validation(f"limit must be between 1 and {SEARCH_LIMIT}")
    after = str(body.get("after") or "0")
    if not after.isdigit():
        raise validation("after must be a number")
    offset = int(after)
    if offset + limit > state.search_cap:  # §3: no paging past 10,000 results
        raise validation(f"Paging beyond {state.search_cap} results is not supported.",
                         errors=[{"message": "the sum of after and limit is over the cap"}])
    rows = _search_rows(state, target, body)
    page = rows[offset:offset + limit]
    wanted = body.get("properties") if isinstance(body.get("properties"), list) else None
    answer: dict[str, Any] = {"total": len(rows),
                              "results": [state.wire.record(r, wanted) for r in page]}
    if offset + limit < len(rows):
        answer["paging"] = {"next": {"after": str(offset + limit)}}
    return json_response(answer)


def _predicates(groups: Any, sorts: Any) -> list[list[tuple[str, Any]]]:
    """§3 filterGroups (OR of ANDs) as predicates, with the documented limits."""
    if not isinstance(groups, list) or len(groups) > MAX_FILTER_GROUPS:
        raise validation(f"at most {MAX_FILTER_GROUPS} filterGroups")
    if not isinstance(sorts, list) or len(sorts) > 1:
        raise validation("at most one sort")
    total = 0
    predicates = []
    for group in groups:
        filters = group.get("filters") if isinstance(group, dict) else None
        if not isinstance(filters, list) or len(filters) > MAX_FILTERS_PER_GROUP:
            raise validation(f"each filterGroup holds 1 to {MAX_FILTERS_PER_GROUP} filters")
        total += len(filters)
        tests = []
        for flt in filters:
            if not isinstance(flt, dict) or flt.get("operator") not in OPERATORS or \
                    not isinstance(flt.get("propertyName"), str):
                raise validation(f"a filter needs propertyName and an operator among {OPERATORS}")
            try:
                tests.append((flt["propertyName"], matcher(flt["operator"], flt["propertyName"],
                                                           flt)))
            except ValueError as exc:
                raise validation(str(exc)) from None
        predicates.append(tests)
    if total > MAX_FILTERS:
        raise validation(f"at most {MAX_FILTERS} filters in all")
    return predicates


def _search_rows(state: HubSpotState, target: Target, body: dict[str, Any]) -> list[Any]:
    groups = body.get("filterGroups") or []
    sorts = body.get("sorts") or []
    predicates = _predicates(groups, sorts)
    entity, kind = target
    key = (target, json.dumps([groups, sorts], sort_keys=True), state.company.version,
           len(state.merged_into), int(time.time()) if state.search_lag else 0)
    cached = state.search_cache.get(key)
    if cached is not None:
        return cached
    visible_before = time.time() - state.search_lag
    wire = state.wire
    rows = []
    for record in state.pool(entity).values():
        if kind is not None and record.kind != kind:
            continue
        if state.search_lag and record.modified_at.timestamp() > visible_before:
            continue  # §3: changes take a few moments to appear in search
        if not predicates or any(all(test(wire.value(record, name)) for name, test in tests)
                                 for tests in predicates):
            rows.append(record)
    if sorts:
        name = str(sorts[0].get("propertyName")) if isinstance(sorts[0], dict) else OBJECT_ID
        descending = isinstance(sorts[0], dict) and sorts[0].get("direction") == "DESCENDING"
        rows.sort(key=lambda r: (wire.value(r, name) is None, wire.value(r, name) or 0,
                                 int(r.id)), reverse=descending)
    else:
        rows.sort(key=lambda r: int(r.id))
    if len(state.search_cache) > 8:
        state.search_cache.clear()
    state.search_cache[key] = rows
    return rows


# ---- merges (§10) --------------------------------------------------------------------------

async def merge(request: Request, state: HubSpotState) -> Response:
    entity = entity_of(request)
    body, _ = await _body(request)
    primary, merged = body.get("primaryObjectId"), body.get("objectIdToMerge")
    if not primary or not merged:
        raise validation("primaryObjectId and objectIdToMerge are required")
    record = state.merge(entity, str(primary), str(merged))
    return json_response(state.wire.record(record, None,
                                           ["companies"] if isinstance(record, Deal) else []))


# ---- the web app's record pages (§12) ----------------------------------------------------

async def deal_page(request: Request, state: HubSpotState) -> Response:
    """GET /contacts/{portalId}/record/0-3/{dealId}: the deal's record page in HubSpot's web
    app, so the dashboard's links lead somewhere. Real HubSpot asks the browser to sign in
    first; the sandbox shows a plain page with the deal's name, stage and amount."""
    deal = state.company.deals.get(str(request.path_params["object_id"]))
    if str(request.path_params["portal_id"]) != str(state.portal_id) or deal is None:
        return HTMLResponse("<!doctype html><title>HubSpot</title><p>Record not found.",
                            status_code=404)
    stage = state.company.stage_by_id[deal.stage_id]
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8><title>"
        f"{escape(deal.name)} - HubSpot (sandbox)</title></head><body>"
        f"<h1>{escape(deal.name)}</h1><dl><dt>Record ID</dt><dd>{escape(deal.id)}</dd>"
        f"<dt>Deal stage</dt><dd>{escape(stage_label(stage))}</dd><dt>Amount</dt>"
        f"<dd>{deal.amount} {escape(deal.currency)}</dd><dt>Close date</dt>"
        f"<dd>{deal.close_date.isoformat()}</dd></dl></body></html>")
