"""What a job needs, built once per process (API lifespan, worker startup, CLI)."""

from dataclasses import dataclass, field

import httpx
from sqlalchemy import Engine

from connectors.http import RetryPolicy
from core.config import Settings
from core.security import SecretBox


@dataclass
class JobContext:
    settings: Settings
    engine: Engine
    secrets: SecretBox
    transport: httpx.AsyncBaseTransport | None = None
    """Tests and the demo may route CRM calls to an in-process sandbox."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)
