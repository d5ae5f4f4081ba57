"""Unified sales metrics (docs/metrics.md), of the people the caller may see."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from api.access import Reader
from api.deps import SessionDep, SettingsDep
from api.errors import ApiError, invalid
from api.listing import (
    EXPORT_FORMATS_HELP,
    FILES,
    ApiJSON,
    ExportFormat,
    Id,
    ListParams,
    csv_response,
    list_response,
    wants_csv,
)
from api.routes.records import DealPage
from api.schemas import Answer, Number
from core.metrics.currency import CurrencyError
from core.metrics.definitions import (
    ACTIVITIES,
    KEY_COLUMNS,
    METRICS,
    PIPELINE_COLUMNS,
    SORT_FIELDS,
    DrillMetric,
    GroupBy,
    Interval,
    SeriesGroupBy,
    SeriesMetric,
    drill_down,
    pipeline,
    sort_fields,
    sort_rows,
    summary,
    timeseries,
    validate,
    validate_series,
)
from core.metrics.evaluation import EvalGroupBy, forecast_accuracy, funnel, velocity
from core.metrics.periods import Preset, preset_range, today
from core.metrics.scorecard import NoOneToShow, scorecards
from core.queries import ROW_COLUMNS
from core.types import DealStatus

router = APIRouter(tags=["metrics"])

DATE_HELP = "YYYY-MM-DD, or an ISO-8601 timestamp (its date is taken). Inclusive."
SortKey = Annotated[str, WithJsonSchema({"type": "string", "enum": [
    *SORT_FIELDS, *(f"-{name}" for name in SORT_FIELDS)]})]
"""A summary's sort (core.metrics.definitions.sort_rows); which fields a group_by allows is
checked by the route, so the message can name them."""


class SummaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description=DATE_HELP)
    end: str = Field(description=DATE_HELP)
    group_by: GroupBy = GroupBy.NONE
    connection_id: Id | None = None
    activities: bool = Field(
        False, description="Add `activities` to every row and the total: the activities "
        "that count in the period (docs/metrics.md, Activities).")
    sort: SortKey | None = Field(
        None, max_length=64,
        description="A metric or a key column of the rows (person_id, owner_email, "
        "owner_name, team, connection_id, connection_name; `activities` with "
        "activities=true), `-` first for descending, e.g. `-attainment`. Nulls last either "
        "way; ties keep key order. Default: key order.")
    format: ExportFormat | None = Field(
        None, description="`csv` answers CSV (the rows, then the total row); so does "
        "`Accept: text/csv`. " + EXPORT_FORMATS_HELP)


class MetricValues(Answer):
    bookings: Number
    deals_won: int
    deals_lost: int
    win_rate: Number | None
    avg_deal_size: Number | None
    sales_cycle_days: Number | None
    open_pipeline: Number
    weighted_pipeline: Number
    forecast: Number
    new_accounts: int
    goal: Number | None
    attainment: Number | None
    activities: int | None = Field(
        None, description="With activities=true: the activities that count in the period.")


class SummaryRow(MetricValues):
    person_id: int | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    team: str | None = None
    connection_id: int | None = None
    connection_name: str | None = None


class Summary(Answer):
    start: date
    end: date
    currency: str | None
    group_by: GroupBy
    data: list[SummaryRow]
    total: MetricValues


def _period(params: Any) -> tuple[date, date]:
    return parse_day("start", params.start), parse_day("end", params.end)


def _one_of(name: str, value: str, allowed: tuple[str, ...], hint: str = "") -> None:
    if value not in allowed:
        raise invalid(name, f"must be one of {', '.join(allowed)}{hint}")


@contextmanager
def _metric_errors() -> Iterator[None]:
    """core.metrics errors as 422s: a missing FX rate (its own code), bad parameters."""
    try:
        yield
    except CurrencyError as exc:
        raise ApiError(422, str(exc), code="missing_fx_rate") from None
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None


def parse_day(name: str, value: str) -> date:
    """A date, or the date part of an ISO timestamp (as written, not shifted)."""
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else \
            datetime.fromisoformat(text).date()
    except ValueError:
        raise invalid(name, "must be a date (YYYY-MM-DD) or an ISO-8601 timestamp") from None


SUMMARY_ROW_TYPE = "row_type"  # first CSV column: "data" for a row, "total" for the total


@router.get("/metrics/summary", response_model=Summary, responses=FILES,
            summary="Leaderboard and team total for a period")
def get_summary(
    request: Request, params: Annotated[SummaryParams, Query()], session: SessionDep,
    settings: SettingsDep, caller: Reader,
) -> Response:
    start, end = _period(params)
    if params.sort is not None:
        field = params.sort.strip().removeprefix("-").removeprefix("+").strip()
        _one_of("sort", field, sort_fields(params.group_by),
                " (for this group_by), with a leading - for descending")
    with _metric_errors():
        validate(start, end, params.group_by)
        result: dict[str, Any] = summary(
            session, start=start, end=end, group_by=params.group_by,
            connection_id=params.connection_id, settings=settings, people=caller.people,
            activities=params.activities)
    session.commit()  # created dates may have been recomputed for a new time zone
    if params.sort is not None:
        result["data"] = sort_rows(result["data"], params.sort, params.group_by)
    if wants_csv(request, params.format):
        columns = (SUMMARY_ROW_TYPE, *KEY_COLUMNS[params.group_by], *METRICS,
                   *((ACTIVITIES,) if params.activities else ()))
        rows = [*({SUMMARY_ROW_TYPE: "data", **row} for row in result["data"]),
                {SUMMARY_ROW_TYPE: "total", **result["total"]}]
        return csv_response(rows, columns, name="summary",
                            fmt=params.format)
    return ApiJSON(result)


class DrillParams(ListParams):
    metric: DrillMetric
    start: str = Field(description=DATE_HELP)
    end: str = Field(description=DATE_HELP)
    person_id: Id | None = Field(None, description="The owner row's person_id.")
    owner_email: str | None = Field(None, max_length=320, description=(
        "Or an email of the person (case-insensitive)."))
    team: str | None = Field(None, max_length=200, description=(
        "The deals of a team's people (a row of group_by=team)."))
    connection_id: Id | None = None


@router.get("/metrics/deals", response_model=DealPage, responses=FILES,
            summary="The deals behind a metric (drill-down), paged or CSV")
def get_drill_down(
    request: Request, params: Annotated[DrillParams, Query()], session: SessionDep,
    caller: Reader,
) -> Response:
    start, end = _period(params)
    with _metric_errors():
        listing = drill_down(params.metric, start=start, end=end, person_id=params.person_id,
                             owner_email=params.owner_email, team=params.team,
                             connection_id=params.connection_id, people=caller.people)
    return list_response(request, session, params, listing, name=f"deals-{params.metric}",
                         columns=ROW_COLUMNS["deals"])


class PipelineParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    connection_id: Id | None = None
    as_of: str | None = Field(None, description=(
        "The pipeline as it was at the end of this day (CRMSYNC_TIMEZONE), from the deal "
        "versions (docs/evaluation.md). " + DATE_HELP))
    format: ExportFormat | None = Field(
        None, description="`csv` answers CSV; so does `Accept: text/csv`. " + EXPORT_FORMATS_HELP)


class PipelineRow(Answer):
    connection_id: int
    pipeline: str | None
    stage: str | None
    sort_order: int | None
    count: int
    amount: Number
    weighted_amount: Number


class Pipeline(Answer):
    currency: str | None
    data: list[PipelineRow]


@router.get("/metrics/pipeline", response_model=Pipeline, responses=FILES,
            summary="Open deals now (or as of a day), by stage in stage order")
def get_pipeline(
    request: Request, params: Annotated[PipelineParams, Query()], session: SessionDep,
    settings: SettingsDep, caller: Reader,
) -> Response:
    as_of = None if params.as_of is None else parse_day("as_of", params.as_of)
    with _metric_errors():
        result = pipeline(session, connection_id=params.connection_id, settings=settings,
                          people=caller.people, as_of=as_of)
    if wants_csv(request, params.format):
        return csv_response(result["data"], PIPELINE_COLUMNS, name="pipeline",
                            fmt=params.format)
    return ApiJSON(result)


class SeriesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: SeriesMetric
    interval: Interval = Field(description="week (Monday to Sunday), month or quarter "
                               "(fiscal, from CRMSYNC_FISCAL_YEAR_START_MONTH).")
    start: str = Field(description=DATE_HELP)
    end: str = Field(description=DATE_HELP)
    group_by: SeriesGroupBy = SeriesGroupBy.NONE
    connection_id: Id | None = None
    format: ExportFormat | None = Field(
        None, description="`csv` answers CSV; so does `Accept: text/csv`. " + EXPORT_FORMATS_HELP)


class SeriesRow(Answer):
    period_start: date
    period_end: date
    person_id: int | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    team: str | None = None
    value: Number | None


class Series(Answer):
    metric: SeriesMetric
    interval: Interval
    start: date
    end: date
    currency: str | None
    group_by: SeriesGroupBy
    data: list[SeriesRow]


@router.get("/metrics/timeseries", response_model=Series, responses=FILES,
            summary="One metric per period (and owner or team), empty periods included")
def get_timeseries(
    request: Request, params: Annotated[SeriesParams, Query()], session: SessionDep,
    settings: SettingsDep, caller: Reader,
) -> Response:
    start, end = _period(params)
    with _metric_errors():
        validate_series(params.metric, params.interval, start, end, params.group_by)
        result = timeseries(session, metric=params.metric, interval=params.interval,
                            start=start, end=end, group_by=params.group_by,
                            connection_id=params.connection_id, settings=settings,
                            people=caller.people)
    session.commit()  # created dates may have been recomputed for a new time zone
    if wants_csv(request, params.format):
        columns = ("period_start", "period_end", *KEY_COLUMNS[GroupBy(params.group_by)],
                   "value")
        return csv_response(result["data"], columns, name="timeseries",
                            fmt=params.format)
    return ApiJSON(result)


# ---- evaluation (docs/evaluation.md) ---------------------------------------------------------


class EvalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description=DATE_HELP)
    end: str = Field(description=DATE_HELP)
    group_by: EvalGroupBy = EvalGroupBy.NONE
    connection_id: Id | None = None


class FunnelParams(EvalParams):
    pipeline: str | None = Field(None, max_length=200, description="Only this pipeline.")


class EvalKeys(Answer):
    person_id: int | None = None
    owner_email: str | None = None
    owner_name: str | None = None
    team: str | None = None


class FunnelStage(Answer):
    stage: str
    sort_order: int
    category: DealStatus
    reached: int
    conversion: Number | None = Field(description="reached of the next stage / reached.")
    median_days: Number | None
    mean_days: Number | None
    stays_ended: int = Field(description="The stays in the stage that ended (the days' base).")


class FunnelRow(EvalKeys):
    connection_id: int
    pipeline: str | None
    created: int
    stages: list[FunnelStage]


class CohortRow(EvalKeys):
    cohort: str = Field(description="The month the deals were created in, YYYY-MM.")
    created: int
    won: int
    lost: int
    open: int
    win_rate: Number | None
    sales_cycle_days: Number | None


class Funnel(Answer):
    start: date
    end: date
    group_by: EvalGroupBy
    data: list[FunnelRow]
    cohorts: list[CohortRow]


@router.get("/metrics/funnel", response_model=Funnel,
            summary="Funnel, days in stage and entry cohorts of the deals created in a period")
def get_funnel(
    params: Annotated[FunnelParams, Query()], session: SessionDep, settings: SettingsDep,
    caller: Reader,
) -> Response:
    start, end = _period(params)
    with _metric_errors():
        result = funnel(session, start=start, end=end, group_by=params.group_by,
                        connection_id=params.connection_id, pipeline=params.pipeline,
                        settings=settings, people_=caller.people)
    session.commit()  # created dates may have been recomputed for a new time zone
    return ApiJSON(result)


class VelocityValues(Answer):
    open_deals: int
    avg_deal_size: Number | None
    win_rate: Number | None
    sales_cycle_days: Number | None
    velocity: Number | None = Field(description="open_deals x avg_deal_size x win_rate / "
                                    "sales_cycle_days: money per day.")


class VelocityRow(EvalKeys, VelocityValues):
    pass


class Velocity(Answer):
    start: date
    end: date
    currency: str | None
    group_by: EvalGroupBy
    data: list[VelocityRow]
    total: VelocityValues


@router.get("/metrics/velocity", response_model=Velocity,
            summary="Sales velocity of a period, per rep, team or none")
def get_velocity(
    params: Annotated[EvalParams, Query()], session: SessionDep, settings: SettingsDep,
    caller: Reader,
) -> Response:
    start, end = _period(params)
    with _metric_errors():
        result = velocity(session, start=start, end=end, group_by=params.group_by,
                          connection_id=params.connection_id, settings=settings,
                          people_=caller.people)
    session.commit()
    return ApiJSON(result)


class SlippedDeal(Answer):
    deal_id: int
    remote_id: str
    name: str
    close_date: date | None = Field(description="Its close date on the period's first day.")


class AccuracyValues(Answer):
    forecast_at_start: Number
    bookings_at_end: Number
    forecast_accuracy: Number | None
    slipped_deals: int
    slipped_amount: Number
    slipped: list[SlippedDeal]


class AccuracyRow(EvalKeys, AccuracyValues):
    pass


class Accuracy(Answer):
    start: date
    end: date
    currency: str | None
    group_by: EvalGroupBy
    data: list[AccuracyRow]
    total: AccuracyValues


class AccuracyParams(EvalParams):
    group_by: EvalGroupBy = EvalGroupBy.OWNER


@router.get("/metrics/forecast-accuracy", response_model=Accuracy,
            summary="Forecast at a period's start against bookings at its end, and slippage")
def get_forecast_accuracy(
    params: Annotated[AccuracyParams, Query()], session: SessionDep, settings: SettingsDep,
    caller: Reader,
) -> Response:
    start, end = _period(params)
    with _metric_errors():
        result = forecast_accuracy(session, start=start, end=end, group_by=params.group_by,
                                   connection_id=params.connection_id, settings=settings,
                                   people_=caller.people)
    session.commit()
    return ApiJSON(result)


# ---- scorecards (docs/evaluation.md) ---------------------------------------------------------


class ScorecardParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    period: Preset | None = Field(None, description=(
        "A named period (fiscal quarters and years, CRMSYNC_FISCAL_YEAR_START_MONTH), "
        "instead of start and end."))
    start: str | None = Field(None, description=DATE_HELP)
    end: str | None = Field(None, description=DATE_HELP)
    team: str | None = Field(None, max_length=200, description=(
        "Only this team's people (the people mapping's team)."))
    person_id: Id | None = Field(None, description=(
        "Only this rep's card, ranked in their team; teams and total are of that team."))
    connection_id: Id | None = None


class Figure(Answer):
    value: Number | None
    previous: Number | None = Field(description="The previous period's value.")
    change: Number | None = Field(description="value - previous (null when either is).")


class ScorecardFigures(Answer):
    bookings: Figure
    goal: Figure
    attainment: Figure
    win_rate: Figure
    sales_cycle_days: Figure
    avg_deal_size: Figure
    next_open_pipeline: Figure = Field(description=(
        "Open pipeline, as of the period's last day, of the deals closing in the next period."))
    next_goal: Figure = Field(description="The next period's bookings goal.")
    pipeline_coverage: Figure = Field(description="next_open_pipeline / next_goal.")
    activities: Figure
    hygiene: Figure = Field(description=(
        "Open deals breaking a hygiene rule today (no previous value)."))
    activity_types: dict[str, int] = Field(description=(
        "This period's activities that count, by type (types with none left out)."))
    hygiene_rules: dict[str, int] = Field(description=(
        "Today's open deals breaking each hygiene rule (rules with none left out)."))


class ScorecardRow(ScorecardFigures):
    person_id: int
    owner_email: str | None
    owner_name: str | None
    team: str | None
    rank: int = Field(description="Rank in the team by bookings (ties share it: 1, 2, 2, 4).")
    previous_rank: int


class TeamScorecard(ScorecardFigures):
    team: str | None
    reps: int


class Scorecards(Answer):
    start: date
    end: date
    previous_start: date
    previous_end: date
    next_start: date
    next_end: date
    currency: str | None
    data: list[ScorecardRow]
    teams: list[TeamScorecard]
    total: ScorecardFigures


@router.get("/metrics/scorecards", response_model=Scorecards,
            summary="Each rep's scorecard for a period against the previous one, with teams")
def get_scorecards(
    params: Annotated[ScorecardParams, Query()], session: SessionDep, settings: SettingsDep,
    caller: Reader,
) -> Response:
    if params.period is not None:
        if params.start is not None or params.end is not None:
            raise invalid("period", "give either period or start and end, not both")
        start, end = preset_range(params.period, today(settings),
                                  settings.fiscal_year_start_month)
    elif params.start is None or params.end is None:
        raise invalid("start", "give start and end, or period")
    else:
        start, end = _period(params)
    with _metric_errors():
        try:
            result = scorecards(session, start=start, end=end, settings=settings,
                                people=caller.people, connection_id=params.connection_id,
                                person_id=params.person_id, team=params.team)
        except NoOneToShow as exc:
            raise ApiError(404, str(exc)) from None
    session.commit()  # created dates may have been recomputed for a new time zone
    return ApiJSON(result)
