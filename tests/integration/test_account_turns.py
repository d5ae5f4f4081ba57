"""Syncs of connections sharing one vendor account take turns (workers.jobs.account_turn):
at most the connector's `account_turns` of them run at once, across workers; the others go
back to the queue (arq) or wait without a slot (in-process), the runs queued first first,
so syncs of other accounts never wait behind them. A killed worker's turn ends with its
lease.

Real Redis and PostgreSQL; the CRM calls go to the HubSpot and Zoho sandboxes over HTTP,
slowed down after the first full syncs so that a HubSpot incremental sync (about 6 of the
account's 5 searches a second, and 20 other calls) takes seconds.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from arq.connections import RedisSettings
from arq.constants import in_progress_key_prefix
from arq.jobs import Job
from cryptography.fernet import Fernet
from sqlalchemy import select

from cli.run import run_sync_with_progress
from connectors.base import SharedAccount
from connectors.http import LocalLimits, SharedLimits
from connectors.hubspot.client import SEARCHING_SYNCS
from connectors.hubspot.sandbox import create_app as hubspot_app
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app as zoho_app
from core.db import session_scope
from core.models import Connection, SyncRun
from core.security import SecretBox
from core.types import RunStatus, SyncMode
from tests.integration.test_hubspot_sync_e2e import STATIC
from tests.integration.test_webhook_e2e import busy
from tests.integration.test_worker_lanes import runner_of as one_process
from tests.integration.zoho_helpers import add_connection as add_zoho
from tests.integration.zoho_helpers import make_context, sync
from workers.connect import open_connector
from workers.context import JobContext
from workers.jobs import AccountBusy, account_turn
from workers.limits import RedisLimits
from workers.queue import SYNC_QUEUE, ArqRunner
from workers.settings import worker_lanes

SHARING = 5  # HubSpot connections of one account
LATENCY = 0.1  # seconds per CRM call


@asynccontextmanager
async def limits_of(kind: str, redis_url: str) -> AsyncIterator[tuple[SharedLimits,
                                                                      SharedLimits]]:
    """Two holders of the turns, as two processes (Redis) or two tasks of one (local)."""
    if kind == "local":
        local = LocalLimits()
        yield local, local
        return
    box = SecretBox(Fernet.generate_key())
    a, b = RedisLimits(redis_url, box), RedisLimits(redis_url, box)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


# -- the primitive -------------------------------------------------------------------------


async def place(limits: SharedLimits, member: int, *, limit: int = 2, lease: float = 60,
                pace: float = 1.0) -> int:
    """The member's place in account x's line (0: it has a turn); its run id is its ticket."""
    at, wait = await limits.admit("account:x", limit, str(member), member, lease, pace)
    assert wait == (min(lease / 2, pace * -(-at // limit)) if at else 0)
    return at


@pytest.mark.parametrize("kind", ["redis", "local"])
async def test_turns_go_to_the_earliest_tickets_and_never_exceed_the_limit(kind, redis_url):
    async with limits_of(kind, redis_url) as (a, b):
        assert await place(a, 10) == await place(b, 11) == 0
        assert await place(a, 13) == 1  # next
        assert await place(b, 12) == 1  # queued earlier: before 13
        assert await place(a, 13) == 2
        assert await place(a, 10) == 0  # a holder renews its turn
        assert await b.leave("account:x", "10") == ["12", "13"]  # sent back: to call in
        assert await place(a, 13) == 2  # 12 waits before it
        assert await place(b, 12) == 0
        assert await place(a, 13) == 1
        assert await a.admit("account:y", 2, "13", 13, 60, 1.0) == (0, 0.0)  # another account
        assert await a.leave("account:x", "11") == ["13"]
        assert await place(b, 13) == 0
        assert await b.leave("account:y", "13") == []  # nobody waits
        for member in range(20, 30):  # far back: asked to come back later, at most lease / 2
            await place(a, member, lease=8)
        assert await a.admit("account:x", 2, "30", 30, 8, 1.0) == (11, 4.0)
        assert await b.leave("account:x", "12") == [str(m) for m in range(20, 30)]  # the first 10


@pytest.mark.parametrize("kind", ["redis", "local"])
async def test_a_killed_holders_turn_and_a_late_waiters_place_end(kind, redis_url):
    async with limits_of(kind, redis_url) as (dead, alive):
        assert await place(dead, 1, limit=1, lease=0.4) == 0  # never leaves: killed
        assert await place(dead, 2, limit=1, pace=0.1) == 1  # never comes back
        assert await place(alive, 3, limit=1) == 2
        await asyncio.sleep(0.6)  # the turn's lease and the place's wait + pace are over
        assert await place(alive, 3, limit=1) == 0
        assert await place(dead, 2, limit=1) == 1  # back late: first in line again
        assert await place(alive, 4, limit=1, pace=0.1) == 2
        await asyncio.sleep(0.5)  # 4's place ends: it came back late, it still waits
        assert await alive.leave("account:x", "3") == ["2", "4"]
        assert await place(dead, 2, limit=1) == 0  # 2 is called in first
        assert await dead.leave("account:x", "2") == ["4"]


# -- the workers ---------------------------------------------------------------------------


def second_worker(ctx: JobContext, redis_url: str) -> JobContext:
    """Another `crmsync worker`'s context: the same settings and store, its own processes'
    state (Redis limits, clients, caches)."""
    return JobContext(settings=ctx.settings, engine=ctx.engine, secrets=ctx.secrets,
                      retry=ctx.retry, limits=RedisLimits(redis_url, ctx.secrets))


@asynccontextmanager
async def runner_of(kind: str, ctx: JobContext, redis_url: str) -> AsyncIterator[Any]:
    """The runner the API would use; for arq, two workers (their lanes) running."""
    if kind == "in-process":
        async with one_process(kind, ctx, redis_url) as runner:
            yield runner
        return
    ctx.limits = RedisLimits(redis_url, ctx.secrets)
    other = second_worker(ctx, redis_url)
    lanes = [lane for job in (ctx, other)
             for lane in worker_lanes(job, RedisSettings.from_dsn(redis_url), poll_delay=0.05)]
    tasks = [asyncio.create_task(lane.main()) for lane in lanes]
    runner = await ArqRunner.connect(ctx, redis_url)
    try:
        yield runner
    finally:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and await busy(lanes):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        await runner.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in lanes:
            await lane.close()
        for job in (ctx, other):
            await job.limits.aclose()


def add_hubspot(ctx: JobContext, url: str, name: str) -> int:
    """A connection of the sandbox's account (its token: every one shares its budgets)."""
    with session_scope(ctx.engine) as session:
        connection = Connection(provider="hubspot", name=name, config={"base_url": url},
                                secrets_encrypted=ctx.secrets.seal(STATIC))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def polled(ctx: JobContext, run_ids: list[int]) -> list[tuple[str, str | None]]:
    """Each run's status and error, in the order of `run_ids`: one statement, the rows'
    columns (the test polls every 20 ms; an ORM object per run cost more CPU than the
    syncs it watches)."""
    with ctx.engine.connect() as db:
        found = {run_id: (status, error) for run_id, status, error in db.execute(
            select(SyncRun.id, SyncRun.status, SyncRun.error)
            .where(SyncRun.id.in_(run_ids)))}  # type: ignore[union-attr]
    return [found[run_id] for run_id in run_ids]


def runs_of(ctx: JobContext, run_ids: list[int]) -> list[SyncRun]:
    with session_scope(ctx.engine) as session:
        found = [session.get(SyncRun, run_id) for run_id in run_ids]
        for run in found:
            session.expunge(run)  # type: ignore[arg-type]
    return found  # type: ignore[return-value]


async def first_try(runner: ArqRunner, connection_id: int) -> int:
    """The try at which the connection's sync job ended (arq stores it with the result, just
    after the run row says succeeded)."""
    for _ in range(200):
        result = await Job(f"sync:{connection_id}", runner.redis).result_info()
        if result is not None:
            return result.job_try
        await asyncio.sleep(0.05)
    raise AssertionError(f"no result of sync:{connection_id}")


@pytest.mark.parametrize("kind", ["arq", "in-process"])
async def test_syncs_sharing_an_account_take_turns_and_others_do_not_wait_for_them(
        kind, pg_engine, pg_url, redis_url, caplog):
    caplog.set_level(logging.INFO, logger="crmsync.jobs")
    apps = (hubspot_app(generate_company(seed=7, deals=60, accounts=10)),
            zoho_app(generate_company(seed=8, deals=60, accounts=10)))
    hub, zoho = (BackgroundServer(app) for app in apps)
    with hub, zoho:
        ctx = make_context(pg_engine, pg_url)
        # a slot more than the account's turns
        ctx.settings = ctx.settings.model_copy(update={"worker_jobs": 3})
        shared = [add_hubspot(ctx, hub.url, f"hubspot {i}") for i in range(SHARING)]
        other = add_zoho(ctx, zoho.url, "another account")
        await asyncio.gather(*(sync(ctx, cid, "full") for cid in [*shared, other]))
        for harness in (apps[0].state.hubspot.harness, apps[1].state.zoho.harness):
            harness.latency = LATENCY  # the syncs under test take seconds, not their setup
        async with runner_of(kind, ctx, redis_url) as runner:
            queued = time.monotonic()
            hub_runs = [await runner.enqueue_sync(cid, SyncMode.INCREMENTAL) for cid in shared]
            other_run = await runner.enqueue_sync(other, SyncMode.INCREMENTAL)
            most, other_done_at, waiting_noted = 0, None, False
            while time.monotonic() - queued < 120:
                polls = polled(ctx, [*hub_runs, other_run])
                statuses = [status for status, _ in polls]
                most = max(most, statuses[:-1].count(RunStatus.RUNNING))
                waiting_noted |= any(status == RunStatus.QUEUED and error
                                     and error.startswith("waiting for its account")
                                     for status, error in polls[:-1])
                if other_done_at is None and statuses[-1] == RunStatus.SUCCEEDED:
                    other_done_at = statuses
                if all(s in (RunStatus.SUCCEEDED, RunStatus.FAILED) for s in statuses):
                    break
                await asyncio.sleep(0.02)
            if kind == "arq":  # a deferral is not a try: every job succeeded at its first
                assert [await first_try(runner, cid) for cid in shared] == [1] * SHARING
        runs = runs_of(ctx, [*hub_runs, other_run])
        assert [r.status for r in runs] == [RunStatus.SUCCEEDED] * (SHARING + 1), \
            [(r.status, r.error) for r in runs]
        assert most == SEARCHING_SYNCS  # never more of the account at once, and used fully
        assert waiting_noted  # the API shows why a run waits
        # the other account's sync, queued last, was done before the shared account's were
        assert other_done_at is not None
        assert other_done_at[:-1].count(RunStatus.SUCCEEDED) < SHARING, other_done_at
        # the first queued had the turns; the others waited (sent back, logged), then ran
        started = [r.started_at for r in runs[:-1]]
        assert max(started[:SEARCHING_SYNCS]) < min(started[SEARCHING_SYNCS:])  # type: ignore[type-var]
        deferred = {getattr(r, "run_id", None) for r in caplog.records
                    if r.getMessage().startswith("sync deferred")}
        assert deferred == set(hub_runs[SEARCHING_SYNCS:])


async def test_crmsync_sync_waits_for_its_accounts_turn(pg_engine, pg_url, redis_url):
    with BackgroundServer(hubspot_app(generate_company(seed=9, deals=30, accounts=5))) as hub:
        ctx = make_context(pg_engine, pg_url)
        ctx.limits = RedisLimits(redis_url, ctx.secrets)
        cid = add_hubspot(ctx, hub.url, "hubspot")
        await sync(ctx, cid, "full")
        async with open_connector(ctx, cid) as source:
            assert isinstance(source, SharedAccount)
            key = f"account:{source.account_key}"
        for earlier in (1, 2):  # a worker's syncs of the account, queued before, hold its turns
            assert await ctx.limits.admit(key, SEARCHING_SYNCS, str(earlier), earlier, 1.5,
                                          1.0) == (0, 0.0)
        started = time.monotonic()
        assert await run_sync_with_progress(ctx, cid, full=False)
        assert time.monotonic() - started >= 1.0  # until their turns ended
        with session_scope(ctx.engine) as session:
            run = session.scalars(select(SyncRun).where(SyncRun.connection_id == cid)
                                  .order_by(SyncRun.id.desc())).first()  # type: ignore[union-attr]
            assert run is not None
            assert (run.mode, run.status, run.error) == ("incremental", "succeeded", None)
        await ctx.limits.aclose()


class Account:
    """A connector's shared vendor account (connectors.base.SharedAccount) and nothing else:
    account_turn reads only these two."""

    account_key = "shared"

    def account_turns(self, incremental: bool) -> int:
        return 1


async def test_a_turn_given_back_puts_the_first_waiting_sync_back_at_its_place_in_the_queue(
        pg_engine, pg_url, redis_url):
    """A sync sent back to the queue (arq's Retry: its score now + its delay) would wait
    behind every job queued before its delay ended; when the turn it waits for ends, the
    worker puts its job back at its place, the time it was queued (ArqRunner.call_in)."""
    ctx = make_context(pg_engine, pg_url)
    ctx.limits = RedisLimits(redis_url, ctx.secrets)
    runner = await ArqRunner.connect(ctx, redis_url)
    ctx.call_in = runner.call_in
    try:
        cids = [add_zoho(ctx, "http://127.0.0.1:9", f"zoho {i}") for i in range(4)]
        holder, gone, waiter, other = [await runner.enqueue_sync(cid, SyncMode.INCREMENTAL)
                                       for cid in cids]
        jobs = [f"sync:{cid}" for cid in cids]
        queue = runner.redis
        # the holder's job runs: arq keeps it in the queue with its in-progress key
        await queue.set(in_progress_key_prefix + jobs[0], b"1")
        assert await queue.zrem(SYNC_QUEUE, jobs[1]) == 1  # gone's is not back yet
        running = await queue.zscore(SYNC_QUEUE, jobs[0])
        queued = await queue.zscore(SYNC_QUEUE, jobs[2])
        later = int(time.time() * 1000) + 60_000  # sent back: now + its delay
        await queue.zadd(SYNC_QUEUE, {jobs[2]: later})
        before = await queue.zscore(SYNC_QUEUE, jobs[3])
        async with account_turn(ctx, Account(), run_id=holder, incremental=True):
            for run_id in (gone, waiter):
                with pytest.raises(AccountBusy):
                    async with account_turn(ctx, Account(), run_id=run_id, incremental=True):
                        pass
            assert await queue.zscore(SYNC_QUEUE, jobs[2]) == later
        # the turn ended: of the syncs waiting for it, the first in the queue is back at
        # its place, before the one queued after it; one not in the queue is not put there
        assert await queue.zscore(SYNC_QUEUE, jobs[2]) == queued < before
        # called in already, and the running one not moved: another turn calls in none
        await runner.call_in([holder, gone, waiter])
        assert await queue.zrange(SYNC_QUEUE, 0, -1, withscores=True) == [
            (jobs[0].encode(), running), (jobs[2].encode(), queued), (jobs[3].encode(), before)]
        assert other > waiter
    finally:
        await runner.close()
        await ctx.limits.aclose()
