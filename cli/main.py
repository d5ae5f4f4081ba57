"""The `crmsync` command line (README.md lists its commands): the root command with the
subcommands by subject, and the boundary turning any failure into one line."""

import logging
import sys
from collections.abc import Sequence
from typing import cast

import typer
from pydantic import ValidationError
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

from api.app import SchemaNotCurrent
from cli import (
    admin,
    connections,
    demo,
    digests,
    goals,
    history,
    hygiene,
    incentives,
    people,
    run,
    sandboxes,
    users,
)
from cli.output import err
from connectors.base import CommandLine
from connectors.registry import get_connector, providers_with
from core.config import Settings, get_settings

app = typer.Typer(help="crmsync: CRM sync, sales metrics and goals.", no_args_is_help=True,
                  add_completion=False)
app.command("sync")(run.sync)
app.command("serve")(run.serve)
app.command("worker")(run.worker)
app.command("demo")(demo.command)
app.add_typer(admin.db_app, name="db")
app.add_typer(connections.app, name="connections")
app.add_typer(admin.apikey_app, name="apikey")
app.add_typer(sandboxes.app, name="sandbox")
app.add_typer(goals.app, name="goals")
app.add_typer(people.app, name="people")
app.add_typer(users.app, name="users")
app.add_typer(incentives.plans_app, name="plans")
app.add_typer(incentives.statements_app, name="statements")
app.add_typer(incentives.periods_app, name="periods")
app.add_typer(admin.keys_app, name="keys")
app.add_typer(history.app, name="history")
app.add_typer(hygiene.app, name="hygiene")
app.add_typer(digests.app, name="digest")
for _provider in providers_with("commands"):  # e.g. credential helpers (docs/<provider>.md)
    _commands = cast(CommandLine, get_connector(_provider))
    app.add_typer(_commands.command_line(connections.connections_add), name=_provider)


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def main(args: Sequence[str] | None = None) -> None:
    """The console script (`args`: the command line after `crmsync`, default sys.argv's):
    every failure is one line on stderr and exit code 2 (commands report their own
    failures; this boundary catches the rest, never a traceback)."""
    logging.basicConfig(level=logging.ERROR, format=LOG_FORMAT)
    try:
        app(args=None if args is None else list(args), prog_name="crmsync")
    except Exception as exc:  # the boundary: one line, no traceback
        err.print(f"[red]error:[/red] {describe_failure(exc)}", markup=True, highlight=False)
        sys.exit(2)


def describe_failure(exc: BaseException) -> str:
    """One line saying what went wrong and what to do, without secrets."""
    settings = _safe_settings()
    if isinstance(exc, ValidationError):
        return "; ".join(f"invalid setting CRMSYNC_{str(e['loc'][0]).upper()}: "
                         f"{e['msg'].removeprefix('Value error, ')}"
                         if e["loc"] else f"invalid settings: {e['msg']}"
                         for e in exc.errors(include_input=False, include_url=False))
    if isinstance(exc, SchemaNotCurrent):
        return str(exc)
    if isinstance(exc, DBAPIError):
        reason = _first_line(str(exc.orig))
        if "does not exist" in reason and "relation" in reason:
            return ("the database has no crmsync schema (or an older one): "
                    "run `crmsync db upgrade` first")
        return f"cannot use the database {_database(settings)}: {reason}"
    if isinstance(exc, NoSuchModuleError | ModuleNotFoundError):
        return (f"the database URL {_database(settings)} is not supported: use "
                "sqlite:///path/to/file.db or postgresql://user:password@host:5432/name")
    if isinstance(exc, SQLAlchemyError):
        return f"database error on {_database(settings)}: {_first_line(str(exc))}"
    if isinstance(exc, RedisError):
        redis = _redacted(settings.redis_url) if settings and settings.redis_url else "Redis"
        return f"cannot reach Redis at {redis}: {_first_line(str(exc))}"
    if isinstance(exc, OSError):
        path = settings.sqlite_path() if settings else None
        where = f"the database file {path}" if path else (exc.filename or "a file")
        return f"cannot create or open {where}: {exc.strerror or _first_line(str(exc))}" + (
            f" ({exc.filename})" if path and exc.filename else "")
    if isinstance(exc, ValueError):  # our own messages say what to do
        return _first_line(str(exc))
    return f"{type(exc).__name__}: {_first_line(str(exc))}"


def _safe_settings() -> Settings | None:
    try:
        return get_settings()
    except Exception:
        return None


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no details"


def _redacted(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def _database(settings: Settings | None) -> str:
    return _redacted(settings.database_url) if settings else "CRMSYNC_DATABASE_URL"

