"""Goals end to end: the Zoho sandbox over real HTTP, synced, goals imported and pushed through
the API into its Sales_Goals module (SQLite and PostgreSQL), and the push under arq."""

import asyncio
from datetime import date
from decimal import Decimal

import pytest
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus
from arq.worker import Worker

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from connectors.zoho.sandbox.goals import goal_records
from tests.api_support import real_http, running_api
from tests.integration.zoho_helpers import SANDBOX_SECRETS, add_connection, make_context
from workers.queue import ArqRunner
from workers.settings import WorkerSettings

Q = ("2025-04-01", "2025-06-30")


@pytest.fixture
def company():
    return generate_company(seed=11, deals=300, reps=5, today=date(2025, 6, 15))


async def connect_and_sync(api, url: str, *, provider: str = "zoho",
                           config: dict | None = None, secrets: dict | None = None) -> int:
    """A connection to a sandbox at `url` through the API (Zoho unless told), fully synced."""
    created = await api.client.post("/api/v1/connections", json={
        "provider": provider, "name": f"{provider} sandbox",
        "config": config or {"accounts_url": url}, "secrets": secrets or SANDBOX_SECRETS})
    assert created.status_code == 201, created.text
    connection_id = int(created.json()["id"])
    assert (await api.client.post(f"/api/v1/connections/{connection_id}/sync",
                                  json={"mode": "full"})).status_code == 202
    await api.app.state.jobs.wait_idle()
    return connection_id


async def import_goals(api, emails: list[str]) -> dict:
    """This quarter's bookings goal for each of `emails` (10,000, 20,000, ...) and a
    company-wide goal of 25 deals won, imported as CSV."""
    lines = ["owner_email,metric,period_start,period_end,target"]
    lines += [f"{email},bookings,{Q[0]},{Q[1]},{10_000 * (i + 1)}"
              for i, email in enumerate(emails)]
    lines.append(f",deals_won,{Q[0]},{Q[1]},25")
    imported = await api.client.post("/api/v1/goals/import", content="\n".join(lines).encode(),
                                     headers={"Content-Type": "text/csv"})
    assert imported.status_code == 200, imported.text
    return dict(imported.json())


async def push(api, **body) -> dict:
    response = await api.client.post("/api/v1/goals/push", json=body or None)
    assert response.status_code == 200, response.text
    return response.json()


async def test_import_push_edit_delete_reach_the_crm_module(engine, company):
    app = create_app(company)
    with BackgroundServer(app) as sandbox:
        async with running_api(engine, real_http()) as api:
            connection_id = await connect_and_sync(api, sandbox.url)
            reps = {r.email: r for r in company.reps if r.active}
            imported = await import_goals(api, sorted(reps))
            assert imported["created"] == len(reps) + 1

            first = await push(api)
            assert {r["status"] for r in first["results"]} == {"inserted"}
            goals = {g["id"]: g for g in (await api.get("/api/v1/goals")).json()["data"]}
            records = {r["Goal_Key"]: r for r in goal_records(app)}
            assert len(records) == len(goals) == len(reps) + 1  # every goal, once
            for goal in goals.values():  # the right rep, period and target
                crm = records[f"crmsync-goal-{goal['id']}"]
                assert (crm["Period_Start"], crm["Period_End"]) == Q
                assert crm["Target_Amount"] == goal["target"]
                assert goal["push"][0]["status"] == "inserted"
                assert goal["push"][0]["remote_id"] == crm["id"]
                if goal["owner_email"]:
                    assert crm["Sales_Rep"]["id"] == reps[goal["owner_email"]].id
                    assert crm["Metric"] == "Bookings"
                else:
                    assert crm["Sales_Rep"] is None and crm["Metric"] == "Deals Won"

            second = await push(api)  # idempotent: nothing sent, nothing duplicated
            assert {r["status"] for r in second["results"]} == {"unchanged"}
            assert sorted(goal_records(app), key=lambda r: r["id"]) == sorted(
                records.values(), key=lambda r: r["id"])

            edited, removed = sorted(g for g in goals if goals[g]["owner_email"])[:2]
            assert (await api.client.patch(f"/api/v1/goals/{edited}",
                                           json={"target": "12345.67"})).status_code == 200
            assert (await api.client.delete(f"/api/v1/goals/{removed}")).status_code == 204
            third = await push(api, connection_id=connection_id)
            assert {r["goal_id"]: r["status"] for r in third["results"]
                    if r["status"] != "unchanged"} == {edited: "updated", removed: "deleted"}
            after = {r["Goal_Key"]: r for r in goal_records(app)}
            assert f"crmsync-goal-{removed}" not in after and len(after) == len(records) - 1
            assert after[f"crmsync-goal-{edited}"]["Target_Amount"] == 12345.67
            assert after[f"crmsync-goal-{edited}"]["id"] == records[
                f"crmsync-goal-{edited}"]["id"]  # the same record, updated

            board = (await api.get("/api/v1/metrics/summary", params={
                "start": Q[0], "end": Q[1], "group_by": "owner",
                "sort": "-attainment"})).json()
            with_goal = [r for r in board["data"] if r["goal"] is not None]
            assert len(with_goal) == len(reps) - 1
            for row in with_goal:
                assert abs(row["attainment"] - row["bookings"] / row["goal"]) <= 0.00005


async def test_a_missing_module_tells_the_admin_how_to_create_it(engine, company):
    with BackgroundServer(create_app(company, goals_module=None)) as sandbox:
        async with running_api(engine, real_http()) as api:
            await connect_and_sync(api, sandbox.url)
            rep = next(r for r in company.reps if r.active)
            created = await api.client.post("/api/v1/goals", json={
                "owner_email": rep.email, "metric": "bookings", "period_start": Q[0],
                "period_end": Q[1], "target": 1000})
            assert created.status_code == 201, created.text
            result = await push(api)
            assert result["results"][0]["status"] == "error"
            error = result["connections"][0]["error"]
            assert "INVALID_MODULE" in error and "Create New Module" in error
            goal = (await api.get(f"/api/v1/goals/{created.json()['id']}")).json()
            assert goal["push"][0]["status"] == "error" and "Sales_Goals" in goal["push"][0][
                "error"]
            missing = await api.client.post("/api/v1/goals/push", json={"connection_id": 99})
            assert missing.status_code == 404


async def test_the_push_runs_on_an_arq_worker(pg_engine, pg_url, redis_url, company):
    from core.config import Settings
    from core.db import session_scope
    from core.goals import targets as goals
    from tests.integration.zoho_helpers import sync

    app = create_app(company)
    with BackgroundServer(app) as sandbox:
        ctx = make_context(pg_engine, pg_url)
        connection_id = add_connection(ctx, sandbox.url)
        await sync(ctx, connection_id, "full")
        rep = next(r for r in company.reps if r.active)
        with session_scope(pg_engine) as session:
            goals.create_goal(session, goals.GoalInput(
                rep.email, "bookings", date(2025, 4, 1), date(2025, 6, 30), Decimal(5000)),
                Settings(database_url=pg_url))
        runner = await ArqRunner.connect(ctx, redis_url)
        waiting = asyncio.create_task(runner.enqueue_push_goals(None, timeout=60))
        for _ in range(200):  # queued before the burst worker starts
            if await Job("push_goals:all", runner.redis).status() is JobStatus.queued:
                break
            await asyncio.sleep(0.05)

        async def startup(worker_ctx):
            worker_ctx["job"] = ctx

        worker = Worker(functions=WorkerSettings.functions, on_startup=startup,
                        redis_settings=RedisSettings.from_dsn(redis_url), burst=True,
                        poll_delay=0, handle_signals=False)
        await worker.main()
        await worker.close()
        result = await waiting
        assert [r["status"] for r in result["results"]] == ["inserted"]
        assert [r["Sales_Rep"]["id"] for r in goal_records(app)] == [rep.id]
        with pytest.raises(TimeoutError):  # no worker: the API stops waiting, the job stays
            await runner.enqueue_push_goals(None, timeout=0.5)
        await runner.close()
