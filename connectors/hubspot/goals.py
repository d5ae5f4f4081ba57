"""Goal push into HubSpot's own goals: `goal_targets` (docs/vendors/hubspot.md §9).

HubSpot goals are writable (crm.objects.goals.write). A crmsync goal (one owner or the
whole company, one metric, one period) becomes one goal family holding one target: its
`hs_group_correlation_uuid` is a UUID derived from the goal's stable key, so the target
is found again by a search on that property (no mapping needs storing), updated in
place when the goal changes, and archived when it is deleted. Creates, updates and
archives go in batches of 100; each element's own result is read (207 answers).

- Assignee: `hubspot_owner_id`, the owner id (never the userId, §4); a company-wide
  goal has no assignee (guess: HubSpot's UI assigns goals to users or teams).
- Target: `hs_target_amount`, the amount (assumed in the company currency, §9 and §6)
  for bookings, the number of deals for deals_won.
- Period: `hs_start_datetime` at the first millisecond of the first day and
  `hs_end_datetime` at the last millisecond of the last day (UTC).
- Templates: with the connection's `goal_template_id`, the template fields of that goal
  (`hs_template_id`, `hs_kpi_*`, §9) are copied into every new target. An account that
  requires a template, or a token without the goals scopes, is refused with set-up steps.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from connectors.hubspot.client import HubSpotClient, HubSpotError
from connectors.hubspot.wire import BATCH_LIMIT, GOALS, OBJECTS
from core.errors import ConfigError
from core.records import GoalDeletion, GoalOut, PushResult
from core.types import PushStatus

FAMILY = uuid.UUID("5b0c3d2e-8a61-4c1f-9d7e-2f4a6b8c0e13")  # namespace of family uuids
TEMPLATE_FIELDS = ("hs_template_id", "hs_kpi_metric_type", "hs_kpi_property_name",
                   "hs_kpi_tracking_method", "hs_kpi_unit_type", "hs_goal_type")
SET_UP = ("HubSpot refused the goal targets ({why}). Set up: give the app the scopes "
          "crm.objects.goals.read and crm.objects.goals.write and reinstall it; if the "
          "account creates goals from templates, create one goal in HubSpot (Reports > Goals "
          "> Create goal, e.g. the Revenue template) and set the connection's config "
          "goal_template_id to one of its goal target ids (docs/hubspot.md, Goals).")
LABELS = {"bookings": "bookings", "deals_won": "deals won"}


def family(goal: GoalOut) -> str:
    return str(uuid.uuid5(FAMILY, goal.key))


def properties(goal: GoalOut, template: dict[str, str]) -> dict[str, str]:
    who = goal.owner_name or goal.owner_email or "whole company"
    out = {"hs_goal_name": f"{who}: {LABELS[goal.metric]} {goal.period_start.isoformat()} to "
                           f"{goal.period_end.isoformat()} (crmsync)",
           "hs_target_amount": str(goal.target),
           "hs_start_datetime": f"{goal.period_start.isoformat()}T00:00:00.000Z",
           "hs_end_datetime": f"{goal.period_end.isoformat()}T23:59:59.999Z",
           "hs_group_correlation_uuid": family(goal), **template}
    if goal.owner_remote_id:
        out["hubspot_owner_id"] = goal.owner_remote_id
    return out


async def push_goals(client: HubSpotClient, goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    """Create or update one target per goal, archive the deleted ones (§9)."""
    try:
        return await _push(client, goals, deletions)
    except ConfigError as exc:  # 403 MISSING_SCOPES
        raise ConfigError(SET_UP.format(why=exc)) from None


async def _push(client: HubSpotClient, goals: Sequence[GoalOut],
                deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    results: list[PushResult] = []
    if goals:
        template = await _template(client)
        existing = await _existing(client, [family(g) for g in goals])
        for goal in goals:  # §3: a target made moments ago is not in search yet
            if family(goal) not in existing and goal.previous_remote_id \
                    and await _alive(client, goal.previous_remote_id):
                existing[family(goal)] = goal.previous_remote_id
        new = [g for g in goals if family(g) not in existing]
        old = [g for g in goals if family(g) in existing]
        for start in range(0, len(new), BATCH_LIMIT):
            results += await _create(client, new[start:start + BATCH_LIMIT], template)
        for start in range(0, len(old), BATCH_LIMIT):
            results += await _update(client, old[start:start + BATCH_LIMIT], existing)
    for start in range(0, len(deletions), BATCH_LIMIT):
        chunk = deletions[start:start + BATCH_LIMIT]
        await client.call("POST", f"{OBJECTS}/{GOALS}/batch/archive",
                          json={"inputs": [{"id": d.remote_id} for d in chunk]})
        results += [PushResult(d.goal_id, PushStatus.DELETED, d.remote_id) for d in chunk]
    return results


async def _template(client: HubSpotClient) -> dict[str, str]:
    """§9: the template fields of the configured goal, copied into new targets."""
    template_id = client.config.goal_template_id
    if not template_id:
        return {}
    try:
        body = await client.call("GET", f"{OBJECTS}/{GOALS}/{template_id}",
                                 params={"properties": ",".join(TEMPLATE_FIELDS)})
    except HubSpotError as exc:
        raise ConfigError(f"goal_template_id {template_id} is not a goal target HubSpot "
                          f"knows ({exc}); set it to the id of one of your goal's "
                          "targets") from None
    props = (body or {}).get("properties") or {}
    return {k: str(v) for k, v in props.items() if k in TEMPLATE_FIELDS and v not in (None, "")}


async def _existing(client: HubSpotClient, families: list[str]) -> dict[str, str]:
    """Targets crmsync made before, by family uuid (search, IN at most 100 values)."""
    found: dict[str, str] = {}
    for start in range(0, len(families), BATCH_LIMIT):
        chunk = families[start:start + BATCH_LIMIT]
        after: str | None = "0"
        while after is not None:
            body = await client.call("POST", f"{OBJECTS}/{GOALS}/search", search=True, json={
                "filterGroups": [{"filters": [{"propertyName": "hs_group_correlation_uuid",
                                               "operator": "IN", "values": chunk}]}],
                "properties": ["hs_group_correlation_uuid"], "limit": 200, "after": after})
            for row in (body or {}).get("results") or []:
                key = ((row.get("properties") or {}).get("hs_group_correlation_uuid"))
                if key:
                    found.setdefault(str(key), str(row["id"]))
            after = (((body or {}).get("paging") or {}).get("next") or {}).get("after")
    return found


async def _alive(client: HubSpotClient, target_id: str) -> bool:
    """Whether the target a goal was last pushed to is still there, for a goal search did
    not find. `GET /crm/v3/objects/goal_targets/{goalTargetId}` reads one (doc: the goals
    guide, https://developers.hubspot.com/docs/api/crm/goals); a read answers live records
    only (`archived` defaults to false), 404 for an archived or unknown id (doc:
    https://developers.hubspot.com/docs/api-reference/2026-03/crm/objects/objects/get-object;
    the sandbox's get_goal)."""
    try:
        await client.call("GET", f"{OBJECTS}/{GOALS}/{target_id}",
                          params={"properties": "hs_group_correlation_uuid"})
    except HubSpotError as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _errors_by(body: dict[str, Any], key: str) -> dict[str, str]:
    """§9: a 207's errors, by the ids or input indexes their context names."""
    out: dict[str, str] = {}
    for error in body.get("errors") or []:
        text = f"{error.get('category') or 'error'}: {error.get('message') or ''}"
        for ref in ((error.get("context") or {}).get(key) or []):
            out[str(ref)] = text
    return out


async def _create(client: HubSpotClient, chunk: Sequence[GoalOut],
                  template: dict[str, str]) -> list[PushResult]:
    body = await client.call("POST", f"{OBJECTS}/{GOALS}/batch/create", json={
        "inputs": [{"properties": properties(g, template)} for g in chunk]}) or {}
    made = {str((r.get("properties") or {}).get("hs_group_correlation_uuid")): str(r["id"])
            for r in body.get("results") or []}
    failed = _errors_by(body, "inputIndexes")
    if failed and not made and any("template" in e for e in failed.values()):
        raise ConfigError(next(iter(failed.values())))
    results = []
    for index, goal in enumerate(chunk):
        if family(goal) in made:
            results.append(PushResult(goal.goal_id, PushStatus.INSERTED, made[family(goal)]))
        else:
            results.append(PushResult(goal.goal_id, PushStatus.ERROR, error=failed.get(
                str(index), "HubSpot created no goal target for it")))
    return results


async def _update(client: HubSpotClient, chunk: Sequence[GoalOut],
                  existing: dict[str, str]) -> list[PushResult]:
    inputs = [{"id": existing[family(g)], "properties": {
        k: v for k, v in properties(g, {}).items() if k != "hs_group_correlation_uuid"}}
        for g in chunk]
    body = await client.call("POST", f"{OBJECTS}/{GOALS}/batch/update",
                             json={"inputs": inputs}) or {}
    done = {str(r["id"]) for r in body.get("results") or []}
    failed = _errors_by(body, "ids")
    results = []
    for goal in chunk:
        remote = existing[family(goal)]
        if remote in done:
            results.append(PushResult(goal.goal_id, PushStatus.UPDATED, remote))
        else:
            results.append(PushResult(goal.goal_id, PushStatus.ERROR, remote, failed.get(
                remote, "HubSpot did not update the goal target")))
    return results
