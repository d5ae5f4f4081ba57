"""Fairness between jobs under both runners: webhook processing never waits behind syncs
(the arq worker's webhook lane, workers.settings.worker_lanes; the in-process runner's own
tasks), and syncs run CRMSYNC_WORKER_JOBS at a time.

PostgreSQL and Redis are the real ones; CRM calls go to the Zoho sandbox over HTTP, slowed
down so that the syncs queued ahead hold the sync slots for many seconds (until the webhook
was processed).
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from sqlalchemy import select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core import webhooks
from core.db import session_scope
from core.models import SyncRun, WebhookEvent
from core.types import SyncMode
from tests.integration.test_webhook_e2e import arq_worker
from tests.integration.zoho_helpers import add_connection, history_backfilled, make_context
from workers.context import JobContext
from workers.queue import CRON_QUEUE, SYNC_QUEUE, WEBHOOK_QUEUE, ArqRunner
from workers.runner import InProcessRunner
from workers.settings import LANES, parse_lanes, schedule_tick, worker_lanes

BUSY = 3  # connections whose syncs are queued first
LATENCY = 0.4  # seconds per CRM call: a full sync here takes several seconds


@asynccontextmanager
async def runner_of(kind: str, ctx: JobContext, redis_url: str) -> AsyncIterator[Any]:
    """The runner the API would use, with its workers running."""
    if kind == "in-process":
        runner = InProcessRunner(ctx)
        try:
            yield runner
        finally:
            await runner.close()
        return
    runner = await ArqRunner.connect(ctx, redis_url)
    try:
        async with arq_worker(ctx, redis_url):  # the lanes, as `crmsync worker` runs them
            yield runner
    finally:
        await runner.close()


def statuses(ctx: JobContext, run_ids: list[int]) -> list[str]:
    with session_scope(ctx.engine) as session:
        return [str(session.get(SyncRun, run_id).status) for run_id in run_ids]  # type: ignore[union-attr]


@asynccontextmanager
async def busy_world(pg_engine: Any, pg_url: str) -> AsyncIterator[Any]:
    """A Zoho sandbox slowed down (LATENCY), one sync slot (CRMSYNC_WORKER_JOBS=1), BUSY
    connections to sync and a quiet one to notify: (app, company, ctx, busy, quiet)."""
    company = generate_company(seed=5, deals=400, accounts=40)
    app = create_app(company, latency=LATENCY)
    with BackgroundServer(app) as server:
        ctx = make_context(pg_engine, pg_url)
        ctx.settings = ctx.settings.model_copy(update={"worker_jobs": 1})
        busy = [add_connection(ctx, server.url, f"busy {i}") for i in range(BUSY)]
        quiet = add_connection(ctx, server.url, "quiet")
        history_backfilled(ctx.engine, *busy)  # 400 deals' history at LATENCY is not the point
        yield app, company, ctx, server, busy, quiet


@pytest.mark.parametrize("kind", ["arq", "in-process"])
async def test_a_webhook_is_processed_within_seconds_while_syncs_hold_every_slot(
        kind, pg_engine, pg_url, redis_url):
    async with (busy_world(pg_engine, pg_url) as (app, company, ctx, _, busy, quiet),
                runner_of(kind, ctx, redis_url) as runner):
        await webhook_beside_busy_syncs(app, company, ctx, runner, busy, quiet, within=10)


async def webhook_beside_busy_syncs(app: Any, company: Any, ctx: JobContext, runner: Any,
                                    busy: list[int], quiet: int, within: float) -> None:
    """Full syncs of `busy` queued, the first holding the only sync slot: an event of
    `quiet` is processed within `within` s, before the syncs queued ahead are done; then
    the syncs finish, one at a time."""
    runs = [await runner.enqueue_sync(cid, SyncMode.FULL) for cid in busy]
    for _ in range(600):  # the first sync holds the only sync slot
        if statuses(ctx, runs)[0] == "running":
            break
        await asyncio.sleep(0.05)
    asked = time.monotonic()
    status = await notified(ctx, runner, sorted(company.deals)[0], quiet)
    took = time.monotonic() - asked
    during = statuses(ctx, runs)
    assert status == "processed"
    # the syncs queued ahead were not done: the event did not wait for them
    assert during[-1] in ("queued", "running"), (during, took)
    assert took < within, f"processed after {took:.1f}s behind the syncs {during}"
    # one sync at a time (CRMSYNC_WORKER_JOBS=1): never two running together
    assert during.count("running") <= 1, during
    app.state.zoho.harness.latency = 0  # the slots were held: the rest need not wait
    for _ in range(1200):
        if all(s == "succeeded" for s in statuses(ctx, runs)):
            break
        assert statuses(ctx, runs).count("running") <= 1
        await asyncio.sleep(0.1)
    assert statuses(ctx, runs) == ["succeeded"] * BUSY


async def notified(ctx: JobContext, runner: Any, deal_id: str, connection_id: int) -> str:
    """An event of `connection_id` about `deal_id` stored and its job queued: its status once
    processed, or after 60 s."""
    with session_scope(ctx.engine) as session:
        webhooks.store_events(session, connection_id=connection_id, provider="zoho", events=[(
            "edit-1", {"channel_id": "1", "module": "Deals", "operation": "update",
                       "ids": [deal_id], "server_time": None})])
    asked = time.monotonic()
    await runner.enqueue_webhooks(connection_id)
    while True:
        with session_scope(ctx.engine) as session:
            status = str(session.scalar(select(WebhookEvent.status).where(
                WebhookEvent.connection_id == connection_id)))
        if status == "processed" or time.monotonic() - asked > 60:
            return status
        await asyncio.sleep(0.05)


async def test_a_webhook_only_worker_process_beside_a_sync_only_worker(
        pg_engine, pg_url, redis_url):
    """`crmsync worker --lanes webhook` in a process of its own takes the webhook jobs (the
    sync lane here does not) while the sync lane's only slot is held; SIGTERM stops it
    cleanly."""
    async with busy_world(pg_engine, pg_url) as (app, company, ctx, server, busy, quiet):
        env = worker_env(ctx, redis_url, server, CRMSYNC_LOG_LEVEL="INFO")
        webhook_worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "worker", "--lanes", "webhook", env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        runner = await ArqRunner.connect(ctx, redis_url)
        try:  # the webhook process starts meanwhile (imports: a few seconds); no cron lane
            # here either: its minute cron would process the event, late
            async with arq_worker(ctx, redis_url, ("sync",)):
                await webhook_beside_busy_syncs(app, company, ctx, runner, busy, quiet,
                                                within=30)
            webhook_worker.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(webhook_worker.communicate(), 20)
            assert webhook_worker.returncode == 0, output
            assert b"Traceback" not in output, output
        finally:
            await runner.close()
            if webhook_worker.returncode is None:  # failed: its log says why (shown then)
                webhook_worker.kill()
                print((await webhook_worker.communicate())[0].decode()[-4000:])


async def test_a_worker_runs_its_webhook_lane_in_a_child_process_when_asked(
        pg_engine, pg_url, redis_url):
    """CRMSYNC_WORKER_WEBHOOK_PROCESS: `crmsync worker` starts `crmsync worker --lanes
    webhook` as its child, which processes webhooks; SIGTERM stops both cleanly, and a
    worker whose child died ends too."""
    company = generate_company(seed=5, deals=50, accounts=5)
    with BackgroundServer(create_app(company)) as server:
        ctx = make_context(pg_engine, pg_url)
        quiet = add_connection(ctx, server.url, "quiet")
        env = worker_env(ctx, redis_url, server, CRMSYNC_WORKER_WEBHOOK_PROCESS="1")
        workers = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cli", "worker", env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT) for _ in range(2)]
        runner = await ArqRunner.connect(ctx, redis_url)
        children: list[int] = []
        try:
            children += [await child_of(worker.pid) for worker in workers]
            for child in children:  # until it has exec'd (a forked child shows its parent's)
                for _ in range(600):
                    cmdline = (proc(f"{child}/cmdline") or b"").split(b"\0")[-4:-1]
                    if cmdline == [b"worker", b"--lanes", b"webhook"]:
                        break
                    await asyncio.sleep(0.05)
                assert cmdline == [b"worker", b"--lanes", b"webhook"]
            assert await notified(ctx, runner, sorted(company.deals)[0], quiet) == "processed"

            workers[0].send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(workers[0].communicate(), 30)
            assert workers[0].returncode == 0, output
            assert b"Traceback" not in output, output
            assert proc(f"{children[0]}/cmdline") is None  # stopped, and waited for

            os.kill(children[1], signal.SIGKILL)  # the other's child dies: it ends too
            output, _ = await asyncio.wait_for(workers[1].communicate(), 30)
            assert workers[1].returncode != 0
            assert b"the webhook lane's process ended" in output, output
        finally:
            await runner.close()
            for child in children:  # a child left holds its parent's output open
                if proc(f"{child}/cmdline") is not None:
                    os.kill(child, signal.SIGKILL)
            for worker in workers:
                if worker.returncode is None:
                    worker.kill()
                    output = await asyncio.wait_for(worker.communicate(), 10)
                    print(output[0].decode()[-4000:])


def worker_env(ctx: JobContext, redis_url: str, server: BackgroundServer,
               **settings: str) -> dict[str, str]:
    """The environment of a `crmsync worker` process on ctx's database and key, and
    `settings`."""
    return {**os.environ, "CRMSYNC_DATABASE_URL": ctx.settings.database_url,
            "CRMSYNC_REDIS_URL": redis_url, "CRMSYNC_SECRET_KEY": str(ctx.settings.secret_key),
            "CRMSYNC_ALLOW_ENDPOINTS": server.host, **settings}


async def child_of(pid: int) -> int:
    """The child process of `pid`, once it has one (Linux /proc)."""
    for _ in range(600):
        if found := (proc(f"{pid}/task/{pid}/children") or b"").split():
            return int(found[0])
        await asyncio.sleep(0.05)
    raise AssertionError(f"process {pid} started no child")


def proc(path: str) -> bytes | None:
    """A file of Linux /proc (None: that process is gone)."""
    try:
        with open(f"/proc/{path}", "rb") as found:
            return found.read()
    except FileNotFoundError:
        return None


def test_lanes_parse_from_a_comma_separated_list():
    assert parse_lanes("sync,webhook,cron") == LANES == ("sync", "webhook", "cron")
    assert parse_lanes(" cron , sync") == ("sync", "cron")  # LANES' order, spaces ignored
    assert parse_lanes("webhook,webhook") == ("webhook",)
    with pytest.raises(ValueError, match="unknown lane syncs, x: the lanes are sync, webhook"):
        parse_lanes("syncs,webhook,x")
    with pytest.raises(ValueError, match="no lane given"):
        parse_lanes(" , ")


async def test_the_schedule_on_the_cron_lane_queues_syncs_for_the_sync_lane(
        pg_engine, pg_url, redis_url):
    """The minute crons run on a lane whose Redis pool defaults to its own queue: the syncs
    the schedule queues must still reach the sync lane."""
    ctx = make_context(pg_engine, pg_url)
    cid = add_connection(ctx, "http://127.0.0.1:9", "due")  # never synced: due now
    cron_lane = worker_lanes(ctx, RedisSettings.from_dsn(redis_url))[2]
    assert cron_lane.queue_name == CRON_QUEUE
    asked = worker_lanes(ctx, RedisSettings.from_dsn(redis_url), ("webhook", "sync"))
    assert [lane.queue_name for lane in asked] == [SYNC_QUEUE, WEBHOOK_QUEUE]
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name=CRON_QUEUE)
    try:
        await schedule_tick({"job": ctx, "redis": pool})
        assert await pool.zscore(SYNC_QUEUE, f"sync:{cid}") is not None
        assert await pool.zcard(CRON_QUEUE) == await pool.zcard(WEBHOOK_QUEUE) == 0
    finally:
        await pool.aclose()
