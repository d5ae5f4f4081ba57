"""`crmsync connections ...`: add, list, show, update, delete and test CRM connections."""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlmodel import Session, col

from api.connections import (
    ConnectionInput,
    ConnectionPatch,
    create_connection,
    public_connection,
    update_connection,
    validated,
)
from cli.context import checked_context
from cli.output import console, err, fail, when
from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, RetryPolicy, build_client
from connectors.registry import UnknownProvider, get_connector, providers
from core.config import Settings
from core.db import session_scope
from core.errors import SourceError
from core.models import Connection
from workers.context import JobContext
from workers.jobs import remove_channels, renew_channels

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


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


def _endpoints(settings: Settings) -> EndpointPolicy:
    return EndpointPolicy.parse(settings.allow_endpoints)


def _check(ctx: JobContext, provider: str, config: dict[str, Any],
           secrets: dict[str, Any], key: str, *, saving: bool = False) -> Any:
    """Authenticate and read the organization with the connector's check(): one attempt
    per call and a short timeout, so an unreachable CRM fails in seconds. Returns the
    SourceInfo; a failure is one line naming the host and the reason."""
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
        outcome = asyncio.run(renew_channels(ctx, connection_id=connection_id))
        if outcome["failed"]:
            typer.echo("CRM notifications not subscribed yet (see the log); the hourly "
                       "renewal tries again.", err=True)


@app.command("add")
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
    ctx = checked_context()
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


@app.command("list")
def connections_list() -> None:
    """Connections: provider, name, status, secrets set, last sync and error."""
    ctx = checked_context()
    table = Table(title="connections")
    for column in ("id", "provider", "name", "status", "secrets set", "last sync", "error"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for connection in session.scalars(select(Connection).order_by(col(Connection.id))):
            row = public_connection(connection.model_dump(), ctx.secrets)
            table.add_row(str(row["id"]), row["provider"], row["name"], row["status"],
                          ", ".join(row["secrets_set"]), when(connection.last_synced_at),
                          row["last_error"] or "")
    console.print(table)


@app.command("show")
def connections_show(connection_id: Annotated[int, typer.Argument(help="The connection's id.")]
                     ) -> None:
    """A connection as JSON (the names of its secrets, never their values)."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        public = public_connection(_connection(session, connection_id).model_dump(), ctx.secrets)
    console.print_json(json.dumps(public, default=str))


@app.command("update")
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
    ctx = checked_context()
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


@app.command("delete")
def connections_delete(
    connection_id: Annotated[int, typer.Argument(help="The connection's id.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a connection and everything synced from it."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        name = _connection(session, connection_id).name
    if not yes and not typer.confirm(
            f"delete connection {connection_id} ({name}) and all its synced data?"):
        raise fail("nothing deleted")
    asyncio.run(remove_channels(ctx, connection_id))  # the CRM stops calling us
    with session_scope(ctx.engine) as session:
        session.delete(_connection(session, connection_id))  # synced rows: ON DELETE CASCADE
    console.print(f"connection {connection_id} ({name}) deleted")


@app.command("test")
def connections_test(connection_id: Annotated[int, typer.Argument(help="The connection's id.")]
                     ) -> None:
    """Authenticate with the stored credentials and read the organization: prints the
    organization, home currency and any warnings."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        connection = _connection(session, connection_id)
        secrets = ctx.secrets.open(connection.secrets_encrypted,
                                   f"connection {connection.id} ({connection.name})")
        provider, config = connection.provider, dict(connection.config)
    _print_check(_check(ctx, provider, config, secrets, str(connection_id)))
