"""The same sync job under arq: queued through Redis by the API, run by a real worker."""

from arq.connections import RedisSettings
from arq.worker import Worker
from sqlalchemy import select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core.db import session_scope
from core.models import SyncRun
from tests.integration.zoho_helpers import add_connection, assert_store_equals_sandbox, make_context
from workers.queue import ArqRunner
from workers.settings import WorkerSettings


async def test_a_worker_runs_the_queued_sync_into_postgresql(pg_engine, pg_url, redis_url):
    company = generate_company(seed=3, deals=600, accounts=60)
    with BackgroundServer(create_app(company)) as sandbox:
        ctx = make_context(pg_engine, pg_url)
        connection_id = add_connection(ctx, sandbox.url)
        runner = await ArqRunner.connect(ctx, redis_url)
        run_id = await runner.enqueue_sync(connection_id, "full")
        assert await runner.enqueue_sync(connection_id, "full") == run_id  # no second sync

        async def startup(worker_ctx):
            worker_ctx["job"] = ctx

        worker = Worker(functions=WorkerSettings.functions, on_startup=startup,
                        redis_settings=RedisSettings.from_dsn(redis_url), burst=True,
                        poll_delay=0, handle_signals=False)
        await worker.main()
        await worker.close()
        # the sync, then the stage history backfill its first full sync queued
        assert worker.jobs_complete == 2 and worker.jobs_failed == 0

        with session_scope(pg_engine) as session:
            run = session.get(SyncRun, run_id)
            assert run is not None and run.status == "succeeded", run
            assert len(session.scalars(select(SyncRun)).all()) == 1
        assert_store_equals_sandbox(pg_engine, connection_id, company)

        second = await runner.enqueue_sync(connection_id, "incremental")  # id free again
        assert second != run_id
        await runner.close()
