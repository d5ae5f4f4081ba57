"""The Trends page: bookings against the goal by month or quarter (cumulative too) and the
win rate over time, for everyone the user sees, one team or one rep.

Bookings and win rates come from core.metrics.definitions.timeseries, the function the
API's /metrics/timeseries calls; each period's goal from core.goals.targets.goal_targets,
as the summary's goal of that period. Charts are inline SVG drawn here (no script); the
table beneath holds every number."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

from babel.dates import format_skeleton
from babel.numbers import format_compact_decimal
from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from api.web import sliced
from api.web.focus import Focus
from api.web.i18n import Formats, text
from api.web.leaderboard import Period
from api.web.render import PageRoute, render
from core.config import Settings
from core.goals.targets import attainment, goal_targets
from core.metrics.currency import CurrencyError
from core.metrics.definitions import Interval, SeriesMetric, timeseries
from core.metrics.periods import Preset

router = APIRouter(route_class=PageRoute, include_in_schema=False)

INTERVALS = (Interval.MONTH, Interval.QUARTER)
DEFAULT_PERIOD = Preset.THIS_YEAR
DEFAULT_INTERVAL = Interval.QUARTER  # goals are mostly set per quarter: they show at once
# the charts' drawing area (SVG user units; the SVG scales to the page's width)
WIDTH, HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 640, 220, 64, 8, 10, 26


@dataclass
class Row:
    """One period of the table (and of the charts)."""

    start: date
    end: date
    label: str
    bookings: Decimal
    goal: Decimal | None
    attainment: Decimal | None
    win_rate: Decimal | None
    total_bookings: Decimal  # cumulative: this period and the ones before it
    total_goal: Decimal | None
    total_attainment: Decimal | None
    short: str = ""  # the chart's label: a month without its year (Jan, 1月), else `label`


def period_label(first: date, interval: Interval, fmt: Formats, fiscal_start: int) -> str:
    """Jan 2026 / 2026年1月, or a fiscal quarter: Q1 2026 / 2026年第1季度 (the fiscal
    year is the calendar year it ends in)."""
    if interval == Interval.MONTH:
        return format_skeleton("yMMM", first, locale=fmt.locale)
    months = (first.month - fiscal_start) % 12
    year = first.year + (1 if fiscal_start != 1 and first.month >= fiscal_start else 0)
    return text(fmt.lang, "trends.quarter", n=months // 3 + 1, year=year)


def series_rows(session: Session, settings: Settings, focus: Focus, period: Period,
                interval: Interval, fmt: Formats) -> tuple[list[Row], str | None]:
    """The table's rows and the reporting currency."""
    common: dict[str, Any] = {"interval": interval, "start": period.start, "end": period.end,
                              "settings": settings, "people": focus.people}
    bookings = timeseries(session, metric=SeriesMetric.BOOKINGS, **common)
    win_rate = timeseries(session, metric=SeriesMetric.WIN_RATE, **common)
    rows: list[Row] = []
    running, running_goal, every_goal = Decimal(0), None, True
    for money, rate in zip(bookings["data"], win_rate["data"], strict=True):
        first, last = money["period_start"], money["period_end"]
        goal = goal_targets(session, start=max(first, period.start),
                            end=min(last, period.end), people=focus.people).total()
        goal = None if goal is None else goal.quantize(Decimal("0.01"))
        running += money["value"]
        if goal is not None:
            running_goal = (running_goal or Decimal(0)) + goal
        every_goal = every_goal and goal is not None  # else "so far" compares unlike things
        rows.append(Row(first, last,
                        period_label(first, interval, fmt, settings.fiscal_year_start_month),
                        money["value"], goal, attainment(money["value"], goal), rate["value"],
                        running, running_goal,
                        attainment(running, running_goal) if every_goal else None,
                        format_skeleton("MMM", first, locale=fmt.locale)
                        if interval == Interval.MONTH else ""))
    return rows, bookings["currency"]


@dataclass
class Bar:
    x: float
    width: float
    y: float
    height: float
    label: str  # the period, under the bar
    label_x: float
    goal_y: float | None  # the goal's mark


@dataclass
class Tick:
    y: float
    label: str


def _nice_top(value: Decimal) -> Decimal:
    """A round number at or above `value` for the top of an axis (1, 2, 2.5 or 5 x 10^n)."""
    if value <= 0:
        return Decimal(1)
    exponent = Decimal(10) ** (len(str(int(value))) - 1)
    for step in (1, 2, Decimal("2.5"), 5, 10):
        if value <= step * exponent:
            return step * exponent
    return 10 * exponent


def _y(value: Decimal, top: Decimal) -> float:
    inner = HEIGHT - TOP - BOTTOM
    return round(TOP + inner * float(1 - min(value, top) / top), 1)


def bookings_chart(rows: list[Row], cumulative: bool, fmt: Formats) -> dict[str, Any]:
    """Bars of bookings with a mark at each period's goal (or both cumulative), with a
    y axis of 4 gridlines."""
    values = [(r.total_bookings, r.total_goal) if cumulative else (r.bookings, r.goal)
              for r in rows]
    top = _nice_top(max([v for pair in values for v in pair if v is not None] or [Decimal(0)]))
    slot = (WIDTH - LEFT - RIGHT) / max(len(rows), 1)
    bars = []
    for i, ((money, goal), row) in enumerate(zip(values, rows, strict=True)):
        x = LEFT + i * slot
        y = _y(money, top)
        bars.append(Bar(round(x + slot * 0.2, 1), round(slot * 0.6, 1), y,
                        round(HEIGHT - BOTTOM - y, 1), row.short or row.label,
                        round(x + slot / 2, 1),
                        None if goal is None else _y(goal, top)))
    ticks = [Tick(_y(top * k / 4, top), format_compact_decimal(
        top * k / 4, locale=fmt.locale, fraction_digits=1)) for k in range(5)]
    return {"bars": bars, "ticks": ticks, "width": WIDTH, "height": HEIGHT, "left": LEFT,
            "right": WIDTH - RIGHT, "bottom": HEIGHT - BOTTOM, "slot": round(slot, 1),
            "goal_half": round(slot * 0.4, 1)}


def win_rate_chart(rates: list[tuple[str, Decimal | None]], fmt: Formats) -> dict[str, Any]:
    """Rates (label, rate from 0 to 1) as points joined by lines, 0 to 100 %: the win rate
    of each period here, of each entry cohort on the Funnel page. A missing rate (no
    closed deals) has no point and breaks the line."""
    slot = (WIDTH - LEFT - RIGHT) / max(len(rates), 1)
    lines: list[list[tuple[float, float]]] = [[]]
    points = []
    for i, (_, rate) in enumerate(rates):
        if rate is None:
            if lines[-1]:
                lines.append([])
            continue
        point = (round(LEFT + i * slot + slot / 2, 1), _y(rate, Decimal(1)))
        lines[-1].append(point)
        points.append(point)
    ticks = [Tick(_y(Decimal(k) / 4, Decimal(1)), fmt.percent(Decimal(k) / 4).replace(
        ".00", "")) for k in range(5)]
    labels = [(round(LEFT + i * slot + slot / 2, 1), name)
              for i, (name, _) in enumerate(rates)]
    return {"lines": [" ".join(f"{x},{y}" for x, y in line) for line in lines if line],
            "points": points, "ticks": ticks, "labels": labels, "width": WIDTH,
            "height": HEIGHT, "left": LEFT, "right": WIDTH - RIGHT, "bottom": HEIGHT - BOTTOM}


@router.get("/trends")
def trends(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", interval: Annotated[str, Query()] = "",
    show: Annotated[str, Query()] = "", cumulative: Annotated[str, Query()] = "",
) -> Response:
    begun = sliced.start(request, session, settings, period=period, start=start, end=end,
                         show=show, default=DEFAULT_PERIOD)
    if isinstance(begun, Response):
        return begun
    lang, fmt, focus, chosen, page = begun.lang, begun.fmt, begun.focus, begun.period, begun.page
    step = interval or DEFAULT_INTERVAL
    page["form"].update(interval=step, cumulative=bool(cumulative))
    page.update(rows=[], currency=None)
    status = 200
    if chosen is None:
        status = 400
    elif step not in INTERVALS:
        page["error"], status = text(lang, "trends.bad_interval"), 400
    else:
        try:
            rows, currency = series_rows(session, settings, focus, chosen, Interval(step), fmt)
        except CurrencyError as exc:
            page["error"], status = text(lang, "error.missing_rate", detail=str(exc)), 422
        else:
            page.update(rows=rows, currency=currency,
                        bookings_chart=bookings_chart(rows, bool(cumulative), fmt),
                        win_chart=win_rate_chart(
                            [(r.short or r.label, r.win_rate) for r in rows], fmt))
        session.commit()  # created dates may have been recomputed for a new time zone
    return render(request, "trends.html", status=status, signed=begun.signed, nav="trends",
                  **page)


__all__ = ["router"]
