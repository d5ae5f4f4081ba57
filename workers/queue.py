"""Enqueueing jobs on Redis for arq workers (production), with the in-process runner's API.

A connection never syncs twice at the same time: the arq job id is
`sync:{connection_id}`, and a queued or running run is returned instead of a new one.
"""

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus

from core import store
from core.db import session_scope
from workers.context import JobContext


class ArqRunner:
    def __init__(self, ctx: JobContext, redis: ArqRedis) -> None:
        self.ctx = ctx
        self.redis = redis

    @classmethod
    async def connect(cls, ctx: JobContext, redis_url: str) -> "ArqRunner":
        return cls(ctx, await create_pool(RedisSettings.from_dsn(redis_url)))

    async def enqueue_sync(self, connection_id: int, mode: str) -> int:
        job_id = f"sync:{connection_id}"
        status = await Job(job_id, self.redis).status()
        busy = status in (JobStatus.deferred, JobStatus.queued, JobStatus.in_progress)
        with session_scope(self.ctx.engine) as session:
            active = store.active_run(session, connection_id=connection_id)
            if active is not None and busy:
                return int(active.id or 0)
            if active is not None:  # its worker died before finishing it
                store.update_run(session, int(active.id or 0), status="failed",
                                 error="interrupted: the worker running it stopped")
            run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
        if status is JobStatus.complete:
            await self.redis.delete(f"arq:result:{job_id}")  # let the id be used again
        job = await self.redis.enqueue_job("sync_connection", connection_id, run_id, mode,
                                           _job_id=job_id)
        if job is None:  # lost a race with another API replica: that run stands
            with session_scope(self.ctx.engine) as session:
                store.update_run(session, run_id, status="failed",
                                 error="another sync of this connection was queued first")
        return run_id

    async def close(self) -> None:
        await self.redis.aclose()
