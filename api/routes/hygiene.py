"""Sales hygiene (docs/evaluation.md#hygiene): the open deals that break a rule, each with
its page in the CRM, and their counts per rep and team, of the people the caller may
see; the rules' settings (changed by admins)."""

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.access import Admin, Reader
from api.connections import crm_links
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, invalid
from api.listing import FILES, ApiJSON, Id, ListParams, list_response
from api.schemas import Answer, Number
from core.hygiene import (
    ITEM_COLUMNS,
    RULES,
    HygieneError,
    hygiene_items,
    hygiene_summary,
    rules,
    set_rule,
    spec_of,
)

router = APIRouter(tags=["hygiene"])

RULE_HELP = f"A rule's key: {', '.join(RULES)}."
TEAM_HELP = "The deals of a team's people (GET /people: team)."


class HygieneParams(ListParams):
    owner_person_id: Id | None = Field(None, description="The deal owner's person.")
    team: str | None = Field(None, max_length=200, description=TEAM_HELP)
    rule: str | None = Field(None, max_length=40, description=RULE_HELP + " Default: any.")
    connection_id: Id | None = None


class HygieneItem(Answer):
    id: int
    connection_id: int
    remote_id: str
    name: str
    amount: Number | None
    currency: str | None
    stage: str | None
    probability: Number | None
    stage_probability: Number | None = Field(description="The probability of the stage.")
    close_date: date | None
    remote_modified_at: datetime | None
    owner_person_id: int | None
    owner_email: str | None
    owner_name: str | None
    account_name: str | None
    rules: list[str] = Field(description="The rules the deal breaks.")
    url: str | None = Field(description="The deal's page in its CRM (null: its connector "
                            "builds none).")


class HygienePage(Answer):
    data: list[HygieneItem]
    next_cursor: str | None


class Counts(Answer):
    counts: dict[str, int] = Field(description="Enabled rule -> open deals breaking it.")
    total: int = Field(description="Open deals breaking at least one rule.")


class RepCounts(Counts):
    person_id: int | None = Field(description="Null: the deals of no owner person.")
    owner_email: str | None
    owner_name: str | None
    team: str | None


class TeamCounts(Counts):
    team: str | None


class HygieneSummary(Answer):
    today: date = Field(description="The day the rules were checked on (CRMSYNC_TIMEZONE).")
    rules: list[str] = Field(description="The enabled rules.")
    data: list[RepCounts] = Field(description="Reps with issues, most first.")
    teams: list[TeamCounts]
    total: Counts


class SummaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: Id | None = None
    team: str | None = Field(None, max_length=200, description=TEAM_HELP)


class RuleOut(Answer):
    key: str
    description: str
    enabled: bool
    threshold: int | None = Field(description="In force (null: the rule takes none).")
    default_threshold: int | None
    unit: str | None = Field(description="days or points (percentage points).")
    minimum: int | None
    maximum: int | None


class RuleList(Answer):
    data: list[RuleOut]


class RuleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="Absent: unchanged.")
    threshold: int | None = Field(None, description="Absent: unchanged; null: the default.")


@router.get("/hygiene", response_model=HygienePage, responses=FILES,
            summary="Open deals that break a hygiene rule, with their CRM links, or CSV")
def list_hygiene(
    request: Request, params: Annotated[HygieneParams, Query()], session: SessionDep,
    settings: SettingsDep, caller: Reader,
) -> Response:
    try:
        listing = hygiene_items(session, settings=settings, people=caller.people,
                                connection_id=params.connection_id,
                                owner_person_id=params.owner_person_id, team=params.team,
                                rule=params.rule)
    except HygieneError as exc:
        raise invalid("rule", str(exc)) from None
    link = crm_links(session)
    return list_response(request, session, params, listing, name="hygiene",
                         columns=(*ITEM_COLUMNS, "url"),
                         public=lambda row: {**row, "url": link(row)})


@router.get("/hygiene/summary", response_model=HygieneSummary,
            summary="Hygiene issues per rep, per team and in all")
def get_hygiene_summary(
    params: Annotated[SummaryParams, Query()], session: SessionDep, settings: SettingsDep,
    caller: Reader,
) -> Response:
    return ApiJSON(hygiene_summary(session, settings=settings, people=caller.people,
                                   connection_id=params.connection_id, team=params.team))


@router.get("/hygiene/rules", response_model=RuleList, summary="The hygiene rules' settings")
def list_rules(session: SessionDep, _caller: Reader) -> Response:
    return ApiJSON({"data": [r.as_dict() for r in rules(session)]})


@router.put("/hygiene/rules/{key}", response_model=RuleOut,
            summary="Switch a hygiene rule on or off, or set its threshold (admins)")
def put_rule(
    key: Annotated[str, Path(max_length=40, description=RULE_HELP)], body: RuleChange,
    session: SessionDep, _caller: Admin,
) -> Response:
    try:
        spec_of(key)
    except HygieneError as exc:
        raise ApiError(404, str(exc)) from None
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    try:
        state = set_rule(session, key, changes)
    except HygieneError as exc:
        raise ApiError(422, str(exc)) from None
    session.commit()
    return ApiJSON(state.as_dict())
