"""The one way a job opens a connector: load the connection, decrypt its secrets,
validate config and secrets with the provider's models, build the ApiClient (the job
context's limits, endpoint policy and retry policy, keyed by connection) and instantiate
the connector. Sync, webhook processing, channel renewal and goal push all use it.

Within a process, a connection's decrypted and validated settings are kept while its stored
row is unchanged (LOADED_MAX connections; the row is read by every job, so new secrets or
config are used by the next job), and its HTTP clients are reused (the job context's
connectors.http.ClientPool, keyed by the connection and that version of its row)."""

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy import bindparam, select
from sqlmodel import Session

from connectors.base import Connector
from connectors.http import KEEPALIVE_SECONDS, ApiClient, build_client
from connectors.registry import get_connector
from core.db import session_scope
from core.errors import ConfigError
from core.models import Connection, table_of
from workers.context import JobContext


@dataclass(frozen=True)
class LoadedConnection:
    """A connection's provider class with its validated config and decrypted secrets."""

    connection_id: int
    provider: str
    name: str
    cls: type[Connector]
    config: BaseModel
    secrets: BaseModel = field(repr=False)
    version: str = field(default="", repr=False)
    """A digest of the stored row it came from (provider, name, config, sealed secrets)."""


LOADED_MAX = 1024
"""Connections whose decrypted settings a process keeps (JobContext.loaded)."""


def load_connection(ctx: JobContext, connection_id: int,
                    session: Session | None = None) -> LoadedConnection:
    """Read, decrypt and validate a connection (in `session` when given: a job that reads
    more in the same transaction). Raises ConfigError (no such connection, secrets that do
    not decrypt, settings its provider's models refuse: said without the values, which may
    be secrets) or UnknownProvider (a LookupError): a connection that cannot be opened,
    whatever the CRM says."""
    if session is None:
        with session_scope(ctx.engine) as own:
            return load_connection(ctx, connection_id, own)
    row = session.execute(_CONNECTION_SELECT, {"id": connection_id}).first()
    if row is None:
        raise ConfigError(f"connection {connection_id} does not exist")
    provider, name, config, sealed = row.provider, row.name, dict(row.config or {}), \
        row.secrets_encrypted
    version = _version(provider, name, config, sealed)
    known = ctx.loaded.get(connection_id)
    if isinstance(known, LoadedConnection) and known.version == version:
        return known
    secrets = ctx.secrets.open(sealed, f"connection {connection_id} ({name})")
    cls = get_connector(provider)
    try:
        loaded = LoadedConnection(connection_id, provider, name, cls,
                                  cls.config_model.model_validate(config),
                                  cls.secrets_model.model_validate(secrets), version)
    except ValidationError as exc:
        raise ConfigError(settings_errors(exc)) from None
    ctx.loaded.pop(connection_id, None)
    while len(ctx.loaded) >= LOADED_MAX:  # the oldest first
        del ctx.loaded[next(iter(ctx.loaded))]
    ctx.loaded[connection_id] = loaded
    return loaded


_CONNECTION = table_of(Connection)
_CONNECTION_SELECT = select(
    _CONNECTION.c.provider, _CONNECTION.c.name, _CONNECTION.c.config,
    _CONNECTION.c.secrets_encrypted).where(_CONNECTION.c.id == bindparam("id"))
"""load_connection's read, built once (every job runs it)."""


def _version(provider: str, name: str, config: dict[str, Any], sealed: str) -> str:
    row = orjson.dumps([provider, name, config, sealed], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(row).hexdigest()


def settings_errors(error: ValidationError) -> str:
    """A settings model's errors without the values given (they may be secrets)."""
    return "invalid connection settings: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False))


@asynccontextmanager
async def open_connector(ctx: JobContext,
                         connection: int | LoadedConnection) -> AsyncIterator[Connector]:
    """`async with open_connector(ctx, connection_id) as source:` a connector of the
    connection, its HTTP client given back to the job context's pool when the block ends
    (the next job of the connection reuses it). Pass a LoadedConnection (from
    load_connection) to handle a connection that cannot be opened before any HTTP."""
    loaded = (connection if isinstance(connection, LoadedConnection)
              else load_connection(ctx, connection))
    key = (loaded.connection_id, loaded.version)
    async with ctx.clients.lease(key, lambda: build_client(
            transport=ctx.transport, timeout=ctx.http_timeout,
            keepalive=KEEPALIVE_SECONDS)) as client:
        api = ApiClient(client, max_in_flight=loaded.cls.max_in_flight, retry=ctx.retry,
                        limits=ctx.limits, key=f"connection:{loaded.connection_id}",
                        endpoints=ctx.endpoints)
        yield loaded.cls(loaded.config, loaded.secrets, api)


__all__ = ["LoadedConnection", "load_connection", "open_connector", "settings_errors"]
