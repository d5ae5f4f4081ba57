"""What a job needs, built once per process (API lifespan, worker startup, CLI)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import Engine

from connectors.endpoints import EndpointPolicy
from connectors.http import ClientPool, LocalLimits, RetryPolicy, SharedLimits
from core.config import Settings
from core.db import make_engine, upgrade
from core.security import SecretBox, secret_box
from workers.limits import RedisLimits
from workers.refresh import RollupRefresh


@dataclass
class JobContext:
    settings: Settings
    engine: Engine
    secrets: SecretBox
    transport: httpx.AsyncBaseTransport | None = None
    """Tests and the demo may route CRM calls to an in-process sandbox."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    http_timeout: float = 30.0
    limits: SharedLimits = field(default_factory=LocalLimits)
    """The process's vendor state: budgets and tokens, this process's own (embedded) or
    shared by every process through Redis (workers.limits.RedisLimits) when
    CRMSYNC_REDIS_URL is set, and metadata caches (`limits.memo`). One per context, so
    one per process; nothing of it is a module global."""
    refresh_rollups: RollupRefresh = field(default_factory=RollupRefresh)
    """The process's rollup refreshes, shared by its jobs (workers.refresh)."""
    clients: ClientPool = field(default_factory=ClientPool)
    """The process's idle HTTP clients per connection, reused by its next job
    (workers.connect.open_connector)."""
    zone_ensured: str | None = None
    """The CRMSYNC_TIMEZONE this process last put the store in (workers.jobs.apply_zone):
    webhook jobs, many a second, check it once per process instead of once per job."""
    call_in: Callable[[list[int]], Awaitable[None]] | None = None
    """How a sync waiting for its vendor account's turn (workers.jobs.account_turn) is called
    in when a turn ends, given the waiting runs' ids in line order: an arq worker's puts
    the first of their jobs waiting in the queue back at its place, the time it was queued
    (workers.queue.ArqRunner.call_in); None: they come back after their delays."""
    loaded: dict[int, Any] = field(default_factory=dict)
    """Connections' decrypted, validated settings by id (workers.connect.LoadedConnection),
    each with the version of the stored row it came from (workers.connect.load_connection)."""

    async def aclose(self) -> None:
        """Release this event loop's connections to Redis and the CRMs (process shutdown)."""
        await self.clients.aclose()
        await self.limits.aclose()

    @property
    def endpoints(self) -> EndpointPolicy:
        """Where connectors may send credentials: the vendors' hosts and
        CRMSYNC_ALLOW_ENDPOINTS (connectors/endpoints.py)."""
        return EndpointPolicy.parse(self.settings.allow_endpoints)


def pool_size(settings: Settings) -> dict[str, int]:
    """Database connections a process may hold: one per job of each lane (a PostgreSQL
    sync writes on two: core.sync), and a few for the crons, the API's requests and the
    job runner's own bookkeeping (docs/operations.md, Sizing). A pool smaller than that
    made concurrent syncs wait 30 s for a connection and fail."""
    return {"pool_size": settings.worker_jobs + settings.worker_webhook_jobs + 5,
            "max_overflow": settings.worker_jobs}


def build_context(settings: Settings, *, migrate_sqlite: bool = True) -> JobContext:
    """Engine, secret box and job context for these settings.

    An embedded SQLite database is upgraded to the latest schema on the spot. With
    Redis, vendor budgets and tokens are shared by every process (workers.limits).
    """
    secrets = secret_box(settings)  # first: it fails fast when the key is missing
    engine = make_engine(settings.database_url, **pool_size(settings))
    if migrate_sqlite and settings.is_sqlite:
        upgrade(engine)
    context = JobContext(settings=settings, engine=engine, secrets=secrets)
    context.endpoints  # noqa: B018  (a bad CRMSYNC_ALLOW_ENDPOINTS fails here, at startup)
    if settings.redis_url:
        context.limits = RedisLimits(settings.redis_url, secrets,
                                     lease=max(120.0, 4 * context.http_timeout))
    return context
