"""The arq worker (`crmsync worker`): the same job functions as the in-process runner.

arq reads this class's own attributes (never inherited ones), so it stays flat.
`crmsync worker` passes redis_settings from CRMSYNC_REDIS_URL.
"""

from typing import Any

from arq.worker import func

from core.config import get_settings
from workers.context import JobContext, build_context
from workers.jobs import sync_connection


async def startup(ctx: dict[str, Any]) -> None:
    ctx["job"] = build_context(get_settings(), migrate_sqlite=False)


async def shutdown(ctx: dict[str, Any]) -> None:
    job: JobContext = ctx["job"]
    job.engine.dispose()


async def sync_job(ctx: dict[str, Any], connection_id: int, run_id: int, mode: str) -> Any:
    """arq entry point of workers.jobs.sync_connection."""
    return await sync_connection(ctx["job"], connection_id=connection_id, run_id=run_id,
                                 mode=mode)


class WorkerSettings:
    functions = [  # noqa: RUF012 - arq reads plain class attributes
        func(sync_job, name="sync_connection", max_tries=1, timeout=6 * 3600),
    ]
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = 10
    keep_result = 3600
