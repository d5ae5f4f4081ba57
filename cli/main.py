"""The `crmsync` command line (README.md lists its commands): the root command with the
subcommands by subject, and the boundary turning any failure into one line."""

import importlib
import logging
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any, NamedTuple, cast

import typer
from pydantic import ValidationError
from typer.core import TyperCommand, TyperGroup

from cli.output import err
from connectors.base import CommandLine
from connectors.registry import get_connector, providers_with
from core.config import Settings, get_settings
from core.errors import SchemaNotCurrent


class Command(NamedTuple):
    target: str
    """The module and attribute (a function or a typer app) that implement the command."""
    help: str
    """Its line in `crmsync --help` (a typer app's help; a function's help page is its
    docstring)."""


COMMANDS = {
    "sync": Command("cli.run:sync", "Run a sync now, with a progress bar per stream."),
    "serve": Command("cli.serve:serve",
                     "Serve the API (jobs run in-process when no Redis is configured)."),
    "worker": Command("cli.run:worker",
                      "Run an arq worker for the jobs queued on CRMSYNC_REDIS_URL."),
    "demo": Command("cli.demo:command", "The whole product on this machine: a sandbox of "
                    "every CRM, synced, with goals, the API and the dashboard."),
    "db": Command("cli.admin:db_app", "Database commands."),
    "connections": Command("cli.connections:app", "Manage CRM connections."),
    "apikey": Command("cli.admin:apikey_app", "Manage API keys."),
    "sandbox": Command("cli.sandboxes:app", "Run a simulated CRM."),
    "goals": Command("cli.goals:app", "Sales goals: import from CSV, push to the CRMs."),
    "people": Command("cli.people:app", "People: who each CRM user is (docs/people.md)."),
    "users": Command("cli.users:app", "Dashboard users: add, invite, reset, list, disable."),
    "plans": Command("cli.incentives:plans_app", "Commission plans (docs/incentives.md)."),
    "statements": Command("cli.incentives:statements_app", "Commission statements."),
    "periods": Command("cli.incentives:periods_app", "Closing commission periods."),
    "keys": Command("cli.admin:keys_app", "The secret keys (CRMSYNC_SECRET_KEY)."),
    "history": Command("cli.history:app", "Deal history (docs/evaluation.md)."),
    "hygiene": Command("cli.hygiene:app", "Sales hygiene (docs/evaluation.md#hygiene)."),
    "digest": Command("cli.digests:app",
                      "Scheduled digests to WeCom, DingTalk, Feishu/Lark and Slack robots."),
}
"""command -> what implements it and its help line; each provider with a command line
(e.g. credential helpers, docs/<provider>.md) adds its own."""


def _imported(target: str) -> Any:
    module, attribute = target.split(":")
    return getattr(importlib.import_module(module), attribute)


def add_connection(**fields: Any) -> None:
    """`crmsync connections add`, given to the providers' command lines: imported when one
    of their commands saves a connection, not when the command line starts."""
    _imported("cli.connections:connections_add")(**fields)


class Commands(MutableMapping[str, Any]):
    """The root command's subcommands by name, each imported when first looked up to run
    (`crmsync sandbox zoho` starts without importing the API, the dashboard and the
    workers: about 1.5 s of CPU less). Names alone (an unknown command's suggestions)
    import nothing; while `listing` (`crmsync --help`) a command not imported yet is its
    name and help line (COMMANDS), as it would be listed imported."""

    def __init__(self) -> None:
        self.loaded: dict[str, Any] = {}
        self.listing = False

    @staticmethod
    def names() -> list[str]:
        return [*COMMANDS, *providers_with("commands")]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __getitem__(self, name: str) -> Any:
        if name in self.loaded:
            return self.loaded[name]
        if name in COMMANDS and self.listing:
            return TyperCommand(name, short_help=COMMANDS[name].help)
        wrapper = typer.Typer()  # built as app.add_typer / app.command would
        if name in COMMANDS:
            target = _imported(COMMANDS[name].target)
            if isinstance(target, typer.Typer):
                wrapper.add_typer(target, name=name, help=COMMANDS[name].help)
            else:
                wrapper.command(name, short_help=COMMANDS[name].help)(target)
        elif name in providers_with("commands"):
            wrapper.add_typer(cast(CommandLine, get_connector(name)).command_line(
                add_connection), name=name)
        else:
            raise KeyError(name)
        self.loaded[name] = typer.main.get_group(wrapper).commands[name]
        return self.loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]


class Root(TyperGroup):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = Commands()

    def format_help(self, ctx: Any, formatter: Any) -> None:
        commands = cast(Commands, self.commands)
        commands.listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            commands.listing = False


app = typer.Typer(cls=Root, no_args_is_help=True, add_completion=False)


@app.callback()
def root() -> None:
    """crmsync: CRM sync, sales metrics and goals."""


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
    # imported here: a command that uses neither (`crmsync sandbox zoho`, help) starts
    # without SQLAlchemy and redis-py, and raised none of their errors
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

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
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unparsable URL)"


def _database(settings: Settings | None) -> str:
    return _redacted(settings.database_url) if settings else "CRMSYNC_DATABASE_URL"

