"""The Funnel page: the funnel of the deals created in a period per CRM pipeline (reached
per stage, conversion, days in stage), win rate and cycle by entry cohort, the sales
velocity of the period, and last quarter's forecast accuracy with its slipped deals.

Every figure comes from core.metrics.evaluation (funnel, velocity, forecast_accuracy),
the functions of the API's /metrics/funnel, /metrics/velocity and
/metrics/forecast-accuracy, for the people the user chose among those they see."""

from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlmodel import Session, col

from api.deps import SessionDep, SettingsDep
from api.web import sliced
from api.web.focus import Focus, deal_links
from api.web.i18n import Formats, text
from api.web.leaderboard import Period
from api.web.render import PageRoute, render
from api.web.trends import period_label, win_rate_chart
from core.config import Settings
from core.metrics.currency import CurrencyError
from core.metrics.definitions import Interval
from core.metrics.evaluation import EvalGroupBy, forecast_accuracy, funnel, velocity
from core.metrics.periods import Preset, preset_range, today
from core.models import Connection, Deal

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DEFAULT_PERIOD = Preset.THIS_QUARTER


def funnels(session: Session, settings: Settings, focus: Focus, period: Period,
            fmt: Formats) -> dict[str, Any]:
    """The funnels (each stage with its bar's width: reached relative to the first stage),
    the cohorts with their win-rate chart."""
    result = funnel(session, start=period.start, end=period.end, settings=settings,
                    people_=focus.people)
    names = {c.id: c.name for c in (session.get(Connection, cid) for cid in
                                    {r["connection_id"] for r in result["data"]}) if c}
    lines = []
    for row in result["data"]:
        top = max((s["reached"] for s in row["stages"]), default=0)
        stages = [{**s, "bar": str((Decimal(s["reached"]) / top * 100).quantize(Decimal("0.1")))
                   if top else "0"} for s in row["stages"]]
        lines.append({**row, "connection": names.get(row["connection_id"],
                                                    str(row["connection_id"])),
                      "stages": stages})
    cohorts = [{**c, "label": period_label(date.fromisoformat(c["cohort"] + "-01"),
                                           Interval.MONTH, fmt, settings.fiscal_year_start_month)}
               for c in result["cohorts"]]
    return {"funnels": lines, "cohorts": cohorts,
            "cohort_chart": win_rate_chart([(c["label"], c["win_rate"]) for c in cohorts], fmt)
            if cohorts else None}


def slipped_links(session: Session, slipped: list[dict[str, Any]]) -> dict[int, str]:
    """deal id -> the slipped deal's page in its CRM, where its connector builds one
    (focus.deal_links, as on the other pages)."""
    connection_of: dict[int, int] = {int(i): int(c) for i, c in session.execute(
        select(col(Deal.id), col(Deal.connection_id)).where(
            col(Deal.id).in_([d["deal_id"] for d in slipped])))}
    return deal_links(session, [{"id": d["deal_id"], "remote_id": d["remote_id"],
                                 "connection_id": connection_of.get(d["deal_id"])}
                                for d in slipped])


@router.get("/funnel")
def funnel_page(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", show: Annotated[str, Query()] = "",
) -> Response:
    begun = sliced.start(request, session, settings, period=period, start=start, end=end,
                         show=show, default=DEFAULT_PERIOD)
    if isinstance(begun, Response):
        return begun
    chosen, page = begun.period, begun.page
    last = preset_range(Preset.LAST_QUARTER, today(settings), settings.fiscal_year_start_month)
    page.update(funnels=[], cohorts=[], cohort_chart=None, velocity=None, accuracy=None,
                links={}, last_quarter=last)
    status = 200
    if chosen is None:
        status = 400
    else:
        common: dict[str, Any] = {"settings": settings, "people_": begun.focus.people}
        try:
            page.update(funnels(session, settings, begun.focus, chosen, begun.fmt))
            page["velocity"] = velocity(session, start=chosen.start, end=chosen.end,
                                        **common)
            page["accuracy"] = forecast_accuracy(session, start=last[0], end=last[1],
                                                 group_by=EvalGroupBy.NONE, **common)
            page["links"] = slipped_links(session, page["accuracy"]["total"]["slipped"])
        except CurrencyError as exc:
            page["error"] = text(begun.lang, "error.missing_rate", detail=str(exc))
            status = 422
        session.commit()  # created dates may have been recomputed for a new time zone
    return render(request, "funnel.html", status=status, signed=begun.signed, nav="funnel",
                  **page)


__all__ = ["router"]
