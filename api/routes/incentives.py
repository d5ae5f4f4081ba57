"""Commission plans, statements and closing periods (docs/incentives.md). Thin over
core.incentives.

Who may call what: everyone who reads sees the plans; statements are scoped like the
other data (a rep only their own, a manager their teams', API keys and admins everyone's);
writing a plan, previewing one (it shows everyone's payouts) and locking a period are for
admins (admin keys and admin users).
"""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.access import Admin, Reader
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, error_body
from api.listing import FILES, MAX_ID, ApiJSON, ExportFormat, Id, csv_response, wants_csv
from api.schemas import Answer, Number
from core import people
from core.incentives import periods, statements
from core.incentives.calendar import Period, PeriodInvalid, parse_period
from core.incentives.plans import MAX_PLAN_BYTES, PlanInvalid
from core.metrics.currency import CurrencyError
from core.metrics.periods import today
from core.people import PersonError

router = APIRouter(tags=["incentives"])
PLAN_TYPES = ("application/json", "application/yaml", "application/x-yaml", "text/yaml",
              "text/x-yaml", "text/plain")
PLAN_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "application/yaml": {"schema": {"type": "string"}, "example": (
        "name: Account executives 2027\nmembers: {team: East}\n"
        "effective: {from: 2027-01-01, to: null}\nperiod: quarter\ncurrency: CNY\n"
        "quota: goal\ntiers:\n  - {to: 0.5, rate: 0.02}\n  - {to: 1.0, rate: 0.05}\n"
        "  - {rate: 0.08}\n")},
    "application/json": {"schema": {"type": "object"}}}}}
Key = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]*$")]


class PlanPublic(Answer):
    key: str
    name: str
    version: int = Field(description="The current version; a new one on every change.")
    created_at: datetime
    updated_at: datetime = Field(description="When the current version was written.")
    document: dict[str, Any] = Field(description=(
        "The plan as validated (docs/incentives.md); numbers as exact decimal text."))


class PlanSaved(PlanPublic):
    changed: bool = Field(description="false: the document equals the current version.")


class PlanPage(Answer):
    data: list[PlanPublic]
    next_cursor: None = None


class Band(Answer):
    tier: int
    from_: Number = Field(alias="from")
    to: Number | None
    amount: Number
    rate: Number


class StatementLine(Answer):
    kind: Literal["deal", "spiff", "cap", "adjustment", "draw"]
    deal_id: int | None
    deal_remote_id: str | None
    deal_name: str | None
    close_date: date | None
    amount: Number | None = Field(description="The deal's amount in plan currency.")
    source_amount: Number | None = Field(description="amount_home, in source_currency.")
    source_currency: str | None
    rate: Number | None = Field(description="The rate when the deal lies in one band.")
    bands: list[Band] | None = Field(description="The bands a deal line touches.")
    name: str | None = Field(description="The SPIFF's name (spiff lines).")
    period: str | None = Field(description="The locked period an adjustment corrects.")
    reason: str | None = Field(description="Why an adjustment was made.")
    difference: Number | None = Field(description=(
        "An adjustment's full difference (commission is 0 when a decrease falls outside "
        "the clawback window)."))
    commission: Number


class Statement(Answer):
    person_id: int
    email: str | None
    name: str
    team: str | None
    period: str
    period_start: date
    period_end: date
    plan_key: str
    plan_name: str
    plan_version: int
    currency: str
    measure: Number = Field(description="Bookings credited, in plan currency.")
    quota: Number | None
    attainment: Number | None
    lines: list[StatementLine]
    earned: Number
    payout: Number
    draw_balance_before: Number
    draw_balance: Number
    locked: bool
    locked_at: datetime | None
    note: str | None


class StatementPage(Answer):
    data: list[Statement]


class StatementParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: str = Field(max_length=10, description="2027-01, 2027-Q1 or 2027 (fiscal).")
    person: str | None = Field(None, max_length=320, description="A person id or email.")
    person_id: Id | None = None
    email: str | None = Field(None, max_length=320)
    format: ExportFormat | None = Field(None, description=(
        "csv, excel-csv or xlsx: one row per line and a payout row per statement (so does "
        "`Accept: text/csv`)."))


class LockAnswer(Answer):
    period: str
    kind: str
    period_start: date
    period_end: date
    locked_at: datetime
    statements: int = Field(description="Statements snapshotted.")
    adjustments: int = Field(description="Differences of earlier locked periods recorded.")


class PreviewRow(Answer):
    person_id: int
    email: str | None
    name: str
    old_payout: Number | None
    new_payout: Number | None
    difference: Number


class PreviewAnswer(Answer):
    period: str
    plan_key: str
    currency: str
    old_version: int | None
    data: list[PreviewRow]


def _plan_invalid(exc: PlanInvalid) -> Response:
    return ApiJSON(error_body("validation_error", str(exc), details=exc.errors),
                   status_code=422)


def _period(label: str, settings: Any) -> Period:
    try:
        return parse_period(label, settings.fiscal_year_start_month)
    except PeriodInvalid as exc:
        raise ApiError(422, str(exc)) from None


async def _plan_text(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in PLAN_TYPES:
        raise ApiError(415, "send the plan as the body, YAML (Content-Type: "
                       "application/yaml) or JSON (application/json)")
    raw = await request.body()
    if len(raw) > MAX_PLAN_BYTES:
        raise ApiError(413, f"a plan is at most {MAX_PLAN_BYTES // 1024} KB")
    return raw


@router.put("/plans/{key}", response_model=PlanSaved, openapi_extra=PLAN_BODY,
            responses={201: {"model": PlanSaved, "description": "Created"}},
            summary="Create or change a commission plan (a new version on every change)")
async def put_plan(key: Key, request: Request, session: SessionDep, _caller: Admin) -> Response:
    text = await _plan_text(request)
    try:
        stored, changed = statements.save_plan(session, text, key=key)
    except PlanInvalid as exc:
        session.rollback()
        return _plan_invalid(exc)
    session.commit()
    body = {**statements.plan_public(stored), "changed": changed}
    return ApiJSON(body, status_code=201 if changed and stored.version == 1 else 200)


@router.get("/plans", response_model=PlanPage, summary="Commission plans (current versions)")
def list_plans(session: SessionDep, _caller: Reader) -> Response:
    data = [statements.plan_public(p) for p in statements.list_plans(session)]
    return ApiJSON({"data": data, "next_cursor": None})


@router.get("/plans/{key}", response_model=PlanPublic, summary="A plan (or one version)")
def get_plan(key: Key, session: SessionDep, _caller: Reader,
             version: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None) -> Response:
    try:
        return ApiJSON(statements.plan_public(statements.get_plan(session, key, version)))
    except statements.PlanNotFound as exc:
        raise ApiError(404, str(exc)) from None


@router.post("/plans/{key}/preview", response_model=PreviewAnswer, openapi_extra=PLAN_BODY,
             summary="Each rep's payout in a period under the current and a new plan")
async def preview_plan(key: Key, request: Request, session: SessionDep,
                       settings: SettingsDep, _caller: Admin,
                       period: Annotated[str, Query(max_length=10)]) -> Response:
    text = await _plan_text(request)
    the_period = _period(period, settings)
    try:
        return ApiJSON(statements.preview(session, settings, key, text, the_period))
    except PlanInvalid as exc:
        return _plan_invalid(exc)
    except (PeriodInvalid, CurrencyError) as exc:
        raise ApiError(422, str(exc)) from None
    finally:
        session.rollback()  # a preview writes nothing


@router.get("/statements", response_model=StatementPage, responses=FILES,
            summary="Commission statements of a period, line by line")
def get_statements(request: Request, params: Annotated[StatementParams, Query()],
                   session: SessionDep, settings: SettingsDep, caller: Reader) -> Response:
    period = _period(params.period, settings)
    person = params.person or ""
    as_id = person.isdigit() and len(person) <= 10 and int(person) <= MAX_ID
    try:
        person_id = people.resolve(
            session, person_id=params.person_id or (int(person) if as_id else None),
            email=params.email or (person if person and not as_id else None),
            people=caller.people)
        if not periods.is_locked(session, period.label):
            periods.record_adjustments(session, settings, today=today(settings))
            session.commit()
        data = statements.statements(session, settings, period, people=caller.people,
                                     person_id=person_id)
    except PersonError as exc:
        session.rollback()
        raise ApiError(404, str(exc).split(": ", 1)[-1]) from None
    except CurrencyError as exc:
        session.rollback()
        raise ApiError(422, str(exc), code="missing_fx_rate") from None
    if wants_csv(request, params.format):
        return csv_response(statements.rows(data), statements.COLUMNS,
                            name=f"statements-{period.label}", fmt=params.format)
    return ApiJSON({"data": data})


@router.post("/periods/{period}/lock", response_model=LockAnswer,
             summary="Close a period: snapshot every statement of it")
def lock_period(period: Annotated[str, Path(max_length=10)], session: SessionDep,
                settings: SettingsDep, _caller: Admin) -> Response:
    try:
        done = periods.lock(session, settings, period, today=today(settings))
    except PeriodInvalid as exc:
        session.rollback()
        raise ApiError(422, str(exc)) from None
    except periods.PeriodLocked as exc:
        session.rollback()
        raise ApiError(409, str(exc)) from None
    except CurrencyError as exc:
        session.rollback()
        raise ApiError(422, str(exc), code="missing_fx_rate") from None
    session.commit()
    return ApiJSON({"period": done.period.label, "kind": done.period.kind,
                    "period_start": done.period.start, "period_end": done.period.end,
                    "locked_at": done.locked_at, "statements": done.statements,
                    "adjustments": done.adjustments})


__all__ = ["router"]

