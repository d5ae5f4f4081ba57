"""The arq workers' heartbeat in Redis, which GET /health reports.

Every worker writes the same key every HEARTBEAT_SECONDS; its value is the time
and the worker. A heartbeat older than STALE_AFTER means no worker is alive.
"""

import asyncio
import contextlib
import json
import os
import socket
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from core.types import utcnow

HEARTBEAT_KEY = "crmsync:worker:heartbeat"
HEARTBEAT_SECONDS = 15.0
STALE_AFTER = 60.0
KEEP_SECONDS = 7 * 24 * 3600  # how long a silent worker's last heartbeat stays readable


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def beat(redis: Redis, now: datetime | None = None) -> None:
    value = json.dumps({"at": (now or utcnow()).isoformat(), "worker": worker_name()})
    await redis.set(HEARTBEAT_KEY, value, ex=KEEP_SECONDS)


async def read_heartbeat(redis: Redis, now: datetime | None = None) -> dict[str, Any]:
    """{"status": ok|stale|missing, "last_heartbeat", "age_seconds", "worker"}."""
    raw = await redis.get(HEARTBEAT_KEY)
    if raw is None:
        return {"status": "missing", "last_heartbeat": None, "age_seconds": None,
                "worker": None}
    data = json.loads(raw)
    at = datetime.fromisoformat(data["at"])
    age = round(((now or utcnow()) - at).total_seconds(), 1)
    return {"status": "ok" if age <= STALE_AFTER else "stale", "last_heartbeat": data["at"],
            "age_seconds": age, "worker": data.get("worker")}


def start(redis: Redis, every: float = HEARTBEAT_SECONDS) -> "asyncio.Task[None]":
    """Beat every `every` seconds until the returned task is cancelled."""

    async def loop() -> None:
        while True:
            with contextlib.suppress(Exception):  # Redis away: the heartbeat goes stale
                await beat(redis)
            await asyncio.sleep(every)

    return asyncio.create_task(loop(), name="heartbeat")


async def keep_lease(redis: Redis, job_id: str, seconds: float) -> None:
    """Hold a running arq job's in-progress key to `seconds` from now, renewed until cancelled.

    arq keeps that key for the job's whole timeout (hours for a sync), so a job whose
    worker was killed would wait that long to run again; with the lease another
    worker picks it up (and the sync resumes from its cursor) `seconds` after the
    killed worker's last renewal.
    """
    from arq.constants import in_progress_key_prefix

    key = in_progress_key_prefix + job_id
    while True:
        with contextlib.suppress(Exception):
            await redis.pexpire(key, int(seconds * 1000))
        await asyncio.sleep(seconds / 4)
