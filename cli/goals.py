"""`crmsync goals ...`: import goals from a file, push them into the CRMs."""

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from cli.context import checked_context
from cli.output import console, err, fail
from core.config import get_settings
from core.db import session_scope
from core.errors import ConfigError
from core.goals import targets as goals
from workers.jobs import push_goals

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


@app.command("import")
def goals_import(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8 or GB18030/GBK) or .xlsx with the "
                                         "columns owner_email, metric, period_start, "
                                         "period_end, target.")],
) -> None:
    """Create or update goals from a CSV file; a file with a bad row imports nothing."""
    settings = get_settings()
    try:
        text = file.read_bytes()  # CSV (UTF-8 or GB18030/GBK) or .xlsx
    except OSError as exc:
        raise fail(f"cannot read {file} ({type(exc).__name__})") from None
    ctx = checked_context(settings)
    try:
        with session_scope(ctx.engine) as session:
            done = goals.import_goals(session, text, settings)
    except goals.ImportInvalid as exc:
        for row in exc.rows:
            err.print(f"line {row['line']}: {row['field']}: {row['message']}")
        raise fail(str(exc)) from None
    console.print(f"goals: {done['created']} created, {done['updated']} updated, "
                  f"{done['unchanged']} unchanged")


@app.command("push")
def goals_push(
    connection: Annotated[int | None, typer.Option(help="Connection id (default: all).")] = None,
) -> None:
    """Push goals to the CRMs now and print what happened to each."""
    ctx = checked_context()
    try:
        result = asyncio.run(push_goals(ctx, connection_id=connection))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _print_push(result)
    if any(r["status"] == "error" for r in result["results"]):
        raise typer.Exit(code=1)


def _print_push(result: dict[str, Any]) -> None:
    table = Table(title="goal push")
    for column in ("goal", "connection", "status", "CRM record", "error"):
        table.add_column(column)
    for row in result["results"]:
        table.add_row(str(row["goal_id"]), str(row["connection_id"]), row["status"],
                      row["remote_id"] or "", row["error"] or "")
    console.print(table)
    for item in result["connections"]:
        counts = ", ".join(f"{n} {status}" for status, n in sorted(item["counts"].items()))
        console.print(f"connection {item['connection_id']}: {counts or 'no goals'}")
        if item["error"]:
            err.print(f"[red]connection {item['connection_id']}:[/red] {item['error']}")
