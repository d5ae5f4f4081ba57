"""Running crmsync: a sync now (with progress), the job worker (the API server: cli/serve.py,
which alone imports the API)."""

import asyncio
from typing import Annotated

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import select

from cli.context import checked_context
from cli.output import console, err, fail
from connectors.registry import secret_field_names, streams_of
from core import store
from core.config import get_settings
from core.db import session_scope
from core.logs import configure_logging
from core.models import Connection
from core.records import REQUIRED_STREAMS
from core.sync import StreamCounts
from core.types import Stream, SyncMode
from workers.context import JobContext
from workers.jobs import AccountBusy, after_full_sync, backfill_stage_history, sync_connection
from workers.settings import LANES, parse_lanes
from workers.settings import run as run_worker_lanes


def sync(
    connection: Annotated[int | None, typer.Option(help="Connection id (default: all).")] = None,
    full: Annotated[bool, typer.Option(help="Read everything and tombstone what is gone.")] = False,
) -> None:
    """Run a sync now, with a progress bar per stream."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        ids = [c.id for c in session.scalars(select(Connection))
               if connection is None or c.id == connection]
    if not ids:
        raise fail("no such connection; add one with `crmsync connections add`")
    failed = False
    for connection_id in ids:
        failed |= not asyncio.run(run_sync_with_progress(ctx, int(connection_id or 0), full))
    if failed:
        raise typer.Exit(code=1)


async def run_sync_with_progress(ctx: JobContext, connection_id: int, full: bool) -> bool:
    """Sync one connection showing rich progress; True when it succeeded."""
    mode = SyncMode.FULL if full else SyncMode.INCREMENTAL
    with session_scope(ctx.engine) as session:
        if store.active_run(session, connection_id=connection_id):
            err.print(f"connection {connection_id} is already syncing")
            return False
        connection = session.get(Connection, connection_id)
        streams = streams_of(connection.provider) if connection else REQUIRED_STREAMS
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    columns = (SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {s: progress.add_task(s, total=None, counts="") for s in streams}

        def report(stream: Stream, counts: StreamCounts, done: bool) -> None:
            text = f"{counts.fetched:>7,} read {counts.upserted:>7,} saved {counts.deleted:>5,} del"
            if done:
                progress.update(tasks[stream], counts=text, total=1, completed=1)
            else:
                progress.update(tasks[stream], counts=text)

        try:
            while True:
                try:
                    await sync_connection(ctx, connection_id=connection_id, run_id=run_id,
                                          mode=mode, progress=report)
                    break
                except AccountBusy as busy:  # workers sync others of its account: wait
                    console.print(f"connection {connection_id}: {busy}")
                    await asyncio.sleep(busy.delay)
        except Exception as exc:  # the run row has the error too
            err.print(f"[red]sync of connection {connection_id} failed:[/red] {exc}")
            return False
    if full:  # as both runners do after a full sync (docs/evaluation.md), here in line
        await after_full_sync(ctx, connection_id, lambda cid: backfill_now(ctx, cid))
    return True


async def backfill_now(ctx: JobContext, connection_id: int) -> bool:
    """Read the stage history the connection's CRM keeps, now, saying how it went."""
    console.print(f"connection {connection_id}: reading the stage history the CRM keeps")
    try:
        outcome = await backfill_stage_history(ctx, connection_id=connection_id)
    except Exception as exc:  # the backfill's state has the error too; the sync stands
        err.print(f"[yellow]stage history of connection {connection_id} not read:[/yellow] "
                  f"{exc}; `crmsync history backfill` tries again")
        return False
    console.print(f"  {outcome['deals']:,} deals read, {outcome['changes']:,} stage moves "
                  f"stored, {outcome['api_calls']:,} API calls")
    return True


def worker(
    lanes: Annotated[str, typer.Option(metavar="LANE,...", help=(
        "The lanes (queues) this process takes jobs from, comma-separated: sync (syncs, "
        "backfills, goal pushes, channel subscriptions), webhook, cron (the schedule and "
        "the other crons). Run the webhook lane in processes of its own "
        "with --lanes webhook beside --lanes sync,cron workers."))] = ",".join(LANES),
) -> None:
    """Run an arq worker for the jobs queued on CRMSYNC_REDIS_URL."""
    try:
        chosen = parse_lanes(lanes)
    except ValueError as exc:
        raise fail(f"--lanes: {exc}") from None
    settings = get_settings()
    if not settings.redis_url:
        raise fail("set CRMSYNC_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run a worker")
    checked_context(settings).engine.dispose()
    configure_logging(settings, secret_field_names())
    run_worker_lanes(settings, chosen)
