"""Sales goals: validation, CRUD, CSV import and attainment.

A goal is (a person, core.people, or None for the whole company; metric, period_start,
period_end, target). The person is given by person_id or by owner_email (the person with
that email, or of a synced user with it). Targets of `bookings` goals are amounts in the
reporting currency (2 decimals); targets of `deals_won` goals are whole numbers of deals
(currency None). At most one live goal per person, metric and period (Goal.live_key is
unique).

Deleting a goal tombstones it (deleted_at): the next push deletes its copies in the
CRMs, then its push rows say `deleted`. Reads never show deleted goals.

Reads and writes may be limited to some people (`people`, a dashboard user's scope; None:
everyone): the goals of anyone else and company-wide goals then do not exist, and a goal
can be set only for one of those people.

Pushing goals into the CRMs is core/goals/push.py.

Every function takes the caller's session and never commits.
"""

import csv
import io
from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select, type_coerce
from sqlmodel import Session

from core.columns import Money
from core.config import Settings
from core.metrics.currency import Converter, converter, reporting_currency
from core.models import Connection, Deal, Goal, GoalPush, User, table_of
from core.people import PersonError, labels, normalize_email, person_of_email_expr, resolve
from core.queries import Listing
from core.records import GOAL_METRICS
from core.types import DealStatus, GoalMetric, utcnow

METRICS = GOAL_METRICS
MAX_TARGET = Decimal("1e13")  # 15 significant digits with cents: exact through any JSON parser
MAX_PERIOD_DAYS = 3653
MAX_IMPORT_ROWS = 10_000
IMPORT_COLUMNS = ("metric", "period_start", "period_end", "target")
OWNER_COLUMNS = ("owner_email", "person_id")  # at least one of them (both empty: the company)
OPTIONAL_COLUMNS = ("currency",)
COLUMNS = ("id", "person_id", "owner_email", "owner_name", "metric", "period_start",
           "period_end", "target", "currency", "actual", "attainment", "push", "created_at",
           "updated_at")
_CENT = Decimal("0.01")
_REQUIRED = ("owner_email|person_id", *IMPORT_COLUMNS)



GOAL, PUSH, DEAL, USER, CONNECTION = (table_of(m) for m in (Goal, GoalPush, Deal, User, Connection))
Details = list[dict[str, str]]


class GoalError(ValueError):
    """Invalid goal input; `details` name each field and what is wrong (a 422)."""

    def __init__(self, details: Details) -> None:
        super().__init__("; ".join(f"{d['field']}: {d['message']}" for d in details))
        self.details = details


class GoalConflict(GoalError):
    """A live goal for the same owner, metric and period exists (a 409)."""


class GoalNotFound(LookupError):
    pass


class ImportInvalid(ValueError):
    """Some CSV rows are bad; nothing was written. `rows`: line, field, message."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        n = len({r["line"] for r in rows})
        super().__init__(f"{n} line{'s' if n != 1 else ''} of the file "
                         f"{'are' if n != 1 else 'is'} invalid; nothing was imported")
        self.rows = rows


@dataclass(frozen=True)
class GoalInput:
    """A goal as given: its person by person_id or owner_email (neither: the company)."""

    owner_email: str | None
    metric: str
    period_start: date
    period_end: date
    target: Decimal
    currency: str | None = None
    person_id: int | None = None


# ---- validation -------------------------------------------------------------------------

Owner = int | None | PersonError  # a resolved person, the company, or why not


def _owner(session: Session, data: GoalInput, scope: Collection[int] | None) -> Owner:
    try:
        owner = resolve(session, person_id=data.person_id, email=data.owner_email,
                               people=scope)
    except PersonError as exc:
        return exc
    if owner is None and scope is not None:
        return PersonError("person_id", "give person_id or owner_email: only a user "
                                  "who sees every team sets company-wide goals")
    return owner


def _check(data: GoalInput, owner: Owner, reporting: str | None) -> tuple[
        Details, GoalInput]:
    """Field errors of `data` (owner, metric, period, target, currency), and it normalized
    (person_id resolved)."""
    errors: Details = []
    if isinstance(owner, PersonError):
        errors.append({"field": owner.field, "message": owner.message})
        owner = None
    if data.metric not in METRICS:
        errors.append({"field": "metric", "message": f"must be one of {', '.join(METRICS)}"})
    if data.period_end < data.period_start:
        errors.append({"field": "period_end", "message": "must not be before period_start"})
    elif (data.period_end - data.period_start).days >= MAX_PERIOD_DAYS:
        errors.append({"field": "period_end", "message": "a period must not exceed 10 years"})
    target = data.target
    problem = _target_problem(data.metric, target)
    if problem:
        errors.append({"field": "target", "message": problem})
    currency = (data.currency or "").strip().upper() or None
    if data.metric == GoalMetric.DEALS_WON:
        if currency is not None:
            errors.append({"field": "currency", "message": "deals_won goals count deals and "
                           "take no currency"})
    elif currency is not None and reporting is not None and currency != reporting:
        errors.append({"field": "currency", "message": f"goals are in the reporting currency "
                       f"{reporting}; leave it empty or give {reporting}"})
    elif currency is not None and not (len(currency) == 3 and currency.isalpha()):
        errors.append({"field": "currency", "message": "must be a 3-letter ISO code"})
    elif currency is None:
        currency = reporting
    if target.is_finite() and 0 < target < MAX_TARGET:
        target = target.quantize(_CENT)
    clean = GoalInput(normalize_email(data.owner_email), data.metric,
                      data.period_start, data.period_end, target, currency, owner)
    return errors, clean


TARGET_PROBLEMS = {
    "not_positive": "must be a positive number",
    "too_large": f"must be below {MAX_TARGET:f}",
    "not_whole": "deals_won targets are whole numbers",
    "too_precise": "must have at most 2 decimal places",
}
"""What can be wrong with a target (target_problem's codes), as the API says it."""


def target_problem(metric: str, target: Decimal) -> str | None:
    """The code (TARGET_PROBLEMS) of what is wrong with `target` for `metric`, or None."""
    if not target.is_finite() or target <= 0:
        return "not_positive"
    if target >= MAX_TARGET:
        return "too_large"
    if metric == GoalMetric.DEALS_WON and target != target.to_integral_value():
        return "not_whole"
    if target != target.quantize(_CENT, rounding=ROUND_HALF_UP):
        return "too_precise"
    return None


def _target_problem(metric: str, target: Decimal) -> str | None:
    code = target_problem(metric, target)
    return None if code is None else TARGET_PROBLEMS[code]


def _live_key(data: GoalInput) -> str:
    return Goal.live_key_of(data.person_id, data.metric, data.period_start, data.period_end)


def _live(session: Session, key: str) -> Goal | None:
    stmt = select(Goal).where(GOAL.c.live_key == key)
    return session.execute(stmt).scalars().first()


def _duplicate(session: Session, existing: Goal) -> GoalConflict:
    who = _who(session, existing.person_id)
    return GoalConflict([{"field": "period_start", "message": (
        f"goal {existing.id} already sets {existing.metric} for {who} from "
        f"{existing.period_start} to {existing.period_end}; change that goal instead")}])


def _who(session: Session, person_id: int | None) -> str:
    if person_id is None:
        return "the company"
    email, name = labels(session, [person_id]).get(person_id, (None, ""))
    return email or name or f"person {person_id}"


def _validated(session: Session, data: GoalInput, settings: Settings,
               scope: Collection[int] | None) -> GoalInput:
    errors, clean = _check(data, _owner(session, data, scope),
                           reporting_currency(session, settings))
    if errors:
        raise GoalError(errors)
    return clean


# ---- CRUD -------------------------------------------------------------------------------

def create_goal(session: Session, data: GoalInput, settings: Settings, *,
                people: Collection[int] | None = None) -> Goal:
    """Validate and add a goal (for one of `people`, unless None). Raises GoalError (422)
    or GoalConflict (409)."""
    clean = _validated(session, data, settings, people)
    existing = _live(session, _live_key(clean))
    if existing is not None:
        raise _duplicate(session, existing)
    goal = Goal(person_id=clean.person_id, metric=GoalMetric(clean.metric),
                period_start=clean.period_start, period_end=clean.period_end,
                target=clean.target, currency=clean.currency, live_key=_live_key(clean))
    session.add(goal)
    session.flush()
    return goal


def get_goal(session: Session, goal_id: int, *,
             people: Collection[int] | None = None) -> Goal:
    """A live goal (of one of `people`, unless None); GoalNotFound otherwise."""
    goal = session.get(Goal, goal_id)
    if goal is None or goal.deleted_at is not None or (
            people is not None and goal.person_id not in people):
        raise GoalNotFound(f"goal {goal_id} does not exist")
    return goal


def update_goal(session: Session, goal_id: int, changes: dict[str, Any],
                settings: Settings, *, people: Collection[int] | None = None) -> Goal:
    """Apply `changes` (any of GoalInput's fields) and validate the result as a whole.
    A new owner_email without person_id names the goal's person by email. With `people`
    (not None) the goal and its new person must be one of theirs."""
    goal = get_goal(session, goal_id, people=people)
    merged: dict[str, Any] = {"person_id": goal.person_id, "owner_email": None,
              "metric": goal.metric,
              "period_start": goal.period_start, "period_end": goal.period_end,
              "target": goal.target, "currency": None if "metric" in changes else goal.currency}
    if "owner_email" in changes and "person_id" not in changes:
        merged["person_id"] = None
    merged.update(changes)
    clean = _validated(session, GoalInput(**merged), settings, people)
    existing = _live(session, _live_key(clean))
    if existing is not None and existing.id != goal.id:
        raise _duplicate(session, existing)
    for name in ("person_id", "metric", "period_start", "period_end", "target", "currency"):
        setattr(goal, name, getattr(clean, name))
    goal.live_key = _live_key(clean)
    goal.updated_at = utcnow()
    session.add(goal)
    session.flush()
    return goal


def delete_goal(session: Session, goal_id: int, *,
                people: Collection[int] | None = None) -> None:
    """Tombstone the goal (of one of `people`, unless None); the next push deletes its
    copies in the CRMs."""
    goal = get_goal(session, goal_id, people=people)
    goal.deleted_at = goal.updated_at = utcnow()
    goal.live_key = None
    session.add(goal)
    session.flush()


def goals_listing(*, owner_email: str | None = None, person_id: int | None = None,
                  company: bool = False, metric: GoalMetric | None = None,
                  start: date | None = None, end: date | None = None,
                  people: Collection[int] | None = None) -> Listing:
    """Live goals, oldest first: of one person (by id, or by email: core.people) or
    company-wide ones, of a metric, and whose period lies inside [start, end]; of `people`
    only (no company-wide ones), unless None. Rows are Goal objects' columns (see
    goal_rows)."""
    conditions: list[ColumnElement[bool]] = [GOAL.c.deleted_at.is_(None)]
    if people is not None:
        conditions.append(GOAL.c.person_id.in_(sorted(people)))
    if owner_email is not None:
        conditions.append(GOAL.c.person_id == person_of_email_expr(
            normalize_email(owner_email) or ""))
    if person_id is not None:
        conditions.append(GOAL.c.person_id == person_id)
    if company:
        conditions.append(GOAL.c.person_id.is_(None))
    if metric is not None:
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}")
        conditions.append(GOAL.c.metric == metric)
    if start is not None:
        conditions.append(GOAL.c.period_start >= start)
    if end is not None:
        conditions.append(GOAL.c.period_end <= end)
    stmt: Select[Any] = select(GOAL).where(*conditions)
    return Listing(stmt, GOAL.c.id, lambda row: dict(row._mapping))


# ---- reads with actual, attainment and push status -----------------------------------------

def goal_rows(session: Session, goals: Sequence[Goal | dict[str, Any]],
              settings: Settings) -> list[dict[str, Any]]:
    """The public rows of `goals`: their fields plus owner_email and owner_name (the
    person's), actual, attainment and push (per connection). Actuals are summed in SQL;
    raises CurrencyError for a missing FX rate."""
    items = [g if isinstance(g, dict) else g.model_dump() for g in goals]
    ids = [int(g["id"]) for g in items]
    conv = converter(session, settings)
    actuals = _actuals(session, ids, conv)
    names = labels(session, [g["person_id"] for g in items])
    pushes = _pushes(session, ids)
    rows = []
    for g in items:
        exact = actuals.get(g["id"], Decimal(0) if g["metric"] == GoalMetric.BOOKINGS else 0)
        actual = exact.quantize(_CENT, rounding=ROUND_HALF_UP) if isinstance(
            exact, Decimal) else exact  # rounded only at the end (docs/metrics.md)
        email, name = names.get(g["person_id"], (None, None))
        rows.append({
            "id": g["id"], "person_id": g["person_id"], "owner_email": email,
            "owner_name": name or None, "metric": g["metric"],
            "period_start": g["period_start"], "period_end": g["period_end"],
            "target": _target(g["metric"], g["target"]), "currency": g["currency"],
            "actual": actual, "attainment": attainment(Decimal(exact), g["target"]),
            "push": pushes.get(g["id"], []),
            "created_at": g["created_at"], "updated_at": g["updated_at"]})
    return rows


def _target(metric: str, target: Decimal) -> Decimal:
    return target.quantize(Decimal(1) if metric == GoalMetric.DEALS_WON else _CENT)


def attainment(actual: Decimal, goal: Decimal | None) -> Decimal | None:
    """actual / goal to 4 places (half up); None when goal is None or 0 (docs/metrics.md)."""
    if goal is None or goal == 0:
        return None
    return (actual / goal).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)


def _actuals(session: Session, ids: list[int], conv: Converter) -> dict[int, Any]:
    """Per goal: won deals of its person (everyone's for a company goal) closed in its period:
    bookings in the reporting currency (exact) or the count, one grouped query."""
    if not ids:
        return {}
    won_in_period = and_(
        DEAL.c.deleted_at.is_(None), DEAL.c.status == DealStatus.WON,
        DEAL.c.close_date >= GOAL.c.period_start, DEAL.c.close_date <= GOAL.c.period_end,
        or_(GOAL.c.person_id.is_(None), DEAL.c.owner_person_id == GOAL.c.person_id))
    stmt = (select(GOAL.c.id, GOAL.c.metric, CONNECTION.c.home_currency.label("currency"),
                   type_coerce(func.sum(DEAL.c.amount_home), Money).label("amount"),
                   func.count(DEAL.c.id).label("n"))
            .select_from(GOAL.join(DEAL, won_in_period)
                         .join(CONNECTION, CONNECTION.c.id == DEAL.c.connection_id))
            .where(GOAL.c.id.in_(ids))
            .group_by(GOAL.c.id, GOAL.c.metric, CONNECTION.c.home_currency))
    amounts: dict[int, list[tuple[str | None, Decimal | None]]] = defaultdict(list)
    counts: dict[int, int] = defaultdict(int)
    metrics: dict[int, GoalMetric] = {}
    for row in session.execute(stmt):
        amounts[row.id].append((row.currency, row.amount))
        counts[row.id] += int(row.n)
        metrics[row.id] = row.metric
    return {gid: conv.total(amounts[gid]) if metric == GoalMetric.BOOKINGS else counts[gid]
            for gid, metric in metrics.items()}


def _pushes(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if not ids:
        return out
    stmt = select(GoalPush).where(PUSH.c.goal_id.in_(ids)).order_by(
        PUSH.c.goal_id, PUSH.c.connection_id)
    for push in session.execute(stmt).scalars():
        out[push.goal_id].append({
            "connection_id": push.connection_id, "status": push.status,
            "remote_id": push.remote_id, "pushed_at": push.pushed_at, "error": push.error,
            "crm_result": None if push.crm_read_at is None else {
                "actual": push.crm_actual, "currency": push.crm_currency,
                "read_at": push.crm_read_at, "error": push.crm_error}})
    return out


# ---- leaderboard (core.metrics summary: goal and attainment) -------------------------------

@dataclass(frozen=True)
class GoalTargets:
    """Bookings goals whose period lies inside a summary's [start, end] (docs/metrics.md)."""

    by_owner: dict[int, Decimal] = field(default_factory=dict)  # by person id
    company: Decimal | None = None

    def row(self, group_by: str, key: Any) -> Decimal | None:
        """The goal of a summary row (None for group_by=connection rows)."""
        if group_by == "owner":
            return self.by_owner.get(key) if key is not None else None
        if group_by == "none":
            return self.total()
        return None

    def of(self, person_ids: Iterable[int]) -> Decimal | None:
        """The sum of these people's goals; None when none of them has one."""
        goals = [self.by_owner[p] for p in person_ids if p in self.by_owner]
        return sum(goals, Decimal(0)) if goals else None

    def total(self) -> Decimal | None:
        """Company-wide goals when there are any, else the sum of the owners' goals."""
        if self.company is not None:
            return self.company
        return sum(self.by_owner.values(), Decimal(0)) if self.by_owner else None


def goal_targets(session: Session, *, start: date, end: date,
                 people: Collection[int] | None = None) -> GoalTargets:
    """Sum of target per person (None: company-wide) of live bookings goals in [start, end].

    With `people` (not None) only those people's goals: company-wide goals count only
    for a summary of everyone."""
    conditions = [GOAL.c.deleted_at.is_(None), GOAL.c.metric == GoalMetric.BOOKINGS,
                  GOAL.c.period_start >= start, GOAL.c.period_end <= end]
    if people is not None:
        conditions.append(GOAL.c.person_id.in_(sorted(people)))
    stmt = (select(GOAL.c.person_id, type_coerce(func.sum(GOAL.c.target), Money))
            .where(*conditions).group_by(GOAL.c.person_id))
    by_owner: dict[int, Decimal] = {}
    company = None
    for owner, total in session.execute(stmt):
        if owner is None:
            company = total
        else:
            by_owner[owner] = total
    return GoalTargets(by_owner, company)


# ---- CSV import -------------------------------------------------------------------------

def import_goals(session: Session, text: str | bytes, settings: Settings, *,
                 people: Collection[int] | None = None) -> dict[str, Any]:
    """Create or update the goals of a CSV file (columns IMPORT_COLUMNS, owner_email or
    person_id or both, optional currency). Bytes may be CSV in UTF-8 or GB18030/GBK
    (decode_text) or an .xlsx workbook (its first sheet); str is CSV text. With `people`
    (not None) every row must be for one of them.

    Every row is checked before anything is written; any bad row raises ImportInvalid
    listing every bad row by its line number (the header is line 1). A row whose person,
    metric and period match a live goal updates that goal's target.
    """
    parsed, errors = _parse_csv(text)
    owners: dict[tuple[int | None, str | None], Owner] = {}
    reporting = reporting_currency(session, settings)
    seen: dict[str, int] = {}
    clean_rows: list[GoalInput] = []
    for line, data in parsed:
        who = (data.person_id, normalize_email(data.owner_email))
        if who not in owners:
            owners[who] = _owner(session, data, people)
        problems, clean = _check(data, owners[who], reporting)
        errors += [{"line": line, **p} for p in problems]
        key = _live_key(clean)
        if not problems and key in seen:
            errors.append({"line": line, "field": "period_start",
                           "message": f"repeats the person, metric and period of line "
                                      f"{seen[key]}"})
        seen.setdefault(key, line)
        clean_rows.append(clean)
    if errors:
        raise ImportInvalid(sorted(errors, key=lambda e: e["line"]))
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    ids = []
    for clean in clean_rows:
        existing = _live(session, _live_key(clean))
        if existing is None:
            goal = create_goal(session, clean, settings, people=people)
            counts["created"] += 1
        elif existing.target == clean.target and existing.currency == clean.currency:
            goal = existing
            counts["unchanged"] += 1
        else:
            goal = update_goal(session, int(existing.id or 0),
                               {"target": clean.target, "currency": clean.currency}, settings,
                               people=people)
            counts["updated"] += 1
        ids.append(int(goal.id or 0))
    return {**counts, "goal_ids": ids}


XLSX_MAGIC = b"PK\x03\x04"  # an .xlsx workbook is a zip file


class _Unreadable(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def decode_text(raw: bytes) -> str:
    """A CSV file's bytes as text: UTF-8 (with or without a BOM: Excel's "CSV UTF-8"), else
    GB18030 (a superset of GBK and GB2312: what Excel and WPS save as "CSV" on a Chinese
    Windows). ValueError when it is neither."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030")
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 or GB18030/GBK text: save it as "
                         "CSV UTF-8 or as an Excel workbook (.xlsx)") from None


def _records(source: str | bytes) -> Iterator[tuple[int, list[str]]]:
    """(line number, values) of every row of a CSV text, CSV bytes or .xlsx workbook."""
    if isinstance(source, bytes):
        if source.startswith(XLSX_MAGIC):
            yield from _xlsx_records(source)
            return
        try:
            source = decode_text(source)
        except ValueError as exc:
            raise _Unreadable(1, str(exc)) from None
    reader = csv.reader(io.StringIO(source.removeprefix("\ufeff")))
    line = 1
    try:
        for record in reader:
            yield line, record
            line = reader.line_num + 1
    except csv.Error as exc:
        raise _Unreadable(line, f"not CSV ({exc})") from None


def _xlsx_records(raw: bytes) -> Iterator[tuple[int, list[str]]]:
    """The first sheet's rows (row 1 is the header), cells as the text a CSV would hold;
    rows are cut or padded with empty cells to the header's width where those are empty."""
    from openpyxl import load_workbook

    line, width = 1, 0
    try:
        book = load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        try:
            for line, row in enumerate(book.worksheets[0].iter_rows(values_only=True), 1):
                values = [_cell_text(v) for v in row]
                while len(values) > width and not values[-1]:  # trailing empty cells
                    values.pop()
                width = width or len(values)
                yield line, values + [""] * (width - len(values))
        finally:
            book.close()
    except Exception as exc:  # zip, XML and openpyxl errors alike
        raise _Unreadable(line, f"not a readable Excel workbook ({type(exc).__name__})") \
            from None


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):  # a date cell
        return value.date().isoformat() if value.time() == time() else value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _parse_csv(source: str | bytes) -> tuple[list[tuple[int, GoalInput]], list[dict[str, Any]]]:
    """(line, input) of every well-formed row, and the errors of the others."""
    records = _records(source)
    try:
        first = next(records, None)
    except _Unreadable as exc:
        return [], [{"line": exc.line, "field": "header", "message": str(exc)}]
    if first is None:
        return [], [{"line": 1, "field": "header", "message": "the file is empty; its first "
                     f"line must name the columns {', '.join(_REQUIRED)}"}]
    header = [h.strip().lower() for h in first[1]]
    missing = [c for c in IMPORT_COLUMNS if c not in header]
    if not any(c in header for c in OWNER_COLUMNS):
        missing.insert(0, " or ".join(OWNER_COLUMNS))
    unknown = [c for c in header if c not in OWNER_COLUMNS + IMPORT_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        parts = [f"missing {', '.join(missing)}" if missing else "",
                 f"unknown {', '.join(unknown)}" if unknown else "",
                 "a repeated column" if len(set(header)) != len(header) else ""]
        return [], [{"line": 1, "field": "header", "message": "; ".join(p for p in parts if p)
                     + f" (columns: {', '.join(_REQUIRED + OPTIONAL_COLUMNS)})"}]
    rows: list[tuple[int, GoalInput]] = []
    errors: list[dict[str, Any]] = []
    try:
        for start_line, record in records:
            if not any(v.strip() for v in record):
                continue
            if len(rows) + len(errors) >= MAX_IMPORT_ROWS:
                errors.append({"line": start_line, "field": "file",
                               "message": f"at most {MAX_IMPORT_ROWS} rows per file"})
                break
            item, problems = _row(header, record)
            if item is None:
                errors += [{"line": start_line, **p} for p in problems]
            else:
                rows.append((start_line, item))
    except _Unreadable as exc:
        errors.append({"line": exc.line, "field": "file", "message": str(exc)})
    return rows, errors


def _row(header: list[str], record: list[str]) -> tuple[GoalInput | None, Details]:
    if len(record) != len(header):
        return None, [{"field": "row", "message": f"has {len(record)} values; the header "
                       f"names {len(header)} columns"}]
    values = {name: value.strip() for name, value in zip(header, record, strict=True)}
    problems: Details = []
    days: dict[str, date] = {}
    for name in ("period_start", "period_end"):
        try:
            days[name] = date.fromisoformat(values[name])
        except ValueError:
            problems.append({"field": name, "message": "must be a date (YYYY-MM-DD)"})
    try:
        target = Decimal(values["target"].replace(",", "").replace("_", ""))
    except InvalidOperation:
        problems.append({"field": "target", "message": "must be a number"})
        target = Decimal(0)
    person = values.get("person_id") or ""
    if person and not person.isdigit():
        problems.append({"field": "person_id", "message": "must be a person's id (a number)"})
    if problems:
        return None, problems
    return GoalInput(values.get("owner_email") or None, values["metric"],
                     days["period_start"], days["period_end"], target,
                     values.get("currency") or None, int(person) if person else None), []
