"""Sales goals: CRUD, CSV import and push to the CRMs (docs/goals.md), of the people the
caller may see. Thin over core.goals."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from api.access import Pusher, Reader, Writer
from api.deps import JobQueue, SessionDep, SettingsDep
from api.errors import ApiError, error_body, validation_response
from api.listing import (
    FILES,
    ApiJSON,
    Id,
    ListParams,
    csv_response,
    decode_cursor,
    encode_cursor,
    wants_csv,
)
from api.routes.connections import get_or_404
from api.schemas import Answer, Number
from core.config import Settings
from core.goals import targets as goals
from core.metrics.currency import CurrencyError
from core.queries import fetch_page, iter_rows
from core.types import GoalMetric, PushStatus

router = APIRouter(tags=["goals"])
MAX_IMPORT_BYTES = 5 * 1024 * 1024
CSV_TYPES = ("text/csv", "text/plain", "application/csv", "application/vnd.ms-excel",
             "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")


class GoalCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: Id | None = Field(None, description="The person (GET /people) the goal is for.")
    owner_email: str | None = Field(None, max_length=320, description=(
        "Or the email of the person or of one of their CRM users (case-insensitive); "
        "neither: a company-wide goal."))
    metric: GoalMetric
    period_start: date
    period_end: date = Field(description="Inclusive.")
    target: Decimal = Field(allow_inf_nan=False, max_digits=30, description=(
        "bookings: an amount in the reporting currency (2 places); deals_won: a count."))
    currency: str | None = Field(None, max_length=3, description=(
        "The reporting currency (the default); deals_won goals take none."))


class GoalPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    person_id: Id | None = None
    owner_email: str | None = Field(None, max_length=320)
    metric: GoalMetric | None = None
    period_start: date | None = None
    period_end: date | None = None
    target: Decimal | None = Field(None, allow_inf_nan=False, max_digits=30)
    currency: str | None = Field(None, max_length=3)


class CrmResult(Answer):
    """The CRM's own figure for the goal, read after the last push (connectors whose goal
    push can read results, docs/goals.md): beside `actual`, it shows where the CRM's
    definition differs from crmsync's."""

    actual: Number | None = Field(description="Bookings in `currency`, or deals won; null "
                                              "when it could not be read (see error).")
    currency: str | None
    read_at: datetime
    error: str | None


class PushState(Answer):
    """The goal's copy in one connection's CRM, as its last push left it."""

    connection_id: int
    status: PushStatus
    remote_id: str | None
    pushed_at: datetime | None
    error: str | None
    crm_result: CrmResult | None = None


class GoalPublic(Answer):
    id: int
    person_id: int | None
    owner_email: str | None
    owner_name: str | None
    metric: GoalMetric
    period_start: date
    period_end: date
    target: Number
    currency: str | None
    actual: Number = Field(description="Bookings (reporting currency) or deals won so far.")
    attainment: Number | None = Field(description="actual / target, 4 places.")
    push: list[PushState]
    created_at: datetime
    updated_at: datetime


class GoalPage(Answer):
    data: list[GoalPublic]
    next_cursor: str | None


class GoalParams(ListParams):
    person_id: Id | None = None
    owner_email: str | None = Field(None, max_length=320, description="Case-insensitive.")
    company: bool = Field(False, description="Only company-wide goals (no owner).")
    metric: GoalMetric | None = None
    start: date | None = Field(None, description="Goals whose period starts on or after.")
    end: date | None = Field(None, description="Goals whose period ends on or before.")


class PushRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: Id | None = Field(None, description="Only this connection (default: all).")


class ImportResult(Answer):
    created: int
    updated: int
    unchanged: int
    goal_ids: list[int]


class PushOutcome(Answer):
    goal_id: int
    connection_id: int
    status: PushStatus
    remote_id: str | None
    error: str | None


class ConnectionPush(Answer):
    connection_id: int
    error: str | None = Field(description="Why the whole connection failed, if it did.")
    counts: dict[PushStatus, int]


class PushAnswer(Answer):
    connections: list[ConnectionPush]
    results: list[PushOutcome]


IMPORT_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "text/csv": {"schema": {"type": "string"}, "example": (
        "owner_email,person_id,metric,period_start,period_end,target\n"
        "ann@example.com,,bookings,2025-04-01,2025-06-30,120000\n"
        ",17,bookings,2025-04-01,2025-06-30,90000\n")},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary"}}}}}}}


def _translate(exc: Exception) -> Exception:
    if isinstance(exc, goals.GoalConflict):
        return ApiError(409, str(exc).split(": ", 1)[-1])
    if isinstance(exc, goals.GoalNotFound):
        return ApiError(404, str(exc))
    if isinstance(exc, CurrencyError):
        return ApiError(422, str(exc), code="missing_fx_rate")
    return exc


def _answer(session: Session, settings: Settings, goal: Any, status: int = 200) -> Response:
    row = goals.goal_rows(session, [goal], settings)[0]
    return ApiJSON(row, status_code=status)


def _write(session: Session, settings: Settings, action: Any, status: int = 200) -> Response:
    """Run a core write, commit, answer the goal; core errors as 404/409/422."""
    try:
        goal = action()
        session.commit()
        return _answer(session, settings, goal, status)
    except goals.GoalConflict as exc:
        session.rollback()
        raise _translate(exc) from None
    except goals.GoalError as exc:
        session.rollback()
        return validation_response(exc.details)
    except IntegrityError:  # a concurrent request created the same goal first
        session.rollback()
        raise ApiError(409, "a goal for this owner, metric and period already exists") from None
    except (goals.GoalNotFound, CurrencyError) as exc:
        session.rollback()
        raise _translate(exc) from None


@router.post("/goals", status_code=201, response_model=GoalPublic, summary="Set a goal")
def create_goal(body: GoalCreate, session: SessionDep, settings: SettingsDep,
                caller: Writer) -> Response:
    data = goals.GoalInput(**body.model_dump())
    return _write(session, settings, lambda: goals.create_goal(
        session, data, settings, people=caller.people), 201)


@router.get("/goals", response_model=GoalPage, responses=FILES,
            summary="Goals with actual, attainment and push status")
def list_goals(request: Request, params: Annotated[GoalParams, Query()], session: SessionDep,
               settings: SettingsDep, caller: Reader) -> Response:
    listing = goals.goals_listing(owner_email=params.owner_email, person_id=params.person_id,
                                  company=params.company,
                                  metric=params.metric, start=params.start, end=params.end,
                                  people=caller.people)
    try:
        if wants_csv(request, params.format):
            rows = list(iter_rows(request.app.state.engine, listing))
            data = goals.goal_rows(session, rows, settings)
            return csv_response(data, goals.COLUMNS, name="goals", fmt=params.format)
        page, after = fetch_page(session, listing, after=decode_cursor(params.cursor),
                                 limit=params.limit)
        data = goals.goal_rows(session, page, settings)
    except CurrencyError as exc:
        raise _translate(exc) from None
    return ApiJSON({"data": data, "next_cursor": encode_cursor(after) if after else None})


@router.get("/goals/{goal_id}", response_model=GoalPublic)
def get_goal(goal_id: Id, session: SessionDep, settings: SettingsDep,
             caller: Reader) -> Response:
    try:
        return _answer(session, settings,
                       goals.get_goal(session, goal_id, people=caller.people))
    except (goals.GoalNotFound, CurrencyError) as exc:
        raise _translate(exc) from None


@router.patch("/goals/{goal_id}", response_model=GoalPublic)
def patch_goal(goal_id: Id, body: GoalPatch, session: SessionDep,
               settings: SettingsDep, caller: Writer) -> Response:
    changes = body.model_dump(exclude_unset=True)
    for name in ("metric", "period_start", "period_end", "target"):
        if name in changes and changes[name] is None:
            return validation_response([{"field": name, "message": "must not be null"}])
    return _write(session, settings, lambda: goals.update_goal(
        session, goal_id, changes, settings, people=caller.people))


@router.delete("/goals/{goal_id}", status_code=204,
               summary="Delete a goal (its CRM copies are deleted on the next push)")
def delete_goal(goal_id: Id, session: SessionDep, caller: Writer) -> Response:
    try:
        goals.delete_goal(session, goal_id, people=caller.people)
    except goals.GoalNotFound as exc:
        raise _translate(exc) from None
    session.commit()
    return Response(status_code=204)


@router.post("/goals/import", response_model=ImportResult,
             summary="Import goals from a CSV file", openapi_extra=IMPORT_BODY)
async def import_csv(request: Request, session: SessionDep, settings: SettingsDep,
                     caller: Writer) -> Response:
    """Body: the CSV (Content-Type: text/csv), or the multipart field `file`. Columns
    owner_email or person_id (or both), metric, period_start, period_end, target (currency
    optional). All rows are
    checked first; a bad file imports nothing and lists every bad row by line number."""
    text = await _csv_text(request)
    try:
        result = await run_in_threadpool(_import, session, text, settings, caller.people)
    except goals.ImportInvalid as exc:
        return ApiJSON(error_body("validation_error", str(exc), rows=exc.rows),
                       status_code=422)
    except IntegrityError:  # a concurrent request created one of the goals first
        raise ApiError(409, "another request changed these goals at the same time; "
                       "import the file again") from None
    return ApiJSON(result)


def _import(session: Session, text: bytes, settings: Settings,
            people: frozenset[int] | None) -> dict[str, Any]:
    try:
        result = goals.import_goals(session, text, settings, people=people)
        session.commit()
    except Exception:
        session.rollback()
        raise
    return result


async def _csv_text(request: Request) -> bytes:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ApiError(422, "the multipart field `file` (the CSV file) is missing")
        raw = await upload.read(MAX_IMPORT_BYTES + 1)
    elif kind in CSV_TYPES:
        raw = await request.body()
    else:
        raise ApiError(415, "send the CSV as the body with Content-Type: text/csv, "
                       "or as the multipart/form-data field `file`")
    if len(raw) > MAX_IMPORT_BYTES:
        raise ApiError(413, f"the file exceeds {MAX_IMPORT_BYTES // 1024 // 1024} MB")
    return raw  # CSV in UTF-8 or GB18030, or .xlsx: core.goals.import_goals decodes it


@router.post("/goals/push", response_model=PushAnswer,
             summary="Push goals to every connection (or one): per-goal results")
async def push(request: Request, session: SessionDep, caller: Pusher,
               body: PushRequest | None = None) -> Response:
    """A signed-in manager pushes only the goals of their teams' people (an API key and an
    admin: every goal)."""
    connection_id = body.connection_id if body else None
    if connection_id is not None:
        await run_in_threadpool(get_or_404, session, connection_id)
    jobs: JobQueue = request.app.state.jobs
    try:
        result = await jobs.enqueue_push_goals(connection_id, caller.people)
    except TimeoutError:
        raise ApiError(503, "no worker finished the goal push in time; it stays queued: "
                       "check that `crmsync worker` runs, then GET /api/v1/goals") from None
    return ApiJSON(result)
