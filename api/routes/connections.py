"""Connections to CRMs (admin). Secrets are write-only: responses name them, never show them."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from api.access import caller
from api.connections import (
    BackfillState,
    ConnectionInput,
    ConnectionPatch,
    ConnectionPublic,
    InvalidSettings,
    NameTaken,
    backfill_state,
    create_connection,
    public_connection,
    update_connection,
)
from api.deps import JobsDep, SecretBoxDep, SessionDep, SettingsDep
from api.errors import ApiError
from api.listing import FILES, Id, ListParams, list_response
from api.schemas import Answer
from connectors.endpoints import EndpointPolicy
from connectors.registry import capabilities
from core.models import Connection
from core.queries import connections_listing
from core.security import SecretsUnreadable
from core.types import SyncMode
from workers.jobs import remove_channels

router = APIRouter(
    prefix="/connections", tags=["connections"], dependencies=[Depends(caller("admin"))]
)


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal[SyncMode.INCREMENTAL, SyncMode.FULL] = SyncMode.INCREMENTAL


class SyncAccepted(Answer):
    run_id: int


class BackfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restart: bool = Field(False, description="Read every deal again, not only the deals "
                          "after where the last backfill stopped.")


class BackfillAccepted(Answer):
    connection_id: int
    restart: bool
    backfill: BackfillState


class ConnectionPage(Answer):
    data: list[ConnectionPublic]
    next_cursor: str | None


@router.post("", status_code=201, response_model=ConnectionPublic)
async def add_connection(body: ConnectionInput, session: SessionDep, box: SecretBoxDep,
                         jobs: JobsDep, settings: SettingsDep) -> Any:
    def add() -> dict[str, Any]:
        with _translated(session):
            public = create_connection(
                session, box, body, endpoints=EndpointPolicy.parse(settings.allow_endpoints))
            session.commit()
        return public

    public = await run_in_threadpool(add)
    await _subscribe(jobs, settings, public["id"])
    return public


@router.get("", response_model=ConnectionPage, responses=FILES, summary="List connections")
def list_connections(
    request: Request, params: Annotated[ListParams, Query()], session: SessionDep,
    box: SecretBoxDep,
) -> Response:
    return list_response(
        request, session, params, connections_listing(), name="connections",
        columns=ConnectionPublic.model_fields, public=lambda row: public_connection(row, box),
    )


@router.get("/{connection_id}", response_model=ConnectionPublic)
def get_connection(connection_id: Id, session: SessionDep, box: SecretBoxDep) -> Any:
    return public_connection(get_or_404(session, connection_id).model_dump(), box)


@router.patch("/{connection_id}", response_model=ConnectionPublic)
async def patch_connection(
    connection_id: Id, body: ConnectionPatch, session: SessionDep, box: SecretBoxDep,
    jobs: JobsDep, settings: SettingsDep,
) -> Any:
    def patch() -> dict[str, Any]:
        connection = get_or_404(session, connection_id)
        with _translated(session):
            public = update_connection(
                session, box, connection, body,
                endpoints=EndpointPolicy.parse(settings.allow_endpoints))
            session.commit()
        return public

    public = await run_in_threadpool(patch)
    if body.config is not None or body.secrets is not None:  # maybe another org now
        await _subscribe(jobs, settings, connection_id)
    return public


async def _subscribe(jobs: JobsDep, settings: SettingsDep, connection_id: int) -> None:
    """Subscribe a new or changed connection to its CRM's notifications at once (with
    CRMSYNC_PUBLIC_URL set) instead of at the next hourly renewal."""
    if settings.public_url:
        await jobs.enqueue_channels(connection_id)


@router.delete("/{connection_id}", status_code=204, summary="Delete a connection and its data")
async def delete_connection(connection_id: Id, request: Request,
                            session: SessionDep) -> Response:
    await run_in_threadpool(get_or_404, session, connection_id)
    await remove_channels(request.app.state.ctx, connection_id)  # the CRM stops calling

    def delete() -> None:
        session.delete(get_or_404(session, connection_id))  # its rows: docs/architecture.md
        session.commit()

    await run_in_threadpool(delete)
    return Response(status_code=204)


@router.post("/{connection_id}/sync", status_code=202, response_model=SyncAccepted)
async def start_sync(
    connection_id: Id, session: SessionDep, jobs: JobsDep, body: SyncRequest | None = None
) -> SyncAccepted:
    await run_in_threadpool(get_or_404, session, connection_id)
    run_id = await jobs.enqueue_sync(connection_id, (body or SyncRequest()).mode)
    return SyncAccepted(run_id=run_id)


@router.post("/{connection_id}/stage-history/backfill", status_code=202,
             response_model=BackfillAccepted,
             summary="Queue the backfill of deals' stage history from the CRM")
async def start_backfill(connection_id: Id, session: SessionDep, jobs: JobsDep,
                         body: BackfillRequest | None = None) -> BackfillAccepted:
    """Read each deal's stage history from a CRM that keeps it (docs/evaluation.md); it
    resumes where the last one stopped unless `restart`. 409 while one is queued or
    running; 422 for a provider without stage history."""
    await run_in_threadpool(_with_stage_history, session, connection_id)
    restart = (body or BackfillRequest()).restart
    if not await jobs.enqueue_backfill(connection_id, restart):
        raise ApiError(409, f"a stage history backfill of connection {connection_id} is "
                       "already queued or running; GET .../stage-history shows its progress")
    state = await backfill_state(session, jobs, connection_id)
    return BackfillAccepted(connection_id=connection_id, restart=restart, backfill=state)


@router.get("/{connection_id}/stage-history", response_model=BackfillState,
            summary="Where the connection's stage history backfill stands")
async def get_backfill(connection_id: Id, session: SessionDep, jobs: JobsDep) -> BackfillState:
    await run_in_threadpool(_with_stage_history, session, connection_id)
    return await backfill_state(session, jobs, connection_id)


def _with_stage_history(session: Session, connection_id: int) -> Connection:
    connection = get_or_404(session, connection_id)
    if "stage_history" not in capabilities(connection.provider):
        raise ApiError(422, f"provider {connection.provider!r} keeps no stage history crmsync "
                       "can read: its deals' history is the stage changes syncs and webhooks "
                       "observe (docs/evaluation.md)")
    return connection


def get_or_404(session: Session, connection_id: int) -> Connection:
    connection = session.get(Connection, connection_id)
    if connection is None:
        raise ApiError(404, f"connection {connection_id} does not exist")
    return connection


@contextmanager
def _translated(session: Session) -> Iterator[None]:
    """Maps the service's errors to HTTP: bad settings 422, a taken name 409."""
    try:
        yield
    except InvalidSettings as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors]
        raise RequestValidationError(errors) from None
    except SecretsUnreadable as exc:
        raise ApiError(409, str(exc)) from None
    except (NameTaken, IntegrityError) as exc:
        session.rollback()
        message = str(exc) if isinstance(exc, NameTaken) else "the name is already taken"
        raise ApiError(409, message) from None
