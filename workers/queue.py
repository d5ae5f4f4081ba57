"""Enqueueing jobs on Redis for arq workers (production), with the in-process runner's API.

A connection never syncs twice at the same time: the arq job id is
`sync:{connection_id}`, and a queued or running run is returned instead of a new one.
Webhook processing jobs go to a queue of their own (WEBHOOK_QUEUE, the workers' webhook
lane: workers.settings.worker_lanes), so they never wait behind queued syncs; the crons
run from a third (CRON_QUEUE).
"""

import hashlib
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name, in_progress_key_prefix, job_key_prefix
from arq.jobs import Job, JobStatus, deserialize_job
from sqlalchemy import select

from core import store
from core.db import session_scope
from core.models import SyncRun
from core.types import RunStatus, SyncMode
from workers.context import JobContext

PUSH_WAIT_SECONDS = 120.0  # how long the API waits for a worker's goal push
BUSY = (JobStatus.deferred, JobStatus.queued, JobStatus.in_progress)  # a job not done yet
WEBHOOK_WINDOW = 1.0  # seconds of webhook intake that one processing job covers
# The workers' queues (workers.settings.worker_lanes). Each job names its queue: a lane's
# Redis pool defaults to its own queue, and the cron lane's schedule queues syncs.
SYNC_QUEUE = default_queue_name  # syncs, backfills, goal pushes, channel subscriptions
WEBHOOK_QUEUE = "arq:queue:webhooks"  # webhook processing
CRON_QUEUE = "arq:queue:crons"  # the schedule's tick and the other minute crons


class ArqRunner:
    def __init__(self, ctx: JobContext, redis: ArqRedis) -> None:
        self.ctx = ctx
        self.redis = redis
        self._webhook_windows: dict[int, int] = {}  # connection id -> last window enqueued

    @classmethod
    async def connect(cls, ctx: JobContext, redis_url: str) -> "ArqRunner":
        return cls(ctx, await create_pool(RedisSettings.from_dsn(redis_url)))

    async def call_in(self, run_ids: list[int]) -> None:
        """Put back at its place in the queue the first of these syncs (their runs' ids, in
        their account's line order) whose job waits there: a turn of their vendor account
        has just ended (workers.jobs.account_turn). Sent back with arq's Retry, a job's
        score (the time arq runs it at, in ms) is now + its delay, behind every job queued
        before that; its score again the time it was queued, it runs before the jobs queued
        after it, as when it was first taken. A job not in the queue (not back yet: it
        comes at its delay), running (arq keeps a running job in the queue, its in-progress
        key set) or already at its place is passed over."""
        with session_scope(self.ctx.engine) as session:
            connections: dict[int, int] = dict(session.execute(
                select(SyncRun.id, SyncRun.connection_id)  # type: ignore[call-overload]
                .where(SyncRun.id.in_(run_ids))).all())  # type: ignore[union-attr]
        for run_id in run_ids:
            if run_id not in connections:
                continue
            job_id = f"sync:{connections[run_id]}"
            if await self.redis.exists(in_progress_key_prefix + job_id):
                continue
            raw = await self.redis.get(job_key_prefix + job_id)
            if raw is None:
                continue
            queued = int(deserialize_job(raw).enqueue_time.timestamp() * 1000)
            if await self.redis.zadd(SYNC_QUEUE, {job_id: queued}, xx=True, lt=True, ch=True):
                return

    async def enqueue_sync(self, connection_id: int, mode: SyncMode) -> int:
        # One decision at a time per connection across API replicas and schedulers, so
        # a race never leaves a second (failed) run behind.
        async with self.redis.lock(f"crmsync:enqueue:{connection_id}", timeout=30,
                                   blocking_timeout=30):
            return await self._enqueue_sync(connection_id, mode)

    async def _enqueue_sync(self, connection_id: int, mode: SyncMode) -> int:
        job_id = f"sync:{connection_id}"
        status = await Job(job_id, self.redis).status()
        busy = status in BUSY
        if busy and (info := await Job(job_id, self.redis).info()) is not None:
            return int(info.args[1])  # that job's run: queued, running, retrying or finishing
        with session_scope(self.ctx.engine) as session:
            active = store.active_run(session, connection_id=connection_id)
            if active is not None and busy:
                return int(active.id or 0)
            if active is not None:  # its worker died before finishing it
                store.update_run(session, int(active.id or 0), status=RunStatus.FAILED,
                                 error="interrupted: the worker running it stopped")
            run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
        if status is JobStatus.complete:
            await self.redis.delete(f"arq:result:{job_id}")  # let the id be used again
        job = await self.redis.enqueue_job("sync_connection", connection_id, run_id, mode,
                                           _job_id=job_id, _queue_name=SYNC_QUEUE)
        if job is None:  # lost a race with another API replica: that run stands
            with session_scope(self.ctx.engine) as session:
                store.update_run(session, run_id, status=RunStatus.FAILED,
                                 error="another sync of this connection was queued first")
        return run_id

    async def enqueue_webhooks(self, connection_id: int) -> None:
        """Have a worker process the connection's pending webhook events soon.

        Requests in one WEBHOOK_WINDOW share one job, deferred to the window's end: it
        starts after every event that asked for it was committed, so none is missed."""
        window = int(time.time() / WEBHOOK_WINDOW) + 1
        if self._webhook_windows.get(connection_id) == window:
            return  # this process asked for that job already
        self._webhook_windows[connection_id] = window
        try:
            await self.redis.enqueue_job(
                "process_webhook_event", connection_id,
                _job_id=f"webhook:{connection_id}:{window}", _queue_name=WEBHOOK_QUEUE,
                _defer_until=datetime.fromtimestamp(window * WEBHOOK_WINDOW + 0.01, UTC))
        except BaseException:
            self._webhook_windows.pop(connection_id, None)  # the next request asks again
            raise

    async def enqueue_channels(self, connection_id: int) -> None:
        """Have a worker subscribe the connection to notifications now (one job at a time
        per connection: a request while one is queued joins it)."""
        await self.redis.enqueue_job("renew_channels", connection_id,
                                     _job_id=f"channels:{connection_id}", _queue_name=SYNC_QUEUE)

    async def enqueue_backfill(self, connection_id: int, restart: bool = False) -> bool:
        """Have a worker run the connection's stage history backfill (job id
        `backfill:{connection_id}`: one at a time); False when one is queued or running."""
        job_id = f"backfill:{connection_id}"
        if await self._busy(job_id):
            return False
        await self.redis.delete(f"arq:result:{job_id}")  # let the id be used again
        job = await self.redis.enqueue_job("backfill_stage_history", connection_id, restart,
                                           _job_id=job_id, _queue_name=SYNC_QUEUE)
        return job is not None

    async def backfill_running(self, connection_id: int) -> bool:
        return await self._busy(f"backfill:{connection_id}")

    async def _busy(self, job_id: str) -> bool:
        return await Job(job_id, self.redis).status() in BUSY

    async def enqueue_push_goals(self, connection_id: int | None = None,
                                 people: Collection[int] | None = None,
                                 timeout: float = PUSH_WAIT_SECONDS) -> dict[str, Any]:
        """Queue the goal push (one per target and set of people at a time) and wait for a
        worker's result. `people` (not None): only their goals.

        Raises TimeoutError when no worker finished it in `timeout` seconds (it stays queued).
        """
        job_id = f"push_goals:{connection_id if connection_id is not None else 'all'}"
        chosen = None if people is None else sorted(people)
        if chosen is not None:
            job_id += ":people-" + hashlib.sha256(repr(chosen).encode()).hexdigest()[:16]
        if await Job(job_id, self.redis).status() is JobStatus.complete:
            await self.redis.delete(f"arq:result:{job_id}")  # let the id be used again
        job = await self.redis.enqueue_job("push_goals", connection_id, chosen,
                                           _job_id=job_id, _queue_name=SYNC_QUEUE)
        result: dict[str, Any] = await (job or Job(job_id, self.redis)).result(
            timeout=timeout, poll_delay=0.2)  # joins a push that is already queued
        return result

    async def close(self) -> None:
        await self.redis.aclose()
