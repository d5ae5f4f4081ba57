"""Synced records: users (reps), accounts, stages, deals and activities, with filters;
users, accounts, deals and activities of the people the caller may see."""

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from api.access import Reader
from api.deps import SessionDep
from api.errors import ApiError, invalid
from api.listing import FILES, Id, ListParams, UtcDatetime, list_response
from api.schemas import Answer, Number
from core.queries import ROW_COLUMNS, RecordFilters, records_listing
from core.types import ActivityType, DealStatus

router = APIRouter(tags=["records"])


class RecordParams(ListParams):
    connection_id: Id | None = None
    modified_since: UtcDatetime | None = Field(
        None, description="remote_modified_at >= this (ISO date or datetime; naive is UTC)."
    )
    include_deleted: bool = Field(False, description="Include tombstoned rows.")


class OwnedParams(RecordParams):
    owner_email: str | None = Field(None, max_length=320, description="Case-insensitive.")


class PersonOwnedParams(OwnedParams):
    owner_person_id: Id | None = Field(None, description="The owner's person (GET /people).")


class DealParams(PersonOwnedParams):
    status: DealStatus | None = None
    close_from: date | None = Field(None, description="close_date >= this (inclusive).")
    close_to: date | None = Field(None, description="close_date <= this (inclusive).")


class ActivityParams(PersonOwnedParams):
    type: ActivityType | None = None
    date_from: date | None = Field(None, description="activity_date >= this (inclusive).")
    date_to: date | None = Field(None, description="activity_date <= this (inclusive).")
    deal_remote_id: str | None = Field(
        None, max_length=100, description="Activities of this deal (with connection_id).")


class UserRow(Answer):
    id: int
    connection_id: int
    remote_id: str
    name: str
    email: str | None
    active: bool
    team: str | None
    deleted: bool


class AccountRow(Answer):
    id: int
    connection_id: int
    remote_id: str
    name: str
    industry: str | None
    owner_email: str | None
    owner_name: str | None
    owner_person_id: int | None
    remote_created_at: datetime | None
    remote_modified_at: datetime | None
    deleted: bool


class StageRow(Answer):
    id: int
    connection_id: int
    remote_id: str
    pipeline: str | None
    name: str
    sort_order: int
    probability: Number | None
    category: DealStatus
    deleted: bool


class DealRow(Answer):
    id: int
    connection_id: int
    remote_id: str
    name: str
    amount: Number | None = Field(description="Exact decimal number.")
    currency: str | None
    amount_home: Number | None = Field(description="In the connection's home currency.")
    stage: str | None
    status: DealStatus
    probability: Number | None
    close_date: date | None
    remote_created_at: datetime | None
    remote_modified_at: datetime | None
    owner_email: str | None
    owner_name: str | None
    owner_person_id: int | None
    account_remote_id: str | None
    account_name: str | None
    pipeline: str | None
    deleted: bool


class ActivityRow(Answer):
    id: int
    connection_id: int
    remote_id: str
    type: ActivityType
    kind: str | None = Field(description="The CRM's own type, as it names it.")
    subject: str | None
    occurred_at: datetime | None = Field(
        description="When it happened or is due (a task's due date at 00:00 UTC).")
    activity_date: date | None = Field(description="occurred_at's date in the store's zone.")
    done: bool | None = Field(description="Held / completed; null when the CRM does not say.")
    completed_at: datetime | None
    duration_seconds: int | None
    owner_email: str | None
    owner_name: str | None
    owner_person_id: int | None
    deal_remote_id: str | None = Field(
        description="Joins deals on (connection_id, deal_remote_id = remote_id).")
    account_remote_id: str | None
    remote_created_at: datetime | None
    remote_modified_at: datetime | None
    deleted: bool


class UserPage(Answer):
    data: list[UserRow]
    next_cursor: str | None


class AccountPage(Answer):
    data: list[AccountRow]
    next_cursor: str | None


class StagePage(Answer):
    data: list[StageRow]
    next_cursor: str | None


class DealPage(Answer):
    data: list[DealRow]
    next_cursor: str | None


class ActivityPage(Answer):
    data: list[ActivityRow]
    next_cursor: str | None


ROW_MODELS: dict[str, type[BaseModel]] = {
    "users": UserRow, "accounts": AccountRow, "stages": StageRow, "deals": DealRow,
    "activities": ActivityRow,
}


def _records(stream: str, request: Request, session: Session, params: RecordParams,
             people: frozenset[int] | None = None) -> Response:
    filters = RecordFilters(people=people, **{
        name: getattr(params, name)
        for name in RecordFilters.__dataclass_fields__
        if name in type(params).model_fields
    })
    if filters.close_from and filters.close_to and filters.close_from > filters.close_to:
        raise invalid("close_from", "must not be after close_to")
    if filters.date_from and filters.date_to and filters.date_from > filters.date_to:
        raise invalid("date_from", "must not be after date_to")
    try:
        listing = records_listing(stream, filters)
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    return list_response(request, session, params, listing, name=stream,
                         columns=ROW_COLUMNS[stream])


@router.get("/users", response_model=UserPage, responses=FILES,
            summary="Sales reps (owner_email matches email)")
def list_users(
    request: Request, params: Annotated[OwnedParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    return _records("users", request, session, params, caller.people)


@router.get("/accounts", response_model=AccountPage, responses=FILES, summary="Accounts")
def list_accounts(
    request: Request, params: Annotated[PersonOwnedParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    return _records("accounts", request, session, params, caller.people)


@router.get("/stages", response_model=StagePage, responses=FILES, summary="Pipeline stages")
def list_stages(
    request: Request, params: Annotated[RecordParams, Query()], session: SessionDep,
    _caller: Reader,
) -> Response:
    return _records("stages", request, session, params)


@router.get("/deals", response_model=DealPage, responses=FILES, summary="Deals")
def list_deals(
    request: Request, params: Annotated[DealParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    return _records("deals", request, session, params, caller.people)


@router.get("/activities", response_model=ActivityPage, responses=FILES,
            summary="Activities: calls, meetings, tasks, emails, notes")
def list_activities(
    request: Request, params: Annotated[ActivityParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    return _records("activities", request, session, params, caller.people)
