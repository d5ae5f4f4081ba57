"""The `crmsync` command line (README.md lists its commands)."""

import asyncio
import inspect
import json
import logging
import os
import socket
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sqlalchemy import select
from sqlmodel import Session, col

from connectors.base import CommandLine, Sandbox, SandboxOption
from connectors.registry import (
    get_connector,
    providers,
    providers_with,
    sandboxes,
    secret_field_names,
)
from core import store
from core.config import Settings, get_settings
from core.db import make_engine, session_scope, upgrade
from core.logs import configure_logging
from core.models import ApiKey, Connection, User
from core.records import STREAMS
from core.security import hash_api_key, new_api_key, parse_scopes, rotate_secrets
from core.sync import StreamCounts
from core.types import Stream, SyncMode
from workers.context import JobContext, build_context
from workers.jobs import sync_connection

app = typer.Typer(help="crmsync: CRM sync, sales metrics and goals.", no_args_is_help=True,
                  add_completion=False)
db_app = typer.Typer(help="Database commands.", no_args_is_help=True)
connections_app = typer.Typer(help="Manage CRM connections.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Run a simulated CRM.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(connections_app, name="connections")
app.add_typer(apikey_app, name="apikey")
app.add_typer(sandbox_app, name="sandbox")
goals_app = typer.Typer(help="Sales goals: import from CSV, push to the CRMs.",
                        no_args_is_help=True)
app.add_typer(goals_app, name="goals")
people_app = typer.Typer(help="People: who each CRM user is (docs/people.md).",
                         no_args_is_help=True)
app.add_typer(people_app, name="people")
keys_app = typer.Typer(help="The secret keys (CRMSYNC_SECRET_KEY).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()
err = Console(stderr=True, soft_wrap=True)  # an error is one line, however narrow the terminal


def fail(message: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}")
    return typer.Exit(code=2)


def _settings() -> Settings:
    return get_settings()  # a bad setting is reported by main() in one line


def _context(settings: Settings | None = None) -> JobContext:
    """The job context, after checking what every command needs: the secret key, a
    reachable database with the current schema (embedded SQLite is migrated on the spot)
    and, when configured, a reachable Redis."""
    from api.app import prepare_database

    settings = settings or _settings()
    _refuse_lost_key_file(settings)
    ctx = build_context(settings)
    if not ctx.settings.is_sqlite:
        prepare_database(ctx.engine)
    if ctx.settings.redis_url:
        from redis import Redis

        client = Redis.from_url(ctx.settings.redis_url, socket_connect_timeout=3,
                                socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    return ctx


def _refuse_lost_key_file(settings: Settings) -> None:
    """An embedded database holding encrypted secrets whose generated key file is gone:
    stop, rather than generate a new key that cannot read them."""
    import sqlite3

    path = settings.sqlite_path()
    if settings.secret_key or path is None or not path.exists():
        return
    key_file = path.with_name(path.name + ".key")
    if key_file.exists():
        return
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            sealed = db.execute("SELECT 1 FROM connection WHERE secrets_encrypted != '' "
                                "LIMIT 1").fetchone()
        except sqlite3.Error:  # no schema yet
            sealed = None
    if sealed:
        raise fail(f"the key file {key_file} is missing but {path} holds encrypted secrets: "
                   "restore the key file, or set CRMSYNC_SECRET_KEY to that key")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations and say which."""
    before, after = upgrade(make_engine(_settings().database_url))
    if before == after:
        console.print(f"database already at {after}")
    else:
        console.print(f"database upgraded from {before or 'empty'} to {after}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the first key of CRMSYNC_SECRET_KEY (all keys
    listed there decrypt), in one transaction; then the other keys can be removed."""
    ctx = _context()
    with session_scope(ctx.engine) as session:
        counts = rotate_secrets(session, ctx.secrets)
    console.print("re-encrypted with the first key: " + ", ".join(
        f"{n} {kind}" for kind, n in counts.items()))


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    scope: Annotated[list[str], typer.Option(
        help="read, write, push or admin (repeatable; admin > push > write > read).")],
) -> None:
    """Create an API key and print only the key."""
    try:
        scopes = parse_scopes(scope)
    except ValueError as exc:
        raise fail(str(exc)) from None
    ctx = _context()
    print(create_api_key(ctx, name, scopes))


@apikey_app.command("list")
def apikey_list() -> None:
    """API keys (name, prefix, scopes, last use; never the keys themselves)."""
    from rich.table import Table

    ctx = _context()
    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for key in session.scalars(select(ApiKey).order_by(col(ApiKey.id))):
            table.add_row(str(key.id), key.name, key.prefix, key.scopes, _when(key.created_at),
                          _when(key.last_used_at), _when(key.revoked_at))
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (apikey list).")]
                  ) -> None:
    """Revoke an API key: it is refused from now on."""
    from core.types import utcnow

    ctx = _context()
    with session_scope(ctx.engine) as session:
        key = session.get(ApiKey, key_id)
        if key is None:
            raise fail(f"API key {key_id} does not exist; see `crmsync apikey list`")
        if key.revoked_at is None:
            key.revoked_at = utcnow()
    console.print(f"API key {key_id} ({key.name}) is revoked")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def create_api_key(ctx: JobContext, name: str, scopes: list[str]) -> str:
    key = new_api_key()
    with session_scope(ctx.engine) as session:
        session.add(ApiKey(name=name, key_hash=hash_api_key(key), prefix=key[:8],
                           scopes=",".join(scopes)))
    return key


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise fail(f"{what} must look like key=value, not {item!r}")
        out[key] = value
    return out


SECRET_HELP = ("key=value (repeatable). Command-line arguments are visible to other users "
               "of this machine (ps) and stay in shell history: prefer --secrets-file or "
               "CRMSYNC_SECRET_<NAME> variables.")
SECRETS_FILE_HELP = "A JSON object of secrets, or - to read it from standard input."
CHECK_TIMEOUT = 10.0  # seconds; a check makes one attempt per call, never a retry loop


def _secrets(provider: str | None, secret: list[str] | None,
             secrets_file: str | None) -> dict[str, Any]:
    """Secrets from CRMSYNC_SECRET_<NAME> (for `provider`'s secret names), then the JSON
    file (or standard input), then --secret key=value: later sources win."""
    from connectors.registry import UnknownProvider, get_connector

    out: dict[str, Any] = {}
    if provider is not None:
        try:
            names = list(get_connector(provider).secrets_model.model_fields)
        except UnknownProvider:
            names = []
        out = {n: os.environ[f"CRMSYNC_SECRET_{n.upper()}"] for n in names
               if os.environ.get(f"CRMSYNC_SECRET_{n.upper()}")}
    if secrets_file is not None:
        where = "standard input" if secrets_file == "-" else secrets_file
        try:
            text = sys.stdin.read() if secrets_file == "-" else Path(secrets_file).read_text(
                encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read the secrets file {where} ({type(exc).__name__})") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise fail(f"the secrets in {where} must be a JSON object such as "
                       '{"client_id": "...", "client_secret": "..."}')
        out.update(data)
    out.update(_pairs(secret or [], "secret"))
    return out


def _endpoints(settings: Settings) -> Any:
    from connectors.endpoints import EndpointPolicy

    return EndpointPolicy.parse(settings.allow_endpoints)


def _check(ctx: JobContext, provider: str, config: dict[str, Any],
           secrets: dict[str, Any], key: str, *, saving: bool = False) -> Any:
    """Authenticate and read the organization with the connector's check(): one attempt
    per call and a short timeout, so an unreachable CRM fails in seconds. Returns the
    SourceInfo; a failure is one line naming the host and the reason."""
    from connectors.http import ApiClient, RetryPolicy, build_client
    from connectors.registry import get_connector
    from core.errors import SourceError

    cls = get_connector(provider)

    async def run() -> Any:
        async with build_client(transport=ctx.transport, timeout=CHECK_TIMEOUT) as client:
            api = ApiClient(client, max_in_flight=cls.max_in_flight,
                            retry=RetryPolicy(attempts=1), limits=ctx.limits,
                            key=f"check:{key}", endpoints=_endpoints(ctx.settings))
            source = cls(cls.config_model.model_validate(config),
                         cls.secrets_model.model_validate(secrets), api)
            return await source.check()

    try:
        return asyncio.run(run())
    except SourceError as exc:
        cause = f" ({exc.__cause__})" if exc.__cause__ and str(exc.__cause__) else ""
        unsaved = "; nothing was saved (--no-check saves without checking)" if saving else ""
        raise fail(f"the CRM check failed: {exc}{cause}{unsaved}") from None


def _print_check(info: Any, out: Console = console) -> None:
    """What the check found (add and update print it on stderr: their stdout is JSON)."""
    out.print(f"organization: {info.organization or '(not named)'}")
    out.print(f"home currency: {info.home_currency or '(unknown)'}")
    for warning in info.warnings:
        err.print(f"[yellow]warning:[/yellow] {warning}")


def _connection(session: Session, connection_id: int) -> Connection:
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise fail(f"connection {connection_id} does not exist; see `crmsync connections list`")
    return connection


def _subscribe(ctx: JobContext, connection_id: int) -> None:
    """With CRMSYNC_PUBLIC_URL, subscribe to the CRM's notifications now (not at the next
    hourly renewal)."""
    if ctx.settings.public_url:
        from workers.jobs import renew_channels

        outcome = asyncio.run(renew_channels(ctx, connection_id=connection_id))
        if outcome["failed"]:
            typer.echo("CRM notifications not subscribed yet (see the log); the hourly "
                       "renewal tries again.", err=True)


@connections_app.command("add")
def connections_add(
    provider: Annotated[str, typer.Argument(help="The CRM: " + ", ".join(providers()) + ".")],
    name: Annotated[str, typer.Option(help="A unique name for the connection.")],
    config: Annotated[list[str] | None, typer.Option(help="key=value (repeatable).")] = None,
    secret: Annotated[list[str] | None, typer.Option(help=SECRET_HELP)] = None,
    secrets_file: Annotated[str | None, typer.Option(help=SECRETS_FILE_HELP)] = None,
    check: Annotated[bool, typer.Option(
        help="Authenticate and read the organization before saving.")] = True,
) -> None:
    """Add a connection and print it as JSON (secrets are never printed). Secrets come
    from CRMSYNC_SECRET_<NAME> variables, --secrets-file and --secret."""
    from api.connections import ConnectionInput, create_connection, validated

    ctx = _context()
    payload = ConnectionInput(provider=provider, name=name, config=_pairs(config or [], "config"),
                              secrets=_secrets(provider, secret, secrets_file))
    endpoints = _endpoints(ctx.settings)
    try:
        if check:  # validated first: the secrets only go to an allowed host
            cfg, secrets = validated(provider, payload.config, payload.secrets, endpoints)
            _print_check(_check(ctx, provider, cfg, secrets, f"new:{name}", saving=True), err)
        with session_scope(ctx.engine) as session:
            public = create_connection(session, ctx.secrets, payload, endpoints=endpoints)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print_json(json.dumps(public, default=str))
    _subscribe(ctx, int(public["id"]))


for _provider in providers_with("commands"):  # e.g. credential helpers (docs/<provider>.md)
    _commands = cast(CommandLine, get_connector(_provider))
    app.add_typer(_commands.command_line(connections_add), name=_provider)


@connections_app.command("list")
def connections_list() -> None:
    """Connections: provider, name, status, secrets set, last sync and error."""
    from rich.table import Table

    from api.connections import public_connection

    ctx = _context()
    table = Table(title="connections")
    for column in ("id", "provider", "name", "status", "secrets set", "last sync", "error"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for connection in session.scalars(select(Connection).order_by(col(Connection.id))):
            row = public_connection(connection.model_dump(), ctx.secrets)
            table.add_row(str(row["id"]), row["provider"], row["name"], row["status"],
                          ", ".join(row["secrets_set"]), _when(connection.last_synced_at),
                          row["last_error"] or "")
    console.print(table)


@connections_app.command("show")
def connections_show(connection_id: Annotated[int, typer.Argument(help="The connection's id.")]
                     ) -> None:
    """A connection as JSON (the names of its secrets, never their values)."""
    from api.connections import public_connection

    ctx = _context()
    with session_scope(ctx.engine) as session:
        public = public_connection(_connection(session, connection_id).model_dump(), ctx.secrets)
    console.print_json(json.dumps(public, default=str))


@connections_app.command("update")
def connections_update(
    connection_id: Annotated[int, typer.Argument(help="The connection's id.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    config: Annotated[list[str] | None, typer.Option(help="key=value (repeatable).")] = None,
    secret: Annotated[list[str] | None, typer.Option(help=SECRET_HELP)] = None,
    secrets_file: Annotated[str | None, typer.Option(help=SECRETS_FILE_HELP)] = None,
    check: Annotated[bool, typer.Option(
        help="Authenticate and read the organization with the new settings.")] = True,
) -> None:
    """Rename a connection or change config and secrets (given keys are merged into the
    stored ones); prints it as JSON. New settings are checked against the CRM first."""
    from api.connections import ConnectionPatch, update_connection

    ctx = _context()
    secrets = _secrets(None, secret, secrets_file)
    patch = ConnectionPatch(name=name, config=_pairs(config, "config") if config else None,
                            secrets=secrets or None)
    endpoints = _endpoints(ctx.settings)
    try:
        with session_scope(ctx.engine) as session:
            connection = _connection(session, connection_id)
            public = update_connection(session, ctx.secrets, connection, patch,
                                       endpoints=endpoints)
            if check and (patch.config is not None or patch.secrets is not None):
                # before the commit: a failed check leaves the connection as it was
                _print_check(_check(ctx, connection.provider, connection.config,
                                    ctx.secrets.open(connection.secrets_encrypted),
                                    str(connection_id), saving=True), err)
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print_json(json.dumps(public, default=str))
    if patch.config is not None or patch.secrets is not None:  # maybe another org now
        _subscribe(ctx, connection_id)


@connections_app.command("delete")
def connections_delete(
    connection_id: Annotated[int, typer.Argument(help="The connection's id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a connection and everything synced from it."""
    ctx = _context()
    with session_scope(ctx.engine) as session:
        name = _connection(session, connection_id).name
    if not yes and not typer.confirm(
            f"delete connection {connection_id} ({name}) and all its synced data?"):
        raise fail("nothing deleted")
    with session_scope(ctx.engine) as session:
        session.delete(_connection(session, connection_id))  # synced rows: ON DELETE CASCADE
    console.print(f"connection {connection_id} ({name}) deleted")


@connections_app.command("test")
def connections_test(connection_id: Annotated[int, typer.Argument(help="The connection's id.")]
                     ) -> None:
    """Authenticate with the stored credentials and read the organization: prints the
    organization, home currency and any warnings."""
    ctx = _context()
    with session_scope(ctx.engine) as session:
        connection = _connection(session, connection_id)
        secrets = ctx.secrets.open(connection.secrets_encrypted,
                                   f"connection {connection.id} ({connection.name})")
        provider, config = connection.provider, dict(connection.config)
    _print_check(_check(ctx, provider, config, secrets, str(connection_id)))


@app.command("sync")
def sync(
    connection: Annotated[int | None, typer.Option(help="Connection id (default: all).")] = None,
    full: Annotated[bool, typer.Option(help="Read everything and tombstone what is gone.")] = False,
) -> None:
    """Run a sync now, with a progress bar per stream."""
    ctx = _context()
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
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    columns = (SpinnerColumn(), TextColumn("{task.description:<10}"), BarColumn(),
               TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {s: progress.add_task(s, total=None, counts="") for s in STREAMS}

        def report(stream: Stream, counts: StreamCounts, done: bool) -> None:
            text = f"{counts.fetched:>7,} read {counts.upserted:>7,} saved {counts.deleted:>5,} del"
            if done:
                progress.update(tasks[stream], counts=text, total=1, completed=1)
            else:
                progress.update(tasks[stream], counts=text)

        try:
            await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode=mode,
                                  progress=report)
        except Exception as exc:  # the run row has the error too
            err.print(f"[red]sync of connection {connection_id} failed:[/red] {exc}")
            return False
    return True


@app.command("serve")
def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the API (jobs run in-process when no Redis is configured)."""
    import uvicorn

    from api.app import create_app

    settings = _settings()
    _context(settings).engine.dispose()  # key, database, schema, Redis: fail here, not inside
    configure_logging(settings, secret_field_names())
    uvicorn.run(create_app(settings, schedule=True), host=host, port=port, log_config=None)


@app.command("worker")
def worker() -> None:
    """Run an arq worker for the jobs queued on CRMSYNC_REDIS_URL."""
    from arq import run_worker
    from arq.connections import RedisSettings

    from workers.settings import WorkerSettings

    settings = _settings()
    if not settings.redis_url:
        raise fail("set CRMSYNC_REDIS_URL (e.g. redis://127.0.0.1:6379/0) to run a worker")
    _context(settings).engine.dispose()
    configure_logging(settings, secret_field_names())
    run_worker(WorkerSettings, redis_settings=RedisSettings.from_dsn(settings.redis_url))  # type: ignore[arg-type]


def _option_parameter(name: str, option: SandboxOption) -> inspect.Parameter:
    """A typer option for a sandbox option (a flag for bool, else a value)."""
    kind: Any = option.kind if option.kind is bool or option.default is not None \
        else option.kind | None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                             annotation=Annotated[kind, typer.Option(f"--{name.replace('_', '-')}",
                                                                     help=option.help)])


def _with_parameters(function: Any, extra: list[inspect.Parameter]) -> Any:
    """`function` (taking **options) with `extra` typer options in its signature."""
    base = [p for p in inspect.signature(function, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD]
    function.__signature__ = inspect.Signature(base + extra)
    function.__annotations__ = {**{p.name: p.annotation for p in base + extra},
                                "return": None}
    return function


def sandbox_connect_hint(sandbox: Sandbox, host: str, port: int) -> str:
    """How to connect crmsync to a sandbox on host:port."""
    url = f"http://{host}:{port}"
    config = " ".join(f"--config {k}={v}" for k, v in sandbox.config(url).items())
    secrets = " ".join(f"{k}={v}" for k, v in sandbox.secrets.items())
    return (f"Connect with {config} and the secrets {secrets}, with "
            f"CRMSYNC_ALLOW_ENDPOINTS={host}:{port} set for crmsync")


def _sandbox_command(provider: str, sandbox: Sandbox) -> Any:
    def command(
        port: Annotated[int, typer.Option()] = sandbox.default_port,
        host: Annotated[str, typer.Option()] = "127.0.0.1",
        seed: Annotated[int, typer.Option()] = 42,
        deals: Annotated[int, typer.Option()] = 2500,
        latency: Annotated[float, typer.Option(help="Seconds added to every call.")] = 0.0,
        **options: Any,
    ) -> None:
        import gc

        import uvicorn

        kwargs: dict[str, Any] = {}
        for option in sandbox.options:
            kwargs.update(option.apply(options[option.name.replace("-", "_")]))
        console.print(f"{sandbox.title} on http://{host}:{port} (seed {seed}, {deals:,} "
                      f"deals). {sandbox_connect_hint(sandbox, host, port)}")
        app = sandbox.create_app(None, seed=seed, deals=deals, latency=latency, **kwargs)
        gc.freeze()  # the dataset is long-lived: keep the collector from rescanning it
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)

    command.__doc__ = sandbox.title[0].upper() + sandbox.title[1:] + "."
    command.__name__ = f"sandbox_{provider}"
    return _with_parameters(command, [_option_parameter(o.name.replace("-", "_"), o)
                                      for o in sandbox.options])


for _provider, _sandbox in sandboxes().items():
    sandbox_app.command(_provider)(_sandbox_command(_provider, _sandbox))


@goals_app.command("import")
def goals_import(
    file: Annotated[Path, typer.Argument(help="CSV (UTF-8 or GB18030/GBK) or .xlsx with the "
                                         "columns owner_email, metric, period_start, "
                                         "period_end, target.")],
) -> None:
    """Create or update goals from a CSV file; a file with a bad row imports nothing."""
    from core.goals import targets as goals

    settings = _settings()
    try:
        text = file.read_bytes()  # CSV (UTF-8 or GB18030/GBK) or .xlsx
    except OSError as exc:
        raise fail(f"cannot read {file} ({type(exc).__name__})") from None
    ctx = _context(settings)
    try:
        with session_scope(ctx.engine) as session:
            done = goals.import_goals(session, text, settings)
    except goals.ImportInvalid as exc:
        for row in exc.rows:
            err.print(f"line {row['line']}: {row['field']}: {row['message']}")
        raise fail(str(exc)) from None
    console.print(f"goals: {done['created']} created, {done['updated']} updated, "
                  f"{done['unchanged']} unchanged")


@goals_app.command("push")
def goals_push(
    connection: Annotated[int | None, typer.Option(help="Connection id (default: all).")] = None,
) -> None:
    """Push goals to the CRMs now and print what happened to each."""
    from core.errors import ConfigError
    from workers.jobs import push_goals

    ctx = _context()
    try:
        result = asyncio.run(push_goals(ctx, connection_id=connection))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    _print_push(result)
    if any(r["status"] == "error" for r in result["results"]):
        raise typer.Exit(code=1)


def _print_push(result: dict[str, Any]) -> None:
    from rich.table import Table

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


SHARED_REPS = slice(1, 4)  # reps who sell in both CRMs (same emails): one owner in metrics


@people_app.command("list")
def people_list(
    unmatched: Annotated[bool, typer.Option(
        "--unmatched", help="Only CRM users no rule matched to anyone (to map by hand).")] = False,
) -> None:
    """People and their CRM users (or the unmatched CRM users)."""
    from rich.table import Table

    from core import people
    from core.queries import iter_rows

    ctx = _context()
    if unmatched:
        table = Table(title="unmatched CRM users")
        for column in ("user", "connection", "remote id", "name", "email", "mobile", "person"):
            table.add_column(column)
        for row in iter_rows(ctx.engine, people.unmatched_listing()):
            table.add_row(*(str(row[c] if row[c] is not None else "") for c in (
                "id", "connection_id", "remote_id", "name", "email", "mobile", "person_id")))
    else:
        table = Table(title="people")
        for column in ("person", "name", "email", "mobile", "team", "CRM users"):
            table.add_column(column)
        with session_scope(ctx.engine) as session:
            rows = people.with_users(session, list(iter_rows(ctx.engine,
                                                             people.people_listing())))
        for row in rows:
            users = ", ".join(f"{u['id']} ({u['connection_id']}:{u['remote_id']}, "
                              f"{u['person_match']})" for u in row["users"])
            table.add_row(str(row["id"]), row["name"], row["email"] or "",
                          row["mobile"] or "", row["team"] or "", users)
    console.print(table)


@people_app.command("map")
def people_map(
    person_id: Annotated[int, typer.Argument(help="The person (crmsync people list).")],
    user: Annotated[int | None, typer.Option(help="The CRM user's id.")] = None,
    connection: Annotated[int | None, typer.Option(help="Or its connection id ...")] = None,
    remote_id: Annotated[str | None, typer.Option(help="... and its id in that CRM.")] = None,
) -> None:
    """Map a CRM user to a person by hand (syncs keep it); prints the person as JSON."""
    from core import people

    if (user is None) == (connection is None or not remote_id):
        raise fail("give --user, or --connection and --remote-id")
    ctx = _context()
    try:
        with session_scope(ctx.engine) as session:
            people.map_user(session, person_id, user_id=user, connection_id=connection,
                            remote_id=remote_id)
            person = people.get_person(session, person_id)
    except (people.PersonNotFound, people.PersonError) as exc:
        raise fail(str(exc)) from None
    console.print_json(json.dumps(person, default=str))


def demo(
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Exit after the sync.")] = False,
    port: Annotated[int, typer.Option(
        help="Port of the API on 127.0.0.1 (0: any free port).")] = 8000,
    deals: Annotated[int, typer.Option(help="Deals in the simulated org.")] = 2500,
    seed: Annotated[int, typer.Option(help="Seed of the simulated company.")] = 42,
    **sandbox_options: Any,
) -> None:
    """The whole product on this machine: a simulated tenant of every CRM with a sandbox
    (some reps work in all of them), a sync of each, goals pushed into each, the API."""
    from connectors.sandbox.dataset import generate_company
    from connectors.sandbox.server import BackgroundServer

    listener = _listen("127.0.0.1", port)  # before anything: the curls must reach this port
    port = listener.getsockname()[1]
    settings = _settings()
    ctx = _context(settings)
    console.rule("[bold]crmsync demo")
    console.print(f"store: {settings.database_url}")
    company = generate_company(seed=seed, deals=deals)
    shared = company.reps[SHARED_REPS]
    rates = dict(company.currencies)  # before a one-currency org converts the company
    started: list[tuple[str, Sandbox, Any, BackgroundServer]] = []
    try:
        for i, (provider, sandbox) in enumerate(sandboxes().items()):
            # the first CRM's company is the home one; the others share some of its reps
            tenant = company if i == 0 else generate_company(
                seed=seed + i, deals=deals // 2,
                shared_reps=[(r.first_name, r.last_name) for r in shared])
            kwargs: dict[str, Any] = {}
            for option in sandbox.options:
                if option.demo:
                    kwargs.update(option.apply(sandbox_options[_demo_option(provider, option)]))
            sandbox_app_ = sandbox.create_app(tenant, **kwargs)
            server = BackgroundServer(sandbox_app_).start()
            started.append((provider, sandbox, sandbox_app_, server))
            settings.allow_endpoints = ",".join(  # the sandbox may receive the credentials
                filter(None, (settings.allow_endpoints, f"{server.host}:{server.port}")))
            console.print(f"{sandbox.demo_name} on {server.url} "
                          f"({deals if i == 0 else deals // 2:,} deals, seed {seed + i})")
        console.print(f"in every CRM: {', '.join(r.full_name for r in shared)}")
        connections = [(provider, _demo_connection(ctx, provider, server.url), sandbox)
                       for provider, sandbox, _, server in started]
        for _, connection_id, sandbox in connections:
            console.print(f"connection {connection_id}: {sandbox.demo_name}; full sync:")
            if not asyncio.run(run_sync_with_progress(ctx, connection_id, full=True)):
                raise typer.Exit(code=1)
            _print_summary(ctx, connection_id)
        _demo_fx_rates(ctx, settings, rates)
        _demo_goals(ctx, settings)
        key = create_api_key(ctx, "demo admin", ["admin"])
        base = f"http://127.0.0.1:{port}"
        console.print(f"\nadmin API key (shown once): [bold]{key}[/bold]\n")
        q_start, q_end = _this_quarter()
        for call in (f"{base}/api/v1/users", f"{base}/api/v1/deals?status=won&limit=5",
                     f"{base}/api/v1/deals?format=csv",
                     f"{base}/api/v1/metrics/summary?start={q_start}&end={q_end}"
                     "&group_by=owner&sort=-attainment"):
            print(f"curl -H 'Authorization: Bearer {key}' '{call}'")
        console.print(f"\nAPI docs: {base}/docs")
        if no_serve:
            return
        import uvicorn

        from api.app import create_app

        # Live changes: sandboxes that push callbacks without a subscription call the API.
        for (provider, connection_id, _), (_, sandbox, running, _) in zip(
                connections, started, strict=True):
            if sandbox.set_callback_url is not None:
                sandbox.set_callback_url(
                    running, f"{base}/api/v1/webhooks/{provider}/{connection_id}")
        console.print(f"serving the API on {base} (Ctrl+C stops)")
        uvicorn.Server(uvicorn.Config(create_app(settings, ctx=ctx, schedule=True),
                                      log_level="warning")).run(sockets=[listener])
    finally:
        listener.close()
        for *_, server in reversed(started):
            server.stop()


def _demo_option(provider: str, option: SandboxOption) -> str:
    """The demo's parameter for a sandbox option: `--<provider>-<name>`."""
    return f"{provider}_{option.name}".replace("-", "_")


app.command("demo")(_with_parameters(demo, [
    _option_parameter(_demo_option(provider, option), option)
    for provider, sandbox in sandboxes().items() for option in sandbox.options if option.demo]))


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (0: a free port), or one line saying the port is
    taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as exc:
        listener.close()
        raise fail(f"port {port} on {host} is not free ({exc.strerror}): stop what uses it, "
                   "or pass --port with another port (--port 0 picks a free one)") from None
    return listener


def _demo_fx_rates(ctx: JobContext, settings: Settings, rates: dict[str, Decimal]) -> None:
    """The sandbox company's rates into the FX table (home-currency units per 1 of each), so
    the Fxiaoke tenant's CNY reports in the Zoho org's currency. Rates set before are kept."""
    from core.metrics import currency

    with session_scope(ctx.engine) as session:
        reporting = currency.reporting_currency(session, settings)
        known = {r.code for r in currency.list_rates(session)}
        if reporting not in rates:
            return
        for code, per_home in rates.items():
            if code != reporting and code not in known:
                currency.set_rate(session, code, (rates[reporting] / per_home).quantize(
                    Decimal("1e-10")))


def _demo_goals(ctx: JobContext, settings: Settings) -> None:
    """This quarter's bookings goal for every active rep (last quarter's bookings + 10%,
    rounded up to 1,000), pushed into the sandbox's Sales_Goals module; the leaderboard."""
    from rich.table import Table

    from core.goals import targets as goals
    from core.metrics import definitions as metrics
    from workers.jobs import push_goals

    start, end = _this_quarter()
    last_end = start - timedelta(days=1)
    with session_scope(ctx.engine) as session:
        last = metrics.summary(session, start=date(last_end.year, last_end.month - 2, 1),
                               end=last_end, group_by=metrics.GroupBy.OWNER, settings=settings)
        active = {u.email for u in session.scalars(select(User).where(
            col(User.active), col(User.deleted_at).is_(None))) if u.email}
    lines = ["owner_email,metric,period_start,period_end,target"]
    for row in last["data"]:
        if row["owner_email"] in active:
            target = max(Decimal(10_000), -(-row["bookings"] * Decimal("1.1") // 1000) * 1000)
            lines.append(f"{row['owner_email']},bookings,{start},{end},{target:f}")
    with session_scope(ctx.engine) as session:
        done = goals.import_goals(session, "\n".join(lines), settings)
    pushed = asyncio.run(push_goals(ctx))
    counts = "; ".join(f"connection {item['connection_id']}: " + ", ".join(
        f"{n} {s}" for s, n in sorted(item["counts"].items())) for item in pushed["connections"])
    console.print(f"\ngoals for {start} to {end}: {done['created']} new, {done['updated']} "
                  f"changed, {done['unchanged']} as before; pushed to the CRMs' goal objects: "
                  f"{counts}")
    with session_scope(ctx.engine) as session:
        board = metrics.summary(session, start=start, end=end, group_by=metrics.GroupBy.OWNER,
                                settings=settings)
    table = Table(title=f"leaderboard {start} to {end} ({board['currency']})")
    for column in ("rep", "bookings", "goal", "attainment"):
        table.add_column(column, justify="left" if column == "rep" else "right")
    for row in metrics.sort_rows(board["data"], "-attainment", metrics.GroupBy.OWNER):
        if row["goal"] is not None:
            share = f"{row['attainment'] * 100:.1f} %" if row["attainment"] is not None else ""
            table.add_row(row["owner_name"] or row["owner_email"], f"{row['bookings']:,.2f}",
                          f"{row['goal']:,.2f}", share)
    console.print(table)


def _this_quarter() -> tuple[date, date]:
    today = date.today()
    first = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    after = date(first.year + (first.month == 10), (first.month + 2) % 12 + 1, 1)
    return first, after - timedelta(days=1)


def _demo_connection(ctx: JobContext, provider: str, sandbox_url: str) -> int:
    """The demo's connection to a provider's sandbox, pointed at this run's sandbox port."""
    from api.connections import (
        ConnectionInput,
        ConnectionPatch,
        create_connection,
        update_connection,
    )

    sandbox = sandboxes()[provider]
    name, config, secrets = sandbox.demo_name, sandbox.config(sandbox_url), dict(sandbox.secrets)
    with session_scope(ctx.engine) as session:
        existing = session.scalars(
            select(Connection).where(col(Connection.name) == name)).first()
        if existing is None:
            public = create_connection(session, ctx.secrets, ConnectionInput(
                provider=provider, name=name, config=config, secrets=secrets),
                endpoints=ctx.endpoints)
        else:
            public = update_connection(session, ctx.secrets, existing,
                                       ConnectionPatch(config=config, secrets=secrets),
                                       endpoints=ctx.endpoints)
        return int(public["id"])


def _print_summary(ctx: JobContext, connection_id: int) -> None:
    from rich.table import Table

    from core.queries import store_summary

    with session_scope(ctx.engine) as session:
        numbers = store_summary(session, connection_id)
        connection = session.get(Connection, connection_id)
        currency = connection.home_currency if connection else ""
    table = Table(title="synced into the store", show_header=False)
    table.add_row("active reps", f"{numbers['reps']:,}")
    table.add_row("accounts", f"{numbers['accounts']:,}")
    table.add_row("deals", f"{numbers['deals']:,}")
    table.add_row("won deals", f"{numbers['won_deals']:,}")
    won = numbers["won_amount"] or Decimal(0)
    table.add_row("won amount", f"{won:,.2f} {currency}")
    console.print(table)


def main() -> None:
    """The console script: every failure is one line on stderr and exit code 2 (commands
    report their own failures; this boundary catches the rest, never a traceback)."""
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except Exception as exc:  # the boundary: one line, no traceback
        err.print(f"[red]error:[/red] {describe_failure(exc)}", markup=True, highlight=False)
        sys.exit(2)


def describe_failure(exc: BaseException) -> str:
    """One line saying what went wrong and what to do, without secrets."""
    from pydantic import ValidationError
    from redis.exceptions import RedisError
    from sqlalchemy.exc import DBAPIError, NoSuchModuleError, SQLAlchemyError

    from api.app import SchemaNotCurrent

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


if __name__ == "__main__":
    main()
