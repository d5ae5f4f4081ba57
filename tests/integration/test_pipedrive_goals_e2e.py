"""Goals end to end into Pipedrive Goals (docs/vendors/pipedrive.md §7), on SQLite and
PostgreSQL: the sandbox over real HTTP, synced through the API, goals pushed as deals_won
goals (sum in the goal's currency, or quantity), pushed again without duplicates, edited in
place, deleted; and Pipedrive's own results shown beside crmsync's actual."""

from datetime import date
from decimal import Decimal

import httpx

from connectors.pipedrive.sandbox import create_app
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from tests.api_support import running_api
from tests.integration.test_fxiaoke_goals_e2e import edit_one_delete_one, push
from tests.integration.zoho_helpers import history_backfilled

Q = ("2025-04-01", "2025-06-30")
RATES = {"EUR": "0.92", "GBP": "0.79", "CNY": "7.10", "JPY": "150.25"}  # units per USD
# §6: the sandbox on an Enterprise plan (an API token's 120 requests per 2 s), the
# connection at 80 of them (the default, 20, is the lowest plan's; at the plan's full 120, a
# loaded machine's jitter gets 429s)
PLAN_BURST, BURST = 120, 80


async def test_goals_pushed_updated_deleted_and_pipedrive_results_beside_ours(engine):
    company = generate_company(seed=12, deals=400, reps=5, today=date(2025, 6, 20))
    app = create_app(company, burst_limit=PLAN_BURST)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        async with running_api(engine, transport=httpx.AsyncHTTPTransport()) as api:
            for code, per_usd in RATES.items():
                rate = str(Decimal(1) / Decimal(per_usd))
                put = await api.client.put(f"/api/v1/fx-rates/{code}",
                                           json={"rate_to_reporting": rate})
                assert put.status_code == 200, put.text
            created = await api.client.post("/api/v1/connections", json={
                "provider": "pipedrive", "name": "pipedrive sandbox",
                "config": {"api_url": server.url, "oauth_url": server.url,
                           "burst_limit": BURST},
                "secrets": {"api_token": "sandbox-api-token"}})
            assert created.status_code == 201, created.text
            connection_id = int(created.json()["id"])
            history_backfilled(engine, connection_id)  # 400 deals' stage history: not the point
            assert (await api.client.post(f"/api/v1/connections/{connection_id}/sync",
                                          json={"mode": "full"})).status_code == 202
            await api.app.state.jobs.wait_idle()

            sellers = [r for r in company.reps if r.active][1:4]
            for i, rep in enumerate(sellers):
                made = await api.client.post("/api/v1/goals", json={
                    "owner_email": rep.email, "metric": "bookings", "period_start": Q[0],
                    "period_end": Q[1], "target": f"{50_000 * (i + 1)}.50",
                    "currency": "USD"})
                assert made.status_code == 201, made.text
            made = await api.client.post("/api/v1/goals", json={
                "metric": "deals_won", "period_start": Q[0], "period_end": Q[1],
                "target": "25"})
            assert made.status_code == 201, made.text

            first = await push(api)
            assert [r["status"] for r in first["results"]] == ["inserted"] * 4, first
            goals = {g["id"]: g for g in (await api.client.get("/api/v1/goals")).json()["data"]}
            assert len(state.goals) == 4
            usd = state.wire.currency_ids["USD"]
            by_rep = {r.email: r for r in sellers}
            for goal in goals.values():
                [pushed] = goal["push"]
                crm = state.goals[pushed["remote_id"]]
                assert crm["type"] == {"name": "deals_won", "params": {"pipeline_id": None}}
                assert crm["duration"] == {"start": Q[0], "end": Q[1]}
                assert crm["interval"] == "quarterly"
                assert f"[crmsync:crmsync-goal-{goal['id']}]" in crm["title"]
                if goal["owner_email"]:
                    assert crm["assignee"] == {"id": int(by_rep[goal["owner_email"]].id),
                                               "type": "person"}
                    assert crm["expected_outcome"] == {
                        "target": float(goal["target"]), "tracking_metric": "sum",
                        "currency_id": usd}
                else:
                    assert crm["assignee"]["type"] == "company"
                    assert crm["expected_outcome"] == {"target": 25,
                                                       "tracking_metric": "quantity"}
                # Pipedrive's own figure, read back and shown beside ours
                result = pushed["crm_result"]
                assert result is not None and result["error"] is None, pushed
                ours, theirs = Decimal(str(goal["actual"])), Decimal(str(result["actual"]))
                if goal["metric"] == "deals_won":
                    assert theirs == ours > 0 and result["currency"] is None
                else:
                    assert result["currency"] == "USD"
                    assert abs(theirs - ours) <= Decimal("0.05"), (theirs, ours)
            one = (await api.client.get(f"/api/v1/goals/{min(goals)}")).json()
            assert one["push"][0]["crm_result"]["read_at"]

            snapshot = {k: dict(v) for k, v in state.goals.items()}
            second = await push(api)  # idempotent: nothing sent, nothing duplicated
            assert {r["status"] for r in second["results"]} == {"unchanged"}
            assert state.goals == snapshot

            edited, removed = await edit_one_delete_one(api, goals)
            edited_id = goals[edited]["push"][0]["remote_id"]
            assert state.goals[edited_id]["expected_outcome"]["target"] == 12345.67  # in place
            assert goals[removed]["push"][0]["remote_id"] not in state.goals
            assert len(state.goals) == 3
            fourth = await push(api)
            assert {r["status"] for r in fourth["results"]} == {"unchanged"}
            assert len(state.goals) == 3
