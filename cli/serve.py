"""`crmsync serve`: the API server. A module of its own so that `crmsync sync` and
`crmsync worker` do not import the API and the dashboard (about 1 s of CPU a process)."""

from typing import Annotated

import typer
import uvicorn

from api.app import create_app
from cli.context import checked_context
from connectors.registry import secret_field_names
from core.config import get_settings
from core.logs import configure_logging


def serve(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the API (jobs run in-process when no Redis is configured)."""
    settings = get_settings()
    # key, database, schema, Redis: fail here, not inside
    checked_context(settings).engine.dispose()
    configure_logging(settings, secret_field_names())
    uvicorn.run(create_app(settings, schedule=True), host=host, port=port, log_config=None)
