"""The one way a job opens a connector: load the connection, decrypt its secrets,
validate config and secrets with the provider's models, build the ApiClient (the job
context's limits, endpoint policy and retry policy, keyed by connection) and instantiate
the connector. Sync, webhook processing, channel renewal and goal push all use it."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from connectors.base import Connector
from connectors.http import ApiClient, build_client
from connectors.registry import get_connector
from core.db import session_scope
from core.errors import ConfigError
from core.models import Connection
from workers.context import JobContext


@dataclass(frozen=True)
class LoadedConnection:
    """A connection's provider class with its validated config and decrypted secrets."""

    connection_id: int
    provider: str
    name: str
    cls: type[Connector]
    config: BaseModel
    secrets: BaseModel


def load_connection(ctx: JobContext, connection_id: int) -> LoadedConnection:
    """Read, decrypt and validate a connection. Raises ConfigError (no such connection,
    secrets that do not decrypt, settings its provider's models refuse: said without the
    values, which may be secrets) or UnknownProvider (a LookupError): a connection that
    cannot be opened, whatever the CRM says."""
    with session_scope(ctx.engine) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise ConfigError(f"connection {connection_id} does not exist")
        provider, name, config = connection.provider, connection.name, dict(connection.config)
        secrets = ctx.secrets.open(connection.secrets_encrypted,
                                   f"connection {connection.id} ({connection.name})")
    cls = get_connector(provider)
    try:
        return LoadedConnection(connection_id, provider, name, cls,
                                cls.config_model.model_validate(config),
                                cls.secrets_model.model_validate(secrets))
    except ValidationError as exc:
        raise ConfigError(settings_errors(exc)) from None


def settings_errors(error: ValidationError) -> str:
    """A settings model's errors without the values given (they may be secrets)."""
    return "invalid connection settings: " + "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
        for e in error.errors(include_input=False, include_url=False))


@asynccontextmanager
async def open_connector(ctx: JobContext,
                         connection: int | LoadedConnection) -> AsyncIterator[Connector]:
    """`async with open_connector(ctx, connection_id) as source:` a connector of the
    connection, its HTTP client closed when the block ends. Pass a LoadedConnection (from
    load_connection) to handle a connection that cannot be opened before any HTTP."""
    loaded = (connection if isinstance(connection, LoadedConnection)
              else load_connection(ctx, connection))
    async with build_client(transport=ctx.transport, timeout=ctx.http_timeout) as client:
        api = ApiClient(client, max_in_flight=loaded.cls.max_in_flight, retry=ctx.retry,
                        limits=ctx.limits, key=f"connection:{loaded.connection_id}",
                        endpoints=ctx.endpoints)
        yield loaded.cls(loaded.config, loaded.secrets, api)


__all__ = ["LoadedConnection", "load_connection", "open_connector", "settings_errors"]
