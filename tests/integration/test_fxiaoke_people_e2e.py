"""Issue F1's "done when" for Fxiaoke, end to end over real HTTP: a tenant with two sales
processes whose stage codes overlap, goal fields with generated API names and reps without
an email syncs, takes a goal for an email-less rep (by person) into its goals object, and
shows one leaderboard row per person. SQLite and PostgreSQL."""

from datetime import date

import httpx

from connectors.fxiaoke.sandbox.wire import GOALS_OBJECT
from connectors.sandbox import generate_company
from tests.api_support import running_api
from tests.integration.test_fxiaoke_goals_e2e import (  # noqa: F401 (fixture)
    Q,
    connect_and_sync,
    fast_budget,
    push,
)
from tests.integration.test_fxiaoke_sync_e2e import serve, state_of

EMPLOYEE_FIELD = "field_e2Mn4__c"  # the sandbox's generated API name of the rep lookup


async def test_two_processes_generated_fields_and_reps_without_email(engine):
    company = generate_company(seed=11, deals=300, reps=5, today=date(2025, 6, 15))
    with serve(company) as server:
        state = state_of(server)
        async with running_api(engine, transport=httpx.AsyncHTTPTransport()) as api:
            connection_id = await connect_and_sync(api, server.url)

            stages = await api.all_pages("/api/v1/stages", connection_id=connection_id)
            codes: dict[str, set[str]] = {}
            for stage in stages:
                codes.setdefault(stage["pipeline"], set()).add(stage["remote_id"].split(":")[1])
            assert len(codes) == 2, codes  # two sales processes
            first, second = codes.values()
            assert first & second  # whose stage codes overlap, kept apart by process

            no_email = [r for r in company.reps
                        if r.active and not state.tenant.user(r).get("email")]
            assert no_email, "the sandbox tenant has active reps without an email"
            rep = no_email[0]
            fsuid = state.tenant.fsuid[rep.id]
            people = await api.all_pages("/api/v1/people")
            [person] = [p for p in people
                        if any(u["remote_id"] == fsuid for u in p["users"])]
            assert person["email"] is None

            created = await api.client.post("/api/v1/goals", json={
                "person_id": person["id"], "metric": "bookings", "period_start": Q[0],
                "period_end": Q[1], "target": 5000})
            assert created.status_code == 201, created.text
            goal_id = created.json()["id"]
            result = await push(api)
            [mine] = [r for r in result["results"] if r["goal_id"] == goal_id]
            assert mine["status"] == "inserted", result
            record = state.custom[GOALS_OBJECT][mine["remote_id"]]
            assert record[EMPLOYEE_FIELD] == [fsuid]

            summary = await api.get("/api/v1/metrics/summary", params={
                "start": Q[0], "end": Q[1], "group_by": "owner"})
            assert summary.status_code == 200, summary.text
            rows = summary.json()["data"]
            ids = [r["person_id"] for r in rows]
            assert len(ids) == len(set(ids))  # one row per person
            [row] = [r for r in rows if r["person_id"] == person["id"]]
            assert row["goal"] == 5000 and row["owner_email"] is None
