"""The Zoho sandbox's read API: records, deleted records, users, org and metadata.

Behaviour follows docs/vendors/zoho.md (cited as §n); where Zoho documents nothing, the
guess is marked "guess".
"""

import math
import time
from datetime import datetime
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from connectors.sandbox.dataset import Deletion, SortField
from connectors.sandbox.paging import TokenState
from connectors.zoho.sandbox.errors import ZohoError, empty, invalid, json_response, missing
from connectors.zoho.sandbox.state import ZohoState
from connectors.zoho.sandbox.wire import MODULES, ORG_DOMAIN, ModuleSpec, user_json

MAX_PER_PAGE = 200  # §2 and §3: default and max 200
MAX_FIELDS = 50  # §2: at most 50 API names in `fields`
MAX_IDS = 100  # guess: the v8 OAS caps the users `ids` list at 100; records alike
DISCRETE_LIMIT = 2000  # §2: only the first 2,000 records through `page`
SORTABLE: dict[str, SortField] = {  # §2: sort_by takes only these three
    "id": "id", "Created_Time": "created_at", "Modified_Time": "modified_at"}
RECYCLE_DAYS, PERMANENT_DAYS = 60, 120  # §3: how long deleted rows stay listed
# §2: the documented `type` values -> (wants active?, admins only?); None = either way.
# Every sandbox user is confirmed and none is deleted; tokens belong to the admin (manager).
USER_TYPES: dict[str, tuple[bool | None, bool] | None] = {
    "AllUsers": (None, False), "ActiveAndDeactive": (None, False),
    "ConfirmedUsers": (None, False), "ActiveUsers": (True, False),
    "AllActiveUsers": (True, False), "ActiveConfirmedUsers": (True, False),
    "DeactiveUsers": (False, False), "AdminUsers": (None, True),
    "ActiveConfirmedAdmins": (True, True), "CurrentUser": (None, True),
    "NotConfirmedUsers": None, "DeletedUsers": None,
}


# ---- request parsing -----------------------------------------------------------------------
def int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(name) from None
    if value < 1:
        raise invalid(name)
    return value


def _since(request: Request) -> int | None:
    """§2: If-Modified-Since is ISO-8601 with an offset; the filter is inclusive (§11)."""
    raw = request.headers.get("if-modified-since")
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.strip())
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise invalid("If-Modified-Since", "the given If-Modified-Since value is invalid")
    return math.ceil(moment.timestamp())  # records carry whole seconds


def _fields(request: Request, state: ZohoState, spec: ModuleSpec, *,
            required: bool) -> list[Any]:
    """The requested fields this org's module has (one-currency orgs lack Currency, §8)."""
    state_fields = state.wire.fields(spec)
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        if required:
            raise missing("fields")  # §2: mandatory when listing
        return list(state_fields)
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if len(names) > MAX_FIELDS:  # §2: more than 50 -> LIMIT_EXCEEDED
        raise ZohoError(400, "LIMIT_EXCEEDED", "fields limit exceeded",
                        {"limit": MAX_FIELDS, "param_name": "fields"})
    # guess: unknown API names are skipped, not rejected (only known fields come back)
    wanted = dict.fromkeys(names)
    return [f for f in state_fields if f.api_name in wanted]


def _ids(request: Request) -> list[str] | None:
    raw = request.query_params.get("ids")
    if raw is None:
        return None
    ids = [i.strip() for i in raw.split(",") if i.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise invalid("ids")
    if len(ids) > MAX_IDS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "ids limit exceeded",
                        {"limit": MAX_IDS, "param_name": "ids"})
    return ids


def _choice(request: Request, name: str, default: str, allowed: list[str]) -> str:
    value = request.query_params.get(name) or default
    if value not in allowed:
        raise invalid(name, supported_values=allowed)  # crm-oas: InvalidDataSortByError
    return value


def _binding(request: Request) -> tuple[tuple[str, str], ...]:
    """What a page token is bound to (§2): every other parameter and If-Modified-Since."""
    pairs = [(k, v) for k, v in request.query_params.multi_items()
             if k not in ("page_token", "page")]
    since = request.headers.get("if-modified-since")
    if since is not None:
        pairs.append(("If-Modified-Since", since.strip()))
    return tuple(sorted(pairs))


def _resume(state: ZohoState, token: str, binding: tuple[tuple[str, str], ...]) -> TokenState:
    """§2: a page token lives 24 h, is bound to the other parameters, reaches 100,000 rows."""
    resume = state.page_tokens.get(token)
    if resume is None:
        raise invalid("page_token", "invalid page token")  # guess: code for a forged token
    if resume.expires_at <= time.time():
        raise ZohoError(400, "EXPIRED_VALUE", "the page token has expired",
                        {"api_name": "page_token", "json_path": "$.page_token"})
    if resume.binding != binding:
        changed = sorted(dict(set(resume.binding) ^ set(binding)))
        raise ZohoError(400, "TOKEN_BOUND_DATA_MISMATCH",
                        "the parameters do not match the ones the page token was issued for",
                        {"param_name": changed[0] if changed else "page_token"})
    if resume.served >= state.pagination_cap:
        raise ZohoError(400, "PAGINATION_LIMIT_EXCEEDED",
                        f"You can only get the first {state.pagination_cap} records",
                        {"param_name": "page_token"})
    return resume


# ---- records (§2) --------------------------------------------------------------------------
async def list_records(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}: fields, paging (page / page_token), sorting, If-Modified-Since."""
    spec = state.module(request.path_params["module"])
    fields = _fields(request, state, spec, required=True)
    per_page = min(int_param(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)  # guess: capped
    sort_by = _choice(request, "sort_by", "id", list(SORTABLE))
    sort_order = _choice(request, "sort_order", "desc", ["asc", "desc"])
    since, ids = _since(request), _ids(request)
    token, page_param = request.query_params.get("page_token"), request.query_params.get("page")
    if token is not None and page_param is not None:
        raise ZohoError(400, "AMBIGUITY_DURING_PROCESSING", "ambiguity while processing",
                        {"ambiguity_due_to": [{"param_name": "page"},
                                              {"param_name": "page_token"}]})
    descending = sort_order == "desc"
    binding = _binding(request)
    if token is not None:
        resume = _resume(state, token, binding)
        window = state.window(spec, SORTABLE[sort_by], since, ids)
        page = window.after(resume.last_key, min(per_page, state.pagination_cap - resume.served),
                            descending=descending)
        page_no, served, previous = resume.page, resume.served, resume.previous
    else:
        page_no = int_param(request, "page", 1)
        if page_no * per_page > DISCRETE_LIMIT:  # §2: exact body from the Airbyte log
            raise ZohoError(400, "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                            "You can only get the first 2000 records without using page_token "
                            "param", {"limit": DISCRETE_LIMIT})
        window = state.window(spec, SORTABLE[sort_by], since, ids)
        page = window.page((page_no - 1) * per_page, per_page, descending=descending)
        served, previous = (page_no - 1) * per_page, None
    if not page.items:  # §2: 304 when nothing changed since If-Modified-Since, else 204
        return empty(304 if since is not None and len(window) == 0 else 204)
    next_token, expiry = None, None
    if page.more and page.last_key is not None:
        next_token, expires_at = state.page_tokens.mint(
            binding=binding, last_key=page.last_key, served=served + len(page.items),
            page=page_no + 1, previous=token)
        expiry = state.wire.dt_epoch(expires_at)
    data = state.wire.records(page.items, fields)
    return json_response({"data": data, "info": {
        "call": False, "per_page": per_page, "next_page_token": next_token,
        "count": len(data), "sort_by": sort_by, "page": page_no,
        "previous_page_token": previous, "page_token_expiry": expiry,
        "sort_order": sort_order, "email": False, "more_records": page.more}})


async def get_record(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}/{id}; `fields` is optional here."""
    spec = state.module(request.path_params["module"])
    record_id = request.path_params["record_id"]
    if not record_id.isdigit():
        raise invalid("id", "the id given seems to be invalid")
    fields = _fields(request, state, spec, required=False)
    record = state.pool(spec).get(record_id)
    if record is None:
        return empty(204)  # guess: an unknown or deleted id answers "no content"
    return json_response({"data": state.wire.records([record], fields)})


async def deal_page(request: Request, state: ZohoState) -> Response:
    """GET /crm/{org}/tab/Potentials/{id} (or without the org): the deal's page in the CRM's
    web app (§12), so the dashboard's links lead somewhere. Real Zoho asks the browser to
    sign in first; the sandbox shows a plain page with the deal's name, stage and amount."""
    org = request.path_params.get("org", ORG_DOMAIN)
    deal = state.company.deals.get(request.path_params["record_id"])
    if org != ORG_DOMAIN or deal is None:
        return HTMLResponse("<!doctype html><title>Zoho CRM</title><p>Record not found.",
                            status_code=404)
    stage = state.company.stage_by_id[deal.stage_id].name
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8><title>"
        f"{escape(deal.name)} - Zoho CRM (sandbox)</title></head><body>"
        f"<h1>{escape(deal.name)}</h1><dl><dt>Deal id</dt><dd>{escape(deal.id)}</dd>"
        f"<dt>Stage</dt><dd>{escape(stage)}</dd><dt>Amount</dt>"
        f"<dd>{deal.amount} {escape(deal.currency)}</dd><dt>Closing date</dt>"
        f"<dd>{deal.close_date.isoformat()}</dd></dl></body></html>")


STAGE_HISTORY_FIELDS = ("Stage", "Probability", "Last_Modified_Time", "Modified_By")


async def stage_history(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/Deals/{id}/Stage_History (§13): the stages a deal entered, newest first
    (guess, from a public Deluge script); `fields` mandatory, page/per_page up to 200, 204
    when the deal is unknown or has no rows. Modified_By is the deal's owner (guess: the
    synthetic company does not record who moved a deal)."""
    record_id = request.path_params["record_id"]
    if not record_id.isdigit():
        raise invalid("id", "the id given seems to be invalid")
    raw = request.query_params.get("fields")
    if raw is None or not raw.strip():
        raise missing("fields")
    wanted = {n.strip() for n in raw.split(",")}
    per_page = min(int_param(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_no = int_param(request, "page", 1)
    deal = state.company.deals.get(record_id)
    if deal is None or not deal.history:
        return empty(204)
    moves = sorted(deal.history, key=lambda m: m.changed_at, reverse=True)
    chunk = moves[(page_no - 1) * per_page:page_no * per_page]
    if not chunk:
        return empty(204)
    wire, stages = state.wire, state.company.stage_by_id
    rows = []
    for number, move in enumerate(chunk):
        stage = stages[move.stage_id]
        row: dict[str, Any] = {"id": f"{record_id}{len(moves) - number:04d}",
                               "Stage": stage.name, "Probability": stage.probability,
                               "Last_Modified_Time": wire.dt(move.changed_at),
                               "Modified_By": wire.user_ref(deal.owner_id)}
        rows.append({k: v for k, v in row.items() if k == "id" or k in wanted})
    return json_response({"data": rows, "info": {
        "per_page": per_page, "count": len(rows), "page": page_no,
        "more_records": page_no * per_page < len(moves)}})


async def list_deleted(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/{module}/deleted (§3): type, page, per_page, If-Modified-Since; no tokens."""
    spec = state.module(request.path_params["module"])
    kind = _choice(request, "type", "all", ["all", "recycle", "permanent"])
    per_page = min(int_param(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_no, since = int_param(request, "page", 1), _since(request)
    # §3: recycle-bin rows listed for 60 days, permanent ones for 120 (from the data's "now").
    now = state.company.latest.timestamp()
    rows = [d for d in state.company.deletions if d.entity == spec.entity
            and d.kind == spec.kind and kind in ("all", "permanent" if d.permanent else "recycle")
            and d.deleted_at.timestamp() >= now - 86_400 * (
                PERMANENT_DAYS if d.permanent else RECYCLE_DAYS)
            and (since is None or d.deleted_at.timestamp() >= since)]
    if not rows:
        return empty(304 if since is not None else 204)
    rows.sort(key=lambda d: (d.deleted_at, d.id), reverse=True)
    start = (page_no - 1) * per_page
    chunk = rows[start:start + per_page]
    if not chunk:
        return empty(204)
    return json_response({"data": [_deleted_json(state, d) for d in chunk], "info": {
        "per_page": per_page, "count": len(chunk), "page": page_no,
        "more_records": start + per_page < len(rows)}})


def _deleted_json(state: ZohoState, row: Deletion) -> dict[str, Any]:
    wire = state.wire
    if row.permanent:  # §3 sample: permanent rows have no names left
        return {"deleted_by": None, "id": row.id, "display_name": None, "type": "permanent",
                "created_by": None, "deleted_time": wire.dt(row.deleted_at)}
    return {"deleted_by": wire.user_ref(row.deleted_by), "id": row.id,
            "display_name": row.display_name, "type": "recycle",
            "created_by": wire.user_ref(row.created_by), "deleted_time": wire.dt(row.deleted_at)}


# ---- users, org, metadata (§2, §4, §8) -----------------------------------------------------
async def list_users(request: Request, state: ZohoState) -> Response:
    """GET /crm/v8/users: key `users`, `type` filter, page/per_page, If-Modified-Since."""
    kind = _choice(request, "type", "AllUsers", list(USER_TYPES))
    per_page = min(int_param(request, "per_page", MAX_PER_PAGE), MAX_PER_PAGE)
    page_no, since = int_param(request, "page", 1), _since(request)
    rule, manager = USER_TYPES[kind], state.company.manager
    reps = [r for r in state.company.reps if rule is not None
            and rule[0] in (None, r.active) and (r is manager or not rule[1])
            and (since is None or r.modified_at.timestamp() >= since)]
    if not reps:
        return empty(304 if since is not None else 204)
    start = (page_no - 1) * per_page
    chunk = reps[start:start + per_page]
    if not chunk:
        return empty(204)
    return json_response({"users": [user_json(state.wire, r) for r in chunk], "info": {
        "per_page": per_page, "count": len(chunk), "page": page_no,
        "more_records": start + per_page < len(reps)}})


async def org_info(_: Request, state: ZohoState) -> Response:
    return json_response({"org": [state.wire.org()]})


async def currencies(_: Request, state: ZohoState) -> Response:
    if not state.multi_currency:  # zoho/crm-oas v8.0/currencies/operations/getCurrencies,
        # example response-403-currenciesnotenabled
        raise ZohoError(403, "CURRENCIES_NOT_ENABLED", "Multi currency is not enabled")
    return json_response({"currencies": state.wire.currencies()})  # §8


def _settings_module(request: Request) -> ModuleSpec:
    name = request.query_params.get("module")
    if not name:
        raise missing("module")
    spec = MODULES.get(name.lower())
    if spec is None:
        raise ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid",
                        {"param_name": "module"})
    return spec


async def layouts(request: Request, state: ZohoState) -> Response:
    return json_response({"layouts": [state.wire.layout(_settings_module(request))]})


async def fields_meta(request: Request, state: ZohoState) -> Response:
    spec = _settings_module(request)
    return json_response({"fields": [state.wire.field_meta(spec, f)
                                     for f in state.wire.fields(spec)]})


async def pipelines(request: Request, state: ZohoState) -> Response:
    """§4: layout_id is mandatory; only the Deals layout has pipelines."""
    layout_id = request.query_params.get("layout_id")
    if not layout_id:
        raise missing("layout_id")
    if layout_id != MODULES["deals"].layout_id:
        raise invalid("layout_id", "the layout id given seems to be invalid")
    return json_response({"pipeline": state.wire.pipelines()})
