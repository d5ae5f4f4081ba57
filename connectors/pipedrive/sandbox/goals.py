"""The Pipedrive sandbox's Goals (docs/vendors/pipedrive.md §7): add, find, update, delete,
and results computed from the sandbox's own deals."""

import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from connectors.pipedrive.sandbox.errors import bad_request, json_object, not_found, ok
from connectors.pipedrive.sandbox.state import PipedriveState, state_of
from connectors.pipedrive.wire import GOAL_INTERVALS, parse_time

TYPES = ("deals_won", "deals_progressed", "activities_completed", "activities_added",
         "deals_started", "revenue_forecast")
ASSIGNEES = ("person", "company", "team")
METRICS = ("quantity", "sum")
REQUIRED = ("assignee", "type", "expected_outcome", "duration", "interval")


def _validated(state: PipedriveState, goal: dict[str, Any]) -> dict[str, Any]:
    """Check a whole goal (§7); bad input changes nothing."""
    assignee, kind = goal.get("assignee"), goal.get("type")
    outcome, duration = goal.get("expected_outcome"), goal.get("duration")
    if not isinstance(assignee, dict) or assignee.get("type") not in ASSIGNEES:
        raise bad_request("assignee must be {id, type: person|company|team}")
    if assignee["type"] == "person" and str(assignee.get("id")) not in state.company.rep_by_id:
        raise bad_request("assignee person not found")
    if not isinstance(kind, dict) or kind.get("name") not in TYPES:
        raise bad_request(f"type.name must be one of {', '.join(TYPES)}")
    if not isinstance(outcome, dict) or outcome.get("tracking_metric") not in METRICS:
        raise bad_request("expected_outcome.tracking_metric must be quantity or sum")
    try:
        Decimal(str(outcome.get("target")))
    except ArithmeticError:
        raise bad_request("expected_outcome.target must be a number") from None
    if outcome["tracking_metric"] == "sum":
        ids = {str(i) for i in state.wire.currency_ids.values()}
        if str(outcome.get("currency_id")) not in ids:
            raise bad_request("expected_outcome.currency_id must be a currency id")
    if not isinstance(duration, dict):
        raise bad_request("duration must be {start, end}")
    try:
        start = date.fromisoformat(str(duration.get("start")))
        end = None if duration.get("end") is None else date.fromisoformat(str(duration["end"]))
    except ValueError:
        raise bad_request("duration.start and duration.end must be YYYY-MM-DD") from None
    if end is not None and end < start:
        raise bad_request("duration.end must not be before duration.start")
    if goal.get("interval") not in GOAL_INTERVALS:
        raise bad_request(f"interval must be one of {', '.join(GOAL_INTERVALS)}")
    return goal


async def add_goal(request: Request) -> Response:
    state = state_of(request)
    body = await json_object(request)
    missing = [k for k in REQUIRED if k not in body]
    if missing:
        raise bad_request(f"Missing required fields: {', '.join(missing)}")
    goal = _validated(state, {"title": body.get("title") or "", **body})
    goal = {**goal, "id": secrets.token_hex(16), "owner_id": int(state.company.manager.id),
            "is_active": True, "report_ids": [secrets.token_hex(8)]}
    state.goals[goal["id"]] = goal
    return ok({"goal": goal}, status=201)


async def update_goal(request: Request) -> Response:
    state = state_of(request)
    goal = state.goals.get(request.path_params["goal_id"])
    if goal is None:
        raise not_found("Goal not found")
    body = await json_object(request)
    unknown = set(body) - {"title", *REQUIRED}
    if unknown:
        raise bad_request(f"Unknown fields: {', '.join(sorted(unknown))}")
    updated = _validated(state, {**goal, **body})
    state.goals[goal["id"]] = updated
    return ok({"goal": updated})


async def delete_goal(request: Request) -> Response:
    state = state_of(request)
    goal = state.goals.pop(request.path_params["goal_id"], None)
    if goal is None:
        raise not_found("Goal not found")
    return ok({"id": goal["id"]})


async def find_goals(request: Request) -> Response:
    """§7: dot-notation filters; goals whose duration lies within period.start..end."""
    state = state_of(request)
    q = request.query_params
    found = []
    for goal in state.goals.values():
        if q.get("type.name") and goal["type"]["name"] != q["type.name"]:
            continue
        if q.get("assignee.id") and str(goal["assignee"].get("id")) != q["assignee.id"]:
            continue
        if q.get("assignee.type") and goal["assignee"]["type"] != q["assignee.type"]:
            continue
        if q.get("is_active") and str(goal["is_active"]).lower() != q["is_active"].lower():
            continue
        if q.get("period.start") and goal["duration"]["start"] < q["period.start"]:
            continue
        if q.get("period.end") and (goal["duration"].get("end") or "9999") > q["period.end"]:
            continue
        found.append(goal)
    return ok({"goals": found})


async def goal_results(request: Request) -> Response:
    """§7: the goal's progress over the period from this sandbox's won deals: a count, or a
    sum converted into the goal's currency (won_time's UTC date in the period)."""
    state = state_of(request)
    goal = state.goals.get(request.path_params["goal_id"])
    if goal is None:
        raise not_found("Goal not found")
    try:
        start = date.fromisoformat(request.query_params["period.start"])
        end = date.fromisoformat(request.query_params["period.end"])
    except (KeyError, ValueError):
        raise bad_request("period.start and period.end (YYYY-MM-DD) are required") from None
    return ok({"progress": _progress(state, goal, start, end), "goal": goal})


def _progress(state: PipedriveState, goal: dict[str, Any], start: date, end: date
              ) -> int | float:
    if goal["type"]["name"] != "deals_won":
        return 0  # the sandbox tracks deals_won goals only (guess for the rest: zero)
    pipelines = (goal["type"].get("params") or {}).get("pipeline_id")
    assignee = goal["assignee"]
    outcome = goal["expected_outcome"]
    codes = {cid: code for code, cid in state.wire.currency_ids.items()}
    into = codes.get(int(outcome.get("currency_id") or 0), state.company.home_currency)
    rates = state.company.currencies
    count, total = 0, Decimal(0)
    for deal in state.company.deals.values():
        wire = state.wire.deal(deal)
        if wire["status"] != "won":
            continue
        won = parse_time(wire["won_time"]) or datetime.min.replace(tzinfo=UTC)
        if not start <= won.date() <= end:
            continue
        if assignee["type"] == "person" and str(wire["owner_id"]) != str(assignee["id"]):
            continue
        if pipelines and wire["pipeline_id"] not in pipelines:
            continue
        count += 1
        total += deal.amount / rates[deal.currency] * rates[into]  # rates: units per home unit
    if outcome["tracking_metric"] == "quantity":
        return count
    return float(round(total, 2))
