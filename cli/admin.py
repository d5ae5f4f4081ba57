"""Administration: the database schema, the secret keys and the API keys."""

from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy import select
from sqlmodel import col

from cli.context import checked_context
from cli.output import console, fail, when
from core import apikeys
from core.config import get_settings
from core.db import make_engine, session_scope, upgrade
from core.models import ApiKey
from core.security import parse_scopes, rotate_secrets
from workers.context import JobContext

db_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
keys_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
apikey_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the database migrations and say which."""
    before, after = upgrade(make_engine(get_settings().database_url))
    if before == after:
        console.print(f"database already at {after}")
    else:
        console.print(f"database upgraded from {before or 'empty'} to {after}")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored secret with the first key of CRMSYNC_SECRET_KEY (all keys
    listed there decrypt), in one transaction; then the other keys can be removed."""
    ctx = checked_context()
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
    ctx = checked_context()
    try:
        print(create_api_key(ctx, name, scopes))
    except ValueError as exc:  # a blank name
        raise fail(str(exc)) from None


@apikey_app.command("list")
def apikey_list() -> None:
    """API keys (name, prefix, scopes, last use; never the keys themselves)."""
    ctx = checked_context()
    table = Table(title="API keys")
    for column in ("id", "name", "prefix", "scopes", "created", "last used", "revoked"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for key in session.scalars(select(ApiKey).order_by(col(ApiKey.id))):
            table.add_row(str(key.id), key.name, key.prefix, key.scopes, when(key.created_at),
                          when(key.last_used_at), when(key.revoked_at))
    console.print(table)


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[int, typer.Argument(help="The key's id (apikey list).")]
                  ) -> None:
    """Revoke an API key: it is refused from now on."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        try:
            key = apikeys.revoke_key(session, key_id)
        except apikeys.KeyNotFound:
            raise fail(f"API key {key_id} does not exist; see `crmsync apikey list`") from None
    console.print(f"API key {key_id} ({key.name}) is revoked")


def create_api_key(ctx: JobContext, name: str, scopes: list[str]) -> str:
    with session_scope(ctx.engine) as session:
        _, key = apikeys.create_key(session, name=name, scopes=scopes)
    return key
