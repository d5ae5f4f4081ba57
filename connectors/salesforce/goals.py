"""Goal push into Salesforce quotas: one ForecastingQuota per goal (docs/vendors/salesforce.md
§8), written with composite sObject collections (§7, 200 records per call, each record's
own result read).

A bookings goal becomes an amount quota of the revenue forecast type (config
`forecasting_type`, OpportunityRevenue) with QuotaAmount and, in a multi-currency org,
CurrencyIsoCode; a deals-won goal a quantity quota (config `quantity_forecasting_type`,
OpportunityQuantity) with QuotaQuantity. ForecastingQuota has no external id (§8), so a
goal's quota is found by (QuotaOwnerId, StartDate, ForecastingTypeId), one quota per owner,
period and type: found, it is updated in place (QuotaAmount/QuotaQuantity and currency:
owner and type are set on create only); missing, it is created. A goal must span one
fiscal period (a Period) of the org's forecast period length (config `forecast_period`),
and Salesforce refuses a StartDate that does not begin one of its forecast periods. A
company-wide goal is the quota of `company_quota_owner_id` or of the one active user at
the top of the hierarchy. The documented rules come back per goal: the integration user
cannot set its own quota (checked before sending), and Salesforce's refusals (Manage
Quotas missing, a bad period) are each goal's error.
Collaborative Forecasts off (no ForecastingType object) is a ConfigError with the steps.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from connectors.salesforce.client import SalesforceClient, SalesforceError, errors_of, soql_list
from connectors.salesforce.wire import COLLECTION_MAX, ENTITY_IS_DELETED, INVALID_TYPE, NOT_FOUND
from core.errors import ConfigError
from core.records import GoalDeletion, GoalOut, PushResult
from core.types import PushStatus

QUOTA = "ForecastingQuota"
SETUP = ("Salesforce has no quotas to write to: in Setup > Forecasts Settings enable "
         "Collaborative Forecasts (Enterprise, Performance, Unlimited and Developer editions), "
         "add the forecast types {types}, and enable \"Show Quotas\"; give the integration "
         "user the Manage Quotas and View All Forecasts permissions (or Allow Forecasting), "
         "then push again.")


@dataclass(frozen=True)
class Target:
    """Where a goal goes: its natural key and the fields to write."""

    owner: str
    start: date
    type_id: str
    values: dict[str, Any]


async def push_goals(client: SalesforceClient, goals: Sequence[GoalOut],
                     deletions: Sequence[GoalDeletion]) -> list[PushResult]:
    """Upsert `goals` as quotas and delete `deletions` (connectors.base.GoalPusher)."""
    results: list[PushResult] = []
    targets: dict[int, Target] = {}
    if goals:
        types = await _forecast_types(client)
        periods = await _periods(client, goals)
        me = await client.user_id()
        multi, _ = await client.meta()
        company_owner = await _company_owner(client, me)
        for goal in goals:
            target = _target(client, goal, types, periods, me, multi, company_owner)
            if isinstance(target, str):
                results.append(PushResult(goal.goal_id, PushStatus.ERROR, None, target))
            else:
                targets[goal.goal_id] = target
    existing = await _existing(client, list(targets.values()))
    # A quota is found by its natural key (owner, start, forecasting type): a goal whose
    # owner or period moved gets a quota at the new key, and its old quota goes.
    live = {g.goal_id: g for g in goals}
    moved = [GoalDeletion(g, live[g].key, str(live[g].previous_remote_id))
             for g, t in targets.items()
             if live[g].previous_remote_id
             and existing.get((t.owner, t.start, t.type_id)) != live[g].previous_remote_id]
    creates = [(g, t) for g, t in targets.items()
               if (t.owner, t.start, t.type_id) not in existing]
    updates = [(g, t, existing[(t.owner, t.start, t.type_id)]) for g, t in targets.items()
               if (t.owner, t.start, t.type_id) in existing]
    for chunk in _chunks(creates):
        body = [{"attributes": {"type": QUOTA}, **t.values} for _, t in chunk]
        answers = await client.data("POST", "/composite/sobjects",
                                    json={"allOrNone": False, "records": body})
        results += [_result(g, None, a, PushStatus.INSERTED)
                    for (g, _), a in zip(chunk, _answers(answers, len(chunk)), strict=True)]
    for chunk3 in _chunks(updates):
        body = [{"attributes": {"type": QUOTA}, "id": quota_id, **_changes(t)}
                for _, t, quota_id in chunk3]
        answers = await client.data("PATCH", "/composite/sobjects",
                                    json={"allOrNone": False, "records": body})
        results += [_result(g, quota_id, a, PushStatus.UPDATED)
                    for (g, _, quota_id), a in zip(chunk3, _answers(answers, len(chunk3)),
                                                   strict=True)]
    for deletion, error in await _delete(client, list(deletions)):
        results.append(PushResult(deletion.goal_id, PushStatus.ERROR if error
                                  else PushStatus.DELETED, deletion.remote_id, error))
    failed = {d.goal_id: error for d, error in await _delete(client, moved) if error}
    return [PushResult(r.goal_id, PushStatus.ERROR, r.remote_id,
                       f"the goal's quota moved to a new owner or period; its old quota "
                       f"could not be deleted: {failed[r.goal_id]}")
            if r.goal_id in failed and r.status != PushStatus.ERROR else r for r in results]


async def _delete(client: SalesforceClient, deletions: list[GoalDeletion]
                  ) -> list[tuple[GoalDeletion, str | None]]:
    """Delete these quotas: each with None, or the error why it stays (one already gone
    counts as deleted)."""
    done: list[tuple[GoalDeletion, str | None]] = []
    for gone in _chunks(deletions):
        answers = await client.data("DELETE", "/composite/sobjects", params={
            "ids": ",".join(d.remote_id for d in gone), "allOrNone": "false"})
        for deletion, answer in zip(gone, _answers(answers, len(gone)), strict=True):
            codes = {str(e.get("statusCode")) for e in answer.get("errors") or []}
            ok = answer.get("success") or codes & {NOT_FOUND, ENTITY_IS_DELETED}
            done.append((deletion, None if ok else _error_text(answer)))
    return done


def _chunks(items: list[Any]) -> list[list[Any]]:
    return [items[i:i + COLLECTION_MAX] for i in range(0, len(items), COLLECTION_MAX)]


def _answers(body: Any, count: int) -> list[dict[str, Any]]:
    """§7: one result per record, in order."""
    if not isinstance(body, list) or len(body) != count or \
            not all(isinstance(a, dict) for a in body):
        raise SalesforceError(200, "UNEXPECTED", "Salesforce answered a composite call "
                                                 f"without one result per record ({count})")
    return body


def _error_text(answer: dict[str, Any]) -> str:
    errors = answer.get("errors") or []
    return "; ".join(f"Salesforce {e.get('statusCode')}: {e.get('message')}"
                     for e in errors if isinstance(e, dict)) or "Salesforce refused the record"


def _result(goal_id: int, quota_id: str | None, answer: dict[str, Any],
            status: PushStatus) -> PushResult:
    if answer.get("success"):
        return PushResult(goal_id, status, str(answer.get("id") or quota_id))
    return PushResult(goal_id, PushStatus.ERROR, quota_id, _error_text(answer))


def _changes(target: Target) -> dict[str, Any]:
    """§8: owner, type and period are the quota's identity (owner and type are create-only)."""
    return {k: v for k, v in target.values.items()
            if k in ("QuotaAmount", "QuotaQuantity", "CurrencyIsoCode")}


async def _forecast_types(client: SalesforceClient) -> dict[str, dict[str, Any]]:
    try:
        rows = await client.query_rows("SELECT Id, DeveloperName, IsActive, IsAmount, "
                                       "IsQuantity FROM ForecastingType")
    except SalesforceError as exc:
        if exc.code == INVALID_TYPE:  # §8: Collaborative Forecasts off
            raise ConfigError(SETUP.format(types=_wanted(client))) from None
        raise
    return {str(r["DeveloperName"]): r for r in rows if r.get("IsActive")}


def _wanted(client: SalesforceClient) -> str:
    return f"{client.config.forecasting_type} and {client.config.quantity_forecasting_type}"


async def _periods(client: SalesforceClient, goals: Sequence[GoalOut]
                   ) -> dict[tuple[date, date], str]:
    """§8 Period: fiscal months and quarters starting within the goals' span."""
    first = min(g.period_start for g in goals)
    last = max(g.period_start for g in goals)
    rows = await client.query_rows(
        "SELECT Id, Type, StartDate, EndDate FROM Period WHERE Type IN ('Month', 'Quarter') "
        f"AND StartDate >= {first.isoformat()} AND StartDate <= {last.isoformat()}")
    return {(date.fromisoformat(str(r["StartDate"])), date.fromisoformat(str(r["EndDate"]))):
            str(r["Type"]) for r in rows}


async def _company_owner(client: SalesforceClient, me: str | None) -> str | None:
    """Whose quota a company-wide goal is: config, or the one active user without a manager
    other than the integration user (the top of the hierarchy)."""
    if client.config.company_quota_owner_id:
        return client.config.company_quota_owner_id
    top = [u.remote_id for u in (await client.users()).values()
           if u.active and u.remote_id != me and not (u.raw or {}).get("ManagerId")]
    return top[0] if len(top) == 1 else None


def _target(client: SalesforceClient, goal: GoalOut, types: dict[str, dict[str, Any]],
            periods: dict[tuple[date, date], str], me: str | None, multi: bool,
            company_owner: str | None) -> Target | str:
    """Where `goal` goes, or why it cannot (each goal's own error)."""
    amount = goal.metric == "bookings"
    type_name = client.config.forecasting_type if amount else \
        client.config.quantity_forecasting_type
    kind = types.get(type_name)
    if kind is None or not kind.get("IsAmount" if amount else "IsQuantity"):
        return (f"Salesforce has no active {'amount' if amount else 'quantity'} forecast type "
                f"{type_name}: add it in Setup > Forecasts Settings (or set config "
                f"{'forecasting_type' if amount else 'quantity_forecasting_type'})")
    owner = goal.owner_remote_id or company_owner
    if owner is None:
        return ("a company-wide goal needs a quota owner: set config company_quota_owner_id "
                "to the user at the top of the forecast hierarchy")
    if owner == me:  # §8: users edit their subordinates' quotas, never their own
        return ("Salesforce does not let a user set their own quota, and this goal's owner "
                "is the integration user; connect as another user (one with Manage Quotas) "
                "or assign the goal to someone else")
    wanted = client.config.forecast_period
    if periods.get((goal.period_start, goal.period_end)) != wanted.capitalize():
        return (f"a Salesforce quota covers one forecast period, here a fiscal {wanted} "
                f"(config forecast_period, as in Setup > Forecasts Settings); this goal runs "
                f"{goal.period_start} to {goal.period_end}")
    values: dict[str, Any] = {"QuotaOwnerId": owner, "StartDate": goal.period_start.isoformat(),
                              "ForecastingTypeId": str(kind["Id"])}
    if amount:
        values["QuotaAmount"] = float(goal.target)  # §8: a currency field (JSON number)
        if multi and goal.currency:
            values["CurrencyIsoCode"] = goal.currency
    else:
        values["QuotaQuantity"] = float(goal.target)
    return Target(owner, goal.period_start, str(kind["Id"]), values)


async def _existing(client: SalesforceClient, targets: list[Target]
                    ) -> dict[tuple[str, date, str], str]:
    """The quotas already there for these owners and periods, by natural key."""
    found: dict[tuple[str, date, str], str] = {}
    owners = sorted({t.owner for t in targets})
    for start in range(0, len(owners), COLLECTION_MAX):
        chunk = owners[start:start + COLLECTION_MAX]
        first = min(t.start for t in targets)
        last = max(t.start for t in targets)
        rows = await client.query_rows(
            f"SELECT Id, QuotaOwnerId, StartDate, ForecastingTypeId FROM {QUOTA} "
            f"WHERE QuotaOwnerId IN ({soql_list(chunk)}) AND StartDate >= {first.isoformat()} "
            f"AND StartDate <= {last.isoformat()}")
        for row in rows:
            found[(str(row["QuotaOwnerId"]), date.fromisoformat(str(row["StartDate"])),
                   str(row["ForecastingTypeId"]))] = str(row["Id"])
    return found


__all__ = ["errors_of", "push_goals"]
