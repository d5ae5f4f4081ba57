"""Monthly rollups of deals and accounts, so metrics over long ranges read thousands of
pre-aggregated rows instead of a million deals (issue M2's latency target).

What is stored (core.models): deal_month holds, per calendar month of close_date,
connection, owner (owner_person_id, core.people), status and (for open deals)
probability, the count, the exact sum of amount_home, the summed sales-cycle days and
max(owner_name) of the live deals; account_month the live accounts per month of
created_date, connection and owner; deal_week and account_week the same per week (Monday
to Sunday, numbered by week_of()), for weekly series and the whole weeks of partial
months; deal_day and account_day the same per day, for the rest of a range.

Exactness: a month's rollup is used only while it is *clean*: rollup_month has the month
(it was built) and rollup_dirty has no entry for it; a week's only while each month it
touches is clean (a refresh of a day re-sums every week and month holding it, whole). A
refresh builds the days from the deals and accounts, then the months and weeks from the
days (every column a key, a count, a sum or a max: the same rows, reading the deals once;
a period's other days come from their own day rollups, which are exact whenever the
period is clean). Every write of core.store appends the days it touches, with their
months, to rollup_dirty in the writer's own transaction (old and new days; core.people
marks the days of the rows whose owner person it re-sets; append-only, so writers never
wait on each other or on a refresh). Metrics read clean months
from the rollups and everything else (edge days of a range, dirty months) from the deals
themselves, so a number is always the definition's, rollups or not. Rows written around
core.store (tests loading data directly) are never in a built month unless refresh()
runs afterwards.

refresh() rebuilds the dirty days (every month the first time, or after the store's
time zone changed) from the deals, and deletes the dirty entries it has seen; a
connection's refresh writes only the rows whose values changed, so its cost follows the
change (a few deals of a 2,000-deal connection: a few dozen rows, not the 3,800 of its
months: docs/benchmarks.md, many connections). It runs
after each sync and webhook job, for the job's connection (a webhook job's on PostgreSQL
a little later, shared by the connection's jobs: workers.refresh): a dirty entry names the
connection whose rows the write touched, and a month is rebuilt from that connection's
rows only (a fleet of hundreds of connections rebuilt every dirty month of all of them
after each job: docs/benchmarks.md, many connections). How refreshes lock each other
out, and why a write committed meanwhile keeps its dirty entry: _locked().
"""

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Engine,
    Insert,
    Integer,
    Select,
    Table,
    and_,
    any_,
    bindparam,
    case,
    cast,
    delete,
    extract,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
    type_coerce,
    union,
    union_all,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Session

from core.columns import Money
from core.metrics.localdates import date_diff, zone_pending
from core.models import (
    Account,
    AccountDay,
    AccountMonth,
    AccountWeek,
    Deal,
    DealDay,
    DealMonth,
    DealWeek,
    RollupDirty,
    RollupMonth,
    StoreMeta,
    table_of,
)
from core.types import DealStatus, utcnow

BUILT_KEY = "rollups_built"
ADVISORY_KEY = 0x726F6C6C  # pg_advisory_xact_lock(ADVISORY_KEY, connection id): its refresh



DEAL, ACCOUNT, DEAL_MONTH, ACCOUNT_MONTH, DEAL_WEEK, ACCOUNT_WEEK, DEAL_DAY, ACCOUNT_DAY = (
    table_of(m) for m in (Deal, Account, DealMonth, AccountMonth, DealWeek, AccountWeek,
                          DealDay, AccountDay))
ROLLUP_TABLES = (DEAL_MONTH, ACCOUNT_MONTH, DEAL_WEEK, ACCOUNT_WEEK, DEAL_DAY, ACCOUNT_DAY)
ROLLUP_MONTH, ROLLUP_DIRTY, META = (table_of(m) for m in (RollupMonth, RollupDirty, StoreMeta))
# The date each rollup is keyed by.
DATE_COLUMN = {"deal": DEAL.c.close_date, "account": ACCOUNT.c.created_date}


# -- months ---------------------------------------------------------------------------

def month_number(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """year x 12 + month - 1 of a date column, in SQL both databases share."""
    return (cast(extract("year", column), Integer) * 12
            + cast(extract("month", column), Integer) - 1)


def month_of(day: date) -> int:
    return day.year * 12 + day.month - 1


def month_first(number: int) -> date:
    return date(number // 12, number % 12 + 1, 1)


def month_last(number: int) -> date:
    if number // 12 == 9999 and number % 12 == 11:
        return date.max
    return month_first(number + 1) - timedelta(days=1)


# -- weeks (Monday to Sunday) ------------------------------------------------------------

EPOCH = date(1, 1, 1)  # a Monday: weeks are counted from it, so every week starts on Monday


def week_of(day: date) -> int:
    """Whole weeks from EPOCH to the week of `day`."""
    return (day.toordinal() - 1) // 7


def week_first(number: int) -> date:
    return date.fromordinal(number * 7 + 1)


def week_last(number: int) -> date:
    """The Sunday of week `number` (date.max for the week that ends the calendar)."""
    return date.fromordinal(min(number * 7 + 7, date.max.toordinal()))


def week_number(session: Session, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """week_of() of a date column, in SQL both databases share (non-negative operands:
    integer division floors on SQLite and PostgreSQL alike)."""
    return date_diff(session, column, literal(EPOCH, Date)) // 7


def whole_weeks(first: date, last: date) -> tuple[list[int], list[tuple[date, date]]]:
    """The weeks lying wholly in [first, last], and the days of it outside them."""
    low = week_of(first) + (week_first(week_of(first)) != first)
    high = week_of(last) - (week_last(week_of(last)) != last)
    if low > high:
        return [], [(first, last)]
    rest = []
    if first < week_first(low):
        rest.append((first, week_first(low) - timedelta(days=1)))
    if week_last(high) < last:
        rest.append((week_last(high) + timedelta(days=1), last))
    return list(range(low, high + 1)), rest


def segments(start: date, end: date) -> list[tuple[int, date, date]]:
    """(month, first day, last day) of [start, end] cut at month boundaries."""
    out = []
    for number in range(month_of(start), month_of(end) + 1):
        out.append((number, max(start, month_first(number)), min(end, month_last(number))))
    return out


def merged(ranges: Iterable[tuple[date, date]]) -> list[tuple[date, date]]:
    """Sorted date ranges with adjacent ones joined."""
    out: list[tuple[date, date]] = []
    for first, last in ranges:
        if out and out[-1][1] < date.max and out[-1][1] + timedelta(days=1) == first:
            out[-1] = (out[-1][0], last)
        else:
            out.append((first, last))
    return out


def in_ranges(column: ColumnElement[Any],
              ranges: Sequence[tuple[Any, Any]]) -> ColumnElement[bool]:
    """`column` in one of the inclusive ranges (of dates, or of week numbers)."""
    return or_(*(column.between(a, b) for a, b in ranges))


def clean_months(session: Session, months: range) -> set[int]:
    """The months of `months` whose rollups are built and not dirty (none while a new
    time zone is pending: the rollups were built in the old one, core.metrics.localdates)."""
    if not months or zone_pending(session):
        return set()
    dirty = select(ROLLUP_DIRTY.c.month).where(ROLLUP_DIRTY.c.month.between(
        months.start, months.stop - 1))
    stmt = (select(ROLLUP_MONTH.c.month)
            .where(ROLLUP_MONTH.c.month.between(months.start, months.stop - 1),
                   ROLLUP_MONTH.c.month.not_in(dirty))
            )
    return set(session.scalars(stmt))


# -- writers mark what they touch (core.store calls these in its transaction) ---------

DAY_MARKS = 8
"""A write touching more days of a month than this (of one connection) marks the month
whole (a null day): a full sync's page of 2,000 deals over two years would otherwise
append some 700 marks instead of 24, and the refresh rebuilds the month anyway."""


def dirty_marks(marks: Select[Any]) -> Insert:
    """INSERT INTO rollup_dirty the (connection, day) pairs a two-column select yields, with
    their months (null days ignored; the month alone for more than DAY_MARKS days)."""
    sub = marks.subquery()
    connection, day = sub.c[0], sub.c[1]
    days = (select(connection.label("c"), month_number(day).label("m"), day.label("d"))
            .where(day.is_not(None)).distinct().subquery())
    many = func.count().over(partition_by=[days.c.c, days.c.m]) > DAY_MARKS
    each = select(days.c.c, days.c.m, case((many, null()), else_=days.c.d).label("d")).subquery()
    return insert(ROLLUP_DIRTY).from_select(["connection_id", "month", "day"],
                                            select(each.c.c, each.c.m, each.c.d).distinct())


def page_marks(model: type[Any], load: Table) -> Insert | None:
    """The dirty marks of a page about to be merged from `load` (None for tables without
    rollups): the days of the stored rows it replaces, and its own. core.store runs it
    before the merge, or with it in one statement (so it sees the rows as they were)."""
    kind = _kind(model)
    if kind is None:
        return None
    table = table_of(model)
    old = (_days(kind, table)
           .join_from(load, table, and_(table.c.connection_id == load.c.connection_id,
                                        table.c.remote_id == load.c.remote_id)))
    return dirty_marks(union(old, _days(kind, load)))  # type: ignore[arg-type]


def new_row_marks(model: type[Any], rows: Any) -> Insert | None:
    """The dirty marks of `rows` just inserted (a selectable of them with their connection
    and marked_column; None for tables without rollups): their own days only."""
    kind = _kind(model)
    return None if kind is None else dirty_marks(_days(kind, rows))


def marked_column(model: type[Any]) -> str | None:
    """The column whose day a row of `model` marks dirty (None: a table without rollups)."""
    kind = _kind(model)
    return None if kind is None else DATE_COLUMN[kind].name


def _days(kind: str, rows: Any) -> Select[Any]:
    return select(rows.c.connection_id, rows.c[DATE_COLUMN[kind].name].label("d"))


def mark_rows(session: Session, model: type[Any], *where: ColumnElement[bool]) -> None:
    """The days of the stored rows matching `where` (about to be tombstoned, or given
    another owner)."""
    kind = _kind(model)
    if kind is not None:
        table = table_of(model)
        session.execute(dirty_marks(
            select(table.c.connection_id, table.c[DATE_COLUMN[kind].name]).where(*where)))


def _kind(model: type[Any]) -> str | None:
    return "deal" if model is Deal else "account" if model is Account else None


def invalidate(session: Session) -> None:
    """Every rollup is stale (the created dates were recomputed): the next refresh
    rebuilds them all; until then metrics read the deals."""
    session.execute(delete(ROLLUP_MONTH))
    session.execute(delete(META).where(META.c.key == BUILT_KEY))


# -- refresh ---------------------------------------------------------------------------

def refresh(engine: Engine, connection_id: int | None = None) -> int:
    """Rebuild dirty days (and never built months); returns how many months it rebuilt
    (or re-summed).

    A day a connection's writes made dirty is rebuilt from that connection's rows only
    (the other connections' rows of it are unchanged), in a transaction of its own that
    waits for no other connection's. The store-wide part (the first build, a month never
    built before, a mark without a connection) rebuilds the month for every connection,
    one such refresh at a time and none of a connection meanwhile. With `connection_id`,
    that connection's marks only (a job's own writes: the schedule's refresh takes the
    rest), and the store-wide part when they need it."""
    months: set[int] = set()
    if connection_id is not None and _built(engine):
        months, unbuilt = _refresh_connection(engine, connection_id)
        if not unbuilt:
            return len(months)
    months |= _refresh_store(engine)
    if connection_id is None:
        with Session(engine) as session:
            ids = session.scalars(select(ROLLUP_DIRTY.c.connection_id).where(
                ROLLUP_DIRTY.c.connection_id.is_not(None)).distinct()).all()
        for cid in sorted(ids):
            months |= _refresh_connection(engine, cid)[0]
    return len(months)


@contextmanager
def _locked(engine: Engine, connection_id: int | None) -> Iterator[Session]:
    """A session holding the refresh's locks (PostgreSQL; SQLite has one writer at a time).

    The store-wide refresh runs alone (SHARE ROW EXCLUSIVE on rollup_month), in one
    REPEATABLE READ snapshot taken once the lock is held: what it reads and the dirty
    entries it deletes belong to that snapshot, so a write committed meanwhile keeps its
    dirty entry and its month stays dirty until the next refresh. A connection's waits for
    it and for its connection's other refresh (ROW EXCLUSIVE, which refreshes of other
    connections share, and an advisory lock), in READ COMMITTED: it deletes its dirty
    entries before it reads the rows, so a write committed before the delete is read and
    one committed after keeps its entry."""
    postgres = engine.dialect.name == "postgresql"
    if postgres and connection_id is None:
        engine = engine.execution_options(isolation_level="REPEATABLE READ")
    with Session(engine) as session:
        if postgres and connection_id is None:  # before the snapshot (the first query)
            session.execute(text("LOCK TABLE rollup_month IN SHARE ROW EXCLUSIVE MODE"))
        elif postgres:
            session.execute(text("LOCK TABLE rollup_month IN ROW EXCLUSIVE MODE"))
            session.execute(text("SELECT pg_advisory_xact_lock(:k, :c)"),
                            {"k": ADVISORY_KEY, "c": connection_id})
        yield session


def _built(engine: Engine) -> bool:
    with Session(engine) as session:
        return session.get(StoreMeta, BUILT_KEY) is not None


def _refresh_store(engine: Engine) -> set[int]:
    """The store-wide part of refresh(): every month the first time, else the dirty months
    never built or marked without a connection, for every connection."""
    with _locked(engine, None) as session:
        built = session.get(StoreMeta, BUILT_KEY) is not None
        if built:
            marks = session.execute(select(ROLLUP_DIRTY.c.connection_id,
                                           ROLLUP_DIRTY.c.month).distinct()).all()
            known = _built_months(session, {month for _, month in marks})
            months = {month for cid, month in marks if cid is None or month not in known}
            if not months:
                return months
        else:
            months = set(_data_span(session))
            session.add(StoreMeta(key=BUILT_KEY, value=utcnow().isoformat()))
        rows = 0
        for chunk in _chunks(sorted(months), 120):
            rows += _rebuild(session, _days_of(_month_ranges(chunk)))
            session.execute(delete(ROLLUP_MONTH).where(ROLLUP_MONTH.c.month.in_(chunk)))
            now = utcnow()
            session.execute(insert(ROLLUP_MONTH), [{"month": m, "built_at": now}
                                                   for m in chunk])
        _analyze(session, rows, first=not built)
        session.commit()
        return months


def _refresh_connection(engine: Engine, connection_id: int) -> tuple[set[int], bool]:
    """A connection's dirty days of months built before, from its rows (returns their
    months); and whether it marked months never built (the store-wide part rebuilds those)."""
    with _locked(engine, connection_id) as session:
        marks = session.execute(select(ROLLUP_DIRTY.c.month, ROLLUP_DIRTY.c.day).where(
            ROLLUP_DIRTY.c.connection_id == connection_id).distinct()).all()
        marked = {month for month, _ in marks}
        months = _built_months(session, marked)
        if months:
            rows = _rebuild(session, _dirty_days([(m, d) for m, d in marks if m in months]),
                            connection_id)
            _analyze(session, rows)
            session.commit()
        return months, months != marked


def _dirty_days(marks: list[tuple[int, date | None]]) -> list[date]:
    """The days to rebuild for (month, day) marks (a null day: the whole month), sorted."""
    days: set[date] = set()
    for month, day in marks:
        days.update(_days_of([(month_first(month), month_last(month))]) if day is None
                    else [day])
    return sorted(days)


def _days_of(ranges: Iterable[tuple[date, date]]) -> list[date]:
    """Every day of the date ranges, in order."""
    return [date.fromordinal(n) for a, b in ranges
            for n in range(a.toordinal(), b.toordinal() + 1)]


def _built_months(session: Session, months: set[int]) -> set[int]:
    found: set[int] = set()
    for chunk in _chunks(sorted(months), 240):
        found.update(session.scalars(select(ROLLUP_MONTH.c.month).where(
            ROLLUP_MONTH.c.month.in_(chunk))))
    return found


def _analyze(session: Session, rows: int, *, first: bool = False) -> None:
    """Fresh statistics after the first build and once the rollups at least doubled
    (PostgreSQL's autovacuum comes later; SQLite has none unless asked): the planner reads
    a period's rows through the index instead of a scan of the whole table. Without them
    SQLite read a few days' rows of deal_day through the (connection, day) index by
    connection alone, every day of the connection: the summary of two partial months at a
    million deals took 223 ms instead of 28 (docs/benchmarks.md). A table hundreds of
    connections share is left alone until it doubled."""
    if not (first or 0 < rows >= _rows_known(session)):
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE " + ", ".join(t.name for t in ROLLUP_TABLES)))
    else:  # SQLite analyzes one table a statement
        for table in ROLLUP_TABLES:
            session.execute(text("ANALYZE " + table.name))


def _rows_known(session: Session) -> float:
    """The rows of deal_day at its last statistics (0 without any)."""
    if session.get_bind().dialect.name == "postgresql":
        known = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = "
                                    "CAST(:t AS regclass)"), {"t": DEAL_DAY.name})
        return float(known) if known is not None and known > 0 else 0.0
    if not session.scalar(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")):
        return 0.0
    stat = session.scalar(text("SELECT stat FROM sqlite_stat1 WHERE tbl = :t LIMIT 1"),
                          {"t": DEAL_DAY.name})  # "rows [per index column ...]"
    return float(stat.split()[0]) if stat else 0.0


def _data_span(session: Session) -> list[int]:
    """Every month from the first to the last one holding a deal or an account."""
    lows, highs = [], []
    for column in DATE_COLUMN.values():
        low, high = session.execute(select(func.min(column), func.max(column))).one()
        if low is not None:
            lows.append(low)
            highs.append(high)
    if not lows:
        return []
    return list(range(month_of(min(lows)), month_of(max(highs)) + 1))


def _rebuild(session: Session, days: list[date], connection_id: int | None = None) -> int:
    """Rebuild `days` (sorted) from the deals and accounts (of one connection, or all) and
    re-sum every month and week holding one of them from the day rollups; deletes the
    dirty marks of those days. Returns the day rows of deals written (what the rollups
    grew by, roughly). 120 months at a time: a month or week re-summed names each of its
    days, and SQLite's bound parameters must stay below 32,766.

    A connection's refresh on PostgreSQL writes only the rows that changed (_write): after
    a few deals changed, most rows of the weeks and months it re-sums are the same. Every
    period is named in one list (_among), whatever the number: the statements keep their
    shape, built once (_statements)."""
    written = 0
    while days:
        cut = next((i for i, day in enumerate(days)
                    if month_of(day) - month_of(days[0]) >= 120), len(days))
        written += _rebuild_part(session, days[:cut], connection_id)
        days = days[cut:]
    return written


def _rebuild_part(session: Session, days: list[date], connection_id: int | None) -> int:
    months = sorted({month_of(day) for day in days})
    given = set(days)
    weeks = sorted({week_of(day) for day in days})  # every week holding one, whole
    params = {
        "days": days, "month": months, "week": weeks, "connection_id": connection_id,
        "whole": [m for m in months
                  if given.issuperset(_days_of([(month_first(m), month_last(m))]))],
        "month_days": _days_of((month_first(m), month_last(m)) for m in months),
        "week_days": _days_of((week_first(w), week_last(w)) for w in weeks)}
    written = 0
    for statement, counted in _statements(session, connection_id is not None):
        result = session.execute(statement, params)
        if counted:
            written += max(result.rowcount or 0, 0)  # type: ignore[attr-defined]
    return written


_STATEMENTS: dict[tuple[str, bool], list[tuple[Any, bool]]] = {}


def _statements(session: Session, connection: bool) -> list[tuple[Any, bool]]:
    """The statements of _rebuild_part, in order, each with whether its rows count as
    written (the deal_day insert); built once per database kind (their parameters are
    the days, the periods and the connection), so a refresh spends no Python on building
    and compiling them."""
    key = (session.get_bind().dialect.name, connection)
    if key not in _STATEMENTS:
        marks = or_(_among(session, ROLLUP_DIRTY.c.day, "days"),
                    and_(ROLLUP_DIRTY.c.day.is_(None),
                         _among(session, ROLLUP_DIRTY.c.month, "whole")))
        out: list[tuple[Any, bool]] = [
            (delete(ROLLUP_DIRTY).where(marks, *_of_connection(ROLLUP_DIRTY, connection)),
             False)]
        out += [(s, True) for s in _write(session, "deal", "day",
                                          _deal_rollup(session, connection), connection)]
        out += [(s, False) for s in _write(session, "account", "day",
                                           _account_rollup(session, connection), connection)]
        # then months and weeks from the days (see _from_days)
        for kind in ("deal", "account"):
            for period in ("month", "week"):
                out += [(s, False) for s in _write(
                    session, kind, period, _from_days(session, kind, period, connection),
                    connection)]
        _STATEMENTS[key] = out
    return _STATEMENTS[key]


def _write(session: Session, kind: str, period_name: str, rows: Select[Any],
           connection: bool) -> list[Any]:
    """The statements that make the rows of `kind`'s rollup of `period_name` for the
    periods of the parameter of that name (and the connection's, with `connection`) the
    `rows` (a select of the table's columns but its id, the period first).

    A connection's refresh on PostgreSQL writes only the rows that changed: a row equal to
    one of `rows` stays as it is (no dead row, no index entries, no WAL); the others are
    deleted and the missing ones inserted, in one statement (its parts share a snapshot,
    `rows` read once). Stored and new rows are told apart by grouping both on every column
    (nulls group together, and a group costs the same whatever the planner guesses: an
    anti-join on null-safe comparisons became a nested loop on stale statistics, 159 s
    for a 20,000-deal connection). SQLite, which keeps no dead rows, and the store-wide
    refresh replace every row (on SQLite the comparison cost more than it saved: 44
    against 22 ms for 40 changed deals, tests/bench/refresh_bench.py)."""
    table = ROLLUP_OF[kind][period_name]
    names = [period_name, *(DEAL_SUMS if kind == "deal" else ACCOUNT_SUMS)]
    mine = [_among(session, table.c[period_name], "days" if period_name == "day"
                   else period_name), *_of_connection(table, connection)]
    postgres = session.get_bind().dialect.name == "postgresql"
    if not (connection and postgres):
        return [delete(table).where(*mine),
                insert(table).from_select(names, rows.order_by(rows.selected_columns[0]))]
    new = rows.subquery()
    both = union_all(
        select(*(new.c[i].label(n) for i, n in enumerate(names)),
               literal(None, Integer).label("id"), literal(1).label("new")),
        select(*(table.c[n] for n in names), table.c.id, literal(0)).where(*mine),
    ).subquery()
    columns = [both.c[n] for n in names]
    groups = (select(*columns, func.max(both.c.id).label("stored"),
                     func.sum(both.c.new).label("new"), func.count().label("rows"))
              .group_by(*columns).cte(f"diff_{table.name}"))
    stale = delete(table).where(table.c.id.in_(
        select(groups.c.stored).where(groups.c.new == 0)))
    source = (select(*(groups.c[n] for n in names)).where(groups.c.new == groups.c.rows)
              .order_by(groups.c[period_name]))  # a period's rows together on disk
    return [insert(table).from_select(names, source.add_cte(stale.cte(
        f"stale_{table.name}")))]


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _month_ranges(months: list[int]) -> list[tuple[date, date]]:
    """Sorted months as the fewest date ranges (consecutive months merge)."""
    return merged((month_first(number), month_last(number)) for number in months)


def _period(session: Session, column: ColumnElement[Any], period: str) -> ColumnElement[Any]:
    """The key of a rollup of `period` (month, week or day) for a date column."""
    if period == "month":
        return month_number(column)
    return week_number(session, column) if period == "week" else column


def _among(session: Session, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
    """`column` is one of the values of the parameter `name` (a list): on PostgreSQL one
    array however many there are (an IN list of hundreds of days cost more Python to
    render and send than the rest of a small refresh), written into the statement when it
    runs: a constant array is searched through a hash, where a parameter of a prepared
    statement's generic plan is searched value by value for every row; on SQLite an IN
    list."""
    if session.get_bind().dialect.name == "postgresql":
        array = ARRAY(column.type)
        return column == any_(cast(bindparam(name, type_=array, literal_execute=True), array))
    return column.in_(bindparam(name, expanding=True))


def _of_connection(table: Table, connection: bool) -> list[ColumnElement[bool]]:
    """The rows of the connection of the parameter `connection_id`, if `connection`."""
    return [table.c.connection_id == bindparam("connection_id")] if connection else []


ROLLUP_OF = {"deal": {"month": DEAL_MONTH, "week": DEAL_WEEK, "day": DEAL_DAY},
             "account": {"month": ACCOUNT_MONTH, "week": ACCOUNT_WEEK, "day": ACCOUNT_DAY}}


def _deal_rollup(session: Session, connection: bool) -> Select[Any]:
    """The deal_day rows of the live deals of the days of the parameter `days`, summed."""
    timed = DEAL.c.created_date.is_not(None)
    cycle = date_diff(session, DEAL.c.close_date, DEAL.c.created_date)
    probability = case((DEAL.c.status == DealStatus.OPEN, DEAL.c.probability))
    rows = (
        select(DEAL.c.close_date, DEAL.c.connection_id, DEAL.c.owner_person_id,
               DEAL.c.status, probability.label("probability"),
               func.max(DEAL.c.owner_name), func.count(),
               type_coerce(func.sum(DEAL.c.amount_home), Money),
               func.coalesce(func.sum(case((timed, cycle))), 0),
               func.sum(case((timed, 1), else_=0)))
        .where(DEAL.c.deleted_at.is_(None), _among(session, DEAL.c.close_date, "days"),
               *_of_connection(DEAL, connection))
        .group_by(DEAL.c.close_date, DEAL.c.connection_id, DEAL.c.owner_person_id,
                  DEAL.c.status, probability)
    )
    return rows


def _account_rollup(session: Session, connection: bool) -> Select[Any]:
    """The account_day rows of the live accounts of the days of the parameter `days`,
    counted."""
    rows = (
        select(ACCOUNT.c.created_date, ACCOUNT.c.connection_id, ACCOUNT.c.owner_person_id,
               func.max(ACCOUNT.c.owner_name), func.count())
        .where(ACCOUNT.c.deleted_at.is_(None), _among(session, ACCOUNT.c.created_date, "days"),
               *_of_connection(ACCOUNT, connection))
        .group_by(ACCOUNT.c.created_date, ACCOUNT.c.connection_id, ACCOUNT.c.owner_person_id)
    )
    return rows


# the columns after the period of deal_* and account_*: keys, then what is summed
DEAL_SUMS = ["connection_id", "owner_person_id", "status", "probability", "owner_name",
             "deals", "amount", "cycle_days", "cycle_deals"]
ACCOUNT_SUMS = ["connection_id", "owner_person_id", "owner_name", "accounts"]


def _from_days(session: Session, kind: str, period_name: str,
               connection: bool) -> Select[Any]:
    """The month or week rollup rows of `kind` from its day rollups of the parameter
    `{period_name}_days` (whole months or weeks), summed: the same rows as from the deals
    (or accounts) themselves, since every column is a key, a count, a sum or a max. A
    period's days not being rebuilt come from their own day rollups: exact unless the
    connection marked them dirty (then the refresh of that mark re-sums the period) or
    their month was never built (then the period is not clean either: clean_months; a
    week is read only while every month it touches is clean, and the first build of that
    month rebuilds the week)."""
    daily = ROLLUP_OF[kind]["day"]
    period = _period(session, daily.c.day, period_name)
    names = DEAL_SUMS if kind == "deal" else ACCOUNT_SUMS
    keys = [daily.c[n] for n in names[:names.index("owner_name")]]
    sums = [func.max(daily.c.owner_name)] + [
        type_coerce(func.sum(daily.c[n]), Money) if n == "amount" else func.sum(daily.c[n])
        for n in names[names.index("owner_name") + 1:]]
    return (select(period.label("period"), *keys, *sums)
            .where(_among(session, daily.c.day, f"{period_name}_days"),
                   *_of_connection(daily, connection))
            .group_by(period, *keys))
