"""Deal history (docs/evaluation.md): a deal's stages, and every stage change flat for BI;
of the people the caller may see."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import Field

from api.access import Reader
from api.deps import SessionDep
from api.errors import ApiError, invalid
from api.listing import FILES, ApiJSON, Id, ListParams, UtcDatetime, list_response
from api.schemas import Answer
from core.history import STAGE_CHANGE_COLUMNS, ChangeFilters, deal_stages, stage_changes_listing
from core.types import DealStatus

router = APIRouter(tags=["history"])


class StageChangeParams(ListParams):
    since: UtcDatetime | None = Field(
        None, description="changed_at >= this (ISO date or datetime; naive is UTC).")
    until: UtcDatetime | None = Field(
        None, description="changed_at < this (ISO date or datetime; naive is UTC).")
    pipeline: str | None = Field(None, max_length=200, description="The deal's pipeline.")
    owner_person_id: Id | None = Field(None, description="The deal owner's person.")
    connection_id: Id | None = None


class StageChangeRow(Answer):
    id: int
    connection_id: int
    deal_id: int
    deal_remote_id: str
    deal_name: str
    pipeline: str | None
    owner_person_id: int | None
    owner_email: str | None
    owner_name: str | None
    from_stage: str | None = Field(description="Null: the stage the deal was created in.")
    to_stage: str | None
    changed_at: datetime
    source: str = Field(description="sync or webhook (observed by crmsync), crm (the CRM's "
                        "own stage history), seed.")


class StageChangePage(Answer):
    data: list[StageChangeRow]
    next_cursor: str | None


@router.get("/stage-changes", response_model=StageChangePage, responses=FILES,
            summary="Every stage change of live deals, flat and paged (BI), or CSV")
def list_stage_changes(
    request: Request, params: Annotated[StageChangeParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    if params.since and params.until and params.since >= params.until:
        raise invalid("since", "must be before until")
    listing = stage_changes_listing(ChangeFilters(
        since=params.since, until=params.until, pipeline=params.pipeline,
        owner_person_id=params.owner_person_id, connection_id=params.connection_id,
        people=caller.people))
    return list_response(request, session, params, listing, name="stage-changes",
                         columns=STAGE_CHANGE_COLUMNS)


class Stay(Answer):
    stage: str | None
    entered_at: datetime
    left_at: datetime | None = Field(description="Null: the deal is still in the stage.")
    days: float | None = Field(description="Days in the stage (to now while an open deal "
                               "is still in it; null for a won or lost deal's last stage).")


class StageChange(Answer):
    from_stage: str | None
    to_stage: str | None
    changed_at: datetime
    source: str


class DealStages(Answer):
    deal_id: int
    connection_id: int
    remote_id: str
    name: str
    pipeline: str | None
    stage: str | None
    status: DealStatus
    stays: list[Stay]
    changes: list[StageChange]


@router.get("/deals/{deal_id}/stages", response_model=DealStages,
            summary="A deal's stages: how long it stayed in each, and its stage changes")
def get_deal_stages(
    deal_id: Annotated[Id, Path()], session: SessionDep, caller: Reader,
) -> Response:
    found = deal_stages(session, deal_id, people=caller.people)
    if found is None:
        raise ApiError(404, f"deal {deal_id} does not exist")
    return ApiJSON(found)

