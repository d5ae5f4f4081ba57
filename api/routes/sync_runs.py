"""Sync runs: what each sync did (status, per-stream counts, api_calls, error)."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from api.access import caller
from api.deps import SessionDep
from api.errors import ApiError
from api.listing import FILES, ApiJSON, Id, ListParams, list_response
from api.routes.connections import get_or_404
from api.schemas import Answer
from core.models import SyncRun
from core.queries import SYNC_RUN_COLUMNS, sync_run_row, sync_runs_listing
from core.types import RunStatus, SyncMode

router = APIRouter(tags=["sync runs"], dependencies=[Depends(caller("admin"))])


class SyncRunPublic(Answer):
    id: int
    connection_id: int
    mode: SyncMode
    status: RunStatus
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, Any] | None
    api_calls: int
    error: str | None


class SyncRunPage(Answer):
    data: list[SyncRunPublic]
    next_cursor: str | None


class SyncRunParams(ListParams):
    status: RunStatus | None = None


class AllSyncRunParams(SyncRunParams):
    connection_id: Id | None = None


@router.get("/sync-runs", response_model=SyncRunPage, responses=FILES,
            summary="Recent sync runs, newest first")
def list_sync_runs(
    request: Request, params: Annotated[AllSyncRunParams, Query()], session: SessionDep
) -> Response:
    listing = sync_runs_listing(connection_id=params.connection_id, status=params.status)
    return list_response(request, session, params, listing, name="sync-runs",
                         columns=SYNC_RUN_COLUMNS)


@router.get("/sync-runs/{run_id}", response_model=SyncRunPublic)
def get_sync_run(run_id: Id, session: SessionDep) -> Response:
    run = session.get(SyncRun, run_id)
    if run is None:
        raise ApiError(404, f"sync run {run_id} does not exist")
    return ApiJSON(sync_run_row(run))


@router.get("/connections/{connection_id}/sync-runs", response_model=SyncRunPage,
            responses=FILES, summary="Sync runs of a connection, newest first")
def list_connection_sync_runs(
    connection_id: Id, request: Request, params: Annotated[SyncRunParams, Query()],
    session: SessionDep,
) -> Response:
    get_or_404(session, connection_id)
    listing = sync_runs_listing(connection_id=connection_id, status=params.status)
    return list_response(request, session, params, listing, name="sync-runs",
                         columns=SYNC_RUN_COLUMNS)
