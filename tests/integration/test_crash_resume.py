"""A real `crmsync worker` killed with SIGKILL mid-sync: the next run resumes from the cursor.

PostgreSQL and Redis are the real ones; the Zoho sandbox runs in a thread of this
process with latency, so the sync is slow enough to kill half-way.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from arq.jobs import Job, JobStatus
from redis.asyncio import Redis
from sqlalchemy import func, select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core.db import session_scope
from core.models import Deal, SyncRun
from tests.integration.zoho_helpers import (
    SANDBOX_SECRETS,
    add_connection,
    assert_store_equals_sandbox,
    make_context,
)
from workers.heartbeat import read_heartbeat
from workers.queue import ArqRunner

CRMSYNC = str(Path(sys.executable).with_name("crmsync"))


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([CRMSYNC, "worker"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def deal_count(engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(Deal)) or 0)


def the_run(engine) -> SyncRun:
    with session_scope(engine) as session:
        return session.scalars(select(SyncRun)).one()


def wait_for(what, check, timeout: float, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; worker log:\n{log.read_text()[-3000:]}")


async def test_sigkilled_worker_resumes_from_the_committed_cursor(
        pg_engine, pg_url, redis_url, tmp_path):
    company = generate_company(seed=11, deals=6000, accounts=200)
    total = len(company.deals)
    with BackgroundServer(create_app(company, latency=0.06)) as sandbox:
        ctx = make_context(pg_engine, pg_url)
        connection_id = add_connection(ctx, sandbox.url)
        runner = await ArqRunner.connect(ctx, redis_url)
        run_id = await runner.enqueue_sync(connection_id, "full")
        env = {**os.environ, "CRMSYNC_DATABASE_URL": pg_url, "CRMSYNC_REDIS_URL": redis_url,
               "CRMSYNC_SECRET_KEY": str(ctx.settings.secret_key),
               "CRMSYNC_JOB_LEASE_SECONDS": "2", "CRMSYNC_LOG_FORMAT": "json"}
        log = tmp_path / "worker.log"
        first = start_worker(env, log)
        try:
            wait_for("a third of the deals", lambda: deal_count(pg_engine) > total // 3, 120, log)
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        finally:
            first.kill()
        partial = deal_count(pg_engine)
        assert 0 < partial < total
        assert the_run(pg_engine).status == "running"  # nobody was left to say otherwise

        heartbeat = Redis.from_url(redis_url)
        assert (await read_heartbeat(heartbeat))["status"] == "ok"  # the dead worker beat
        second = start_worker(env, log)
        try:
            job = Job(f"sync:{connection_id}", runner.redis)
            deadline = time.monotonic() + 180
            while await job.status() is not JobStatus.complete:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                await asyncio.sleep(0.1)
            assert (await job.result_info()).success  # type: ignore[union-attr]
            run = the_run(pg_engine)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(timeout=30)
            await heartbeat.aclose()
            await runner.close()
    assert run.id == run_id and run.status == "succeeded", run.error
    assert run.counts is not None
    assert run.counts["deals"]["fetched"] < total - partial // 2  # resumed, not restarted
    assert deal_count(pg_engine) == total  # no duplicate rows
    assert_store_equals_sandbox(pg_engine, connection_id, company)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON
    assert any(line.get("run_id") == run_id and line.get("connection_id") == connection_id
               for line in lines)
    for secret in (*SANDBOX_SECRETS.values(), str(ctx.settings.secret_key)):
        assert secret not in text
