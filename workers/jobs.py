"""Job functions. The same functions run under the in-process runner and under arq."""

import logging
from typing import Any

from connectors.http import ApiClient, build_client
from connectors.registry import get_connector
from core import store
from core.db import session_scope
from core.errors import ConfigError
from core.models import Connection
from core.sync import ProgressFn, SyncEngine
from core.types import utcnow
from workers.context import JobContext

log = logging.getLogger("crmsync.jobs")


async def sync_connection(
    ctx: JobContext,
    *,
    connection_id: int,
    run_id: int,
    mode: str,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Sync one connection into the store; the run row records the outcome."""
    try:
        with session_scope(ctx.engine) as session:
            connection = session.get(Connection, connection_id)
            if connection is None:
                raise ConfigError(f"connection {connection_id} does not exist")
            provider, config = connection.provider, dict(connection.config)
            secrets = ctx.secrets.open(connection.secrets_encrypted)
        cls = get_connector(provider)
        config_model = cls.config_model.model_validate(config)
        secrets_model = cls.secrets_model.model_validate(secrets)
    except (ConfigError, ValueError, LookupError) as exc:
        with session_scope(ctx.engine) as session:
            store.update_run(
                session, run_id, status="failed", finished_at=utcnow(), error=f"cannot start: {exc}"
            )
        raise
    async with build_client(transport=ctx.transport, timeout=ctx.http_timeout) as client:
        api = ApiClient(client, max_in_flight=cls.max_in_flight, retry=ctx.retry)
        source = cls(config_model, secrets_model, api)
        engine = SyncEngine(
            ctx.engine,
            source,
            connection_id=connection_id,
            run_id=run_id,
            mode=mode,
            progress=progress,
        )
        log.info("sync started", extra={"connection_id": connection_id, "run_id": run_id})
        summary = await engine.run()
        log.info(
            "sync finished",
            extra={"connection_id": connection_id, "run_id": run_id, "api_calls": api.api_calls},
        )
        return summary
