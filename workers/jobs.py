"""Job functions. The same functions run under the in-process runner and under arq."""

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import select
from sqlmodel import col

from connectors.base import (
    Channel,
    GoalPusher,
    GoalResults,
    NotificationChannels,
    PushResult,
    SharedAccount,
    StageHistory,
    WebhookReceiver,
)
from connectors.registry import capabilities, providers_with, streams_of
from core import history, store, webhooks
from core.db import session_scope, turn
from core.errors import AuthError, ConfigError, SourceError, TransientError
from core.goals import push as goal_push
from core.metrics import zone
from core.models import Connection
from core.sync import ProgressFn, SyncEngine
from core.types import ConnectionStatus, PushStatus, RunStatus, Stream, SyncMode, utcnow
from workers.connect import LoadedConnection, load_connection, open_connector, settings_errors
from workers.context import JobContext

log = logging.getLogger("crmsync.jobs")
REMOVE_CHANNELS_SECONDS = 20.0
WEBHOOK_REFRESH_SECONDS = 30.0
"""A webhook job's rollup refresh (PostgreSQL) starts this long after it, shared with the
connection's other jobs finishing meanwhile (workers.refresh)."""


async def sync_connection(
    ctx: JobContext,
    *,
    connection_id: int,
    run_id: int,
    mode: SyncMode,
    progress: ProgressFn | None = None,
    streams: tuple[Stream, ...] | None = None,
) -> dict[str, Any]:
    """Sync one connection into the store; the run row records the outcome. `streams`:
    some of the streams the provider's connector reads (connectors.registry.streams_of, in
    that order), e.g. the deals alone that tests/bench/sync_bench.py compares with another
    tool reading the deals; None: all of them."""
    try:
        loaded = load_connection(ctx, connection_id)
        streams = _chosen_streams(loaded.provider, streams)
    except (ConfigError, ValueError, LookupError) as exc:
        with session_scope(ctx.engine) as session:
            store.update_run(
                session, run_id, status=RunStatus.FAILED, finished_at=utcnow(),
                error=f"cannot start: {exc}"
            )
        raise
    async with open_connector(ctx, loaded) as source, \
            account_turn(ctx, source, run_id=run_id, incremental=mode == SyncMode.INCREMENTAL):
        await asyncio.to_thread(apply_zone, ctx)
        engine = SyncEngine(
            ctx.engine,
            source,
            connection_id=connection_id,
            run_id=run_id,
            mode=mode,
            streams=streams,
            progress=progress,
            settings=ctx.settings,
            refresh_rollups=lambda: ctx.refresh_rollups(ctx.engine, connection_id),
        )
        log.info("sync started", extra={"connection_id": connection_id, "run_id": run_id})
        summary = await engine.run()
        log.info(
            "sync finished",
            extra={"connection_id": connection_id, "run_id": run_id,
                   "api_calls": source.api_calls},
        )
        return summary


def _chosen_streams(provider: str, chosen: tuple[Stream, ...] | None) -> tuple[Stream, ...]:
    """The streams of a sync of `provider`: `chosen` (None: all it reads) in reading order."""
    read = streams_of(provider)
    if chosen is None:
        return read
    unknown = sorted(str(s) for s in set(chosen) - set(read))
    if unknown or not chosen:
        raise ConfigError(f"a sync of {provider} reads some of {', '.join(read)}, not "
                          f"{', '.join(unknown) or 'none of them'}")
    return tuple(s for s in read if s in chosen)


# -- turns of syncs sharing a vendor account (both runners) --------------------------------

ACCOUNT_LEASE_SECONDS = 60.0
"""A sync's turn of its account is renewed every quarter of this while it runs; the turn of
a sync whose worker was killed ends at most this long after (no leaked turn)."""
ACCOUNT_RETRY_SECONDS = 1.0
"""A sync that finds its account's turns taken comes back after this many seconds for each
round of turns ahead of it in the account's line (at most half the lease); its place is
kept that long and this much more."""


class AccountBusy(Exception):
    """Every turn of the sync's vendor account is taken (connectors.base.SharedAccount): the
    job goes back to the queue for `delay` seconds instead of waiting in its slot. Not a
    failed try."""

    def __init__(self, delay: float, place: int, turns: int) -> None:
        super().__init__(f"{turns} syncs of its account run at a time and {place - 1} wait "
                         f"before it; trying again in {delay:.0f}s")
        self.delay, self.place, self.turns = delay, place, turns


@asynccontextmanager
async def account_turn(ctx: JobContext, source: object, *, run_id: int,
                       incremental: bool) -> AsyncIterator[None]:
    """Hold one of the turns of the source's vendor account for the block, or raise
    AccountBusy without waiting: at most `account_turns` syncs of connections sharing an
    account run at once, across processes with Redis (ctx.limits), the runs queued first
    first (the run id is the ticket). A source that shares no account runs at once."""
    turns = source.account_turns(incremental) if isinstance(source, SharedAccount) else 0
    if not turns:
        yield
        return
    assert isinstance(source, SharedAccount)
    key, member = f"account:{source.account_key}", str(run_id)
    place, wait = await ctx.limits.admit(key, turns, member, run_id, ACCOUNT_LEASE_SECONDS,
                                         ACCOUNT_RETRY_SECONDS)
    if place:
        raise AccountBusy(wait, place, turns)

    async def renew() -> None:
        while True:
            await asyncio.sleep(ACCOUNT_LEASE_SECONDS / 4)
            with suppress(Exception):  # Redis away a moment: the next renewal may do it
                await ctx.limits.admit(key, turns, member, run_id, ACCOUNT_LEASE_SECONDS,
                                       ACCOUNT_RETRY_SECONDS)

    renewing = asyncio.create_task(renew(), name=f"turn:{run_id}")
    try:
        yield
    finally:
        renewing.cancel()
        await _leave_turn(ctx, key, member)


async def _leave_turn(ctx: JobContext, key: str, member: str) -> None:
    """Give back a turn and call in a sync waiting for one (ctx.call_in): sent back to the
    queue, it would otherwise wait behind every job queued meanwhile."""
    try:
        waiting = await ctx.limits.leave(key, member)
        if waiting and ctx.call_in is not None:
            await ctx.call_in([int(m) for m in waiting])
    except Exception as exc:  # its lease ends the turn; the waiting syncs come back anyway
        log.warning("turn of run %s not given back, or no sync called in: %s", member, exc)


# -- retries of the sync job (both runners) ------------------------------------------------

SYNC_MAX_TRIES = 5
MAX_BACKOFF_SECONDS = 900.0


class RetryLater(Exception):
    """A try of the sync job failed transiently: run it again after `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.1f}s")
        self.delay = delay


def retry_delay(ctx: JobContext, error: BaseException, attempt: int) -> float | None:
    """Seconds to wait before the next try, or None when the job must fail now.

    Transient errors (5xx, timeouts, throttling, the network) retry with exponential
    back-off, honouring the vendor's Retry-After; auth and config errors never do.
    """
    if not isinstance(error, TransientError) or attempt >= SYNC_MAX_TRIES:
        return None
    backoff = ctx.settings.job_retry_seconds * float(2 ** (attempt - 1))
    return min(max(backoff, error.retry_after or 0.0), MAX_BACKOFF_SECONDS)


async def sync_job_attempt(
    ctx: JobContext, *, connection_id: int, run_id: int, mode: SyncMode, attempt: int
) -> dict[str, Any]:
    """One try of the sync job, under either runner.

    A sync whose vendor account has no turn free raises AccountBusy (account_turn), the
    run queued still; a transient failure with tries left puts the run back to queued and raises
    RetryLater; any other failure, or the last try, leaves the run failed with the
    error and the connection's status and last_error saying what the admin must do.
    """
    try:
        return await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode=mode)
    except AccountBusy as busy:  # the run stays queued, saying why
        note = f"waiting for its account: {busy}"
        with session_scope(ctx.engine) as session:
            store.update_run(session, run_id, error=note)
        log.info("sync deferred: %s", note, extra={
            "connection_id": connection_id, "run_id": run_id, "place": busy.place})
        raise
    except Exception as exc:
        delay = retry_delay(ctx, exc, attempt)
        note = _record_failure(ctx, connection_id, run_id, exc, attempt, delay)
        log.warning(note, extra={"connection_id": connection_id, "run_id": run_id,
                                 "attempt": attempt})
        if delay is not None:
            raise RetryLater(delay) from exc
        raise


def _record_failure(ctx: JobContext, connection_id: int, run_id: int, error: BaseException,
                    attempt: int, delay: float | None) -> str:
    if delay is not None:
        note = (f"try {attempt} of {SYNC_MAX_TRIES} failed ({error}); "
                f"retrying in {delay:.0f}s")
    elif isinstance(error, AuthError):
        note = (f"authorization failed: {error}. Re-enter the connection's credentials "
                f"(PATCH /api/v1/connections/{connection_id} with new secrets).")
    elif isinstance(error, ConfigError):
        note = (f"configuration problem: {error}. Fix the connection's config "
                f"(PATCH /api/v1/connections/{connection_id}) or the CRM setting it names; "
                "the next scheduled sync tries again.")
    elif isinstance(error, TransientError):
        note = (f"{error}: gave up after {attempt} tries. The next scheduled sync tries again; "
                "if this persists, check that the CRM is reachable and within its API limits.")
    else:
        note = (f"{type(error).__name__}: {error}. The next scheduled sync tries again; "
                f"if this persists, report it with the worker log of run {run_id}.")
    with session_scope(ctx.engine) as session:
        if delay is not None:
            store.update_run(session, run_id, status=RunStatus.QUEUED, finished_at=None, error=note)
        else:
            store.update_run(session, run_id, status=RunStatus.FAILED, finished_at=utcnow(),
                             error=note)
        connection = session.get(Connection, connection_id)
        if connection is not None:
            connection.status = (ConnectionStatus.NEEDS_REAUTH if isinstance(error, AuthError)
                                 else ConnectionStatus.ERROR)
            connection.last_error = note
    return note


# -- webhooks and CRM notification channels (M5; core/webhooks.py, docs/webhooks.md) -------


async def process_webhook_event(ctx: JobContext, *, connection_id: int) -> int:
    """Process every pending webhook event of a connection, a batch at a time.

    The connector turns events into current CRM state (re-reads, tombstones); records,
    the events' processed mark and a sync_run (mode webhook) commit together, so a
    crash re-processes a batch (idempotent) and never loses one. Returns events processed.
    """
    if ctx.zone_ensured != ctx.settings.timezone:  # once per process (see apply_zone)
        await asyncio.to_thread(apply_zone, ctx)
    with session_scope(ctx.engine) as session:  # one transaction: a job's fixed cost
        loaded = load_connection(ctx, connection_id, session)
        if not isinstance(loaded.cls, WebhookReceiver):  # checked on the class
            raise ConfigError(f"provider {loaded.provider!r} does not take webhooks")
        batch = webhooks.claim(session, connection_id=connection_id)
    if not batch:  # another job took them: no connector to open, no months to refresh
        return 0
    try:
        return await _process_webhook_batches(ctx, loaded, batch)
    finally:  # the months the events touched (core.metrics.rollups); exact without it, slower
        if ctx.engine.dialect.name == "postgresql":  # coalesced, in the background
            ctx.refresh_rollups.soon(ctx.engine, connection_id, WEBHOOK_REFRESH_SECONDS)
        else:  # SQLite, one writer: a background refresh would hold up the next job's writes
            try:
                await ctx.refresh_rollups(ctx.engine, connection_id)  # shared with other jobs
            except Exception:
                log.exception("refreshing the metric rollups failed",
                              extra={"connection_id": connection_id})


async def _process_webhook_batches(ctx: JobContext, loaded: LoadedConnection,
                                   batch: list[webhooks.Claimed]) -> int:
    """The claimed `batch`, then the connection's next ones while batches come full."""
    done, connection_id, source = 0, loaded.connection_id, None
    async with AsyncExitStack() as stack:
        while True:
            started, calls = utcnow(), source.api_calls if source else 0
            ids = [e.id for e in batch]
            try:
                if source is None:  # opened once the first batch is claimed
                    source = await stack.enter_async_context(open_connector(ctx, loaded))
                receiver = cast(WebhookReceiver, source)  # its class is one (checked)
                changes = await receiver.resolve_webhook_events([e.payload for e in batch])
            except BaseException as exc:  # cancelled too: the events go back to pending
                error = str(exc) or type(exc).__name__
                with session_scope(ctx.engine) as session:
                    webhooks.release(session, ids, error)
                    webhooks.record_run(
                        session, connection_id=connection_id, started_at=started, counts={},
                        api_calls=(source.api_calls if source else 0) - calls, error=error)
                raise
            with session_scope(ctx.engine) as session:
                counts = webhooks.apply_changes(session, connection_id=connection_id,
                                                changes=changes, settings=ctx.settings)
                webhooks.mark_processed(session, ids)
                webhooks.record_run(session, connection_id=connection_id, started_at=started,
                                    counts={"events": len(ids), **counts},
                                    api_calls=source.api_calls - calls)
            done += len(ids)
            if len(ids) < webhooks.BATCH:  # later events come with a job of their own
                return done
            with session_scope(ctx.engine) as session:
                batch = webhooks.claim(session, connection_id=connection_id)
            if not batch:
                return done


async def refresh_rollups(ctx: JobContext) -> int:
    """Rebuild the metric rollups of months written since (core.metrics.rollups): syncs and webhook
    jobs do it when they finish; the schedule does it too, so months left dirty (a failed
    refresh, a changed time zone) are fast again within a minute. Returns months rebuilt.
    A changed CRMSYNC_TIMEZONE is applied here first, in the background (apply_zone)."""
    await asyncio.to_thread(apply_zone, ctx)
    return await ctx.refresh_rollups(ctx.engine)


def apply_zone(ctx: JobContext) -> None:
    """Put the store's created dates in CRMSYNC_TIMEZONE before anything writes
    (core.metrics.zone): on a new store this only records the zone, so the first sync
    writes its rows and builds its rollups in the right zone and the first metrics read
    finds nothing to redo; after a zone change it recomputes once, off the request path."""
    with session_scope(ctx.engine) as session:
        zone.ensure_zone(session, ctx.settings.timezone)
    ctx.zone_ensured = ctx.settings.timezone


async def process_pending_webhooks(ctx: JobContext) -> int:
    """Process webhook events nobody is working on (their job failed or was lost, or a
    claim's lease ran out), for every connection. For a schedule (every minute)."""
    with session_scope(ctx.engine) as session:
        connection_ids = webhooks.pending_connections(session)
    done = 0
    for connection_id in connection_ids:
        try:
            done += await process_webhook_event(ctx, connection_id=connection_id)
        except Exception as exc:  # recorded on the events and a failed webhook run
            log.warning("webhook events of connection %s still pending: %s", connection_id,
                        exc, extra={"connection_id": connection_id})
    return done


async def renew_channels(ctx: JobContext, connection_id: int | None = None) -> dict[str, int]:
    """Subscribe every connection whose provider declares notification channels
    (connectors.base.NotificationChannels), or the one given, and renew channels before
    they expire (the provider's `channel_renew_within`). Needs CRMSYNC_PUBLIC_URL; a no-op
    without it. The API queues it for one connection as soon as the connection is created
    or its settings change; a schedule runs it hourly."""
    public_url = ctx.settings.public_url
    result = {"subscribed": 0, "renewed": 0, "unchanged": 0, "failed": 0}
    with_channels = providers_with("channels")
    if not public_url or not with_channels:
        return result
    with session_scope(ctx.engine) as session:
        stmt = select(col(Connection.id), col(Connection.provider)).where(
            col(Connection.provider).in_(with_channels),
            col(Connection.status) != ConnectionStatus.NEEDS_REAUTH)
        if connection_id is not None:
            stmt = stmt.where(col(Connection.id) == connection_id)
        found = [(int(i or 0), str(p)) for i, p in session.execute(stmt)]
    for cid, provider in found:
        url = f"{public_url.rstrip('/')}/api/v1/webhooks/{provider}/{cid}"
        try:
            result[await _renew_channel(ctx, cid, url)] += 1
        except Exception as exc:  # one connection's failure does not stop the others
            result["failed"] += 1
            log.warning("notification channel of connection %s not renewed: %s",
                        cid, exc, extra={"connection_id": cid})
    return result


async def _renew_channel(ctx: JobContext, connection_id: int, url: str) -> str:
    loaded = load_connection(ctx, connection_id)
    with session_scope(ctx.engine) as session:
        stored = webhooks.channels_of(session, connection_id=connection_id)
        tokens = webhooks.channel_tokens(session, ctx.secrets, connection_id=connection_id)
    now = utcnow()
    current = next((c for c in stored if c.notify_url == url and c.expires_at > now), None)
    renew_within = getattr(loaded.cls, "channel_renew_within", None)
    if current is not None and renew_within and current.expires_at - now > renew_within:
        return "unchanged"
    async with open_connector(ctx, loaded) as source:
        if not isinstance(source, NotificationChannels):
            raise ConfigError(f"provider {loaded.provider!r} has no notification channels")
        channel: Channel | None = None
        if current is not None:
            try:
                outcome, channel = "renewed", await source.renew_channel(Channel(
                    current.channel_id, tokens[current.channel_id], url, current.expires_at,
                    tuple(current.events or ())))
            except SourceError:  # the CRM forgot the channel: subscribe a new one
                channel = None
        if channel is None:
            outcome, channel = "subscribed", await source.subscribe_channel(url)
        stale_ids = [c.channel_id for c in stored if c.channel_id != channel.channel_id]
        if stale_ids:  # e.g. CRMSYNC_PUBLIC_URL changed: stop the old channel calling
            try:
                await source.unsubscribe_channels(stale_ids)
            except SourceError as exc:
                log.info("old notification channels not removed: %s", exc)
        with session_scope(ctx.engine) as session:
            rival = webhooks.channel_saved_since(session, connection_id=connection_id,
                                                 known=stored, url=url)
            if rival is None or outcome != "subscribed":
                for stale in stored:
                    if stale.channel_id != channel.channel_id:
                        webhooks.delete_channel(session, connection_id=connection_id,
                                                channel_id=stale.channel_id)
                webhooks.save_channel(session, ctx.secrets, connection_id=connection_id,
                                      channel_id=channel.channel_id, token=channel.token,
                                      events=channel.events, notify_url=url,
                                      expires_at=channel.expires_at)
                return outcome
        # another job (the hourly renewal, the one a new connection queues) subscribed this
        # connection since we read its channels: keep that one, take ours back
        try:
            await source.unsubscribe_channels([channel.channel_id])
        except SourceError as exc:
            log.info("a second notification channel not removed: %s", exc)
    return "unchanged"


async def _read_goal_results(ctx: JobContext, loaded: LoadedConnection,
                             plan: goal_push.PushPlan) -> None:
    """The CRM's own figure for every goal it holds (connectors.base.GoalResults), stored
    beside the push; a failure is logged and leaves the previous figures."""
    with session_scope(ctx.engine) as session:
        goals, remote_ids = goal_push.held(session, plan)
    if not goals:
        return
    try:
        async with open_connector(ctx, loaded) as source:
            assert isinstance(source, GoalResults)  # its class declares goal_results
            read = await source.goal_results(goals, remote_ids)
    except SourceError as exc:
        log.warning("goal results of connection %s not read: %s", plan.connection_id, exc,
                    extra={"connection_id": plan.connection_id})
        return
    with session_scope(ctx.engine) as session:
        goal_push.record_results(session, plan.connection_id, goals, read)


async def remove_channels(ctx: JobContext, connection_id: int) -> int:
    """Stop the CRM calling us for a connection about to be deleted: unsubscribe every
    notification channel stored for it (how many). Best effort: a CRM that refuses is
    logged, and its later calls find no connection and are refused. It gives up after
    REMOVE_CHANNELS_SECONDS, so deleting a connection never waits long on its CRM."""
    with session_scope(ctx.engine) as session:
        stored = [c.channel_id for c in webhooks.channels_of(session,
                                                             connection_id=connection_id)]
    if not stored:
        return 0
    try:
        loaded = load_connection(ctx, connection_id)
        if "channels" not in capabilities(loaded.provider):
            return 0
        async with asyncio.timeout(REMOVE_CHANNELS_SECONDS), \
                open_connector(ctx, loaded) as source:
            assert isinstance(source, NotificationChannels)  # its class declares channels
            await source.unsubscribe_channels(stored)
    except (SourceError, ConfigError, ValueError, LookupError, TimeoutError) as exc:
        log.warning("notification channels of connection %s not removed: %s", connection_id,
                    exc, extra={"connection_id": connection_id})
        return 0
    return len(stored)


# -- goal push (M3; core/goals/push.py, docs/goals.md) -------------------------------------------


async def push_goals(ctx: JobContext, *, connection_id: int | None = None,
                     people: Collection[int] | None = None) -> dict[str, Any]:
    """Push goals to every connection (or one); {"connections": [...], "results": [...]}.
    With `people` (not None: a manager's teams) only those people's goals.

    core.goals plans what each connection needs (new or changed goals, deletions); the
    connector's push_goals (connectors.base.GoalPusher) talks to the CRM; each goal's
    outcome is stored on its goal_push row and returned. A connection whose CRM fails as a
    whole (module missing, credentials) reports that error on each of its goals.
    """
    with session_scope(ctx.engine) as session:
        stmt = select(col(Connection.id)).order_by(col(Connection.id))
        if connection_id is not None:
            stmt = stmt.where(col(Connection.id) == connection_id)
        ids = [int(i or 0) for i in session.scalars(stmt)]
    if connection_id is not None and not ids:
        raise ConfigError(f"connection {connection_id} does not exist")
    connections, results = [], []
    for cid in ids:
        outcome = await _push_connection(ctx, cid, people)
        results += outcome.pop("results")
        connections.append(outcome)
    return {"connections": connections, "results": results}


GOAL_PUSH_LOCK = 0x676F616C  # core.db.turn(GOAL_PUSH_LOCK, connection id): its goal push


async def _push_connection(ctx: JobContext, connection_id: int,
                           people: Collection[int] | None) -> dict[str, Any]:
    """One connection's push, one at a time whatever the process: two pushes that planned
    at once would both create a goal the CRM does not have yet (most CRMs find a goal by
    its key, then create it), so each plans only after the other recorded what it pushed."""
    async with turn(ctx.engine, GOAL_PUSH_LOCK, connection_id):
        return await _push_connection_now(ctx, connection_id, people)


async def _push_connection_now(ctx: JobContext, connection_id: int,
                               people: Collection[int] | None) -> dict[str, Any]:
    with session_scope(ctx.engine) as session:
        plan = goal_push.plan_push(session, connection_id, ctx.settings, persons=people)
    error: str | None = None
    pushed: list[PushResult] = []
    try:
        loaded = load_connection(ctx, connection_id)
    except (ConfigError, ValueError, LookupError) as exc:
        error, pushed = str(exc), goal_push.failed(plan, f"cannot connect: {exc}")
    else:
        if "goals" not in capabilities(loaded.provider):
            reason = f"provider {loaded.provider!r} cannot take goals yet"
            pushed = [PushResult(g, PushStatus.SKIPPED, None, reason) for g in plan.hashes]
        elif plan.goals or plan.deletions:
            async with open_connector(ctx, loaded) as source:
                assert isinstance(source, GoalPusher)  # its class declares goals
                try:
                    pushed = await source.push_goals(plan.goals, plan.deletions)
                except SourceError as exc:
                    error, pushed = str(exc), goal_push.failed(plan, str(exc))
    with session_scope(ctx.engine) as session:
        results = goal_push.record_push(session, plan, pushed)
    if error is None and "goal_results" in capabilities(loaded.provider):
        await _read_goal_results(ctx, loaded, plan)
    if error:
        log.warning("goal push to connection %s failed: %s", connection_id, error,
                    extra={"connection_id": connection_id})
    counts: dict[str, int] = {}
    for result in results:
        counts[result["status"]] = counts.get(result["status"], 0) + 1
    return {"connection_id": connection_id, "error": error, "counts": counts,
            "results": results}


# -- stage history backfill (M9; core/history.py, docs/evaluation.md) -------------------------


async def backfill_stage_history(ctx: JobContext, *, connection_id: int,
                                 restart: bool = False) -> dict[str, Any]:
    """Read the stage history a CRM keeps (connectors.base.StageHistory) for every live deal
    of a connection, in deal id order, a batch per transaction: the moves are stored
    (deal_stage_change, source crm; moves already there are kept) with the last deal id
    done, so an interrupted backfill resumes there and a finished one reads only deals
    synced since. `restart` reads every deal again. A provider without the capability
    backfills nothing: its history is what syncs and webhooks observe. Its state (history.
    BACKFILL_STREAM: when it started and ended, whether it finished, its error) is what the
    API and the operations page show. It runs after a connection's first full sync
    (backfill_wanted), from the API and the dashboard, and from `crmsync history backfill`.
    {"connection_id", "deals", "changes", "api_calls", "skipped"}."""
    with session_scope(ctx.engine) as session:
        connection = session.get(Connection, connection_id)
        provider = None if connection is None else connection.provider
    if provider is None:
        raise ConfigError(f"connection {connection_id} does not exist")
    outcome: dict[str, Any] = {"connection_id": connection_id, "deals": 0, "changes": 0,
                               "api_calls": 0, "skipped": None}
    if "stage_history" not in capabilities(provider):
        outcome["skipped"] = (f"provider {provider!r} keeps no stage history crmsync "
                              "can read; only the changes syncs and webhooks observe count")
        return outcome
    stream = history.BACKFILL_STREAM
    with session_scope(ctx.engine) as session:
        state = {} if restart else store.get_state(session, connection_id=connection_id,
                                                   stream=stream)
        state.update(started_at=utcnow().isoformat(), finished_at=None, last_error=None,
                     finished=False)
        store.set_state(session, connection_id=connection_id, stream=stream, state=state)
    after = int(state.get("after_id") or 0)
    try:
        loaded = load_connection(ctx, connection_id)
        async with open_connector(ctx, loaded) as source:
            assert isinstance(source, StageHistory)  # its class declares stage_history
            while True:
                with session_scope(ctx.engine) as session:
                    batch = history.backfill_batch(session, connection_id=connection_id,
                                                   after_id=after,
                                                   limit=source.stage_history_batch)
                if not batch:
                    break
                changes = await source.read_stage_history([rid for _, rid in batch])
                after = batch[-1][0]
                state["after_id"] = after
                with session_scope(ctx.engine) as session:
                    outcome["changes"] += history.store_stage_changes(
                        session, connection_id=connection_id, changes=changes)
                    store.set_state(session, connection_id=connection_id, stream=stream,
                                    state=state)
                outcome["deals"] += len(batch)
            outcome["api_calls"] = source.api_calls
    except BaseException as exc:  # cancelled too: the next run resumes at after_id
        state.update(finished_at=utcnow().isoformat(), last_error=_error_text(exc))
        with session_scope(ctx.engine) as session:
            store.set_state(session, connection_id=connection_id, stream=stream, state=state)
        raise
    state.update(finished_at=utcnow().isoformat(), finished=True)
    with session_scope(ctx.engine) as session:
        store.set_state(session, connection_id=connection_id, stream=stream, state=state)
    log.info("stage history backfilled", extra={"connection_id": connection_id, **{
        k: outcome[k] for k in ("deals", "changes", "api_calls")}})
    return outcome


def _error_text(error: BaseException) -> str:
    """An error as a job's state records it; a settings model's errors without the values
    they were given (they may be secrets)."""
    if isinstance(error, ValidationError):
        return settings_errors(error)
    return str(error) or type(error).__name__


async def after_full_sync(ctx: JobContext, connection_id: int,
                          enqueue: Callable[[int], Awaitable[bool]]) -> None:
    """What both runners do when a full sync of a connection succeeded: queue its stage
    history backfill through `enqueue` when backfill_wanted. A failure here is logged and
    leaves the sync succeeded (the next full sync asks again)."""
    try:
        if await asyncio.to_thread(backfill_wanted, ctx, connection_id):
            await enqueue(connection_id)
            log.info("stage history backfill queued", extra={"connection_id": connection_id})
    except Exception:
        log.exception("stage history backfill not queued",
                      extra={"connection_id": connection_id})


def backfill_wanted(ctx: JobContext, connection_id: int) -> bool:
    """Whether a full sync of the connection that just succeeded should queue the stage
    history backfill: its provider keeps stage history and no backfill of it ever finished
    (the first full sync, a provider that gained the capability, a backfill that stopped:
    it resumes where it stopped)."""
    with session_scope(ctx.engine) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return False
        try:
            if "stage_history" not in capabilities(connection.provider):
                return False
        except (ConfigError, LookupError, ValueError):  # provider no longer installed
            return False
        state = store.get_state(session, connection_id=connection_id,
                                stream=history.BACKFILL_STREAM)
    return not state.get("finished")
