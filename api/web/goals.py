"""The Goals page: a grid of people (rows) by the months of a quarter or a year (columns)
for one goal metric, with attainment so far and each CRM's push status; saving the grid,
splitting a quarter's (or year's) target into months, importing a CSV/xlsx sheet and
pushing to the CRMs (docs/dashboard.md, docs/goals.md).

Reads and writes go through core.goals, the functions the /api/v1/goals routes call, with
the signed-in user's people: a manager edits and pushes the goals of their teams, an admin
everyone's, a rep sees their own goals read-only. Every form carries the session's CSRF
token. A grid with any bad cell saves nothing and shows each bad cell's error.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from babel.dates import format_skeleton
from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col
from starlette.concurrency import run_in_threadpool

from api.deps import JobQueue, SessionDep, SettingsDep
from api.routes.goals import MAX_IMPORT_BYTES
from api.web import guard
from api.web.i18n import Formats, text
from api.web.render import PageRoute, error_page, language, redirect, render
from connectors.registry import capabilities
from core.accounts import Role, SignedIn
from core.config import Settings
from core.goals import targets as goals
from core.goals.split import SplitRule, last_year_bookings, split, unit_of
from core.metrics.currency import CurrencyError, reporting_currency
from core.metrics.periods import Preset, preset_range, today
from core.models import Connection
from core.people import people_listing
from core.types import GoalMetric, PushStatus

router = APIRouter(route_class=PageRoute, include_in_schema=False)
FormText = Annotated[str, Form()]
QUARTER, YEAR = "q", "y"
KINDS = {QUARTER: 3, YEAR: 12}  # months in a span
METRICS = tuple(GoalMetric)
PUSHED = (PushStatus.INSERTED, PushStatus.UPDATED, PushStatus.UNCHANGED)
PUSH_STATES = ("pushed", "pending", "failed", "skipped", "unsupported")
"""What the page says of a goal in a CRM (PushCell.status)."""
MAX_ROWS = 500  # people on one page
MAX_CELL = 40  # characters of a typed target


@dataclass(frozen=True)
class Span:
    """The quarter or year the grid shows: its first month and its number of months."""

    kind: str
    first: date

    @property
    def months(self) -> list[date]:
        out, month = [], self.first
        for _ in range(KINDS[self.kind]):
            out.append(month)
            month = _next_month(month)
        return out

    @property
    def start(self) -> date:
        return self.first

    @property
    def end(self) -> date:
        return _next_month(self.months[-1]) - timedelta(days=1)

    @property
    def value(self) -> str:
        return f"{self.kind}-{self.first:%Y-%m}"


def _next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _month_end(month: date) -> date:
    return _next_month(month) - timedelta(days=1)


def parse_span(value: str, settings: Settings) -> Span | None:
    """`q-YYYY-MM` (a fiscal quarter starting that month) or `y-YYYY-MM` (a fiscal year);
    empty: this quarter. None when it names no quarter or year."""
    if not value:
        first, _ = preset_range(Preset.THIS_QUARTER, today(settings),
                                settings.fiscal_year_start_month)
        return Span(QUARTER, first)
    kind, _, month = value.partition("-")
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError:
        return None
    shift = settings.fiscal_year_start_month - 1
    if kind not in KINDS or not 2000 <= first.year <= 2100 or \
            (first.month - 1 - shift) % KINDS[kind] != 0:
        return None
    return Span(kind, first)


def span_choices(settings: Settings) -> list[Span]:
    """Last, this and next fiscal year, each followed by its quarters."""
    this_year, _ = preset_range(Preset.THIS_YEAR, today(settings),
                                settings.fiscal_year_start_month)
    out = []
    for year in (this_year.year - 1, this_year.year, this_year.year + 1):
        first = this_year.replace(year=year)
        out.append(Span(YEAR, first))
        out += [Span(QUARTER, m) for m in Span(YEAR, first).months[::3]]
    return out


def month_label(month: date, fmt: Formats) -> str:
    return format_skeleton("yMMM", month, locale=fmt.locale)


def span_label(span: Span, fmt: Formats, settings: Settings) -> str:
    months = f"{month_label(span.first, fmt)} – {month_label(span.months[-1], fmt)}"
    if span.kind == YEAR:
        return text(fmt.lang, "goals.span.year", months=months)
    number = (span.first.month - settings.fiscal_year_start_month) % 12 // 3 + 1
    return text(fmt.lang, "goals.span.quarter", n=number, months=months)


# ---- the grid -------------------------------------------------------------------------------

@dataclass
class Cell:
    name: str  # the form field: g-<person>-<YYYY-MM>
    month: date
    value: str  # as typed, or the stored target
    goal_id: int | None = None
    actual: str = ""
    attainment: str = ""
    error: str = ""


@dataclass
class Other:
    """A goal of the row's person inside the span that is not a month's (a quarter's)."""

    goal_id: int
    period: str
    target: str
    attainment: str

    @property
    def field(self) -> str:
        return f"del-{self.goal_id}"


@dataclass
class Row:
    person_id: int
    label: str
    team: str | None
    cells: list[Cell]
    total: str = ""
    split_value: str = ""
    split_error: str = ""
    others: list[Other] = field(default_factory=list)


@dataclass
class PushCell:
    status: str  # pushed, pending, failed, skipped, unsupported
    reason: str = ""


@dataclass
class PushLine:
    label: str
    month: date
    month_label: str
    target: str
    states: list[PushCell] = field(default_factory=list)


def cell_name(person_id: int, month: date) -> str:
    return f"g-{person_id}-{month:%Y-%m}"


def _people(session: Session, signed: SignedIn) -> list[dict[str, Any]]:
    """The people whose goals the user sees (a rep: their own), by team and name."""
    viewer = signed.viewer
    listing = people_listing(people=viewer.people)
    rows = [listing.to_row(r) for r in session.execute(
        listing.stmt.order_by(listing.key).limit(MAX_ROWS))]
    return sorted(rows, key=lambda p: ((p["team"] or "\uffff").lower(),
                                       (p["name"] or p["email"] or "").lower(), p["id"]))


@dataclass
class SpanGoals:
    """The people's goals inside a span, in the goals API's shape: monthly ones by
    (person, month), the others (a quarter's, a custom period's) by person."""

    monthly: dict[tuple[int, date], dict[str, Any]]
    others: dict[int, list[dict[str, Any]]]

    def all(self) -> list[dict[str, Any]]:
        return [*self.monthly.values(), *(g for gs in self.others.values() for g in gs)]


def _monthly(row: dict[str, Any]) -> bool:
    return bool(row["period_start"].day == 1
                and row["period_end"] == _month_end(row["period_start"]))


def _goals(session: Session, settings: Settings, signed: SignedIn, span: Span,
           metric: str) -> SpanGoals:
    """The goals of people (not company-wide ones) whose period lies inside the span, as
    the leaderboard of the span counts them."""
    listing = goals.goals_listing(metric=GoalMetric(metric), start=span.start, end=span.end,
                                  people=signed.viewer.people)
    found = [r for r in (listing.to_row(x) for x in session.execute(
                 listing.stmt.order_by(listing.key))) if r["person_id"] is not None]
    out = SpanGoals({}, {})
    for row in goals.goal_rows(session, found, settings):
        if _monthly(row):
            out.monthly[(row["person_id"], row["period_start"])] = row
        else:
            out.others.setdefault(row["person_id"], []).append(row)
    return out


def _target_text(value: Decimal, metric: str) -> str:
    return format(value.quantize(unit_of(metric)), "f")


def _grid(session: Session, settings: Settings, signed: SignedIn, span: Span, metric: str,
          fmt: Formats, typed: dict[str, str] | None = None) -> tuple[list[Row], SpanGoals]:
    """The grid's rows: stored targets, or what was typed (`typed`: field -> text)."""
    found = _goals(session, settings, signed, span, metric)
    stored = found.monthly
    currency = reporting_currency(session, settings) if metric == GoalMetric.BOOKINGS else None
    rows = []
    for person in _people(session, signed):
        pid = int(person["id"])
        cells = []
        for month in span.months:
            goal = stored.get((pid, month))
            name = cell_name(pid, month)
            value = _target_text(goal["target"], metric) if goal else ""
            cell = Cell(name, month, typed.get(name, value) if typed is not None else value)
            if goal:
                cell.goal_id = int(goal["id"])
                cell.actual = _amount(goal["actual"], metric, currency, fmt)
                cell.attainment = fmt.percent(goal["attainment"])
            cells.append(cell)
        targets = [g for g in (stored.get((pid, m)) for m in span.months) if g]
        targets += found.others.get(pid, [])
        total = sum((g["target"] for g in targets), Decimal(0))
        label = person["name"] or person["email"] or f"#{pid}"
        rows.append(Row(pid, label, person["team"], cells,
                        _amount(total, metric, currency, fmt) if targets else "",
                        others=[Other(int(g["id"]), fmt.range(g["period_start"],
                                                              g["period_end"]),
                                      _amount(g["target"], metric, currency, fmt),
                                      fmt.percent(g["attainment"]))
                                for g in found.others.get(pid, [])]))
    return rows, found


def _amount(value: Any, metric: str, currency: str | None, fmt: Formats) -> str:
    if metric == GoalMetric.BOOKINGS:
        return fmt.money(Decimal(value), currency)
    return fmt.number(value)


def _push_lines(session: Session, found: SpanGoals, rows: Sequence[Row], metric: str,
                fmt: Formats,
                currency: str | None) -> tuple[list[Connection], list[PushLine]]:
    """Each goal of the grid by each connection: pushed, pending (never pushed, or changed
    since), failed (why), skipped (why) or unsupported (the CRM takes no goals)."""
    connections = list(session.execute(select(Connection).order_by(col(Connection.id)))
                       .scalars())
    takes = {c.id: "goals" in capabilities_of(c.provider) for c in connections}
    labels = {r.person_id: r.label for r in rows}
    lines = []
    for goal in sorted(found.all(), key=lambda g: (labels.get(g["person_id"], ""),
                                                   g["period_start"], g["period_end"])):
        pid, month = goal["person_id"], goal["period_start"]
        period = month_label(month, fmt) if _monthly(goal) else fmt.range(
            goal["period_start"], goal["period_end"])
        pushes = {p["connection_id"]: p for p in goal["push"]}
        line = PushLine(labels.get(pid, f"#{pid}"), month, period,
                        _amount(goal["target"], metric, currency, fmt))
        for connection in connections:
            push = pushes.get(connection.id)
            if not takes[connection.id]:
                line.states.append(PushCell("unsupported"))
            elif push is None:
                line.states.append(PushCell("pending"))
            elif push["status"] == PushStatus.ERROR:
                line.states.append(PushCell("failed", push["error"] or ""))
            elif push["status"] == PushStatus.SKIPPED:
                line.states.append(PushCell("skipped", push["error"] or ""))
            elif push["status"] in PUSHED and push["pushed_at"] is not None and \
                    push["pushed_at"] >= goal["updated_at"]:
                line.states.append(PushCell("pushed"))
            else:
                line.states.append(PushCell("pending"))
        lines.append(line)
    return connections, lines


def capabilities_of(provider: str) -> frozenset[str]:
    """What a connection's connector can do (connectors.registry); nothing when its
    provider is not installed any more."""
    try:
        return capabilities(provider)
    except (KeyError, ValueError, LookupError):  # a provider no longer installed
        return frozenset()


# ---- the page -------------------------------------------------------------------------------

def _query(span: Span, metric: str, **extra: str) -> str:
    return "/goals?" + urlencode({"span": span.value, "metric": metric, **extra})


def _page(request: Request, session: Session, settings: Settings, signed: SignedIn,
          span: Span, metric: str, *, status: int = 200, typed: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, splits: dict[int, tuple[str, str]] | None = None,
          notice: str = "", error: str = "", import_rows: Sequence[dict[str, Any]] = (),
          rule: str = SplitRule.EVEN) -> Response:
    lang = language(request)
    fmt = Formats(lang)
    try:
        rows, stored = _grid(session, settings, signed, span, metric, fmt, typed)
        currency = reporting_currency(session, settings) \
            if metric == GoalMetric.BOOKINGS else None
    except CurrencyError as exc:
        return render(request, "goals.html", status=422, signed=signed, nav="goals",
                      **_frame(settings, span, metric, fmt), rows=[], connections=[],
                      push_lines=[], editable=False, notice="",
                      error=text(lang, "error.missing_rate", detail=str(exc)),
                      import_rows=[], rule=rule, rules=tuple(SplitRule), currency=None)
    for row in rows:
        for cell in row.cells:
            cell.error = (errors or {}).get(cell.name, "")
        row.split_value, row.split_error = (splits or {}).get(row.person_id, ("", ""))
    connections, push_lines = _push_lines(session, stored, rows, metric, fmt, currency)
    return render(request, "goals.html", status=status, signed=signed, nav="goals",
                  **_frame(settings, span, metric, fmt), rows=rows, connections=connections,
                  push_lines=push_lines, editable=_editable(signed), notice=notice,
                  error=error, import_rows=import_rows, rule=rule, rules=tuple(SplitRule),
                  currency=currency)


def _frame(settings: Settings, span: Span, metric: str, fmt: Formats) -> dict[str, Any]:
    choices = span_choices(settings)
    if span not in choices:
        choices.insert(0, span)
    return {"span": span, "metric": metric, "metrics": METRICS,
            "span_choices": [(s.value, span_label(s, fmt, settings)) for s in choices],
            "span_label": span_label(span, fmt, settings),
            "months": [(m, month_label(m, fmt)) for m in span.months]}


def _editable(signed: SignedIn) -> bool:
    return signed.viewer.role in (Role.ADMIN, Role.MANAGER)


def _chosen(request: Request, signed: SignedIn, settings: Settings, span_value: str,
            metric: str) -> tuple[Span, str] | Response:
    span = parse_span(span_value.strip(), settings)
    lang = language(request)
    if span is None:
        return error_page(request, 400, "error.bad_request.title",
                          text(lang, "goals.bad_span"), signed=signed)
    metric = metric or GoalMetric.BOOKINGS
    if metric not in METRICS:
        return error_page(request, 400, "error.bad_request.title",
                          text(lang, "goals.bad_metric"), signed=signed)
    return span, metric


def _notice(lang: str, saved: str, imported: str, pushed: str) -> str:
    if saved.isdigit():
        return text(lang, "goals.saved", n=int(saved))
    if imported.count("-") == 2 and imported.replace("-", "").isdigit():
        created, updated, unchanged = (int(n) for n in imported.split("-"))
        return text(lang, "goals.imported", created=created, updated=updated,
                    unchanged=unchanged)
    if pushed.isdigit():
        return text(lang, "goals.pushed", n=int(pushed))
    return ""


@router.get("/goals")
def goals_page(request: Request, session: SessionDep, settings: SettingsDep,
               span: Annotated[str, Query()] = "", metric: Annotated[str, Query()] = "",
               saved: Annotated[str, Query()] = "", imported: Annotated[str, Query()] = "",
               pushed: Annotated[str, Query()] = "") -> Response:
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    chosen = _chosen(request, signed, settings, span, metric)
    if isinstance(chosen, Response):
        return chosen
    return _page(request, session, settings, signed, *chosen,
                 notice=_notice(language(request), saved, imported, pushed))


def _may_change(request: Request, signed: SignedIn | None, csrf: str) -> Response | None:
    """Why this user may not change goals (a page), or None: they may."""
    if signed is None:
        return guard.to_login(request)
    lang = language(request)
    if not guard.session_token_ok(signed, csrf):
        return error_page(request, 403, "error.refused.title", text(lang, "error.csrf"),
                          signed=signed)
    if not _editable(signed):
        return error_page(request, 403, "error.refused.title", text(lang, "goals.read_only"),
                          signed=signed)
    return None


Editing = tuple[SignedIn, Span, str]


def _editing(request: Request, settings: Settings, csrf: str, span: str,
             metric: str) -> Editing | Response:
    """The signed-in manager or admin of a goals form (with its CSRF token) and the span
    and metric it is about, or the page that says no."""
    signed = guard.current(request)
    refused = _may_change(request, signed, csrf)
    if refused is not None:
        return refused
    assert signed is not None
    chosen = _chosen(request, signed, settings, span, metric)
    if isinstance(chosen, Response):
        return chosen
    return signed, *chosen


def parse_target(value: str) -> Decimal | None:
    """A typed target: digits with an optional decimal point; thousands separators (",",
    spaces) allowed. None when it is not a number."""
    cleaned = value.replace(",", "").replace(" ", "").replace("\u00a0", "").strip()
    if not cleaned or len(value) > MAX_CELL:
        return None
    try:
        number = Decimal(cleaned)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _cell_problem(lang: str, metric: str, value: str) -> tuple[Decimal | None, str]:
    """(target, "") or (None, the error in `lang`) for a non-empty cell."""
    number = parse_target(value)
    if number is None:
        return None, text(lang, "goals.problem.not_number")
    problem = goals.target_problem(metric, number)
    if problem is not None:
        return None, text(lang, f"goals.problem.{problem}")
    return number, ""


@router.post("/goals")
async def save_goals(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    """Save the grid (action=save) or fill rows in from their split totals (action=split,
    nothing saved). Every changed cell is created, updated or (emptied) deleted through
    core.goals in one transaction: any bad cell and nothing is saved."""
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    return await run_in_threadpool(_save, request, session, settings, fields)


def _save(request: Request, session: Session, settings: Settings,
          fields: dict[str, str]) -> Response:
    editing = _editing(request, settings, fields.get(guard.CSRF_FIELD, ""),
                       fields.get("span", ""), fields.get("metric", ""))
    if isinstance(editing, Response):
        return editing
    signed, span, metric = editing
    lang = language(request)
    people = [int(p["id"]) for p in _people(session, signed)]
    cells = {cell_name(pid, m): (pid, m) for pid in people for m in span.months}
    typed = {name: fields[name].strip() for name in cells if name in fields}
    found = _goals(session, settings, signed, span, metric)
    removable = {f"del-{g['id']}": int(g["id"]) for gs in found.others.values() for g in gs
                 if g["person_id"] in people}
    allowed = {*cells, *(f"split-{p}" for p in people), *removable}
    strange = [k for k in fields if k.startswith(("g-", "split-", "del-")) and k not in allowed]
    if strange:  # a person or goal the user may not see, or a month outside the span
        return error_page(request, 404, "error.not_found.title", text(lang, "error.not_found"),
                          signed=signed)
    if fields.get("action") == "split":
        return _split(request, session, settings, signed, span, metric, typed, fields, people)
    errors, changed = _apply(session, settings, signed, lang, metric, typed, cells,
                             found.monthly)
    for name, goal_id in removable.items():  # the other goals ticked to be deleted
        if fields.get(name) == "1":
            goals.delete_goal(session, goal_id, people=signed.viewer.people)
            changed += 1
    if errors:
        session.rollback()
        return _page(request, session, settings, signed, span, metric, status=422,
                     typed=typed, errors=errors,
                     error=text(lang, "goals.not_saved", n=len(errors)))
    try:
        session.commit()
    except IntegrityError:  # another request set one of these goals meanwhile
        session.rollback()
        return _page(request, session, settings, signed, span, metric, status=409,
                     typed=typed, error=text(lang, "goals.conflict"))
    return redirect(_query(span, metric, saved=str(changed)))


def _apply(session: Session, settings: Settings, signed: SignedIn, lang: str, metric: str,
           typed: dict[str, str], cells: dict[str, tuple[int, date]],
           stored: dict[tuple[int, date], dict[str, Any]]) -> tuple[dict[str, str], int]:
    """Create, update or delete the goal of every changed cell (uncommitted): the errors by
    cell, and how many goals changed."""
    errors: dict[str, str] = {}
    changed = 0
    for name, value in typed.items():
        pid, month = cells[name]
        goal = stored.get((pid, month))
        if not value:
            if goal is not None:
                goals.delete_goal(session, int(goal["id"]), people=signed.viewer.people)
                changed += 1
            continue
        number, problem = _cell_problem(lang, metric, value)
        if number is None:
            errors[name] = problem
            continue
        if goal is not None and goal["target"] == number:
            continue
        try:
            if goal is None:
                goals.create_goal(session, goals.GoalInput(
                    None, metric, month, _month_end(month), number, person_id=pid),
                    settings, people=signed.viewer.people)
            else:
                goals.update_goal(session, int(goal["id"]), {"target": number}, settings,
                                  people=signed.viewer.people)
            changed += 1
        except (goals.GoalError, goals.GoalNotFound, CurrencyError) as exc:  # conflicts too
            errors[name] = text(lang, "goals.problem.other", detail=str(exc))
    return errors, changed


def _split(request: Request, session: Session, settings: Settings, signed: SignedIn,
           span: Span, metric: str, typed: dict[str, str], fields: dict[str, str],
           people: list[int]) -> Response:
    """The rows with a total filled in with its months' shares (core.goals.split); the
    other cells as typed. Nothing is saved."""
    lang = language(request)
    rule = fields.get("rule", SplitRule.EVEN)
    if rule not in tuple(SplitRule):
        rule = SplitRule.EVEN
    totals: dict[int, Decimal] = {}
    splits: dict[int, tuple[str, str]] = {}
    for pid in people:
        value = fields.get(f"split-{pid}", "").strip()
        if not value:
            continue
        number, problem = _cell_problem(lang, metric, value)
        splits[pid] = (value, problem)
        if number is not None:
            totals[pid] = number
    weights: dict[int, list[Decimal]] = {}
    if rule == SplitRule.LAST_YEAR and totals:
        try:
            weights = last_year_bookings(session, settings, person_ids=totals,
                                         months=span.months, people=signed.viewer.people)
        except CurrencyError as exc:
            return _page(request, session, settings, signed, span, metric, status=422,
                         typed=typed, splits=splits, rule=rule,
                         error=text(lang, "error.missing_rate", detail=str(exc)))
    even = [Decimal(1)] * len(span.months)
    for pid, total in totals.items():
        shares = split(total, weights.get(pid, even), unit_of(metric))
        for month, share in zip(span.months, shares, strict=True):
            typed[cell_name(pid, month)] = _target_text(share, metric) if share else ""
    bad = sum(1 for _, problem in splits.values() if problem)
    notice = text(lang, "goals.split_done", n=len(totals)) if totals else ""
    return _page(request, session, settings, signed, span, metric,
                 status=422 if bad else 200, typed=typed, splits=splits, rule=rule,
                 notice=notice, error=text(lang, "goals.split_bad", n=bad) if bad else "")


@router.post("/goals/import")
async def import_sheet(request: Request, session: SessionDep, settings: SettingsDep,
                       file: Annotated[UploadFile | None, File()] = None,
                       csrf: FormText = "", span: FormText = "",
                       metric: FormText = "") -> Response:
    """Import a CSV/xlsx sheet with core.goals.import_goals (as `crmsync goals import` and
    POST /api/v1/goals/import): all rows or none; every bad row shown by its line."""
    editing = await run_in_threadpool(_editing, request, settings, csrf, span, metric)
    if isinstance(editing, Response):
        return editing
    raw = await file.read(MAX_IMPORT_BYTES + 1) if file is not None else b""
    return await run_in_threadpool(_import, request, session, settings, editing, raw)


def _import(request: Request, session: Session, settings: Settings, editing: Editing,
            raw: bytes) -> Response:
    signed, chosen = editing[0], editing[1:]
    lang = language(request)
    problem = ""
    if not raw:
        problem = text(lang, "goals.import.no_file")
    elif len(raw) > MAX_IMPORT_BYTES:
        problem = text(lang, "goals.import.too_large", mb=MAX_IMPORT_BYTES // 1024 // 1024)
    if problem:
        return _page(request, session, settings, signed, *chosen, status=422, error=problem)
    try:
        result = goals.import_goals(session, raw, settings, people=signed.viewer.people)
        session.commit()
    except goals.ImportInvalid as exc:
        session.rollback()
        return _page(request, session, settings, signed, *chosen, status=422,
                     error=text(lang, "goals.import.invalid", n=len({r["line"]
                                                                     for r in exc.rows})),
                     import_rows=exc.rows)
    except IntegrityError:
        session.rollback()
        return _page(request, session, settings, signed, *chosen, status=409,
                     error=text(lang, "goals.conflict"))
    counts = f"{result['created']}-{result['updated']}-{result['unchanged']}"
    return redirect(_query(*chosen, imported=counts))


@router.post("/goals/push")
async def push_goals(request: Request, session: SessionDep, settings: SettingsDep,
                     csrf: FormText = "", span: FormText = "",
                     metric: FormText = "") -> Response:
    """Push to every CRM: the job POST /api/v1/goals/push enqueues, limited to the user's
    people (a manager: their teams' goals)."""
    editing = await run_in_threadpool(_editing, request, settings, csrf, span, metric)
    if isinstance(editing, Response):
        return editing
    signed, chosen = editing[0], editing[1:]
    jobs: JobQueue = request.app.state.jobs
    try:
        result = await jobs.enqueue_push_goals(None, signed.viewer.people)
    except TimeoutError:
        return _page(request, session, settings, signed, *chosen, status=503,
                     error=text(language(request), "goals.push_waiting"))
    return redirect(_query(*chosen, pushed=str(len(result["results"]))))


__all__ = ["PUSH_STATES", "Span", "capabilities_of", "parse_span", "parse_target", "router",
           "span_choices"]
