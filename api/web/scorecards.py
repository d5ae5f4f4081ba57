"""The Scorecards page: a team's reps (or everyone the user sees, by team) for a period,
each figure with its change against the previous period and the rep's rank in the team;
a click on a rep opens their own card. A rep sees only their own card.

Every figure comes from core.metrics.scorecard.scorecards, the function the API's
/metrics/scorecards calls, for the people the user chose among those they see."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from api.deps import SessionDep, SettingsDep
from api.web import sliced
from api.web.i18n import NOTHING, Formats, text
from api.web.render import PageRoute, render
from core.metrics.currency import CurrencyError
from core.metrics.periods import Preset
from core.metrics.scorecard import FIGURES, scorecards

router = APIRouter(route_class=PageRoute, include_in_schema=False)

DEFAULT_PERIOD = Preset.THIS_QUARTER
COLUMNS = ("bookings", "attainment", "win_rate", "sales_cycle_days", "avg_deal_size",
           "pipeline_coverage", "activities", "hygiene")
"""The team table's figures, in order (headings: messages card.<name>); a card shows all."""
MONEY = frozenset({"bookings", "goal", "avg_deal_size", "next_open_pipeline", "next_goal"})
RATIOS = frozenset({"attainment", "win_rate"})
LOWER_IS_BETTER = frozenset({"sales_cycle_days", "hygiene"})


@dataclass(frozen=True)
class Shown:
    """A figure as the page writes it: its value, the previous period's, the change and
    which way it went (up, down, flat; "" when there is no change to show) and whether
    that is good news."""

    name: str
    value: str
    previous: str
    change: str
    direction: str
    good: bool | None


def _text(name: str, value: Decimal | int | None, fmt: Formats, currency: str | None,
          signed: bool = False) -> str:
    if value is None:
        return NOTHING
    plus = "+" if signed and value > 0 else ""
    if name in MONEY:
        return plus + fmt.money(Decimal(value), currency)
    if name in RATIOS:
        return plus + fmt.percent(Decimal(value))
    if name == "pipeline_coverage":
        return text(fmt.lang, "card.times", value=plus + fmt.number(value))
    return plus + fmt.number(value)


def shown(name: str, figure: dict[str, Any], fmt: Formats, currency: str | None) -> Shown:
    change = figure["change"]
    direction = "" if change is None else "up" if change > 0 else "down" if change < 0 \
        else "flat"
    good = None if direction in ("", "flat") else (direction == "up") != (
        name in LOWER_IS_BETTER)
    return Shown(name, _text(name, figure["value"], fmt, currency),
                 _text(name, figure["previous"], fmt, currency),
                 _text(name, change, fmt, currency, signed=True), direction, good)


def _line(row: dict[str, Any], names: tuple[str, ...], fmt: Formats,
          currency: str | None) -> dict[str, Shown]:
    return {name: shown(name, row[name], fmt, currency) for name in names}


@router.get("/scorecards")
def scorecards_page(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", show: Annotated[str, Query()] = "",
) -> Response:
    begun = sliced.start(request, session, settings, period=period, start=start, end=end,
                         show=show, default=DEFAULT_PERIOD)
    if isinstance(begun, Response):
        return begun
    chosen, page = begun.period, begun.page
    page.update(result=None, card=None, teams=[], total=None, columns=COLUMNS,
                figures=FIGURES)
    status = 200
    if chosen is None:
        status = 400
    else:
        try:
            kind, _, value = begun.focus.choice.value.partition(":")
            result = scorecards(session, start=chosen.start, end=chosen.end,
                                settings=settings, people=begun.signed.viewer.people,
                                person_id=int(value) if kind == "person" else None,
                                team=value if kind == "team" else None)
        except (CurrencyError, ValueError) as exc:
            key = "error.missing_rate" if isinstance(exc, CurrencyError) else "card.bad_period"
            page["error"], status = text(begun.lang, key, detail=str(exc)), 422
        else:
            page.update(_page(result, begun.focus.choice.kind, chosen.query(), begun.fmt))
        session.commit()  # created dates may have been recomputed for a new time zone
    return render(request, "scorecards.html", status=status, signed=begun.signed,
                  nav="scorecards", **page)


def _page(result: dict[str, Any], kind: str, period: dict[str, str],
          fmt: Formats) -> dict[str, Any]:
    """The card of one rep, or the teams with their reps' lines and the total."""
    currency = result["currency"]
    out: dict[str, Any] = {"result": result}
    if kind == "person":
        row = result["data"][0] if result["data"] else None
        ranked = next((t["reps"] for t in result["teams"] if row and t["team"] == row["team"]),
                      0)
        out["card"] = None if row is None else {
            "row": row, "figures": _line(row, FIGURES, fmt, currency), "ranked": ranked}
        return out
    teams = []
    for team in result["teams"]:
        reps = [{"row": r, "cells": _line(r, COLUMNS, fmt, currency),
                 "href": "/scorecards?" + urlencode({**period,
                                                     "show": f"person:{r['person_id']}"})}
                for r in result["data"] if r["team"] == team["team"]]
        teams.append({"row": team, "cells": _line(team, COLUMNS, fmt, currency), "reps": reps})
    out["teams"] = teams
    if kind == "everyone":
        out["total"] = _line(result["total"], COLUMNS, fmt, currency)
    return out


__all__ = ["router", "shown"]
