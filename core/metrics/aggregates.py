"""The exact ingredients of the sales metrics, summed in SQL (used by core.metrics).

A few set-based queries ("parts"), each grouped by the caller's keys (the owner's person,
core.people; connection id, a period, or nothing) and by the connection's home currency:

- closed deals (won/lost): bookings, counts, summed sales-cycle days;
- open deals, also grouped by probability, so the weighted pipeline is
  sum(probability x sum(amount)) / 100: exact, and no int64 product can overflow;
- accounts created (their stored local created_date);
- reps (crm_user) for the rows of active reps (their people); owner_columns() names a
  person's row by the person's email and name.

A Scope may be limited to some people (a dashboard user's): then every part reads only
the rows whose owner_person_id is one of them, raw rows and rollups alike (the rollups
are keyed by owner_person_id too); rows of no owner are outside any such limit.

Each part reads what a Scope says: the rows themselves for some date ranges, the monthly,
weekly and daily rollups (core.metrics.rollups) for the rest. Sums are exact
(ScaledDecimal integers); each per-currency sum is converted with the FX table in Python
Decimal (core.metrics.currency) and finish() rounds only at the end: amounts to 2
decimals, rates and ratios to 4, days to 2 (half up).
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from operator import itemgetter
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Label,
    Select,
    Table,
    case,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.engine import CursorResult
from sqlmodel import Session

from core import people
from core.columns import Money, Percent
from core.goals.targets import attainment
from core.metrics.currency import PRECISION, Converter
from core.metrics.localdates import created_date, date_diff
from core.metrics.rollups import (
    clean_months,
    in_ranges,
    merged,
    month_first,
    month_last,
    segments,
    whole_weeks,
)
from core.models import (
    Account,
    AccountDay,
    AccountMonth,
    AccountWeek,
    Connection,
    Deal,
    DealDay,
    DealMonth,
    DealWeek,
    Stage,
    User,
    table_of,
)
from core.types import DealStatus

Amounts = list[tuple[str | None, Decimal | None]]  # (home currency, exact sum)



DEAL, ACCOUNT, CONNECTION, USER, STAGE = (
    table_of(m) for m in (Deal, Account, Connection, User, Stage))
DEAL_MONTH, ACCOUNT_MONTH, DEAL_WEEK, ACCOUNT_WEEK, DEAL_DAY, ACCOUNT_DAY = (
    table_of(m) for m in (DealMonth, AccountMonth, DealWeek, AccountWeek, DealDay, AccountDay))
KeysFn = Callable[[Table], list[Label[Any]]]  # a query's group keys, for a deal/rollup table


@dataclass(frozen=True)
class Source:
    """A table a part sums (the deals or accounts themselves, or a rollup), the conditions
    on its rows, and what one of its rows counts for."""

    table: Table
    conditions: list[Any]
    count: ColumnElement[Any]  # records a row stands for
    amount: ColumnElement[Any] | None = None  # their exact amount_home
    cycle_days: ColumnElement[Any] | None = None  # their summed sales-cycle days
    cycle_deals: ColumnElement[Any] | None = None  # how many of them have a cycle


@dataclass(frozen=True)
class Scope:
    """What a metric query reads, together exactly [start, end]: the deals (accounts) in
    `ranges` of dates (months with writes since their rollups were built), the monthly
    rollups (core.metrics.rollups) of the clean whole `months`, the weekly rollups of the
    clean whole `weeks` (Monday to Sunday) and the daily rollups of the clean `days`."""

    ranges: list[tuple[date, date]]
    months: list[int]
    days: list[tuple[date, date]]
    connection_id: int | None
    people: frozenset[int] | None = None  # None: everyone; else these owner persons only
    weeks: list[int] = field(default_factory=list)

    def deal_sources(self, session: Session) -> list["Source"]:
        """Where the deals of this scope are: the rows in the ranges, the rollups."""
        out = []
        if self.ranges:
            timed = DEAL.c.created_date.is_not(None)
            out.append(Source(DEAL, self._raw(DEAL, DEAL.c.close_date), count=literal(1),
                              amount=DEAL.c.amount_home,
                              cycle_days=case((timed, cycle_days(session))),
                              cycle_deals=case((timed, 1), else_=0)))
        return out + [Source(table, conditions, count=table.c.deals, amount=table.c.amount,
                             cycle_days=table.c.cycle_days, cycle_deals=table.c.cycle_deals)
                      for table, conditions in self._rollups(DEAL_MONTH, DEAL_WEEK, DEAL_DAY)]

    def account_sources(self, session: Session) -> list["Source"]:
        """Where the new accounts of this scope are (count: accounts per row)."""
        out = []
        if self.ranges:
            out.append(Source(ACCOUNT, self._raw(ACCOUNT, created_date(session, ACCOUNT)),
                              count=literal(1)))
        return out + [Source(table, conditions, count=table.c.accounts)
                      for table, conditions in self._rollups(ACCOUNT_MONTH, ACCOUNT_WEEK,
                                                             ACCOUNT_DAY)]

    def _raw(self, table: Table, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """Conditions on the live rows of `table` whose `column` is in the ranges."""
        conditions: list[ColumnElement[bool]] = [table.c.deleted_at.is_(None),
                                                 in_ranges(column, self.ranges)]
        return self._narrowed(table, conditions)

    def _rollups(self, monthly: Table, weekly: Table,
                 daily: Table) -> list[tuple[Table, list[Any]]]:
        """(rollup table, conditions on its rows) for the months, the weeks and the days."""
        out = []
        if self.months:
            out.append((monthly, self._narrowed(monthly, [
                monthly.c.month.in_(self.months)])))
        if self.weeks:
            out.append((weekly, self._narrowed(weekly, [in_ranges(
                weekly.c.week, [(w[0], w[-1]) for w in runs(self.weeks)])])))
        if self.days:
            out.append((daily, self._narrowed(daily, [in_ranges(daily.c.day, self.days)])))
        return out

    def _narrowed(self, table: Table, conditions: list[Any]) -> list[Any]:
        """`conditions` and those of the scope's connection and people, if any."""
        if self.connection_id is not None:
            conditions.append(table.c.connection_id == self.connection_id)
        if self.people is not None:
            conditions.append(of_people(table, self.people))
        return conditions


def of_people(table: FromClause, people: Collection[int]) -> ColumnElement[bool]:
    """The rows of `table` (deals, accounts or their rollups) owned by one of `people`
    (none when it is empty; never the rows of no owner)."""
    return table.c.owner_person_id.in_(sorted(people))


def limit(people: Collection[int] | None) -> frozenset[int] | None:
    """A people limit as given to core.metrics (None: everyone), as a Scope holds it."""
    return None if people is None else frozenset(people)


def scope(session: Session, start: date, end: date, connection_id: int | None,
          *, monthly: bool = True, weekly: bool = True,
          people: Collection[int] | None = None) -> Scope:
    """Clean whole months from the monthly rollups (when `monthly`), the whole weeks of the
    other clean days from the weekly rollups (when `weekly`), the remaining clean days from
    the daily rollups, the rest from the rows themselves; of `people` only, unless None.
    (A month or quarter series reads no weeks: a week row does not say its month.)"""
    parts = segments(start, end)
    clean = clean_months(session, range(parts[0][0], parts[-1][0] + 1))
    months, rest, ranges = [], [], []
    for number, first, last in parts:
        if number not in clean:
            ranges.append((first, last))
        elif monthly and (first, last) == (month_first(number), month_last(number)):
            months.append(number)
        else:
            rest.append((first, last))
    weeks: list[int] = []
    days: list[tuple[date, date]] = []
    for first, last in merged(rest):
        whole, others = whole_weeks(first, last) if weekly else ([], [(first, last)])
        weeks += whole
        days += others
    if not ranges:
        serial(session)
    return Scope(merged(ranges), months, merged(days), connection_id, limit(people), weeks)


def serial(session: Session) -> None:
    """On PostgreSQL, no parallel workers for the rest of the transaction. A scope read
    from the rollups alone sums a few thousand rows per part; the planner still starts two
    workers for the UNION of its sources, and starting them costs more than they save (the
    summary 2023-11-15..2025-02-14 by owner: 24-215 ms a part with them, 9-10 ms without,
    at load 9). A scope reading deals themselves keeps them."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))


def runs(numbers: list[int]) -> list[list[int]]:
    """Sorted numbers cut into runs of consecutive ones."""
    out: list[list[int]] = []
    for number in numbers:
        if out and out[-1][-1] + 1 == number:
            out[-1].append(number)
        else:
            out.append([number])
    return out


@dataclass(slots=True, init=False)
class Acc:
    """The exact, unconverted ingredients of one row's metrics (all empty when made: a
    series by owner makes 3,600, so the constructor takes no arguments and checks none)."""

    bookings: Amounts
    deals_won: int
    deals_lost: int
    cycle_days: int
    cycle_deals: int
    open_pipeline: Amounts
    weighted: Amounts
    open_deals: int  # sales velocity (core.metrics.evaluation)
    new_accounts: int
    active: bool

    def __init__(self) -> None:
        self.bookings, self.open_pipeline, self.weighted = [], [], []
        self.deals_won = self.deals_lost = self.cycle_days = self.cycle_deals = 0
        self.open_deals = self.new_accounts = 0
        self.active = False

    def add(self, other: "Acc") -> None:
        self.bookings += other.bookings
        self.deals_won += other.deals_won
        self.deals_lost += other.deals_lost
        self.cycle_days += other.cycle_days
        self.cycle_deals += other.cycle_deals
        self.open_pipeline += other.open_pipeline
        self.weighted += other.weighted
        self.open_deals += other.open_deals
        self.new_accounts += other.new_accounts


def group_key(group_by: str, table: Table) -> list[Label[Any]]:
    if group_by == "owner":
        return [table.c.owner_person_id.label("key")]  # the owner's person (core.people)
    if group_by == "connection":
        return [table.c.connection_id.label("key")]
    return []


def team_key() -> Label[Any]:
    """The team of a row's owner person (owner_person_id), as core.people.teams() has it
    (None: no owner, an owner without a team); joined() adds the person for it."""
    return people.PERSON.c.team.label("key")


def joined(table: Table, keys: list[Label[Any]], *others: Table) -> FromClause:
    """`table` joined to `others` (the connection) by connection_id, and to its owner's
    person when a key is the team (team_key)."""
    out: FromClause = table
    for other in others:
        out = out.join(other, table.c.connection_id == other.c.id)
    if any(key.element is people.PERSON.c.team for key in keys):
        out = out.outerjoin(people.PERSON, people.PERSON.c.id == table.c.owner_person_id)
    return out


def key_of(keys: list[Label[Any]]) -> Callable[[Sequence[Any]], Any]:
    """What gives a row's key: None without keys, the value of a single key, else the
    tuple of the keys' values (the keys are the first columns of every select here; rows()
    gives tuples, so a slice of one is the tuple)."""
    if not keys:
        return lambda _row: None
    return itemgetter(0) if len(keys) == 1 else itemgetter(slice(0, len(keys)))


def cycle_days(session: Session) -> ColumnElement[Any]:
    """close_date - created_date in whole days (both are plain dates; core.metrics.localdates)."""
    return date_diff(session, DEAL.c.close_date, created_date(session, DEAL))


def keep_name(names: dict[Any, str | None], key: Any, name: str | None) -> None:
    if name and not names.get(key):
        names[key] = name


CLOSED_FIELDS = ("bookings", "deals_won", "deals_lost", "cycle_days", "cycle_deals")


def closed_deals(session: Session, keys: KeysFn, scope: Scope, accs: dict[Any, Acc],
                 names: dict[Any, str | None] | None,
                 fields: Collection[str] = CLOSED_FIELDS) -> None:
    """The won and lost deals' ingredients (`fields` of Acc only: a series reads what its
    metric needs; without deals_lost only the won deals are read)."""
    chosen = [f for f in CLOSED_FIELDS if f in fields]
    statuses = (DealStatus.WON, DealStatus.LOST) if "deals_lost" in chosen else (DealStatus.WON,)
    stmts, key = [], []
    for source in scope.deal_sources(session):
        table, key = source.table, keys(source.table)
        won, lost = table.c.status == DealStatus.WON, table.c.status == DealStatus.LOST
        sums = {"bookings": func.sum(case((won, source.amount))),
                "deals_won": func.sum(case((won, source.count), else_=0)),
                "deals_lost": func.sum(case((lost, source.count), else_=0)),
                "cycle_days": func.sum(case((won, source.cycle_days))),
                "cycle_deals": func.sum(case((won, source.cycle_deals), else_=0))}
        stmt = (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   *(sums[f].label(f) for f in chosen), *owner_name(table, names))
            .select_from(joined(table, key, CONNECTION))
            .where(*source.conditions, table.c.status.in_(statuses))
            .group_by(*key, CONNECTION.c.home_currency))
        stmts.append(stmt)
    width, key_fn = len(key), key_of(key)
    amounts = chosen[0] == "bookings"
    first = width + 1 + amounts  # the first count's column
    counted = [(name, first + i) for i, name in enumerate(chosen[amounts:])]
    # a series by owner reads 3,600 rows here: no more work a row than it needs
    for row in rows(session, stmts):
        k = key_fn(row)
        acc = accs[k]
        if amounts and (amount := row[width + 1]) is not None:
            acc.bookings.append((row[width], money(amount)))
        for name, column in counted:
            if value := row[column]:
                setattr(acc, name, getattr(acc, name) + int(value))
        if names is not None:
            keep_name(names, k, row[-1])


def owner_name(table: Table, names: dict[Any, str | None] | None) -> list[Any]:
    """The column of the owners' names a part reads for `names` (none when None: a series
    names its rows from core.people and the owners' query)."""
    return [] if names is None else [func.max(table.c.owner_name).label("name")]


def rows(session: Session, stmts: list[Select[Any]]) -> Sequence[Any]:
    """The rows of every statement (each source of a part) in one round trip, as the
    driver gives them: plain tuples without SQLAlchemy's result processing (a series by
    owner reads 3,600 of them; SQLAlchemy's rows took twice as long). So a sum of money
    comes as its scaled integer: money() and percent() read it."""
    if not stmts:
        return []
    stmt = stmts[0] if len(stmts) == 1 else union_all(*stmts)
    result = cast(CursorResult[Any], session.execute(stmt))
    try:
        return result.cursor.fetchall()
    finally:
        result.close()


def money(value: Any) -> Decimal:
    """A sum of Money (integer ten-thousandths, core.columns.ScaledDecimal) as rows() read it
    (an integer on SQLite, a numeric on PostgreSQL), exactly."""
    return Decimal(value).scaleb(-Money.scale)


def percent(value: Any) -> Decimal | None:
    """A Percent column (integer hundredths) as rows() read it."""
    return None if value is None else Decimal(value).scaleb(-Percent.scale)


def open_deals(session: Session, keys: KeysFn, scope: Scope, accs: dict[Any, Acc],
               names: dict[Any, str | None] | None) -> None:
    stmts, key = [], []
    for source in scope.deal_sources(session):
        table, key = source.table, keys(source.table)
        stmt = (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   table.c.probability.label("probability"),
                   func.sum(source.amount).label("amount"),
                   func.sum(source.count).label("n"),
                   *owner_name(table, names))
            .select_from(joined(table, key, CONNECTION))
            .where(*source.conditions, table.c.status == DealStatus.OPEN)
            .group_by(*key, CONNECTION.c.home_currency, table.c.probability))
        stmts.append(stmt)
    width, key_fn = len(key), key_of(key)
    for row in rows(session, stmts):
        k = key_fn(row)
        currency, probability, amount, n = row[width:width + 4]
        amount = None if amount is None else money(amount)
        acc = accs[k]
        acc.open_deals += int(n or 0)
        acc.open_pipeline.append((currency, amount))
        acc.weighted.append((currency, weighted(amount, percent(probability))))
        if names is not None:
            keep_name(names, k, row[-1])


def weighted(amount: Decimal | None, probability: Decimal | None) -> Decimal:
    """amount x probability / 100, exactly; no amount or no probability weighs nothing."""
    if amount is None or not probability:
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return amount * probability / 100


def new_accounts(session: Session, keys: KeysFn, scope: Scope, accs: dict[Any, Acc],
                 names: dict[Any, str | None] | None) -> None:
    stmts, key = [], []
    for source in scope.account_sources(session):
        table, key = source.table, keys(source.table)
        stmts.append(select(*key, func.sum(source.count).label("n"), *owner_name(table, names))
                     .select_from(joined(table, key))
                     .where(*source.conditions).group_by(*key))
    width, key_fn = len(key), key_of(key)
    for row in rows(session, stmts):
        k = key_fn(row)
        accs[k].new_accounts += int(row[width] or 0)
        if names is not None:
            keep_name(names, k, row[-1])


def reps(session: Session, connection_id: int | None, accs: dict[Any, Acc],
         people: Collection[int] | None = None) -> None:
    """Every person with an active rep (a live, active crm_user) gets a row (of `people`
    only, unless None)."""
    conditions: list[ColumnElement[bool]] = [USER.c.deleted_at.is_(None), USER.c.active,
                                             USER.c.person_id.is_not(None)]
    if connection_id is not None:
        conditions.append(USER.c.connection_id == connection_id)
    if people is not None:
        conditions.append(USER.c.person_id.in_(sorted(people)))
    for (key,) in session.execute(select(USER.c.person_id).where(*conditions).distinct()):
        accs[key].active = True


def owner_columns(session: Session, keys: Any,
                  names: dict[Any, str | None]) -> dict[Any, dict[str, Any]]:
    """The key columns of owner rows: person_id, owner_email and owner_name (the person's;
    the name on the records where the person has none, and for the row of no owner)."""
    labels = people.labels(session, keys)
    out = {}
    for key in keys:
        email, name = labels.get(key, (None, None))
        out[key] = {"person_id": key, "owner_email": email,
                    "owner_name": name or names.get(key)}
    return out


def owner_order(columns: dict[Any, dict[str, Any]]) -> list[Any]:
    """Owner keys in row order: by email, then people without email by name, then by id;
    the row of deals without an owner last."""
    def order(key: Any) -> tuple[Any, ...]:
        row = columns[key]
        email, name = row["owner_email"], row["owner_name"] or ""
        return (key is None, email is None, email or "", name.casefold(), name, key or 0)
    return sorted(columns, key=order)


def connection_rows(session: Session, connection_id: int | None, accs: dict[Any, Acc],
                 names: dict[Any, str | None]) -> None:
    """Every connection gets a row."""
    stmt = select(CONNECTION.c.id, CONNECTION.c.name)
    if connection_id is not None:
        stmt = stmt.where(CONNECTION.c.id == connection_id)
    for cid, name in session.execute(stmt):
        accs[cid].active = True
        names[cid] = name


def finish(acc: Acc, conv: Converter, goal: Decimal | None = None) -> dict[str, Any]:
    """The metrics of one row, converted, rounded at the very end; `goal` from core.goals."""
    with localcontext() as ctx:
        ctx.prec = PRECISION
        row = {name: value(acc, conv) for name, value in DEFINITIONS.items()}
        row["goal"] = None if goal is None else round_half_up(goal, 2)
        row["attainment"] = attainment(conv.total(acc.bookings), goal)  # bookings / goal
        return row


def finish_each(accs: dict[Any, Acc], conv: Converter,
                metric: str) -> tuple[dict[Any, Any], Any]:
    """One metric of finish() for every row of `accs` (a series), computed the same way in
    one context, and its value for a row of nothing."""
    each = EACH[metric]
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return dict(zip(accs, each([*accs.values()], conv), strict=True)), \
            each([Acc()], conv)[0]


Each = Callable[[list[Acc], Converter], list[Any]]


def _amount(field: str) -> Each:
    """A sum of money converted and rounded to cents (bookings, open or weighted pipeline)."""
    def each(accs: list[Acc], conv: Converter) -> list[Decimal]:
        cents = QUANTA[2]
        return [total.quantize(cents, rounding=ROUND_HALF_UP)
                for total in conv.totals([getattr(acc, field) for acc in accs])]
    return each


def _count(field: str) -> Each:
    return lambda accs, _conv: [getattr(acc, field) for acc in accs]


def _ratio(numerator: Callable[[Acc, Converter], Decimal], denominator: Callable[[Acc], int],
           places: int) -> Each:
    return lambda accs, conv: [ratio(numerator(a, conv), denominator(a), places) for a in accs]


# docs/metrics.md, from rows' exact ingredients (goal and attainment: finish()), each metric
# for many rows at once: a series by owner computes one of them for 3,600 rows.
EACH: dict[str, Each] = {
    "bookings": _amount("bookings"),
    "deals_won": _count("deals_won"),
    "deals_lost": _count("deals_lost"),
    "win_rate": _ratio(lambda a, _c: Decimal(a.deals_won), lambda a: a.deals_won + a.deals_lost,
                       4),
    "avg_deal_size": _ratio(lambda a, c: c.total(a.bookings), lambda a: a.deals_won, 2),
    "sales_cycle_days": _ratio(lambda a, _c: Decimal(a.cycle_days), lambda a: a.cycle_deals, 2),
    "open_pipeline": _amount("open_pipeline"),
    "weighted_pipeline": _amount("weighted"),
    "forecast": lambda accs, conv: [
        round_half_up(booked + weighted, 2) for booked, weighted in zip(
            conv.totals([a.bookings for a in accs]), conv.totals([a.weighted for a in accs]),
            strict=True)],
    "new_accounts": _count("new_accounts"),
}


def _one(each: Each) -> Callable[[Acc, Converter], Any]:
    return lambda acc, conv: each([acc], conv)[0]


DEFINITIONS: dict[str, Callable[[Acc, Converter], Any]] = {  # ... and for one row
    name: _one(each) for name, each in EACH.items()}


QUANTA = {places: Decimal(1).scaleb(-places) for places in range(5)}


def round_half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(QUANTA.get(places) or Decimal(1).scaleb(-places),
                          rounding=ROUND_HALF_UP)


def ratio(numerator: Decimal, denominator: int, places: int) -> Decimal | None:
    return None if denominator == 0 else round_half_up(numerator / denominator, places)



def owners(session: Session, scope: Scope, accs: dict[Any, Acc],
           names: dict[Any, str | None]) -> None:
    """A row for every owner of a deal (any status) or a new account in the scope."""
    stmts = [select(source.table.c.owner_person_id, func.max(source.table.c.owner_name))
             .where(*source.conditions).group_by(source.table.c.owner_person_id)
             for source in (*scope.deal_sources(session), *scope.account_sources(session))]
    for owner, name in rows(session, stmts):
        accs.setdefault(owner, Acc())
        keep_name(names, owner, name)
