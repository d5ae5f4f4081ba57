"""Pipedrive's day budgets shared through the machine's real Redis (workers.limits.RedisLimits):
two job contexts, as two crmsync processes hold them, sync one connection against a sandbox
with a small daily token budget (docs/vendors/pipedrive.md §6). Once one of them has seen
the budget run out (or reach the reserve), the other stops without calling Pipedrive."""

from typing import Any

from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from connectors.pipedrive.sandbox import create_app
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from core.config import Settings
from core.db import session_scope
from core.models import Connection, SyncRun
from core.security import SecretBox
from tests.integration.test_pipedrive_sync_e2e import API_TOKEN, add_connection
from tests.integration.zoho_helpers import FAST_RETRY, run_row, sync
from workers.context import JobContext
from workers.limits import RedisLimits


def contexts(engine: Engine, url: str, redis_url: str) -> tuple[JobContext, JobContext]:
    key = Fernet.generate_key().decode()
    return tuple(  # type: ignore[return-value]
        JobContext(settings=Settings(database_url=url, secret_key=key), engine=engine,
                   secrets=SecretBox(key), retry=FAST_RETRY,
                   limits=RedisLimits(redis_url, SecretBox(key))) for _ in range(2))


async def failed_run(ctx: JobContext, connection_id: int) -> Any:
    run_id = 0
    try:
        run_id = await sync(ctx, connection_id, "full")
    except Exception as exc:  # the job re-raises what ended the run
        assert "daily API token budget" in str(exc), exc
    with session_scope(ctx.engine) as session:  # the run sync() created, when it raised
        run_id = run_id or int(session.scalar(select(func.max(SyncRun.id)).where(
            SyncRun.connection_id == connection_id)) or 0)
    return run_row(ctx.engine, run_id)


async def test_a_used_up_daily_budget_stops_every_process(sqlite_engine, sqlite_url, redis_url):
    app = create_app(generate_company(seed=3, deals=600, accounts=60), daily_budget=150)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        first, second = contexts(sqlite_engine, sqlite_url, redis_url)
        connection_id = add_connection(first, server.url, API_TOKEN)
        run = await failed_run(first, connection_id)
        assert run.status == "failed" and "daily API token budget" in (run.error or "")
        assert state.harness.served["429"] >= 1
        calls = state.harness.stats()["total_calls"]
        run = await failed_run(second, connection_id)
        assert run.status == "failed" and "daily API token budget" in (run.error or "")
        assert state.harness.stats()["total_calls"] == calls  # not one call more
    for ctx in (first, second):
        await ctx.limits.aclose()


async def test_the_reserve_is_kept_for_the_companys_other_integrations(sqlite_engine,
                                                                       sqlite_url, redis_url):
    app = create_app(generate_company(seed=3, deals=600, accounts=60), daily_budget=400)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        first, second = contexts(sqlite_engine, sqlite_url, redis_url)
        connection_id = add_connection(first, server.url, API_TOKEN)
        with session_scope(sqlite_engine) as session:
            connection = session.get(Connection, connection_id)
            assert connection is not None
            connection.config = {**connection.config, "daily_reserve": 300}
        run = await failed_run(first, connection_id)
        assert "reserve of 300 tokens" in (run.error or "")
        assert state.harness.served["429"] == 0  # stopped before Pipedrive had to refuse
        # what crmsync spent: down to the reserve, plus the calls already under way
        assert 100 <= state.spent <= 100 + 4 * 20, state.spent
        spent = state.spent
        run = await failed_run(second, connection_id)
        assert "reserve of 300 tokens" in (run.error or "") and state.spent == spent
    for ctx in (first, second):
        await ctx.limits.aclose()
