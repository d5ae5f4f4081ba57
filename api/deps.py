"""Dependencies as Annotated aliases: a session, settings, the job queue; the API-key check
(callers, keys or signed-in users: api.access)."""

from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Annotated, Any, Protocol

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session, select

from api.errors import ApiError
from core.config import Settings
from core.db import session_scope
from core.models import ApiKey
from core.security import SecretBox, has_scope, hash_api_key
from core.types import SyncMode, utcnow

LAST_USED_RESOLUTION = timedelta(minutes=1)
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer csk_...`")


class JobQueue(Protocol):
    """What the API needs from a job runner (in-process now; arq when Redis is set)."""

    async def enqueue_sync(self, connection_id: int, mode: SyncMode) -> int:
        """Queue a sync of the connection; returns the sync_run id."""
        ...

    async def enqueue_webhooks(self, connection_id: int) -> None:
        """Have the connection's stored webhook events processed."""
        ...

    async def enqueue_channels(self, connection_id: int) -> None:
        """Subscribe the connection to its CRM's notifications (or renew) soon."""
        ...

    async def enqueue_backfill(self, connection_id: int, restart: bool = False) -> bool:
        """Queue the connection's stage history backfill; False when one is queued or
        running already."""
        ...

    async def backfill_running(self, connection_id: int) -> bool:
        """Whether the connection's stage history backfill is queued or running."""
        ...

    async def enqueue_push_goals(self, connection_id: int | None = None,
                                 people: Collection[int] | None = None) -> dict[str, Any]:
        """Push goals (to one connection or all; of `people` only unless None) as a job;
        returns the per-goal results."""
        ...

    async def close(self) -> None:
        """Stop (on shutdown)."""
        ...


def get_engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def get_session(request: Request) -> Iterator[Session]:
    """A session for the request; the route owns the transaction (commits what it writes)."""
    with Session(get_engine(request), expire_on_commit=False) as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_secret_box(request: Request) -> SecretBox:
    box: SecretBox = request.app.state.secrets
    return box


def get_jobs(request: Request) -> JobQueue:
    jobs: JobQueue = request.app.state.jobs
    return jobs


SessionDep = Annotated[Session, Depends(get_session)]
EngineDep = Annotated[Engine, Depends(get_engine)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SecretBoxDep = Annotated[SecretBox, Depends(get_secret_box)]
JobsDep = Annotated[JobQueue, Depends(get_jobs)]


def _unauthorized(message: str) -> ApiError:
    return ApiError(401, message, headers={"WWW-Authenticate": "Bearer"})


def check_key(engine: Engine, credentials: HTTPAuthorizationCredentials | None,
              scope: str) -> ApiKey:
    """The API key of `credentials` if it holds `scope`; 401 or 403 otherwise."""
    if credentials is None:
        raise _unauthorized("an API key is required: send Authorization: Bearer <key>")
    with session_scope(engine) as session:  # its own short transaction
        key = session.exec(
            select(ApiKey).where(ApiKey.key_hash == hash_api_key(credentials.credentials))
        ).first()
        if key is None or key.revoked_at is not None:
            raise _unauthorized("the API key is unknown or revoked")
        if not has_scope(key.scopes, scope):
            raise ApiError(403, f"this API key lacks the {scope!r} scope")
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            key.last_used_at = now
        return key
