"""GET /health: open, for load balancers, orchestrators and people.

Reports the database, Redis (when configured) and the arq workers' last heartbeat.
503 when the database does not answer (this replica cannot serve); 200 with
status "degraded" when Redis is down or no worker has beaten lately (the API
serves, but syncs do not run).
"""

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import Field
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep
from api.schemas import Answer
from workers.heartbeat import read_heartbeat
from workers.queue import ArqRunner

router = APIRouter(tags=["health"])
REDIS_TIMEOUT = 2.0


class WorkerHealth(Answer):
    """in-process: jobs run in the API (no Redis); unknown: Redis does not answer; else the
    arq workers' last heartbeat (workers.heartbeat)."""

    status: Literal["ok", "stale", "missing", "unknown", "in-process"]
    last_heartbeat: str | None = None
    age_seconds: float | None = None
    worker: str | None = None


class Health(Answer):
    status: Literal["ok", "degraded", "unavailable"]
    database: str = Field(description="ok, or error: and why.")
    redis: str = Field(description="ok, not configured, or error: and why.")
    worker: WorkerHealth


def _reason(exc: Exception, *secrets: str | None) -> str:
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    for secret in secrets:
        if secret:
            reason = reason.replace(secret, "***")
    return reason


def _database(engine: Engine) -> str:
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means the database does not answer
        password = engine.url.password
        return f"error: {_reason(exc, str(password) if password else None)}"
    return "ok"


@router.get("/health", summary="Database, Redis and worker heartbeat", response_model=Health,
            responses={503: {"model": Health, "description": "The database does not answer."}})
async def health(request: Request, engine: EngineDep) -> JSONResponse:
    database = await run_in_threadpool(_database, engine)
    body: dict[str, Any] = {"status": "ok" if database == "ok" else "unavailable",
                            "database": database}
    jobs = request.app.state.jobs
    if isinstance(jobs, ArqRunner):
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                await jobs.redis.ping()
                body["redis"] = "ok"
                body["worker"] = await read_heartbeat(jobs.redis)
        except Exception as exc:  # Redis down or too slow: jobs cannot be queued or run
            password = jobs.redis.connection_pool.connection_kwargs.get("password")
            body["redis"] = f"error: {_reason(exc, password)}"
            body["worker"] = {"status": "unknown"}
        if body["status"] == "ok" and (body["redis"] != "ok" or body["worker"]["status"] != "ok"):
            body["status"] = "degraded"
    else:
        body["redis"] = "not configured"
        body["worker"] = {"status": "in-process"}
    return JSONResponse(body, 503 if body["status"] == "unavailable" else 200)
