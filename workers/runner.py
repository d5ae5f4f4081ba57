"""The in-process job runner of the embedded default (no Redis): asyncio tasks.

One connection never syncs twice at the same time: asking again while a run
is queued or running returns that run. At most CRMSYNC_WORKER_JOBS syncs and backfills
run at a time (the others wait, queued, in order; one waiting for its vendor account's turn
waits without a slot); webhook processing never waits for them.
"""

import asyncio
import logging
from collections.abc import Collection
from typing import Any

from core import store
from core.db import session_scope
from core.types import RunStatus, SyncMode
from workers.context import JobContext
from workers.jobs import (
    AccountBusy,
    RetryLater,
    after_full_sync,
    backfill_stage_history,
    process_webhook_event,
    push_goals,
    renew_channels,
    sync_job_attempt,
)
from workers.schedule import TICK_SECONDS, run_scheduler

log = logging.getLogger("crmsync.runner")


class InProcessRunner:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()
        self._scheduler: asyncio.Task[None] | None = None
        self._webhooks: dict[int, asyncio.Task[None]] = {}  # connection id -> drain task
        self._webhooks_due: set[int] = set()
        self._goal_push = asyncio.Lock()  # one goal push at a time
        self._channels: dict[int, asyncio.Task[Any]] = {}  # connection id -> subscribe task
        self._backfills: dict[int, asyncio.Task[Any]] = {}  # connection id -> backfill task
        self._slots = asyncio.Semaphore(ctx.settings.worker_jobs)  # syncs and backfills

    async def enqueue_sync(self, connection_id: int, mode: SyncMode) -> int:
        """Queue a sync of the connection; returns the run id (an existing one if busy)."""
        async with self._lock:
            task = self._tasks.get(connection_id)
            with session_scope(self.ctx.engine) as session:
                active = store.active_run(session, connection_id=connection_id)
                if active is not None and task is not None and not task.done():
                    return int(active.id or 0)
                if active is not None:  # left behind by a process that died
                    store.update_run(
                        session,
                        int(active.id or 0),
                        status=RunStatus.FAILED,
                        error="interrupted: the process running it stopped",
                    )
                run = store.create_run(session, connection_id=connection_id, mode=mode)
                run_id = int(run.id or 0)
            self._tasks[connection_id] = asyncio.create_task(
                self._run(connection_id, run_id, mode), name=f"sync:{connection_id}"
            )
            return run_id

    async def _run(self, connection_id: int, run_id: int, mode: SyncMode) -> None:
        """The sync job with the same tries and back-off as under arq; a sync waiting for
        its account's turn (workers.jobs.account_turn) waits without a slot."""
        attempt = 1
        while True:
            try:
                async with self._slots:
                    await sync_job_attempt(self.ctx, connection_id=connection_id,
                                           run_id=run_id, mode=mode, attempt=attempt)
                if mode is SyncMode.FULL:
                    await after_full_sync(self.ctx, connection_id, self.enqueue_backfill)
                return
            except AccountBusy as busy:  # its account's turns are taken: wait without a slot
                await asyncio.sleep(busy.delay)
            except RetryLater as retry:
                await asyncio.sleep(retry.delay)
                attempt += 1
            except Exception:  # the run row and the connection status carry the error
                log.info("sync job ended with an error",
                         extra={"connection_id": connection_id, "run_id": run_id})
                return

    def start_scheduler(self, every: float = TICK_SECONDS) -> None:
        """Queue scheduled syncs every `every` seconds until close() (`crmsync serve`)."""
        self._scheduler = asyncio.create_task(run_scheduler(self.ctx, self, every),
                                              name="scheduler")

    async def enqueue_webhooks(self, connection_id: int) -> None:
        """Process the connection's pending webhook events soon (one drain task per
        connection; a request during a drain makes it go round once more)."""
        self._webhooks_due.add(connection_id)
        task = self._webhooks.get(connection_id)
        if task is None or task.done():
            self._webhooks[connection_id] = asyncio.create_task(
                self._drain_webhooks(connection_id), name=f"webhooks:{connection_id}")

    async def _drain_webhooks(self, connection_id: int) -> None:
        while connection_id in self._webhooks_due:
            self._webhooks_due.discard(connection_id)
            try:
                await process_webhook_event(self.ctx, connection_id=connection_id)
            except Exception as exc:  # the events stay pending; the next request retries
                log.warning("webhook processing of connection %s failed: %s", connection_id,
                            exc, extra={"connection_id": connection_id})
                return

    async def enqueue_channels(self, connection_id: int) -> None:
        """Subscribe the connection to notifications now (workers.jobs.renew_channels)."""
        task = self._channels.get(connection_id)
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)  # a change since: go again
        self._channels[connection_id] = asyncio.create_task(
            renew_channels(self.ctx, connection_id=connection_id),
            name=f"channels:{connection_id}")

    async def enqueue_backfill(self, connection_id: int, restart: bool = False) -> bool:
        """Start the stage history backfill of the connection (workers.jobs.
        backfill_stage_history); False when one is already running (one at a time)."""
        if await self.backfill_running(connection_id):
            return False
        self._backfills[connection_id] = asyncio.create_task(
            self._backfill(connection_id, restart), name=f"backfill:{connection_id}")
        return True

    async def backfill_running(self, connection_id: int) -> bool:
        task = self._backfills.get(connection_id)
        return task is not None and not task.done()

    async def _backfill(self, connection_id: int, restart: bool) -> None:
        try:
            async with self._slots:
                await backfill_stage_history(self.ctx, connection_id=connection_id,
                                             restart=restart)
        except Exception as exc:  # its state records the error; the next full sync resumes
            log.warning("stage history backfill of connection %s failed: %s", connection_id,
                        exc, extra={"connection_id": connection_id})

    async def enqueue_push_goals(self, connection_id: int | None = None,
                                 people: Collection[int] | None = None) -> dict[str, Any]:
        """Run the goal push (workers.jobs.push_goals) now and answer its result;
        `people` (not None): only their goals."""
        async with self._goal_push:
            return await push_goals(self.ctx, connection_id=connection_id, people=people)

    async def wait_idle(self) -> None:
        """Wait for every queued job (tests, CLI)."""
        while any(not t.done() for t in self._jobs()):
            await asyncio.gather(*self._jobs(), return_exceptions=True)

    def _jobs(self) -> list["asyncio.Task[Any]"]:
        return [*self._tasks.values(), *self._webhooks.values(), *self._channels.values(),
                *self._backfills.values()]

    async def close(self) -> None:
        if self._scheduler is not None:
            self._scheduler.cancel()
            await asyncio.gather(self._scheduler, return_exceptions=True)
        for task in self._jobs():
            task.cancel()
        await self.wait_idle()
