"""Scheduled syncs: which connections are due, for both runners.

Every tick (a minute) each connection whose last scheduled-mode run (full or
incremental, whatever its outcome) is `sync_interval_minutes` old or older
(connection config, default 15; less half a tick, TICK_SLACK) gets a sync. It is a
full reconciliation when no full sync has succeeded since the last nightly boundary
(CRMSYNC_NIGHTLY_SYNC_HOUR:00 in CRMSYNC_TIMEZONE), else incremental.
Connections that need re-authorization wait for the admin.

The decision (`due_mode`, `due_syncs`) is pure; `enqueue_due_syncs` reads the
database and hands the due syncs to a runner, whose job ids make sure one
connection never syncs twice at the same time. The arq worker runs it as a
cron job (unique per tick across workers); `crmsync serve` without Redis runs
`run_scheduler` in-process.
"""

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlmodel import Session, col

from core.db import session_scope
from core.models import Connection, SyncRun
from core.types import ConnectionStatus, RunStatus, SyncMode, as_utc, utcnow
from workers.context import JobContext
from workers.digests import send_due_digests
from workers.jobs import process_pending_webhooks, refresh_rollups, renew_channels

log = logging.getLogger("crmsync.schedule")

DEFAULT_INTERVAL_MINUTES = 15
TICK_SECONDS = 60.0
TICK_SLACK = timedelta(seconds=TICK_SECONDS / 2)
"""How much before its interval is over a connection counts as due. A run is dated when
it is queued, a little after the tick that decided it (hundreds of connections take
seconds to queue); measured against the next tick exactly, such a connection fell due
just after that tick and waited for the one after: a 1-minute interval became 2 minutes
for most of a fleet of 300 (docs/benchmarks.md, many connections). With half a tick of
slack each tick queues what falls due before the next one is halfway."""
RENEW_CHANNELS_EVERY = timedelta(hours=1)  # under every channel_renew_within (registry checks)
WAITING_FOR_ADMIN = frozenset({ConnectionStatus.NEEDS_REAUTH})
_LONGEST = timedelta(days=3650)  # how overdue a connection never synced counts as


class SyncQueue(Protocol):
    async def enqueue_sync(self, connection_id: int, mode: SyncMode) -> int: ...


@dataclass(frozen=True)
class ConnectionSchedule:
    """What the schedule needs to know about one connection."""

    connection_id: int
    status: ConnectionStatus
    interval: timedelta
    last_run_at: datetime | None  # the newest full or incremental run was queued then
    last_full_at: datetime | None  # the newest full run that succeeded was queued then


def interval_of(config: dict[str, Any] | None) -> timedelta:
    """`sync_interval_minutes` from a connection's config (1..1440), else the default."""
    value = (config or {}).get("sync_interval_minutes", DEFAULT_INTERVAL_MINUTES)
    try:
        minutes = int(value)
    except (TypeError, ValueError):
        minutes = DEFAULT_INTERVAL_MINUTES
    if not 1 <= minutes <= 1440:
        minutes = DEFAULT_INTERVAL_MINUTES
    return timedelta(minutes=minutes)


def nightly_boundary(now: datetime, hour: int, zone: str) -> datetime:
    """The latest local `hour`:00 at or before `now` (aware UTC in, aware out)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    boundary = datetime.combine(local.date(), time(hour), tzinfo=tz)
    if boundary > local:
        boundary = datetime.combine(local.date() - timedelta(days=1), time(hour), tzinfo=tz)
    return boundary


def due_mode(s: ConnectionSchedule, now: datetime,
             nightly: datetime | None) -> SyncMode | None:
    """full, incremental or None (not due) for one connection at `now`."""
    if s.status in WAITING_FOR_ADMIN:
        return None
    if s.last_run_at is None:
        return SyncMode.FULL
    if now - s.last_run_at < s.interval - TICK_SLACK:
        return None
    if nightly is not None and (s.last_full_at is None or s.last_full_at < nightly):
        return SyncMode.FULL
    return SyncMode.INCREMENTAL


def next_sync_at(s: ConnectionSchedule, now: datetime) -> datetime | None:
    """When the schedule queues the connection's next sync (at the first tick from then
    on): `now` when it is due, None while it waits for an admin (due_mode's rule)."""
    if s.status in WAITING_FOR_ADMIN:
        return None
    if s.last_run_at is None:
        return now
    return max(now, s.last_run_at + s.interval - TICK_SLACK)


def due_syncs(
    schedules: Iterable[ConnectionSchedule], now: datetime, *, nightly_hour: int | None,
    zone: str,
) -> list[tuple[int, SyncMode]]:
    """(connection_id, mode) of every connection due at `now`, the longest overdue first
    (never synced, then by when it fell due): queues run in that order, so a connection
    that waited once is not the last again."""
    nightly = nightly_boundary(now, nightly_hour, zone) if nightly_hour is not None else None
    due = []
    for s in schedules:
        mode = due_mode(s, now, nightly)
        if mode is not None:
            fell_due = now - _LONGEST if s.last_run_at is None else s.last_run_at + s.interval
            due.append((fell_due, s.connection_id, mode))
    return [(connection_id, mode) for _, connection_id, mode in sorted(due)]


def load_schedules(session: Session) -> list[ConnectionSchedule]:
    scheduled = col(SyncRun.mode).in_((SyncMode.FULL, SyncMode.INCREMENTAL))
    run_of = col(SyncRun.connection_id)
    last_run = (select(run_of, func.max(col(SyncRun.created_at)).label("at"))
                .where(scheduled).group_by(run_of).subquery())
    last_full = (select(run_of, func.max(col(SyncRun.created_at)).label("at"))
                 .where(col(SyncRun.mode) == SyncMode.FULL,
                        col(SyncRun.status) == RunStatus.SUCCEEDED)
                 .group_by(run_of).subquery())
    rows = session.execute(
        select(col(Connection.id), col(Connection.status), col(Connection.config),
               last_run.c.at, last_full.c.at)
        .outerjoin(last_run, last_run.c.connection_id == Connection.id)
        .outerjoin(last_full, last_full.c.connection_id == Connection.id)
        .order_by(col(Connection.id))
    ).all()
    return [ConnectionSchedule(int(cid), status, interval_of(config), _aware(run), _aware(full))
            for cid, status, config, run, full in rows]


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None:
        return None
    return as_utc(value if isinstance(value, datetime) else datetime.fromisoformat(value))


async def enqueue_due_syncs(
    ctx: JobContext, jobs: SyncQueue, now: datetime | None = None
) -> list[tuple[int, SyncMode, int]]:
    """Queue every due sync; returns (connection_id, mode, run_id) of each."""
    now = now or utcnow()

    def due() -> list[tuple[int, SyncMode]]:
        with session_scope(ctx.engine) as session:
            return due_syncs(load_schedules(session), now,
                             nightly_hour=ctx.settings.nightly_sync_hour,
                             zone=ctx.settings.timezone)

    queued = []
    for connection_id, mode in await asyncio.to_thread(due):
        run_id = await jobs.enqueue_sync(connection_id, mode)
        queued.append((connection_id, mode, run_id))
        log.info("scheduled sync queued", extra={"connection_id": connection_id,
                                                  "run_id": run_id, "mode": mode})
    return queued


async def run_scheduler(ctx: JobContext, jobs: SyncQueue, every: float = TICK_SECONDS) -> None:
    """The in-process scheduler of the embedded default: a tick every `every` seconds that
    queues due syncs, takes webhook events left pending, rebuilds dirty metric rollups and
    sends the digests due (workers.digests), and CRM notification channels renewed every
    RENEW_CHANNELS_EVERY (as the arq crons do)."""
    renewed_at: datetime | None = None
    while True:
        try:
            await enqueue_due_syncs(ctx, jobs)
            await process_pending_webhooks(ctx)
            await refresh_rollups(ctx)
            await send_due_digests(ctx)
            if renewed_at is None or utcnow() - renewed_at >= RENEW_CHANNELS_EVERY:
                renewed_at = utcnow()
                await renew_channels(ctx)
        except Exception:  # a bad tick (database busy...) must not stop the schedule
            log.exception("scheduler tick failed; trying again at the next tick")
        await asyncio.sleep(every)
