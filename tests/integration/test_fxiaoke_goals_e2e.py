"""Goals end to end into Fxiaoke: the sandbox over real HTTP, synced through the API, goals
imported and pushed into its object_SalesGoal__c (docs/vendors/fxiaoke.md §4), on SQLite and
PostgreSQL."""

from datetime import date
from typing import Any

import httpx
import pytest

from connectors.fxiaoke import client as fx_client
from connectors.fxiaoke.sandbox.wire import GOALS_OBJECT
from connectors.fxiaoke.wire import day_ms
from connectors.sandbox import generate_company
from tests.api_support import running_api
from tests.integration.test_fxiaoke_sync_e2e import SECRETS, serve, state_of

Q = ("2025-04-01", "2025-06-30")


@pytest.fixture(autouse=True)
def fast_budget(monkeypatch):
    """§6's per-interface budget on a 1 s window, so tests need not wait 20 s."""
    monkeypatch.setattr(fx_client, "RATE", fx_client.RateBudget(100, 1.0))


async def connect_and_sync(api: Any, url: str) -> int:
    created = await api.client.post("/api/v1/connections", json={
        "provider": "fxiaoke", "name": "fxiaoke sandbox",
        "config": {"base_url": url, "admin_mobile": "13800130000"}, "secrets": SECRETS})
    assert created.status_code == 201, created.text
    connection_id = int(created.json()["id"])
    assert (await api.client.post(f"/api/v1/connections/{connection_id}/sync",
                                  json={"mode": "full"})).status_code == 202
    await api.app.state.jobs.wait_idle()
    return connection_id


async def push(api: Any) -> dict[str, Any]:
    response = await api.client.post("/api/v1/goals/push", json=None)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def edit_one_delete_one(api: Any, goals: dict[int, dict[str, Any]]) -> tuple[int, int]:
    """Set the first rep goal's target to 12345.67, delete the second, push: the one is
    updated and the other deleted, the rest unchanged. (edited, removed)"""
    edited, removed = sorted(g for g in goals if goals[g]["owner_email"])[:2]
    assert (await api.client.patch(f"/api/v1/goals/{edited}",
                                   json={"target": "12345.67"})).status_code == 200
    assert (await api.client.delete(f"/api/v1/goals/{removed}")).status_code == 204
    third = await push(api)
    assert {r["goal_id"]: r["status"] for r in third["results"]
            if r["status"] != "unchanged"} == {edited: "updated", removed: "deleted"}
    return edited, removed


async def test_import_push_again_edit_delete_reach_the_goals_object(engine):
    company = generate_company(seed=11, deals=300, reps=5, today=date(2025, 6, 15))
    with serve(company) as server:
        state = state_of(server)
        async with running_api(engine, transport=httpx.AsyncHTTPTransport()) as api:
            await connect_and_sync(api, server.url)
            reps = {r.email: r for r in company.reps  # reps with an email in Fxiaoke
                    if r.active and state.tenant.user(r).get("email")}
            lines = ["owner_email,metric,period_start,period_end,target"]
            lines += [f"{email},bookings,{Q[0]},{Q[1]},{10_000 * (i + 1)}.5"
                      for i, email in enumerate(sorted(reps))]
            lines.append(f",deals_won,{Q[0]},{Q[1]},25")
            imported = await api.client.post("/api/v1/goals/import",
                                             content="\n".join(lines).encode(),
                                             headers={"Content-Type": "text/csv"})
            assert imported.status_code == 200, imported.text

            first = await push(api)
            assert {r["status"] for r in first["results"]} == {"inserted"}, first
            goals = {g["id"]: g for g in (await api.get("/api/v1/goals")).json()["data"]}
            rows = state.custom[GOALS_OBJECT]
            by_key = {r["field_x9Wd3__c"]: r for r in rows.values()}
            assert len(rows) == len(by_key) == len(goals) == len(reps) + 1  # each goal once
            for goal in goals.values():
                crm = by_key[f"crmsync-goal-{goal['id']}"]
                assert crm["field_p3Rk1__c"] == day_ms(date(2025, 4, 1))
                assert crm["field_t7Lq2__c"] == "9eL1m3kQz" and crm["life_status"] == "normal"
                assert crm["field_rU4l5__c"] == f"{float(goal['target']):.2f}"
                assert goal["push"][0]["remote_id"] == crm["_id"]
                if goal["owner_email"]:
                    fsuid = state.tenant.fsuid[reps[goal["owner_email"]].id]
                    assert crm["field_e2Mn4__c"] == [fsuid] == crm["owner"]
                    assert crm["field_m8Kc7__c"] == "option1"
                else:
                    assert "field_e2Mn4__c" not in crm and crm["field_m8Kc7__c"] == "Jx0b7R2sd"
            snapshot = {i: dict(r) for i, r in rows.items()}

            second = await push(api)  # idempotent: nothing sent, nothing duplicated
            assert {r["status"] for r in second["results"]} == {"unchanged"}
            assert {i: dict(r) for i, r in rows.items()} == snapshot

            edited, removed = await edit_one_delete_one(api, goals)
            assert len(rows) == len(snapshot)  # no new record
            edited_row = by_key[f"crmsync-goal-{edited}"]
            assert rows[edited_row["_id"]]["field_rU4l5__c"] == "12345.67"
            gone = rows[by_key[f"crmsync-goal-{removed}"]["_id"]]
            assert gone["life_status"] == "invalid"  # voided (作废), still visible

            fourth = await push(api)
            assert {r["status"] for r in fourth["results"]} == {"unchanged"}
