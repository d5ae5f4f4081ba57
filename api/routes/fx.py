"""FX rates into the reporting currency (docs/metrics.md, currencies)."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from api.access import caller
from api.deps import SessionDep, SettingsDep
from api.listing import ApiJSON
from api.schemas import Answer, Number
from core.metrics.currency import list_rates, reporting_currency, set_rate
from core.models import FxRate

router = APIRouter(tags=["fx"])

Code = Annotated[str, Path(pattern="^[A-Za-z]{3}$",
                           description="ISO 4217 currency code (3 letters, any case).")]


class RateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rate_to_reporting: Decimal = Field(
        gt=0, allow_inf_nan=False, max_digits=30,
        description="Units of the reporting currency that 1 unit of this currency is worth.",
    )


class RateOut(Answer):
    code: str
    rate_to_reporting: Number = Field(description="Exact decimal number.")
    updated_at: datetime


class RateList(Answer):
    reporting_currency: str | None
    data: list[RateOut]
    next_cursor: str | None


def _public(row: FxRate) -> dict[str, object]:
    return {"code": row.code, "rate_to_reporting": row.rate_to_reporting,
            "updated_at": row.updated_at}


@router.put("/fx-rates/{code}", response_model=RateOut, summary="Set an FX rate",
            dependencies=[Depends(caller("write", users="admin"))])
def put_rate(code: Code, body: RateIn, session: SessionDep) -> ApiJSON:
    row = set_rate(session, code, body.rate_to_reporting)
    out = _public(row)
    session.commit()
    return ApiJSON(out)


@router.get("/fx-rates", response_model=RateList, summary="FX rates",
            dependencies=[Depends(caller("read"))])
def get_rates(session: SessionDep, settings: SettingsDep) -> ApiJSON:
    return ApiJSON(_list(session, reporting_currency(session, settings)))


def _list(session: Session, reporting: str | None) -> dict[str, object]:
    return {"reporting_currency": reporting,
            "data": [_public(r) for r in list_rates(session)], "next_cursor": None}
