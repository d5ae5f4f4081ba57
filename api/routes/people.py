"""People (docs/people.md): who each CRM user is, of the people the caller may see; changes
by admins. Thin over core.people."""

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from api.access import Reader, caller
from api.deps import SessionDep
from api.errors import ApiError, validation_response
from api.listing import (
    FILES,
    ApiJSON,
    Id,
    ListParams,
    csv_response,
    decode_cursor,
    encode_cursor,
    list_response,
    wants_csv,
)
from api.schemas import Answer
from core import people
from core.queries import fetch_page, iter_rows
from core.types import PersonMatch

router = APIRouter(tags=["people"])
ADMIN = Depends(caller("admin"))
CSV_COLUMNS = (*people.PERSON_COLUMNS, "users")


class CrmUser(Answer):
    id: int
    connection_id: int
    remote_id: str
    name: str
    email: str | None
    mobile: str | None
    active: bool
    team: str | None


class PersonUser(CrmUser):
    person_match: PersonMatch | None = Field(
        description="How the user was matched to this person (hand: mapped by an admin).")
    deleted: bool


class PersonPublic(Answer):
    id: int
    name: str
    email: str | None
    mobile: str | None
    team: str | None
    team_set_by_hand: bool
    created_at: datetime
    updated_at: datetime
    users: list[PersonUser]


class PersonPage(Answer):
    data: list[PersonPublic]
    next_cursor: str | None


class UnmatchedUser(CrmUser):
    person_id: int = Field(description="The person of its own the user is in.")


class UnmatchedPage(Answer):
    data: list[UnmatchedUser]
    next_cursor: str | None


class PersonPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320, description="Lower-cased; null clears.")
    mobile: str | None = Field(None, max_length=40, description="Normalized; null clears.")
    team: str | None = Field(None, max_length=200, description=(
        "Set by hand (syncs keep it); null goes back to the team from the CRM."))


class MapUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: Id | None = Field(None, description="The CRM user's id (GET /users).")
    connection_id: Id | None = Field(None, description="Or its connection and remote id.")
    remote_id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def one_way(self) -> "MapUser":
        if self.user_id is None and (self.connection_id is None or not self.remote_id):
            raise ValueError("give user_id, or connection_id and remote_id")
        if self.user_id is not None and (self.connection_id is not None or self.remote_id):
            raise ValueError("give user_id, or connection_id and remote_id, not both")
        return self


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, people.PersonNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, people.PersonConflict):
        return ApiError(409, exc.message)
    return exc


def _change(session: Session, person_id: int, action: Any) -> Response:
    """Run a core change, commit, answer the person; bad input changes nothing."""
    try:
        action()
        session.commit()
    except people.PersonConflict as exc:
        session.rollback()
        raise _translate(exc) from None
    except people.PersonError as exc:
        session.rollback()
        return validation_response([{"field": exc.field, "message": exc.message}])
    except people.PersonNotFound as exc:
        session.rollback()
        raise _translate(exc) from None
    except IntegrityError:  # a concurrent change took the email first
        session.rollback()
        raise ApiError(409, "another person has this email") from None
    return ApiJSON(people.get_person(session, person_id))


@router.get("/people", response_model=PersonPage, responses=FILES,
            summary="People, each with their CRM users")
def list_people(request: Request, params: Annotated[ListParams, Query()],
                session: SessionDep, caller: Reader) -> Response:
    listing = people.people_listing(people=caller.people)
    if wants_csv(request, params.format):  # users as a JSON array in one cell
        rows = people.with_users(session, list(iter_rows(request.app.state.engine, listing)))
        return csv_response(rows, CSV_COLUMNS, name="people", fmt=params.format)
    page, after = fetch_page(session, listing, after=decode_cursor(params.cursor),
                             limit=params.limit)
    return ApiJSON({"data": people.with_users(session, page),
                    "next_cursor": encode_cursor(after) if after is not None else None})


@router.get("/people/unmatched", response_model=UnmatchedPage, responses=FILES,
            summary="CRM users no rule matched to anyone (to map by hand)")
def list_unmatched(request: Request, params: Annotated[ListParams, Query()],
                   session: SessionDep, caller: Reader) -> Response:
    return list_response(request, session, params, people.unmatched_listing(caller.people),
                         name="unmatched-users", columns=people.UNMATCHED_COLUMNS)


@router.get("/people/{person_id}", response_model=PersonPublic)
def get_person(person_id: Id, session: SessionDep, caller: Reader) -> Response:
    caller.check_person(person_id)
    try:
        return ApiJSON(people.get_person(session, person_id))
    except people.PersonNotFound as exc:
        raise _translate(exc) from None


@router.patch("/people/{person_id}", response_model=PersonPublic, dependencies=[ADMIN],
              summary="Change a person's name, email, mobile or team")
def patch_person(person_id: Id, body: PersonPatch, session: SessionDep) -> Response:
    changes = body.model_dump(exclude_unset=True)
    return _change(session, person_id,
                   lambda: people.update_person(session, person_id, changes))


@router.post("/people/{person_id}/users", response_model=PersonPublic, dependencies=[ADMIN],
             summary="Map a CRM user to this person (kept across syncs)")
def map_user(person_id: Id, body: MapUser, session: SessionDep) -> Response:
    return _change(session, person_id, lambda: people.map_user(
        session, person_id, user_id=body.user_id, connection_id=body.connection_id,
        remote_id=body.remote_id))
