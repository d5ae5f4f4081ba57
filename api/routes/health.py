"""GET /health: open, for load balancers, orchestrators and people.

Reports the database, Redis (when configured) and the arq workers' last heartbeat.
503 when the database does not answer (this replica cannot serve); 200 with
status "degraded" when Redis is down or no worker has beaten lately (the API
serves, but syncs do not run).
"""

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from starlette.concurrency import run_in_threadpool

from api.deps import EngineDep
from workers.heartbeat import read_heartbeat
from workers.queue import ArqRunner

router = APIRouter(tags=["health"])
REDIS_TIMEOUT = 2.0


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


@router.get("/health", summary="Database, Redis and worker heartbeat")
async def health(request: Request, engine: EngineDep) -> Any:
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
    if body["status"] == "unavailable":
        return JSONResponse(body, 503)
    return body
