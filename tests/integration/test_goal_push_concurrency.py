"""Two goal pushes of one connection at once (two workers, or a manager's push beside an
admin's) on PostgreSQL, against the Pipedrive sandbox over real HTTP: Pipedrive finds a
goal by the key in its title, then creates it (docs/vendors/pipedrive.md §7), so two
pushes that both found nothing would both create it. They take turns
(workers.jobs.push_goals): each goal is in the CRM once."""

import asyncio
from datetime import date
from decimal import Decimal

from connectors.pipedrive.sandbox import create_app
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from core.config import Settings
from core.db import session_scope
from core.goals import targets
from tests.integration.test_pipedrive_sync_e2e import API_TOKEN, add_connection
from tests.integration.zoho_helpers import history_backfilled, make_context, sync
from workers.jobs import push_goals

SETTINGS = Settings(database_url="sqlite://", reporting_currency="USD")


async def test_two_pushes_at_once_create_each_goal_once(pg_engine, pg_url):
    company = generate_company(seed=21, deals=30, reps=4, today=date(2025, 6, 20))
    app = create_app(company)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        ctx = make_context(pg_engine, pg_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN)
        history_backfilled(pg_engine, connection_id)
        await sync(ctx, connection_id, "full")
        reps = [rep for rep in company.reps if rep.active]
        with session_scope(pg_engine) as session:
            for i, rep in enumerate(reps):
                targets.create_goal(session, targets.GoalInput(
                    rep.email, "bookings", date(2025, 4, 1), date(2025, 6, 30),
                    Decimal(1000 * (i + 1)), "USD"), SETTINGS)
        first, second = await asyncio.gather(
            push_goals(ctx, connection_id=connection_id),
            push_goals(ctx, connection_id=connection_id))
    statuses = sorted(r["status"] for r in [*first["results"], *second["results"]])
    assert statuses == sorted(["inserted"] * len(reps) + ["unchanged"] * len(reps))
    assert len(state.goals) == len(reps)  # each once in Pipedrive
    remote_ids = {r["remote_id"] for r in first["results"] + second["results"]}
    assert remote_ids == set(state.goals)
