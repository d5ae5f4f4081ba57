"""The in-process job runner of the embedded default (no Redis): asyncio tasks.

One connection never syncs twice at the same time: asking again while a run
is queued or running returns that run.
"""

import asyncio
import logging

from core import store
from core.db import session_scope
from workers.context import JobContext
from workers.jobs import sync_connection

log = logging.getLogger("crmsync.runner")


class InProcessRunner:
    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    async def enqueue_sync(self, connection_id: int, mode: str) -> int:
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
                        status="failed",
                        error="interrupted: the process running it stopped",
                    )
                run = store.create_run(session, connection_id=connection_id, mode=mode)
                run_id = int(run.id or 0)
            self._tasks[connection_id] = asyncio.create_task(
                self._run(connection_id, run_id, mode), name=f"sync:{connection_id}"
            )
            return run_id

    async def _run(self, connection_id: int, run_id: int, mode: str) -> None:
        try:
            await sync_connection(self.ctx, connection_id=connection_id, run_id=run_id, mode=mode)
        except Exception:  # the run row and the connection status carry the error
            log.info("sync job ended with an error", extra={"run_id": run_id})

    async def wait_idle(self) -> None:
        """Wait for every queued job (tests, CLI)."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await self.wait_idle()
