"""The arq worker (`crmsync worker`): the same job functions as the in-process runner.

One `crmsync worker` process runs three arq workers (lanes) on one job context
(worker_lanes): the sync lane takes arq's default queue (syncs, backfills, goal pushes,
channel subscriptions; CRMSYNC_WORKER_JOBS at a time), the webhook lane WEBHOOK_QUEUE
(webhook processing; CRMSYNC_WORKER_WEBHOOK_JOBS at a time) and the cron lane CRON_QUEUE
(the schedule's tick and the other minute crons, all at once). So a webhook never waits
behind syncs, and the schedule never waits behind syncs or a flood of webhooks.
`crmsync worker --lanes` runs only some of them (parse_lanes), e.g. the webhook lane in
processes of its own, whose event loop sync work never holds up.
WorkerSettings is arq's settings class of the sync lane; arq reads its own attributes
(never inherited ones), so it stays flat.
"""

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from arq.connections import RedisSettings
from arq.constants import retry_key_prefix
from arq.cron import cron
from arq.worker import Retry, Worker, func

from core import collector
from core.config import Settings, get_settings
from core.types import SyncMode
from workers import heartbeat
from workers.context import JobContext, build_context
from workers.digests import send_due_digests
from workers.jobs import (
    SYNC_MAX_TRIES,
    AccountBusy,
    RetryLater,
    after_full_sync,
    backfill_stage_history,
    process_pending_webhooks,
    process_webhook_event,
    push_goals,
    refresh_rollups,
    renew_channels,
    sync_job_attempt,
)
from workers.queue import CRON_QUEUE, WEBHOOK_QUEUE, ArqRunner
from workers.schedule import enqueue_due_syncs


async def startup(ctx: dict[str, Any]) -> None:
    ctx["job"] = build_context(get_settings(), migrate_sqlite=False)
    collector.tune(collector.WORKER_YOUNG)  # once it has loaded
    ctx["heartbeat"] = heartbeat.start(ctx["redis"])
    ctx["job"].call_in = ArqRunner(ctx["job"], ctx["redis"]).call_in


async def shutdown(ctx: dict[str, Any]) -> None:
    job: JobContext = ctx["job"]
    if "heartbeat" in ctx:
        ctx["heartbeat"].cancel()
    await job.aclose()
    job.engine.dispose()


async def sync_job(ctx: dict[str, Any], connection_id: int, run_id: int, mode: str) -> Any:
    """arq entry point of the sync job: transient failures come back with back-off (Retry),
    and so does a sync whose vendor account has no turn free (workers.jobs.account_turn)."""
    job: JobContext = ctx["job"]
    async with _lease(ctx):
        try:
            summary = await sync_job_attempt(job, connection_id=connection_id, run_id=run_id,
                                             mode=SyncMode(mode), attempt=ctx.get("job_try", 1))
        except AccountBusy as busy:  # back to the queue, not a try: arq counts one per start
            await ctx["redis"].decr(retry_key_prefix + ctx["job_id"])
            raise Retry(defer=busy.delay) from None
        except RetryLater as retry:
            raise Retry(defer=retry.delay) from None
        if mode == SyncMode.FULL:
            await after_full_sync(job, connection_id, ArqRunner(job, ctx["redis"]).enqueue_backfill)
        return summary


async def schedule_tick(ctx: dict[str, Any]) -> None:
    """Queue the due syncs (workers.schedule); arq runs each minute's tick on one worker."""
    job: JobContext = ctx["job"]
    await enqueue_due_syncs(job, ArqRunner(job, ctx["redis"]))


async def webhook_job(ctx: dict[str, Any], connection_id: int) -> int:
    """arq entry point of workers.jobs.process_webhook_event (events left pending on an
    error are taken by the connection's next webhook job)."""
    return await process_webhook_event(ctx["job"], connection_id=connection_id)


async def renew_channels_job(ctx: dict[str, Any],
                             connection_id: int | None = None) -> dict[str, int]:
    """arq entry point of workers.jobs.renew_channels (hourly for every connection; queued
    by the API for one connection when it is created or its settings change)."""
    return await renew_channels(ctx["job"], connection_id=connection_id)


async def backfill_job(ctx: dict[str, Any], connection_id: int,
                       restart: bool = False) -> dict[str, Any]:
    """arq entry point of workers.jobs.backfill_stage_history (queued after a connection's
    first full sync, or by the API); it resumes where a stopped one left off."""
    job: JobContext = ctx["job"]
    async with _lease(ctx):
        return await backfill_stage_history(job, connection_id=connection_id, restart=restart)


@contextlib.asynccontextmanager
async def _lease(ctx: dict[str, Any]) -> AsyncIterator[None]:
    """Hold the running job's lease (workers.heartbeat.keep_lease) while the block runs."""
    lease = asyncio.create_task(heartbeat.keep_lease(ctx["redis"], ctx["job_id"],
                                                     ctx["job"].settings.job_lease_seconds))
    try:
        yield
    finally:
        lease.cancel()


async def pending_webhooks_job(ctx: dict[str, Any]) -> int:
    """arq entry point of workers.jobs.process_pending_webhooks (for a cron, every minute)."""
    return await process_pending_webhooks(ctx["job"])


async def refresh_rollups_job(ctx: dict[str, Any]) -> int:
    """arq entry point of workers.jobs.refresh_rollups (a cron, every minute)."""
    return await refresh_rollups(ctx["job"])


async def push_goals_job(ctx: dict[str, Any], connection_id: int | None,
                         people: list[int] | None = None) -> dict[str, Any]:
    """arq entry point of workers.jobs.push_goals (the API waits for its result); `people`:
    only their goals (a manager's push)."""
    return await push_goals(ctx["job"], connection_id=connection_id, people=people)


async def digests_job(ctx: dict[str, Any]) -> dict[str, int]:
    """arq entry point of workers.digests.send_due_digests (a cron, every minute; each
    channel's period is claimed once in the database, whichever worker runs it)."""
    return await send_due_digests(ctx["job"])


class WorkerSettings:
    """The sync lane (arq's default queue)."""

    functions = [  # noqa: RUF012 - arq reads plain class attributes
        func(sync_job, name="sync_connection", max_tries=SYNC_MAX_TRIES, timeout=6 * 3600),
        func(renew_channels_job, name="renew_channels", max_tries=1, timeout=600,
             keep_result=0),
        func(push_goals_job, name="push_goals", max_tries=1, timeout=600),
        func(backfill_job, name="backfill_stage_history", max_tries=1, timeout=6 * 3600),
    ]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 10
    keep_result = 3600


class WebhookLaneSettings:
    """The webhook lane (WEBHOOK_QUEUE): short jobs that must not wait behind syncs."""

    queue_name = WEBHOOK_QUEUE
    functions = [  # noqa: RUF012
        func(webhook_job, name="process_webhook_event", max_tries=1, timeout=600,
             keep_result=0),
        func(pending_webhooks_job, name="process_pending_webhooks", max_tries=1, timeout=600),
    ]
    max_jobs = 10
    keep_result = 3600


class CronLaneSettings:
    """The cron lane (CRON_QUEUE): each cron once per period across workers, all at once."""

    queue_name = CRON_QUEUE
    cron_jobs = [  # noqa: RUF012
        cron(schedule_tick, name="schedule_syncs", second=0, unique=True, timeout=300,
             max_tries=1),
        # hourly: subscribes new connections and renews channels well before they expire
        cron(renew_channels_job, name="renew_channels_hourly", minute=7, second=30,
             unique=True, timeout=600, max_tries=1),
        # every minute: webhook events whose job failed or was lost (a Redis restart...)
        cron(pending_webhooks_job, name="process_pending_webhooks_minutely", second=30,
             unique=True, timeout=600, max_tries=1),
        # every minute: metric rollups of months left dirty (core.metrics.rollups)
        cron(refresh_rollups_job, name="refresh_rollups_minutely", second=45, unique=True,
             timeout=600, max_tries=1),
        # every minute: scheduled digests due and their retries (workers.digests)
        cron(digests_job, name="send_digests_minutely", second=15, unique=True, timeout=600,
             max_tries=1),
    ]


LANES = ("sync", "webhook", "cron")
"""The lanes of `crmsync worker`, in the order worker_lanes builds them."""


def parse_lanes(text: str) -> tuple[str, ...]:
    """`crmsync worker --lanes`: a comma-separated list of LANES -> those lanes (in LANES'
    order); ValueError naming what is not a lane."""
    names = {name.strip() for name in text.split(",")} - {""}
    if unknown := sorted(names - set(LANES)):
        raise ValueError(f"unknown lane {', '.join(unknown)}: the lanes are "
                         f"{', '.join(LANES)} (comma-separated)")
    if not names:
        raise ValueError(f"no lane given: the lanes are {', '.join(LANES)} (comma-separated)")
    return tuple(lane for lane in LANES if lane in names)


def worker_lanes(job: JobContext, redis_settings: RedisSettings,
                 lanes: Sequence[str] = LANES, **options: Any) -> list[Worker]:
    """The arq workers of one `crmsync worker` process (`lanes`, in LANES' order), sharing
    `job`: the sync lane (CRMSYNC_WORKER_JOBS at a time), the webhook lane
    (CRMSYNC_WORKER_WEBHOOK_JOBS at a time) and the cron lane. `options` go to all (tests:
    poll_delay, burst). The sync lane beats the heartbeat (workers.heartbeat) while it
    runs."""

    async def start(ctx: dict[str, Any]) -> None:
        ctx["job"] = job

    async def start_beating(ctx: dict[str, Any]) -> None:
        ctx["job"], ctx["heartbeat"] = job, heartbeat.start(ctx["redis"])
        job.call_in = ArqRunner(job, ctx["redis"]).call_in  # the syncs run here

    async def stop_beating(ctx: dict[str, Any]) -> None:
        ctx["heartbeat"].cancel()

    common: dict[str, Any] = {"redis_settings": redis_settings, "handle_signals": False,
                              "keep_result": WorkerSettings.keep_result, **options}
    built = {
        "sync": lambda: Worker(functions=WorkerSettings.functions, on_startup=start_beating,
                               on_shutdown=stop_beating, max_jobs=job.settings.worker_jobs,
                               **common),
        "webhook": lambda: Worker(functions=WebhookLaneSettings.functions,
                                  queue_name=WEBHOOK_QUEUE, on_startup=start,
                                  max_jobs=job.settings.worker_webhook_jobs, **common),
        "cron": lambda: Worker(queue_name=CRON_QUEUE, cron_jobs=CronLaneSettings.cron_jobs,
                               on_startup=start, max_jobs=len(CronLaneSettings.cron_jobs),
                               **common),
    }
    return [built[lane]() for lane in LANES if lane in lanes]


def run(settings: Settings, lanes: Sequence[str] = LANES) -> None:
    """`crmsync worker`: its lanes until SIGINT or SIGTERM (running jobs are cancelled and
    retried by the next worker, as arq does). With CRMSYNC_WORKER_WEBHOOK_PROCESS, the
    webhook lane of a process given others too runs in a child process (`crmsync worker
    --lanes webhook`, on an event loop that sync work never holds up), stopped with it."""
    asyncio.run(_run(settings, lanes))


async def _run(settings: Settings, names: Sequence[str]) -> None:
    assert settings.redis_url
    stop = asyncio.Event()  # first: a SIGTERM while starting stops it (and its child) cleanly
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    child = None
    if settings.worker_webhook_process and "webhook" in names and len(names) > 1:
        names = [name for name in names if name != "webhook"]
        child = await asyncio.create_subprocess_exec(sys.executable, "-m", "cli", "worker",
                                                     "--lanes", "webhook")
    job = build_context(settings, migrate_sqlite=False)
    collector.tune(collector.WORKER_YOUNG)  # once it has loaded
    lanes = worker_lanes(job, RedisSettings.from_dsn(settings.redis_url), names)
    mains = [asyncio.create_task(lane.main(), name=lane.queue_name) for lane in lanes]
    if child is not None:
        mains.append(asyncio.create_task(_ended(child), name="webhook lane process"))
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*mains, stopping], return_when=asyncio.FIRST_COMPLETED)
        for task in done - {stopping}:
            task.result()  # a lane that stopped on its own: its error ends the process
    finally:
        if child is not None and child.returncode is None:
            child.terminate()  # SIGTERM: it stops as this process does
        stopping.cancel()
        for task in mains:
            task.cancel()
        await asyncio.gather(*mains, return_exceptions=True)
        for lane in lanes:
            await lane.close()
        if child is not None:
            await child.wait()
        await job.aclose()
        job.engine.dispose()


async def _ended(child: asyncio.subprocess.Process) -> None:
    """Raises when the webhook lane's child process ended (this process ends too)."""
    raise RuntimeError(f"the webhook lane's process ended (exit code {await child.wait()})")
