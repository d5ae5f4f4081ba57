"""The Connector protocol every CRM plugin implements, and the types it shares.

A connector is built per sync run from a connection's validated config and
secrets, and an ApiClient (connectors/http.py) that it never builds itself.
"""

from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from connectors.http import ApiClient
from core.errors import AuthError, ConfigError, RateLimited, SourceError, TransientError
from core.records import (
    STREAMS,
    AccountRecord,
    DealRecord,
    Deletion,
    Page,
    SourceInfo,
    StageRecord,
    UserRecord,
)

__all__ = [
    "STREAMS",
    "AccountRecord",
    "ApiClient",
    "AuthError",
    "ConfigError",
    "Connector",
    "DealRecord",
    "Deletion",
    "Page",
    "RateLimited",
    "SourceError",
    "SourceInfo",
    "StageRecord",
    "TransientError",
    "UserRecord",
]


class Connector(Protocol):
    """A CRM plugin. Registered under the entry-point group `crmsync.connectors`."""

    name: ClassVar[str]
    """Entry-point name, also the connection's `provider`."""
    config_model: ClassVar[type[BaseModel]]
    """Non-secret per-connection settings, validated when a connection is saved."""
    secrets_model: ClassVar[type[BaseModel]]
    """Credentials, stored encrypted and never echoed."""
    max_in_flight: ClassVar[int]
    """Cap on concurrent requests for one connection (the vendor's concurrency budget)."""

    def __init__(self, config: Any, secrets: Any, api: ApiClient) -> None: ...

    @property
    def api_calls(self) -> int: ...

    async def check(self) -> SourceInfo:
        """Authenticate and read the account's basics (home currency). Raises AuthError."""
        ...

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        """Pages of a stream (users, stages, accounts, deals, deletions) from a cursor."""
        ...
