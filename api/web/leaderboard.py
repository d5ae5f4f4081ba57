"""The leaderboard page (per rep, with team subtotals and the total) and its drill-down
(the deals behind a number). Every figure comes from core.metrics.definitions, the
functions the API's /metrics routes call, limited to what the signed-in user may see."""

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlmodel import Session

from api.deps import SessionDep, SettingsDep
from api.listing import MAX_ID, encode_cursor
from api.web import guard
from api.web.focus import deal_links
from api.web.i18n import Formats, text
from api.web.render import Column, PageRoute, error_page, language, page_after, render
from core.accounts import Role, SignedIn
from core.config import Settings
from core.hygiene import hygiene_summary
from core.metrics.currency import CurrencyError
from core.metrics.definitions import (
    DrillMetric,
    GroupBy,
    drill_down,
    sort_rows,
    summaries,
    validate_range,
)
from core.metrics.periods import PRESETS, Preset, preset_range, today
from core.models import Connection
from core.people import labels, teams
from core.queries import fetch_page

router = APIRouter(route_class=PageRoute, include_in_schema=False)

COLUMNS = ("bookings", "goal", "attainment", "win_rate", "open_pipeline", "sales_cycle_days",
           "activities")
"""The leaderboard's number columns, in order (their headings: messages col.<name>);
activities: those that count in the period (core.activities, docs/metrics.md)."""
NAME = "owner_name"
SORTS = (NAME, *COLUMNS)
DEFAULT_SORT = "-bookings"
DRILLS = {"bookings": DrillMetric.BOOKINGS, "win_rate": DrillMetric.WIN_RATE,
          "open_pipeline": DrillMetric.OPEN_PIPELINE,
          "sales_cycle_days": DrillMetric.SALES_CYCLE_DAYS}
"""The columns whose numbers are made of deals (goals are not): a click lists them."""
MONEY = ("bookings", "goal", "open_pipeline")
CUSTOM = "custom"
PERIOD_CHOICES = (*PRESETS, CUSTOM)
DEFAULT_PERIOD = Preset.THIS_QUARTER
PAGE_SIZE = 50
MAX_TEAM = 200


@dataclass(frozen=True)
class Period:
    choice: str
    start: date
    end: date

    def query(self) -> dict[str, str]:
        """The leaderboard's parameters for this period."""
        if self.choice == CUSTOM:
            return {"period": CUSTOM, "start": self.start.isoformat(),
                    "end": self.end.isoformat()}
        return {"period": self.choice}


def _day(value: str) -> date | None:
    try:
        return date.fromisoformat(value.strip()) if len(value.strip()) == 10 else None
    except ValueError:
        return None


def _dates(start: str, end: str) -> tuple[date, date] | None:
    first, last = _day(start), _day(end)
    if first is None or last is None:
        return None
    try:
        validate_range(first, last)
    except ValueError:
        return None
    return first, last


def choose_period(choice: str, start: str, end: str, settings: Settings) -> Period | None:
    """The period a leaderboard's parameters name (None: they name none)."""
    choice = choice or DEFAULT_PERIOD
    if choice == CUSTOM:
        dates = _dates(start, end)
        return None if dates is None else Period(CUSTOM, *dates)
    if choice not in PRESETS:
        return None
    first, last = preset_range(Preset(choice), today(settings),
                               settings.fiscal_year_start_month)
    return Period(choice, first, last)


@dataclass
class Cell:
    column: str
    text: str
    href: str | None = None
    bar: str | None = None  # the attainment bar's width, 0 to 100


@dataclass
class Line:
    """A row of the leaderboard table: a rep, a team subtotal or the total."""

    kind: str  # person, team, total
    label: str
    cells: list[Cell]
    person_id: int | None = None
    members: list["Line"] = field(default_factory=list)


def _issues(count: int, fmt: Formats, show: str | None) -> Cell:
    """The hygiene column's cell: open deals breaking a rule now (core.hygiene), linked to
    their list on the Hygiene page."""
    href = None if show is None else "/hygiene" + (f"?{urlencode({'show': show})}" if show else "")
    return Cell("hygiene", fmt.number(count), href)


def _bar(attainment: Decimal | None) -> str | None:
    if attainment is None:
        return None
    return str(max(Decimal(0), min(Decimal(100), attainment * 100)).quantize(Decimal("0.1")))


def _cells(row: dict[str, Any], fmt: Formats, currency: str | None,
           drill: dict[str, str] | None) -> list[Cell]:
    cells = []
    for column in COLUMNS:
        value = row[column]
        if column in MONEY:
            shown = fmt.money(value, currency)
        elif column in ("attainment", "win_rate"):
            shown = fmt.percent(value)
        else:
            shown = fmt.number(value)
        href = None
        if drill is not None and column in DRILLS and value is not None:
            href = "/leaderboard/deals?" + urlencode({"metric": DRILLS[column].value, **drill})
        cells.append(Cell(column, shown, href,
                          _bar(value) if column == "attainment" else None))
    return cells


def _headings(period: Period, sort: str, lang: str) -> list[Column]:
    """The table's headings: each sortable column a link to the board sorted by it (the
    other way when it is the current order), then the hygiene column, a link to /hygiene."""
    headings = []
    for column in SORTS:
        current = sort.removeprefix("-") == column
        descending = sort.startswith("-")
        first = column if column == NAME else f"-{column}"  # names A-Z first, numbers top
        wanted = (column if descending else f"-{column}") if current else first
        label = text(lang, "col.rep" if column == NAME else f"col.{column}")
        headings.append(Column(
            label, column if column == NAME else f"num {column}",
            href="/leaderboard?" + urlencode({**period.query(), "sort": wanted}),
            link_title=text(lang, "board.sort", column=label),
            sort=("descending" if descending else "ascending") if current else None))
    headings.append(Column(text(lang, "col.hygiene"), "num hygiene", href="/hygiene",
                           link_title=text(lang, "board.hygiene_hint")))
    return headings


def _board(session: Session, settings: Settings, signed: SignedIn, period: Period,
           sort: str, fmt: Formats) -> dict[str, Any]:
    """The leaderboard's lines: teams (when there are any) with their reps, and the total."""
    viewer = signed.viewer
    span = {"start": period.start.isoformat(), "end": period.end.isoformat(),
            **({"period": period.choice} if period.choice != CUSTOM else {})}
    # reps and teams from one pass over the numbers (core.metrics.definitions.summaries)
    answers = summaries(session, start=period.start, end=period.end,
                        group_bys=(GroupBy.OWNER, GroupBy.TEAM), settings=settings,
                        people=viewer.people, activities=True)
    owners = answers[GroupBy.OWNER]
    currency = owners["currency"]
    lang = fmt.lang

    def person(row: dict[str, Any]) -> Line:
        pid = row["person_id"]
        label = row["owner_name"] or row["owner_email"] or text(lang, "board.no_owner")
        drill = None if pid is None else {"person": str(pid), **span}
        issues = _issues(by_person.get(pid, 0), fmt, None if pid is None else f"person:{pid}")
        return Line("person", label, [*_cells(row, fmt, currency, drill), issues], pid)

    # hygiene issues now, whatever the period: per rep, per team (every issue of its
    # people) and in all (core.hygiene)
    hygiene = hygiene_summary(session, settings=settings, people=viewer.people)
    by_person = {r["person_id"]: r["total"] for r in hygiene["data"]}
    team_issues = {r["team"]: r["total"] for r in hygiene["teams"]}

    people_rows = sort_rows(owners["data"], sort, GroupBy.OWNER)
    team_of = teams(session, (r["person_id"] for r in people_rows))
    lines: list[Line] = []
    if viewer.role != Role.REP and any(team_of.values()):
        by_team = answers[GroupBy.TEAM]
        team_sort = sort.replace(NAME, "team")
        for row in sort_rows(by_team["data"], team_sort, GroupBy.TEAM):
            name = row["team"]
            label = text(lang, "board.team", team=name) if name is not None else \
                text(lang, "board.no_team")
            drill = None if name is None else {"team": name, **span}
            issues = _issues(team_issues.get(name, 0), fmt,
                             None if name is None else f"team:{name}")
            line = Line("team", label, [*_cells(row, fmt, currency, drill), issues])
            line.members = [person(r) for r in people_rows
                            if team_of.get(r["person_id"]) == name]
            lines.append(line)
    else:
        lines = [person(r) for r in people_rows]
    total = None
    if viewer.role != Role.REP:
        total = Line("total", text(lang, "board.total"),
                     [*_cells(owners["total"], fmt, currency, span),
                      _issues(hygiene["total"]["total"], fmt, "")])
    return {"lines": lines, "total": total, "currency": currency}


@router.get("/leaderboard")
def leaderboard(
    request: Request, session: SessionDep, settings: SettingsDep,
    period: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", sort: Annotated[str, Query()] = "",
) -> Response:
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    lang = language(request)
    fmt = Formats(lang)
    chosen = choose_period(period, start, end, settings)
    sort = sort.strip() or DEFAULT_SORT
    form = {"period": period or DEFAULT_PERIOD, "start": start, "end": end, "sort": sort}
    page: dict[str, Any] = {"form": form, "choices": PERIOD_CHOICES, "period": chosen,
                            "board": None, "headings": [], "error": ""}
    status = 200
    if chosen is None:
        page["error"], status = text(lang, "error.bad_dates"), 400
    elif sort.removeprefix("-") not in SORTS:
        page["error"], status = text(lang, "error.bad_sort"), 400
    else:
        form.update(start=chosen.start.isoformat(), end=chosen.end.isoformat())
        try:
            page["board"] = _board(session, settings, signed, chosen, sort, fmt)
        except CurrencyError as exc:
            page["error"], status = text(lang, "error.missing_rate", detail=str(exc)), 422
        session.commit()  # created dates may have been recomputed for a new time zone
        page["headings"] = _headings(chosen, sort, lang)
    return render(request, "leaderboard.html", status=status, signed=signed, nav="leaderboard",
                  **page)


def _person(value: str) -> int | None:
    """A person id of the URL, or None; -1 when it is not one (so nobody)."""
    if not value:
        return None
    return int(value) if value.isdigit() and 1 <= int(value) <= MAX_ID else -1


@router.get("/leaderboard/deals")
def deals(
    request: Request, session: SessionDep,
    metric: Annotated[str, Query()] = "", person: Annotated[str, Query()] = "",
    team: Annotated[str, Query()] = "", start: Annotated[str, Query()] = "",
    end: Annotated[str, Query()] = "", period: Annotated[str, Query()] = "",
    cursor: Annotated[str, Query()] = "",
) -> Response:
    """The deals behind one number of the leaderboard, a page at a time. Another person's
    deals are not found, as if the person did not exist."""
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    viewer, lang = signed.viewer, language(request)
    if metric not in tuple(DrillMetric):
        return error_page(request, 400, "error.bad_request.title",
                          text(lang, "error.bad_metric"), signed=signed)
    dates = _dates(start, end)
    if dates is None:
        return error_page(request, 400, "error.bad_request.title",
                          text(lang, "error.bad_dates"), signed=signed)
    person_id = _person(person)
    names = labels(session, [person_id]) if person_id is not None else {}
    if person_id is not None and (not viewer.sees(person_id) or person_id not in names):
        return error_page(request, 404, "error.not_found.title",
                          text(lang, "error.not_found"), signed=signed)
    after = page_after(request, cursor, signed)
    if isinstance(after, Response):
        return after
    team = team.strip()[:MAX_TEAM]
    listing = drill_down(DrillMetric(metric), start=dates[0], end=dates[1],
                         person_id=person_id, team=team or None, people=viewer.people)
    rows, next_after = fetch_page(session, listing, after=after, limit=PAGE_SIZE)
    connections = {cid: session.get(Connection, cid) for cid in {r["connection_id"] for r in rows}}
    if person_id is not None:
        email, name = names[person_id]
        who = name or email or ""
    else:
        who = text(lang, "board.team", team=team) if team else text(lang, "deals.everyone")
    query = {"metric": metric, "start": dates[0].isoformat(), "end": dates[1].isoformat(),
             **({"person": str(person_id)} if person_id is not None else {}),
             **({"team": team} if team else {}),
             **({"period": period} if period in PRESETS else {})}
    back = {"period": period} if period in PRESETS else {
        "period": CUSTOM, "start": query["start"], "end": query["end"]}
    return render(
        request, "deals.html", signed=signed, nav="leaderboard", rows=rows,
        connections=connections, links=deal_links(session, rows), metric=metric, who=who,
        start=dates[0], end=dates[1],
        first_href=("/leaderboard/deals?" + urlencode(query)) if after is not None else None,
        next_href=("/leaderboard/deals?" + urlencode(
            {**query, "cursor": encode_cursor(next_after)})) if next_after else None,
        back_href="/leaderboard?" + urlencode(back))
