"""`crmsync history ...`: backfill deals' stage history from the CRMs that keep it."""

import asyncio
from typing import Annotated

import typer
from sqlmodel import col, select

from cli.context import checked_context
from cli.output import console, err, fail
from core.db import session_scope
from core.errors import ConfigError, SourceError
from core.models import Connection
from workers.jobs import backfill_stage_history

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


@app.command("backfill")
def history_backfill(
    connection: Annotated[int | None, typer.Option(help="Connection id (default: all).")] = None,
    restart: Annotated[bool, typer.Option(
        help="Read every deal again, not only deals after the last backfill.")] = False,
) -> None:
    """Read each deal's stage history from its CRM (one API call per deal on CRMs that
    keep it per deal) and store the moves; prints what each connection did."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        stmt = select(col(Connection.id)).order_by(col(Connection.id))
        if connection is not None:
            stmt = stmt.where(col(Connection.id) == connection)
        ids = [int(i or 0) for i in session.exec(stmt)]
    if not ids:
        raise fail(f"connection {connection} does not exist" if connection is not None
                   else "no connections")
    failed = False
    for cid in ids:
        try:
            done = asyncio.run(backfill_stage_history(ctx, connection_id=cid, restart=restart))
        except (ConfigError, SourceError, ValueError, LookupError) as exc:
            err.print(f"[red]connection {cid}:[/red] {exc}")
            failed = True
            continue
        if done["skipped"]:
            console.print(f"connection {cid}: skipped: {done['skipped']}")
        else:
            console.print(f"connection {cid}: {done['deals']} deals read, {done['changes']} "
                          f"new stage changes, {done['api_calls']} API calls")
    if failed:
        raise typer.Exit(code=1)
