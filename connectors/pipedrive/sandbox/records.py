"""The Pipedrive sandbox's read API: v2 lists with cursors for deals, organizations,
pipelines and stages; v1 lists with start/limit for users, currencies and field lists
(docs/vendors/pipedrive.md §2-§4, §8)."""

import base64
import json
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from connectors.pipedrive.sandbox.errors import PipedriveError, bad_request, not_found, ok
from connectors.pipedrive.sandbox.state import DELETED_KEPT_DAYS, PipedriveState, state_of
from connectors.pipedrive.wire import DEAL_STATUSES, MAX_LIMIT, parse_time
from connectors.sandbox.dataset import SORT_KEYS, Deal, Deletion, SortField, epoch_seconds
from connectors.sandbox.paging import Key

SORTS: dict[str, SortField] = {"id": "id", "update_time": "modified_at", "add_time": "created_at"}
DEFAULT_LIMIT = 100  # §2


# ---- v1: start / limit ------------------------------------------------------------------------
def v1_page(request: Request, rows: Sequence[dict[str, Any]],
            related: dict[str, Any] | None = None) -> Response:
    """§2: `start` and `limit` (at most 500), additional_data.pagination."""
    start = _int(request, "start", 0, low=0)
    limit = min(_int(request, "limit", DEFAULT_LIMIT, low=1), MAX_LIMIT)
    chunk = list(rows[start:start + limit])
    more = start + limit < len(rows)
    pagination: dict[str, Any] = {"start": start, "limit": limit,
                                  "more_items_in_collection": more}
    if more:
        pagination["next_start"] = start + limit
    return ok(chunk, {"pagination": pagination}, related=related)


async def list_users(request: Request) -> Response:
    state = state_of(request)
    return v1_page(request, [state.wire.user(r) for r in state.company.reps])


async def current_user(request: Request) -> Response:
    state = state_of(request)
    return ok({**state.wire.user(state.company.manager), "company_id": 1,
               "company_name": state.company.name,
               "company_domain": state.company.domain.split(".")[0]})


async def list_teams(request: Request) -> Response:
    """§10: GET /v1/legacyTeams, not paged; 403 on a plan without Teams (guess: the
    status and wording of Pipedrive's answer to a feature the plan lacks)."""
    state = state_of(request)
    if not state.teams:
        raise PipedriveError(403, "Teams feature is not available in your plan")
    rows = state.wire.teams()
    if request.query_params.get("skip_users") == "1":
        rows = [{k: v for k, v in r.items() if k != "users"} for r in rows]
    return ok(rows)


async def deal_flow(request: Request) -> Response:
    """§11: GET /v1/deals/{id}/flow, `items` a comma-separated filter of objects (only
    dealChange exists here), paged by start/limit (§2), the deal in related_objects; a
    deal deleted within 30 days keeps its flow (guess), any other unknown id is 404."""
    state = state_of(request)
    deal_id = request.path_params["deal_id"]
    deal = state.company.deals.get(deal_id)
    if deal is None and any(d.id == deal_id for d in _recent_deletions(state)):
        deal = state.live.get(deal_id)
    if deal is None:
        raise not_found("Deal not found")
    items = request.query_params.get("items")
    rows = state.wire.flow(deal)
    if items is not None:
        rows = [r for r in rows if r["object"] in items.split(",")]
    wire = state.wire.deal(deal)
    related = {"deal": {deal_id: {k: wire[k] for k in ("id", "title", "status", "value",
                                                        "currency", "stage_id",
                                                        "pipeline_id")}}}
    return v1_page(request, rows, related)


async def deal_page(request: Request) -> Response:
    """§13: https://{company}.pipedrive.com/deal/{id}, the deal in the web app. Real
    Pipedrive asks the browser to sign in first; the sandbox shows a plain page with the
    deal's title, stage and value."""
    state = state_of(request)
    deal = state.company.deals.get(request.path_params["deal_id"])
    if deal is None:
        return HTMLResponse("<!doctype html><title>Pipedrive</title><p>Deal not found.",
                            status_code=404)
    stage = state.wire.kept_stage(deal).name
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8><title>"
        f"{escape(deal.name)} - Pipedrive (sandbox)</title></head><body>"
        f"<h1>{escape(deal.name)}</h1><dl><dt>Deal id</dt><dd>{escape(deal.id)}</dd>"
        f"<dt>Stage</dt><dd>{escape(stage)}</dd><dt>Value</dt>"
        f"<dd>{deal.amount} {escape(deal.currency)}</dd></dl></body></html>")


async def list_currencies(request: Request) -> Response:
    return v1_page(request, state_of(request).wire.currencies())


async def deal_fields(request: Request) -> Response:
    return v1_page(request, state_of(request).wire.fields("deal"))


async def organization_fields(request: Request) -> Response:
    return v1_page(request, state_of(request).wire.fields("organization"))


# ---- v2: cursors ------------------------------------------------------------------------------
async def list_pipelines(request: Request) -> Response:
    state = state_of(request)
    return _plain_v2(request, [state.wire.pipeline(p) for p in state.company.pipelines()])


async def list_stages(request: Request) -> Response:
    state = state_of(request)
    wanted = request.query_params.get("pipeline_id")
    rows = [state.wire.stage(s) for s in state.wire.open_stages()]
    if wanted is not None:
        rows = [r for r in rows if str(r["pipeline_id"]) == wanted]
    return _plain_v2(request, rows)


def _same(row: Any) -> Any:
    return row


def _plain_v2(request: Request, rows: list[dict[str, Any]]) -> Response:
    """A short v2 list sorted by id, paged by cursor like the others."""
    keys: list[Key] = [(0, f"{r['id']:020d}") for r in rows]
    return _v2_page(request, keys, rows, _same, "id")


async def list_deals(request: Request) -> Response:
    """§2, §3: status (comma-separated), updated_since/until, sort_by, owner/pipeline/stage."""
    state = state_of(request)
    statuses = set((request.query_params.get("status") or "open,won,lost").split(","))
    if not statuses <= set(DEAL_STATUSES):
        raise bad_request(f"status must be among {', '.join(DEAL_STATUSES)}")
    sort_by = _sort_by(request)
    filters = _deal_filters(request)
    live = [s for s in statuses if s != "deleted"]
    keys: list[Key]
    items: list[Any]
    index = state.company.index("deals", SORTS[sort_by])
    if "deleted" in statuses:
        pairs = [(k, d) for k, d in zip(index.keys, index.items, strict=True)] if live else []
        pairs += [(_deleted_key(g, state, sort_by), g) for g in _recent_deletions(state)]
        pairs.sort(key=lambda pair: pair[0])
        keys, items = [k for k, _ in pairs], [d for _, d in pairs]
    else:
        keys, items = index.keys, index.items

    def render(record: Any) -> dict[str, Any] | None:
        if isinstance(record, Deletion):
            wire = state.wire.deleted_deal(record, state.live.get(record.id))
        else:
            wire = state.wire.deal(record)
            if wire["status"] not in live:
                return None
        return wire if all(check(wire) for check in filters) else None

    return _v2_page(request, keys, items, render, sort_by)


async def get_deal(request: Request) -> Response:
    state = state_of(request)
    deal_id = request.path_params["deal_id"]
    if deal_id in state.company.deals:
        return ok(state.wire.deal(state.company.deals[deal_id]))
    gone = next((d for d in _recent_deletions(state) if d.id == deal_id), None)
    if gone is None:
        raise not_found("Deal not found")
    return ok(state.wire.deleted_deal(gone, state.live.get(gone.id)))


async def list_organizations(request: Request) -> Response:
    state = state_of(request)
    sort_by = _sort_by(request)
    index = state.company.index("accounts", SORTS[sort_by])
    filters = _time_filters(request)
    owner = request.query_params.get("owner_id")
    if owner is not None:
        filters.append(_equals("owner_id", owner))

    def render(account: Any) -> dict[str, Any] | None:
        wire = state.wire.organization(account)
        return wire if all(check(wire) for check in filters) else None

    return _v2_page(request, index.keys, index.items, render, sort_by)


async def get_organization(request: Request) -> Response:
    state = state_of(request)
    account = state.company.accounts.get(request.path_params["org_id"])
    if account is None:
        raise not_found("Organization not found")
    return ok(state.wire.organization(account))


# ---- activities (§12) ---------------------------------------------------------------------------
PIPEDRIVE_KINDS = ("call", "meeting", "task")  # notes are not Pipedrive activities


async def activity_types(request: Request) -> Response:
    """§12: GET /v1/activityTypes (not paged)."""
    return ok(state_of(request).wire.activity_types())


async def list_activities(request: Request) -> Response:
    """§12: GET /api/v2/activities: owner_id, deal_id, org_id, done, updated_since/until,
    sort_by (due_date is refused here: the sandbox sorts by id, update_time and add_time),
    cursor paging; activities deleted within 30 days are listed with is_deleted (guess)."""
    state = state_of(request)
    if request.query_params.get("sort_by") == "due_date":
        raise bad_request("sort_by=due_date is not supported by this sandbox")
    sort_by = _sort_by(request)
    company = state.company
    index = company.index("activities", SORTS[sort_by])
    pairs: list[tuple[Key, Any]] = [(k, a) for k, a in zip(index.keys, index.items, strict=True)
                                    if a.kind in PIPEDRIVE_KINDS]
    for gone in _recent_deletions(state, "activities"):
        if gone.kind in PIPEDRIVE_KINDS and not gone.permanent:
            last = state.company.deleted_activities.get(gone.id)
            key = SORT_KEYS[SORTS[sort_by]](last) if last is not None else \
                (0, gone.id) if sort_by == "id" else (epoch_seconds(gone.deleted_at), gone.id)
            pairs.append((key, gone))
    pairs.sort(key=lambda pair: pair[0])
    filters = _time_filters(request)
    for name in ("owner_id", "deal_id", "org_id"):
        value = request.query_params.get(name)
        if value is not None:
            filters.append(_equals(name, value))
    done = request.query_params.get("done")
    if done is not None:
        if done not in ("true", "false", "1", "0"):
            raise bad_request("done must be true or false")
        wanted = done in ("true", "1")
        filters.append(lambda wire: bool(wire["done"]) == wanted)

    def render(record: Any) -> dict[str, Any] | None:
        if isinstance(record, Deletion):
            last = company.deleted_activities.get(record.id)
            wire = state.wire.deleted_activity(record, last)
        else:
            wire = state.wire.activity(record)
        return wire if all(check(wire) for check in filters) else None

    return _v2_page(request, [k for k, _ in pairs], [r for _, r in pairs], render, sort_by)


async def get_activity(request: Request) -> Response:
    state = state_of(request)
    activity_id = request.path_params["activity_id"]
    found = state.company.activities.get(activity_id)
    if found is not None and found.kind in PIPEDRIVE_KINDS:
        return ok(state.wire.activity(found))
    gone = next((d for d in _recent_deletions(state, "activities") if d.id == activity_id
                 and not d.permanent and d.kind in PIPEDRIVE_KINDS), None)
    if gone is None:
        raise not_found("Activity not found")
    return ok(state.wire.deleted_activity(gone, state.company.deleted_activities.get(gone.id)))


# ---- helpers -----------------------------------------------------------------------------------
def _recent_deletions(state: PipedriveState, entity: str = "deals") -> list[Deletion]:
    since = datetime.now(UTC) - timedelta(days=DELETED_KEPT_DAYS)
    return [d for d in state.company.deletions if d.entity == entity and d.deleted_at >= since]


def _deleted_key(deletion: Deletion, state: PipedriveState, sort_by: str) -> Key:
    if sort_by == "id":
        return (0, deletion.id)
    last: Deal | None = state.live.get(deletion.id)
    if sort_by == "add_time" and last is not None:
        return SORT_KEYS["created_at"](last)
    return (epoch_seconds(deletion.deleted_at), deletion.id)


def _sort_by(request: Request) -> str:
    sort_by = request.query_params.get("sort_by", "id")
    if sort_by not in SORTS:
        raise bad_request("sort_by must be one of id, update_time, add_time")
    return sort_by


def _time_filters(request: Request) -> list[Callable[[dict[str, Any]], bool]]:
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for name, later in (("updated_since", True), ("updated_until", False)):
        raw = request.query_params.get(name)
        if raw is None:
            continue
        try:
            bound = parse_time(raw)
        except ValueError:
            raise bad_request(f"{name} must be an RFC 3339 date-time") from None
        assert bound is not None
        checks.append(_since(bound) if later else _until(bound))
    return checks


def _since(bound: datetime) -> Callable[[dict[str, Any]], bool]:
    """§3: updated at or after `bound` (documented: "later than or equal to")."""
    return lambda wire: (parse_time(wire["update_time"]) or bound) >= bound


def _until(bound: datetime) -> Callable[[dict[str, Any]], bool]:
    return lambda wire: (parse_time(wire["update_time"]) or bound) < bound


def _equals(name: str, value: str) -> Callable[[dict[str, Any]], bool]:
    return lambda wire: str(wire.get(name)) == value


def _deal_filters(request: Request) -> list[Callable[[dict[str, Any]], bool]]:
    checks = _time_filters(request)
    for name in ("owner_id", "pipeline_id", "stage_id", "org_id"):
        value = request.query_params.get(name)
        if value is not None:
            checks.append(_equals(name, value))
    return checks


def _encode(key: Key, sort_by: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([key[0], key[1], sort_by]).encode()).decode()


def _decode(cursor: str, sort_by: str) -> Key:
    try:
        value, record_id, sorted_by = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if sorted_by != sort_by or not isinstance(value, int) or not isinstance(record_id, str):
            raise ValueError
    except (ValueError, TypeError):
        raise bad_request("Invalid cursor") from None
    return (value, record_id)


def _v2_page(request: Request, keys: Sequence[Key], items: Sequence[Any],
             render: Callable[[Any], dict[str, Any] | None], sort_by: str) -> Response:
    """§2: `limit` (at most 500) records after `cursor`; next_cursor null on the last page.
    `render` gives a record's JSON, or None when the request's filters leave it out."""
    limit = _int(request, "limit", DEFAULT_LIMIT, low=1)
    if limit > MAX_LIMIT:
        raise bad_request(f"limit must not exceed {MAX_LIMIT}")
    direction = request.query_params.get("sort_direction", "asc")
    if direction not in ("asc", "desc"):
        raise bad_request("sort_direction must be asc or desc")
    cursor = request.query_params.get("cursor")
    since = request.query_params.get("updated_since")
    if direction == "desc":
        position = len(keys) - 1 if cursor is None else \
            bisect_left(keys, _decode(cursor, sort_by)) - 1
        step = -1
    elif cursor is not None:
        position, step = bisect_right(keys, _decode(cursor, sort_by)), 1
    elif since and sort_by == "update_time":  # keys are (update epoch, id): skip the older
        bound = parse_time(since)
        position = bisect_left(keys, (epoch_seconds(bound), "")) if bound else 0
        step = 1
    else:
        position, step = 0, 1
    chosen: list[dict[str, Any]] = []
    last_key: Key | None = None
    more = False
    while 0 <= position < len(keys):
        wire = render(items[position])
        if wire is not None:
            if len(chosen) == limit:
                more = True
                break
            chosen.append(wire)
            last_key = keys[position]
        position += step
    next_cursor = _encode(last_key, sort_by) if more and last_key is not None else None
    return ok(chosen, {"next_cursor": next_cursor})


def _int(request: Request, name: str, default: int, *, low: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) < low:
        raise bad_request(f"{name} must be an integer of at least {low}")
    return int(raw)
