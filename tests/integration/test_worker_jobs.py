"""Sync jobs under both runners: retries with back-off, failing for good, faults, concurrency.

PostgreSQL and Redis are the real ones; CRM calls go to the Zoho sandbox over HTTP.
"""

import asyncio
import itertools
from collections.abc import Iterable
from datetime import timedelta

import httpx
import pytest
from arq.connections import RedisSettings
from arq.jobs import Job, JobStatus
from arq.worker import Worker
from sqlalchemy import select

from connectors.http import RetryPolicy
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core import webhooks
from core.config import Settings
from core.db import session_scope
from core.models import Connection, SyncRun
from core.types import utcnow
from tests.integration.zoho_helpers import (
    add_connection,
    assert_store_equals_sandbox,
    history_backfilled,
    make_context,
)
from workers.context import JobContext
from workers.jobs import SYNC_MAX_TRIES
from workers.queue import ArqRunner
from workers.runner import InProcessRunner
from workers.schedule import enqueue_due_syncs
from workers.settings import WorkerSettings, schedule_tick


def fast_context(engine, url: str) -> JobContext:
    ctx = make_context(engine, url)
    ctx.settings = Settings(database_url=url, secret_key=ctx.settings.secret_key,
                            job_retry_seconds=0.05)
    ctx.retry = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02)
    return ctx


def inject(server: BackgroundServer, faults: Iterable[dict]) -> None:
    for fault in faults:
        httpx.post(f"{server.url}/_sandbox/faults", json=fault).raise_for_status()


def sandbox_stats(server: BackgroundServer) -> dict:
    return httpx.get(f"{server.url}/_sandbox/stats").json()


def arq_worker(ctx: JobContext, redis_url: str, *, burst: bool = True,
              max_jobs: int = 10) -> Worker:
    async def startup(worker_ctx):
        worker_ctx["job"] = ctx

    return Worker(functions=WorkerSettings.functions, on_startup=startup,
                  redis_settings=RedisSettings.from_dsn(redis_url), burst=burst, poll_delay=0.02,
                  handle_signals=False, max_jobs=max_jobs)


def runs_of(engine, connection_id: int) -> list[SyncRun]:
    with session_scope(engine) as session:
        return list(session.scalars(select(SyncRun).where(SyncRun.connection_id == connection_id)
                                    .order_by(SyncRun.id)))


def connection_row(engine, connection_id: int) -> Connection:
    with session_scope(engine) as session:
        row = session.get(Connection, connection_id)
        assert row is not None
        return row


@pytest.fixture
def company():
    return generate_company(seed=5, deals=700, accounts=80)


async def test_in_process_job_retries_transient_failures_then_fails_with_advice(
        engine, db_url, company):
    with BackgroundServer(create_app(company)) as server:
        ctx = fast_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        inject(server, [{"kind": "500", "count": 10_000, "path": "/crm/"}])
        runner = InProcessRunner(ctx)
        run_id = await runner.enqueue_sync(connection_id, "full")
        await runner.wait_idle()
        served = sandbox_stats(server)["served"]
    [run] = runs_of(engine, connection_id)
    assert run.id == run_id and run.status == "failed"
    assert f"gave up after {SYNC_MAX_TRIES} tries" in (run.error or "")
    assert served["500"] >= SYNC_MAX_TRIES * ctx.retry.attempts  # every try went out again
    connection = connection_row(engine, connection_id)
    assert connection.status == "error"
    assert "check that the CRM is reachable" in (connection.last_error or "")


async def test_in_process_job_recovers_when_the_crm_comes_back(engine, db_url, company):
    with BackgroundServer(create_app(company)) as server:
        ctx = fast_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        inject(server, [{"kind": "500", "count": 5, "path": "/crm/v8/Deals"}])  # > 2 HTTP tries
        runner = InProcessRunner(ctx)
        await runner.enqueue_sync(connection_id, "full")
        await runner.wait_idle()
    [run] = runs_of(engine, connection_id)
    assert run.status == "succeeded" and run.error is None
    assert connection_row(engine, connection_id).status == "active"
    assert_store_equals_sandbox(engine, connection_id, company)


async def test_rejected_credentials_fail_at_once_without_retries(engine, db_url, company):
    with BackgroundServer(create_app(company)) as server:
        ctx = fast_context(engine, db_url)
        with session_scope(engine) as session:
            row = Connection(provider="zoho", name="revoked",
                             config={"accounts_url": server.url},
                             secrets_encrypted=ctx.secrets.seal({
                                 "client_id": "sandbox-client-id",
                                 "client_secret": "sandbox-client-secret",
                                 "refresh_token": "revoked-token-123"}))
            session.add(row)
            session.flush()
            connection_id = int(row.id or 0)
        runner = InProcessRunner(ctx)
        await runner.enqueue_sync(connection_id, "full")
        await runner.wait_idle()
        calls = sandbox_stats(server)["calls"]
    assert calls == {"/oauth/v2/token": 1}  # one try: never retried
    [run] = runs_of(engine, connection_id)
    assert run.status == "failed" and "invalid_code" in (run.error or "")
    connection = connection_row(engine, connection_id)
    assert connection.status == "needs_reauth"
    assert "Re-enter the connection's credentials" in (connection.last_error or "")
    assert "revoked-token-123" not in (connection.last_error or "")


async def test_settings_the_connector_refuses_fail_the_run_without_their_values(engine, db_url):
    """Stored settings that no longer validate (say, after an upgrade changed a model): the
    run fails with what is wrong, never with the values, which may be secrets."""
    ctx = fast_context(engine, db_url)
    with session_scope(engine) as session:
        row = Connection(provider="zoho", name="stale", config={"dc": "dc-sekrit-4711"},
                         secrets_encrypted=ctx.secrets.seal({
                             "client_id": "sandbox-client-id",
                             "refresh_token": ["not", "a", "string", "sekrit-4712"]}))
        session.add(row)
        session.flush()
        connection_id = int(row.id or 0)
    runner = InProcessRunner(ctx)
    await runner.enqueue_sync(connection_id, "full")
    await runner.wait_idle()
    [run] = runs_of(engine, connection_id)
    connection = connection_row(engine, connection_id)
    assert run.status == "failed" and connection.status == "error"
    for text in (run.error or "", connection.last_error or ""):
        assert "invalid connection settings" in text and "dc" in text, text
        assert "sekrit" not in text, text


async def test_arq_job_retries_with_backoff_then_marks_the_run_failed(
        pg_engine, pg_url, redis_url, company):
    with BackgroundServer(create_app(company)) as server:
        ctx = fast_context(pg_engine, pg_url)
        connection_id = add_connection(ctx, server.url)
        inject(server, [{"kind": "500", "count": 10_000, "path": "/crm/"}])
        runner = await ArqRunner.connect(ctx, redis_url)
        run_id = await runner.enqueue_sync(connection_id, "incremental")
        worker = arq_worker(ctx, redis_url)
        await worker.main()
        await worker.close()
        await runner.close()
    assert (worker.jobs_retried, worker.jobs_failed) == (SYNC_MAX_TRIES - 1, 1)
    [run] = runs_of(pg_engine, connection_id)
    assert run.id == run_id and run.status == "failed" and run.finished_at is not None
    assert f"gave up after {SYNC_MAX_TRIES} tries" in (run.error or "")
    assert connection_row(pg_engine, connection_id).status == "error"


async def test_faults_through_the_arq_worker_converge_to_an_exact_copy(
        pg_engine, pg_url, redis_url):
    company = generate_company(seed=7, deals=2300, accounts=250)
    with BackgroundServer(create_app(company, concurrency_limit=3, hang_seconds=3)) as server:
        ctx = fast_context(pg_engine, pg_url)
        ctx.retry = RetryPolicy(attempts=4, initial_wait=0.01, max_wait=0.1)
        ctx.http_timeout = 1.0
        connection_id = add_connection(ctx, server.url)
        history_backfilled(ctx.engine, connection_id)  # 2,300 deals' history: not the point
        inject(server, [
            {"kind": "429", "count": 6, "path": "/crm/v8/Deals", "after": 2},
            {"kind": "500", "count": 2, "path": "/crm/v8/Accounts"},
            {"kind": "truncated", "count": 2, "path": "/crm/v8/Deals", "after": 4},
            {"kind": "expire_token", "count": 1, "after": 6},
            {"kind": "timeout", "count": 1, "path": "/crm/v8/Deals", "after": 8},
            # a burst longer than the HTTP retries: the job itself is retried and resumes
            {"kind": "500", "count": 6, "path": "/crm/v8/Deals", "after": 10},
        ])
        runner = await ArqRunner.connect(ctx, redis_url)
        run_id = await runner.enqueue_sync(connection_id, "full")
        worker = arq_worker(ctx, redis_url)
        await worker.main()
        await worker.close()
        await runner.close()
        stats = sandbox_stats(server)
    # the sync, retried (no stage history backfill queued after it: history_backfilled)
    assert worker.jobs_retried >= 1 and worker.jobs_complete == 1 and worker.jobs_failed == 0
    assert set(stats["served"]) >= {"429", "500", "truncated", "expire_token", "timeout"}
    assert not stats["faults"]  # every injected fault was served
    [run] = runs_of(pg_engine, connection_id)
    assert run.id == run_id and run.status == "succeeded" and run.error is None
    assert_store_equals_sandbox(pg_engine, connection_id, company)


async def test_two_workers_and_two_schedulers_never_sync_a_connection_twice_at_once(
        pg_engine, pg_url, redis_url, company):
    active = ("queued", "running")
    with BackgroundServer(create_app(company, latency=0.06)) as server:
        ctx = fast_context(pg_engine, pg_url)
        ids = [add_connection(ctx, server.url, name=f"zoho {i}") for i in range(3)]
        workers = [arq_worker(ctx, redis_url, burst=False, max_jobs=1) for _ in range(2)]
        tasks = [asyncio.create_task(w.main()) for w in workers]
        pools = [await ArqRunner.connect(ctx, redis_url) for _ in range(2)]
        try:
            # two schedulers (the arq cron entry point) tick at the same moment
            await asyncio.gather(*(schedule_tick({"job": ctx, "redis": p.redis}) for p in pools))
            originals = {cid: [r.id for r in runs_of(pg_engine, cid)] for cid in ids}
            assert all(len(runs) == 1 for runs in originals.values()), originals
            # both keep ticking, as if a day had passed, while the syncs are queued or running
            later = utcnow() + timedelta(days=1)
            ticks = 0
            while all(r.status in active for cid in ids for r in runs_of(pg_engine, cid)):
                results = await asyncio.gather(*(enqueue_due_syncs(ctx, p, now=later)
                                                 for p in pools))
                ticks += 1
                for cid, _, run_id in results[0] + results[1]:
                    if run_id != originals[cid][0]:  # only once the first run has finished
                        assert runs_of(pg_engine, cid)[0].status not in active
                with session_scope(pg_engine) as session:
                    running = session.scalars(select(SyncRun.connection_id).where(
                        SyncRun.status == "running")).all()
                assert len(running) == len(set(running)), running
                await asyncio.sleep(0.05)
            for cid in ids:  # let every job finish (run rows say so a moment before arq)
                job = Job(f"sync:{cid}", pools[0].redis)
                for _ in range(400):
                    if await job.status() is JobStatus.complete and not any(
                            r.status in active for r in runs_of(pg_engine, cid)):
                        break
                    await asyncio.sleep(0.05)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for w in workers:
                await w.close()
            for p in pools:
                await p.close()
    assert ticks >= 3  # the schedulers really ticked over queued and running syncs
    for cid in ids:
        runs = runs_of(pg_engine, cid)
        assert {r.status for r in runs} == {"succeeded"}, [(r.status, r.error) for r in runs]
        spans = sorted((r.started_at, r.finished_at) for r in runs)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
        assert_store_equals_sandbox(pg_engine, cid, company)
    assert all(w.jobs_complete for w in workers)  # both workers took work


async def test_serve_without_redis_runs_the_schedule_in_process(sqlite_engine, sqlite_url, company):
    from api.app import create_app as create_api

    with BackgroundServer(create_app(company)) as server:
        ctx = fast_context(sqlite_engine, sqlite_url)
        ctx.settings = ctx.settings.model_copy(update={"public_url": "https://crm.example.com"})
        connection_id = add_connection(ctx, server.url)
        app = create_api(ctx.settings, ctx=ctx, schedule=True)
        async with app.router.lifespan_context(app):
            runner = app.state.jobs
            assert isinstance(runner, InProcessRunner)
            for _ in range(100):  # the first tick runs at start-up
                if runs_of(sqlite_engine, connection_id):
                    break
                await asyncio.sleep(0.05)
            await runner.wait_idle()
            for _ in range(100):  # the same tick renews CRM notification channels
                with session_scope(sqlite_engine) as session:
                    channels = webhooks.channels_of(session, connection_id=connection_id)
                if channels:
                    break
                await asyncio.sleep(0.05)
    [run] = runs_of(sqlite_engine, connection_id)
    assert (run.mode, run.status) == ("full", "succeeded")  # never synced: a full sync
    [channel] = channels
    assert channel.notify_url == f"https://crm.example.com/api/v1/webhooks/zoho/{connection_id}"
    assert_store_equals_sandbox(sqlite_engine, connection_id, company)
