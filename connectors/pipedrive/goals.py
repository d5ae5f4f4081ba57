"""Goal push into Pipedrive Goals (docs/vendors/pipedrive.md §7; connectors.base.GoalPusher).

A crmsync goal becomes a Pipedrive goal of type `deals_won`: bookings track the `sum` of
won deals' value in the goal's currency (`currency_id` from /v1/currencies, §8), deals_won
goals their `quantity`. The assignee is the rep (`person`, their Pipedrive user id) or the
whole `company`; the duration is the goal's period, the interval follows its length. The
goal's key is kept in its title (`... [crmsync:<key>]`), so a goal is found again with
`/v1/goals/find` and updated in place; deletions delete by id. `goal_results` reads
Pipedrive's own progress (`/v1/goals/{id}/results`) for the figure shown beside ours.
"""

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from connectors.base import GoalDeletion, GoalOut, PushResult
from connectors.pipedrive.client import PipedriveClient, PipedriveError
from connectors.pipedrive.wire import V1
from core.records import GoalResult
from core.types import GoalMetric, PushStatus

TAG = "[crmsync:{key}]"


def interval(start: date, end: date) -> str:
    """§7: the goal's interval from its period's length."""
    days = (end - start).days + 1
    return "weekly" if days <= 7 else "monthly" if days <= 31 else \
        "quarterly" if days <= 92 else "yearly"


def _title(goal: GoalOut) -> str:
    who = goal.owner_name or goal.owner_email or "Company"
    what = "Bookings" if goal.metric == GoalMetric.BOOKINGS else "Deals won"
    return f"{what} {goal.period_start.isoformat()}..{goal.period_end.isoformat()} – " \
           f"{who} {TAG.format(key=goal.key)}"


async def _body(client: PipedriveClient, goal: GoalOut, company_id: str) -> dict[str, Any]:
    outcome: dict[str, Any] = {"target": _number(goal.target)}
    if goal.metric == GoalMetric.BOOKINGS:
        ids = await client.currency_ids()
        code = (goal.currency or client.home_currency or "").upper()
        if code not in ids:
            raise PipedriveError(400, f"Pipedrive has no currency {code or '(none)'}; add it "
                                      "in Pipedrive's company settings (§8)")
        outcome.update(tracking_metric="sum", currency_id=ids[code])
    else:
        outcome["tracking_metric"] = "quantity"
    assignee = {"id": int(goal.owner_remote_id), "type": "person"} \
        if goal.owner_remote_id and goal.owner_remote_id.isdigit() \
        else {"id": int(company_id), "type": "company"}
    return {"title": _title(goal), "assignee": assignee,
            "type": {"name": "deals_won",
                     "params": {"pipeline_id": client.config.goal_pipeline_ids}},
            "expected_outcome": outcome,
            "duration": {"start": goal.period_start.isoformat(),
                         "end": goal.period_end.isoformat()},
            "interval": interval(goal.period_start, goal.period_end)}


def _number(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


async def _existing(client: PipedriveClient) -> dict[str, str]:
    """Our goals in Pipedrive, by key (from the title tag): one find call (§7)."""
    body = await client.get(f"{V1}/goals/find", {"type.name": "deals_won", "is_active": "true"})
    goals = (body.get("data") or {}).get("goals") or []
    found: dict[str, str] = {}
    for goal in goals:
        title = str(goal.get("title") or "")
        start = title.rfind("[crmsync:")
        if start >= 0 and title.endswith("]"):
            found[title[start + 9:-1]] = str(goal["id"])
    return found


async def push_goals(client: PipedriveClient, goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    results: list[PushResult] = []
    if goals:
        me = (await client.get(f"{V1}/users/me")).get("data") or {}
        company_id = str(me.get("company_id") or 0)
        if client.home_currency is None:
            client.home_currency = client.config.home_currency or me.get("default_currency")
        existing = await _existing(client)
        for goal in goals:
            try:
                body = await _body(client, goal, company_id)
                remote_id = existing.get(goal.key)
                if remote_id is not None:
                    await client.call("PUT", f"{V1}/goals/{remote_id}", json=body)
                    results.append(PushResult(goal.goal_id, PushStatus.UPDATED, remote_id))
                    continue
                made = await client.call("POST", f"{V1}/goals", json=body)
                new_id = str(((made.get("data") or {}).get("goal") or {}).get("id") or "")
                if not new_id:
                    raise PipedriveError(500, "Pipedrive created a goal without an id")
                existing[goal.key] = new_id
                results.append(PushResult(goal.goal_id, PushStatus.INSERTED, new_id))
            except PipedriveError as exc:
                results.append(PushResult(goal.goal_id, PushStatus.ERROR, None, str(exc)))
    for gone in deletions:
        try:
            await client.call("DELETE", f"{V1}/goals/{gone.remote_id}")
        except PipedriveError as exc:
            if exc.status != 404:  # a goal already gone counts as deleted
                results.append(PushResult(gone.goal_id, PushStatus.ERROR, gone.remote_id,
                                          str(exc)))
                continue
        results.append(PushResult(gone.goal_id, PushStatus.DELETED, gone.remote_id))
    return results


async def goal_results(client: PipedriveClient, goals: Sequence[GoalOut],
                       remote_ids: Sequence[str]) -> list[GoalResult]:
    """§7: Pipedrive's progress of each pushed goal over its period."""
    out: list[GoalResult] = []
    for goal, remote_id in zip(goals, remote_ids, strict=True):
        try:
            body = await client.get(f"{V1}/goals/{remote_id}/results", {
                "period.start": goal.period_start.isoformat(),
                "period.end": goal.period_end.isoformat()})
        except PipedriveError as exc:
            out.append(GoalResult(goal.goal_id, None, str(exc)))
            continue
        progress = (body.get("data") or {}).get("progress")
        value = None if progress is None else Decimal(str(progress))
        out.append(GoalResult(goal.goal_id, value, None))
    return out
