"""Unified sales metrics (DESIGN.md sections 5 and 7)."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from api.deps import SessionDep, SettingsDep, require
from api.errors import ApiError, invalid
from api.listing import ApiJSON
from core.currency import CurrencyError
from core.metrics import GROUP_BY, summary, validate

router = APIRouter(tags=["metrics"], dependencies=[Depends(require("read"))])

DATE_HELP = "YYYY-MM-DD, or an ISO-8601 timestamp (its date is taken). Inclusive."


class SummaryParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: str = Field(description=DATE_HELP)
    end: str = Field(description=DATE_HELP)
    group_by: str = Field("none", description="owner, connection or none.")
    connection_id: int | None = None


class MetricValues(BaseModel):
    bookings: Decimal
    deals_won: int
    deals_lost: int
    win_rate: Decimal | None
    avg_deal_size: Decimal | None
    sales_cycle_days: Decimal | None
    open_pipeline: Decimal
    weighted_pipeline: Decimal
    forecast: Decimal
    new_accounts: int
    goal: Decimal | None
    attainment: Decimal | None


class SummaryRow(MetricValues):
    owner_email: str | None = None
    owner_name: str | None = None
    connection_id: int | None = None
    connection_name: str | None = None


class Summary(BaseModel):
    start: date
    end: date
    currency: str | None
    group_by: str
    data: list[SummaryRow]
    total: MetricValues


def parse_day(name: str, value: str) -> date:
    """A date, or the date part of an ISO timestamp (as written, not shifted)."""
    text = value.strip()
    try:
        return date.fromisoformat(text) if len(text) == 10 else \
            datetime.fromisoformat(text).date()
    except ValueError:
        raise invalid(name, "must be a date (YYYY-MM-DD) or an ISO-8601 timestamp") from None


@router.get("/metrics/summary", response_model=Summary,
            summary="Leaderboard and team total for a period")
def get_summary(
    params: Annotated[SummaryParams, Query()], session: SessionDep, settings: SettingsDep
) -> ApiJSON:
    start, end = parse_day("start", params.start), parse_day("end", params.end)
    if params.group_by not in GROUP_BY:
        raise invalid("group_by", f"must be one of {', '.join(GROUP_BY)}")
    try:
        validate(start, end, params.group_by)
        result: dict[str, Any] = summary(
            session, start=start, end=end, group_by=params.group_by,
            connection_id=params.connection_id, settings=settings)
    except CurrencyError as exc:
        raise ApiError(422, str(exc), code="missing_fx_rate") from None
    except ValueError as exc:
        raise ApiError(422, str(exc)) from None
    session.commit()  # created dates may have been recomputed for a new time zone
    return ApiJSON(result)
