"""The Pipeline page: the open deals now by stage (a funnel per CRM pipeline, in the CRM's
stage order), the weighted forecast against the goal of a period, and the open deals
closing in it, each linked to its record in the CRM.

Every figure comes from core.metrics.definitions (pipeline, summary, drill_down), the
functions of the API's /metrics/pipeline, /metrics/summary and /metrics/deals, for the
people the user chose among those they see."""

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from api.listing import encode_cursor
from api.web import sliced
from api.web.focus import Focus, deal_links
from api.web.i18n import text
from api.web.leaderboard import CUSTOM, Period
from api.web.render import PageRoute, page_after, render
from core.config import Settings
from core.goals.targets import attainment
from core.metrics.currency import CurrencyError
from core.metrics.definitions import DrillMetric, GroupBy, drill_down, pipeline, summary
from core.metrics.periods import Preset
from core.models import Connection
from core.queries import fetch_page

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DEFAULT_PERIOD = Preset.THIS_QUARTER
PAGE_SIZE = 25
FORECAST_WIDTH = 600  # the forecast bar's SVG user units


@dataclass
class Funnel:
    """One CRM pipeline's open stages, in the CRM's stage order."""

    connection: str
    pipeline: str | None
    stages: list[dict[str, Any]] = field(default_factory=list)


def funnels(session: Session, settings: Settings, focus: Focus) -> tuple[list[Funnel], str | None]:
    """The open pipeline now by stage, one funnel per (connection, pipeline); each stage
    with its bar's width (0 to 100, by amount, relative to the funnel's largest stage)."""
    result = pipeline(session, settings=settings, people=focus.people)
    names = {c.id: c.name for c in (session.get(Connection, cid) for cid in
                                    {r["connection_id"] for r in result["data"]}) if c}
    out: list[Funnel] = []
    for row in result["data"]:
        key = (names.get(row["connection_id"], str(row["connection_id"])), row["pipeline"])
        if not out or (out[-1].connection, out[-1].pipeline) != key:
            out.append(Funnel(*key))
        out[-1].stages.append(dict(row))
    for funnel in out:
        top = max((s["amount"] for s in funnel.stages), default=Decimal(0))
        for stage in funnel.stages:
            stage["bar"] = str((stage["amount"] / top * 100).quantize(Decimal("0.1"))) \
                if top > 0 else "0"
    return out, result["currency"]


def forecast(session: Session, settings: Settings, focus: Focus,
             period: Period) -> dict[str, Any]:
    """The period's bookings, weighted pipeline and forecast against its goal (the
    summary's total for the chosen people), and the bar that draws them."""
    total = summary(session, start=period.start, end=period.end, group_by=GroupBy.NONE,
                    settings=settings, people=focus.people)["total"]
    return {"total": total, "coverage": attainment(total["forecast"], total["goal"]),
            "bar": forecast_bar(total["bookings"], total["weighted_pipeline"], total["goal"])}


def forecast_bar(booked: Decimal, weighted: Decimal, goal: Decimal | None) -> dict[str, Any]:
    """The forecast bar's lengths in SVG units: bookings, then the weighted pipeline after
    them, and the goal's mark; the longest of forecast and goal fills the box."""
    longest = max(booked + weighted, goal or Decimal(0))
    scale = FORECAST_WIDTH / float(max(longest, Decimal(1)))
    return {"width": FORECAST_WIDTH, "booked": round(float(booked) * scale, 1),
            "weighted": round(float(weighted) * scale, 1),
            "goal": None if goal is None else round(float(goal) * scale, 1)}


@router.get("/pipeline")
def pipeline_page(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", show: Annotated[str, Query()] = "",
    cursor: Annotated[str, Query()] = "",
) -> Response:
    begun = sliced.start(request, session, settings, period=period, start=start, end=end,
                         show=show, default=DEFAULT_PERIOD)
    if isinstance(begun, Response):
        return begun
    lang, focus, chosen, page = begun.lang, begun.focus, begun.period, begun.page
    after = page_after(request, cursor, begun.signed)
    if isinstance(after, Response):
        return after
    form = page["form"]
    page.update(funnels=[], currency=None, forecast=None, deals=[], links={}, connections={},
                next_href=None, first_href=None)
    status = 200
    if chosen is None:
        status = 400
    else:
        try:
            page["funnels"], page["currency"] = funnels(session, settings, focus)
            page["forecast"] = forecast(session, settings, focus, chosen)
        except CurrencyError as exc:
            page["error"], status = text(lang, "error.missing_rate", detail=str(exc)), 422
        session.commit()  # created dates may have been recomputed for a new time zone
        listing = drill_down(DrillMetric.OPEN_PIPELINE, start=chosen.start, end=chosen.end,
                             people=focus.people)
        rows, next_after = fetch_page(session, listing, after=after, limit=PAGE_SIZE)
        query = {**({"period": chosen.choice} if chosen.choice != CUSTOM else {
            "period": CUSTOM, "start": form["start"], "end": form["end"]}),
            **({"show": focus.choice.value} if focus.choice.value else {})}
        page.update(
            deals=rows, links=deal_links(session, rows),
            connections={cid: session.get(Connection, cid)
                         for cid in {r["connection_id"] for r in rows}},
            next_href=("/pipeline?" + urlencode({**query, "cursor": encode_cursor(next_after)})
                       + "#closing") if next_after else None,
            first_href=("/pipeline?" + urlencode(query) + "#closing")
            if after is not None else None)
    return render(request, "pipeline.html", status=status, signed=begun.signed,
                  nav="pipeline", **page)


__all__ = ["router"]
