"""Sales metrics (DESIGN.md section 5), computed in SQL with GROUP BY.

A few set-based queries, each grouped by the row key (lower-cased owner email, or
connection id, or nothing) and by the connection's home currency:

- closed deals (won/lost) in the period: bookings, counts, summed sales-cycle days;
- open deals in the period, also grouped by probability, so the weighted pipeline is
  sum(probability x sum(amount)) / 100: exact, and no int64 product can overflow;
- accounts created in the period (their stored local created_date);
- reps (crm_user) for names and for the rows of active reps.

Sums are exact (ScaledDecimal integers); each per-currency sum is converted with the FX
table in Python Decimal (core.currency) and everything is rounded only at the end:
amounts to 2 decimals, rates and ratios to 4, days to 2 (half up).
"""

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Label,
    Table,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    select,
    type_coerce,
)
from sqlmodel import Session

from core.config import Settings
from core.currency import PRECISION, Converter, converter
from core.goals import attainment, goal_targets
from core.localdates import date_diff, ensure_zone
from core.models import (
    Account,
    AccountDay,
    AccountMonth,
    Connection,
    Deal,
    DealDay,
    DealMonth,
    Stage,
    User,
)
from core.queries import Listing, RecordFilters, records_listing
from core.rollups import clean_months, in_ranges, merged, month_first, month_last, segments
from core.types import Money

GROUP_BY = ("owner", "connection", "none")
METRICS = ("bookings", "deals_won", "deals_lost", "win_rate", "avg_deal_size",
           "sales_cycle_days", "open_pipeline", "weighted_pipeline", "forecast",
           "new_accounts", "goal", "attainment")
MAX_RANGE_DAYS = 3653  # ten years, leap days included
# The deals behind each deal metric (drill-down): the statuses that metric reads.
DRILL_STATUSES: dict[str, tuple[str, ...]] = {
    "bookings": ("won",), "deals_won": ("won",), "avg_deal_size": ("won",),
    "sales_cycle_days": ("won",), "deals_lost": ("lost",), "win_rate": ("won", "lost"),
    "open_pipeline": ("open",), "weighted_pipeline": ("open",), "forecast": ("won", "open"),
}

Amounts = list[tuple[str | None, Decimal | None]]  # (home currency, exact sum)


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


DEAL, ACCOUNT, CONNECTION, USER, STAGE = (
    _table(m) for m in (Deal, Account, Connection, User, Stage))
DEAL_MONTH, ACCOUNT_MONTH, DEAL_DAY, ACCOUNT_DAY = (
    _table(m) for m in (DealMonth, AccountMonth, DealDay, AccountDay))
KeysFn = Callable[[Table], list[Label[Any]]]  # a query's group keys, for a deal/rollup table


@dataclass(frozen=True)
class _Scope:
    """What a metric query reads, together exactly [start, end]: the deals (accounts) in
    `ranges` of dates (months with writes since their rollups were built), the monthly
    rollups (core.rollups) of the clean whole `months`, and the daily rollups of the
    clean `days` (parts of months)."""

    ranges: list[tuple[date, date]]
    months: list[int]
    days: list[tuple[date, date]]
    connection_id: int | None

    def raw(self, table: Table, column: ColumnElement[Any]) -> list[ColumnElement[bool]]:
        """Conditions on the live rows of `table` whose `column` is in the ranges."""
        conditions: list[ColumnElement[bool]] = [table.c.deleted_at.is_(None),
                                                 in_ranges(column, self.ranges)]
        return self._of_connection(table, conditions)

    def rollups(self, monthly: Table, daily: Table) -> list[tuple[Table, list[Any]]]:
        """(rollup table, conditions on its rows) for the months and the days."""
        out = []
        if self.months:
            out.append((monthly, self._of_connection(monthly, [
                monthly.c.month.in_(self.months)])))
        if self.days:
            out.append((daily, self._of_connection(daily, [in_ranges(daily.c.day,
                                                                     self.days)])))
        return out

    def _of_connection(self, table: Table, conditions: list[Any]) -> list[Any]:
        if self.connection_id is not None:
            conditions.append(table.c.connection_id == self.connection_id)
        return conditions


def _scope(session: Session, start: date, end: date, connection_id: int | None,
           *, monthly: bool = True) -> _Scope:
    """Clean whole months from the monthly rollups (when `monthly`), other clean days
    from the daily rollups, the rest from the rows themselves."""
    parts = segments(start, end)
    clean = clean_months(session, range(parts[0][0], parts[-1][0] + 1))
    months, days, ranges = [], [], []
    for number, first, last in parts:
        if number not in clean:
            ranges.append((first, last))
        elif monthly and (first, last) == (month_first(number), month_last(number)):
            months.append(number)
        else:
            days.append((first, last))
    return _Scope(merged(ranges), months, merged(days), connection_id)


@dataclass
class _Acc:
    """The exact, unconverted ingredients of one row's metrics."""

    bookings: Amounts = field(default_factory=list)
    deals_won: int = 0
    deals_lost: int = 0
    cycle_days: int = 0
    cycle_deals: int = 0
    open_pipeline: Amounts = field(default_factory=list)
    weighted: Amounts = field(default_factory=list)
    new_accounts: int = 0
    active: bool = False

    def add(self, other: "_Acc") -> None:
        self.bookings += other.bookings
        self.deals_won += other.deals_won
        self.deals_lost += other.deals_lost
        self.cycle_days += other.cycle_days
        self.cycle_deals += other.cycle_deals
        self.open_pipeline += other.open_pipeline
        self.weighted += other.weighted
        self.new_accounts += other.new_accounts


def validate(start: date, end: date, group_by: str) -> None:
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(GROUP_BY)}")
    validate_range(start, end)


def validate_range(start: date, end: date) -> None:
    if start > end:
        raise ValueError("start must not be after end")
    if (end - start).days >= MAX_RANGE_DAYS:
        raise ValueError("the range from start to end must not exceed 10 years")


def summary(
    session: Session, *, start: date, end: date, group_by: str,
    connection_id: int | None = None, settings: Settings,
) -> dict[str, Any]:
    """{"start","end","currency","group_by","data":[row...],"total":{...}}.

    May recompute stored created dates first (core.localdates): the caller commits.
    Raises ValueError for bad parameters and core.currency.CurrencyError for a missing rate.
    """
    validate(start, end, group_by)
    ensure_zone(session, settings.timezone)
    conv = converter(session, settings)
    accs: dict[Any, _Acc] = defaultdict(_Acc)
    names: dict[Any, str | None] = {}
    scope = _scope(session, start, end, connection_id)

    def keys(table: Table) -> list[Label[Any]]:
        return _key(group_by, table)

    _closed_deals(session, keys, scope, accs, names)
    _open_deals(session, keys, scope, accs, names)
    _new_accounts(session, keys, scope, accs, names)
    targets = goal_targets(session, start=start, end=end)  # core.goals: bookings goals
    if group_by == "owner":
        for owner in targets.by_owner:
            accs.setdefault(owner, _Acc())  # an owner with a goal in the period has a row
        _reps(session, connection_id, accs, names)
    elif group_by == "connection":
        _connections(session, connection_id, accs, names)
    total = _Acc()
    for acc in accs.values():
        total.add(acc)
    total_row = _finish(total, conv, targets.total())
    if group_by == "none":
        data = [dict(total_row)]
    else:
        data = [_keyed(group_by, key, names.get(key))
                | _finish(accs[key], conv, targets.row(group_by, key))
                for key in sorted(accs, key=lambda k: (k is None, k))]
    return {"start": start, "end": end, "currency": conv.reporting, "group_by": group_by,
            "data": data, "total": total_row}


KEY_COLUMNS: dict[str, tuple[str, ...]] = {
    "owner": ("owner_email", "owner_name"), "connection": ("connection_id", "connection_name"),
    "none": ()}


def sort_fields(group_by: str) -> tuple[str, ...]:
    """The fields a summary of `group_by` can be sorted by: its key columns, then the metrics."""
    return (*KEY_COLUMNS[group_by], *METRICS)


def sort_rows(rows: list[dict[str, Any]], sort: str, group_by: str) -> list[dict[str, Any]]:
    """`rows` (in key order) sorted by `sort`: a field, `-field` for descending.

    Nulls come last in both directions; rows with equal values keep their key order.
    Text sorts case-insensitively. Raises ValueError naming the allowed fields.
    """
    name = sort.strip()
    descending = name.startswith("-")
    name = name.removeprefix("-").removeprefix("+").strip()
    allowed = sort_fields(group_by)
    if name not in allowed:
        raise ValueError(f"sort must be one of {', '.join(allowed)}, "
                         "with a leading - for descending")

    def value(row: dict[str, Any]) -> Any:
        item = row.get(name)
        return (item.casefold(), item) if isinstance(item, str) else item

    present = [row for row in rows if row.get(name) is not None]
    missing = [row for row in rows if row.get(name) is None]
    return sorted(present, key=value, reverse=descending) + missing  # sorted() is stable


def _keyed(group_by: str, key: Any, name: str | None) -> dict[str, Any]:
    if group_by == "owner":
        return {"owner_email": key, "owner_name": name}
    return {"connection_id": key, "connection_name": name}


def _key(group_by: str, table: Table) -> list[Label[Any]]:
    if group_by == "owner":
        return [table.c.owner_email.label("key")]  # stored lower-cased (core.store)
    if group_by == "connection":
        return [table.c.connection_id.label("key")]
    return []


def _row_key(row: Any, keys: list[Label[Any]]) -> Any:
    """None without keys, the value of a single key, else the tuple of the keys' values
    (the keys are the first columns of every select here)."""
    if len(keys) == 1:
        return row[0]
    return tuple(row[:len(keys)]) or None


def _deals_in_period(start: date, end: date, connection_id: int | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None),
                                             DEAL.c.close_date.between(start, end)]
    if connection_id is not None:
        conditions.append(DEAL.c.connection_id == connection_id)
    return and_(*conditions)


def _days(session: Session) -> ColumnElement[Any]:
    """close_date - created_date in whole days (both are plain dates)."""
    return date_diff(session, DEAL.c.close_date, DEAL.c.created_date)


def _name(names: dict[Any, str | None], key: Any, name: str | None) -> None:
    if name and not names.get(key):
        names[key] = name


def _closed_deals(session: Session, keys: KeysFn, scope: _Scope, accs: dict[Any, _Acc],
                  names: dict[Any, str | None]) -> None:
    stmts = []
    if scope.ranges:
        won = DEAL.c.status == "won"
        timed = and_(won, DEAL.c.created_date.is_not(None))
        key = keys(DEAL)
        stmts.append((key, (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   type_coerce(func.sum(case((won, DEAL.c.amount_home))), Money).label("bookings"),
                   func.sum(case((won, 1), else_=0)).label("won"),
                   func.sum(case((DEAL.c.status == "lost", 1), else_=0)).label("lost"),
                   func.sum(case((timed, _days(session)))).label("days"),
                   func.sum(case((timed, 1), else_=0)).label("timed"),
                   func.max(DEAL.c.owner_name).label("name"))
            .join_from(DEAL, CONNECTION, DEAL.c.connection_id == CONNECTION.c.id)
            .where(*scope.raw(DEAL, DEAL.c.close_date), DEAL.c.status.in_(("won", "lost")))
            .group_by(*key, CONNECTION.c.home_currency))))
    for rolled, conditions in scope.rollups(DEAL_MONTH, DEAL_DAY):
        won = rolled.c.status == "won"
        key = keys(rolled)
        stmts.append((key, (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   type_coerce(func.sum(case((won, rolled.c.amount))), Money).label("bookings"),
                   func.sum(case((won, rolled.c.deals), else_=0)).label("won"),
                   func.sum(case((rolled.c.status == "lost", rolled.c.deals), else_=0))
                   .label("lost"),
                   func.sum(case((won, rolled.c.cycle_days))).label("days"),
                   func.sum(case((won, rolled.c.cycle_deals), else_=0)).label("timed"),
                   func.max(rolled.c.owner_name).label("name"))
            .join_from(rolled, CONNECTION, rolled.c.connection_id == CONNECTION.c.id)
            .where(*conditions, rolled.c.status.in_(("won", "lost")))
            .group_by(*key, CONNECTION.c.home_currency))))
    for key, stmt in stmts:
        for row in session.execute(stmt):
            acc = accs[_row_key(row, key)]
            acc.bookings.append((row.currency, row.bookings))
            acc.deals_won += int(row.won or 0)
            acc.deals_lost += int(row.lost or 0)
            acc.cycle_days += int(row.days or 0)
            acc.cycle_deals += int(row.timed or 0)
            _name(names, _row_key(row, key), row.name)


def _open_deals(session: Session, keys: KeysFn, scope: _Scope, accs: dict[Any, _Acc],
                names: dict[Any, str | None]) -> None:
    stmts = []
    if scope.ranges:
        key = keys(DEAL)
        stmts.append((key, (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   DEAL.c.probability.label("probability"),
                   type_coerce(func.sum(DEAL.c.amount_home), Money).label("amount"),
                   func.max(DEAL.c.owner_name).label("name"))
            .join_from(DEAL, CONNECTION, DEAL.c.connection_id == CONNECTION.c.id)
            .where(*scope.raw(DEAL, DEAL.c.close_date), DEAL.c.status == "open")
            .group_by(*key, CONNECTION.c.home_currency, DEAL.c.probability))))
    for rolled, conditions in scope.rollups(DEAL_MONTH, DEAL_DAY):
        key = keys(rolled)
        stmts.append((key, (
            select(*key, CONNECTION.c.home_currency.label("currency"),
                   rolled.c.probability.label("probability"),
                   type_coerce(func.sum(rolled.c.amount), Money).label("amount"),
                   func.max(rolled.c.owner_name).label("name"))
            .join_from(rolled, CONNECTION, rolled.c.connection_id == CONNECTION.c.id)
            .where(*conditions, rolled.c.status == "open")
            .group_by(*key, CONNECTION.c.home_currency, rolled.c.probability))))
    for key, stmt in stmts:
        for row in session.execute(stmt):
            acc = accs[_row_key(row, key)]
            acc.open_pipeline.append((row.currency, row.amount))
            acc.weighted.append((row.currency, _weighted(row.amount, row.probability)))
            _name(names, _row_key(row, key), row.name)


def _weighted(amount: Decimal | None, probability: Decimal | None) -> Decimal:
    """amount x probability / 100, exactly; no amount or no probability weighs nothing."""
    if amount is None or not probability:
        return Decimal(0)
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return amount * probability / 100


def _new_accounts(session: Session, keys: KeysFn, scope: _Scope, accs: dict[Any, _Acc],
                  names: dict[Any, str | None]) -> None:
    stmts = []
    if scope.ranges:
        key = keys(ACCOUNT)
        stmts.append((key, select(*key, func.count().label("n"),
                                  func.max(ACCOUNT.c.owner_name).label("name"))
                      .where(*scope.raw(ACCOUNT, ACCOUNT.c.created_date)).group_by(*key)))
    for rolled, conditions in scope.rollups(ACCOUNT_MONTH, ACCOUNT_DAY):
        key = keys(rolled)
        stmts.append((key, select(*key, func.sum(rolled.c.accounts).label("n"),
                                  func.max(rolled.c.owner_name).label("name"))
                      .where(*conditions).group_by(*key)))
    for key, stmt in stmts:
        for row in session.execute(stmt):
            accs[_row_key(row, key)].new_accounts += int(row.n or 0)
            _name(names, _row_key(row, key), row.name)


def _reps(session: Session, connection_id: int | None, accs: dict[Any, _Acc],
          names: dict[Any, str | None]) -> None:
    """Every active rep gets a row; reps' names win over the names on deals."""
    email = USER.c.email  # stored lower-cased (core.store)
    conditions: list[ColumnElement[bool]] = [USER.c.deleted_at.is_(None),
                                             USER.c.email.is_not(None)]
    if connection_id is not None:
        conditions.append(USER.c.connection_id == connection_id)
    stmt = (select(email.label("key"), func.max(USER.c.name).label("name"),
                   func.max(case((USER.c.active, 1), else_=0)).label("active"))
            .where(*conditions).group_by(email))
    for row in session.execute(stmt):
        if row.active:
            accs[row.key].active = True
        if row.key in accs and row.name:
            names[row.key] = row.name


def _connections(session: Session, connection_id: int | None, accs: dict[Any, _Acc],
                 names: dict[Any, str | None]) -> None:
    """Every connection gets a row."""
    stmt = select(CONNECTION.c.id, CONNECTION.c.name)
    if connection_id is not None:
        stmt = stmt.where(CONNECTION.c.id == connection_id)
    for cid, name in session.execute(stmt):
        accs[cid].active = True
        names[cid] = name


def _finish(acc: _Acc, conv: Converter, goal: Decimal | None = None) -> dict[str, Any]:
    """The metrics of one row, converted, rounded at the very end; `goal` from core.goals."""
    bookings = conv.total(acc.bookings)
    weighted = conv.total(acc.weighted)
    closed = acc.deals_won + acc.deals_lost
    with localcontext() as ctx:
        ctx.prec = PRECISION
        return {
            "bookings": _round(bookings, 2),
            "deals_won": acc.deals_won,
            "deals_lost": acc.deals_lost,
            "win_rate": _ratio(Decimal(acc.deals_won), closed, 4),
            "avg_deal_size": _ratio(bookings, acc.deals_won, 2),
            "sales_cycle_days": _ratio(Decimal(acc.cycle_days), acc.cycle_deals, 2),
            "open_pipeline": _round(conv.total(acc.open_pipeline), 2),
            "weighted_pipeline": _round(weighted, 2),
            "forecast": _round(bookings + weighted, 2),
            "new_accounts": acc.new_accounts,
            "goal": None if goal is None else _round(goal, 2),
            "attainment": attainment(bookings, goal),  # core.goals: bookings / goal
        }


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _ratio(numerator: Decimal, denominator: int, places: int) -> Decimal | None:
    return None if denominator == 0 else _round(numerator / denominator, places)



def drill_down(metric: str, *, start: date, end: date, owner_email: str | None = None,
               connection_id: int | None = None) -> Listing:
    """The deals behind `metric` for the period (and owner, connection): deal rows, paged.

    The same conditions as summary(): not deleted, close_date in [start, end], the
    statuses the metric reads; sales_cycle_days only the won deals with a created date.
    Raises ValueError for bad parameters.
    """
    if metric not in DRILL_STATUSES:
        raise ValueError(f"metric must be one of {', '.join(DRILL_STATUSES)}")
    validate_range(start, end)
    conditions = [_deals_in_period(start, end, connection_id),
                  DEAL.c.status.in_(DRILL_STATUSES[metric])]
    if owner_email is not None:
        # stored lower-cased (core.store), so the owner index serves this
        conditions.append(DEAL.c.owner_email == owner_email.strip().lower())
    if metric == "sales_cycle_days":
        conditions.append(DEAL.c.created_date.is_not(None))
    listing = records_listing("deals", RecordFilters(include_deleted=True))
    return replace(listing, stmt=listing.stmt.where(*conditions))


_StageKey = tuple[int, str | None, int | None, str | None]  # connection, pipeline, order, name
PIPELINE_COLUMNS = ("connection_id", "pipeline", "stage", "sort_order", "count", "amount",
                    "weighted_amount")


def pipeline(session: Session, *, connection_id: int | None = None,
             settings: Settings) -> dict[str, Any]:
    """Open deals now (any close date), by stage in stage order: {"currency","data":[row...]}.

    A deal's stage is its stage record (deal.stage_remote_id) when known, else the names on
    the deal (sorted after the known stages). Every open stage that is not deleted gets a
    row, zeros when it holds no deal. Amounts are in the reporting currency, weighted by
    each deal's probability as in weighted_pipeline. Raises CurrencyError for a missing rate.
    """
    conv = converter(session, settings)
    stage_join = and_(STAGE.c.connection_id == DEAL.c.connection_id,
                      STAGE.c.remote_id == DEAL.c.stage_remote_id)
    line = func.coalesce(STAGE.c.pipeline, DEAL.c.pipeline)
    name = func.coalesce(STAGE.c.name, DEAL.c.stage)
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None), DEAL.c.status == "open"]
    if connection_id is not None:
        conditions.append(DEAL.c.connection_id == connection_id)
    stmt = (
        select(DEAL.c.connection_id.label("connection_id"), line.label("pipeline"),
               STAGE.c.sort_order.label("sort_order"), name.label("stage"),
               CONNECTION.c.home_currency.label("currency"),
               DEAL.c.probability.label("probability"), func.count().label("n"),
               type_coerce(func.sum(DEAL.c.amount_home), Money).label("amount"))
        .join_from(DEAL, CONNECTION, DEAL.c.connection_id == CONNECTION.c.id)
        .outerjoin(STAGE, stage_join)
        .where(*conditions)
        .group_by(DEAL.c.connection_id, line, STAGE.c.sort_order, name,
                  CONNECTION.c.home_currency, DEAL.c.probability)
    )
    groups: dict[_StageKey, tuple[list[int], Amounts, Amounts]] = {}
    stages = select(STAGE.c.connection_id, STAGE.c.pipeline, STAGE.c.sort_order,
                    STAGE.c.name).where(STAGE.c.deleted_at.is_(None),
                                        STAGE.c.category == "open")
    if connection_id is not None:
        stages = stages.where(STAGE.c.connection_id == connection_id)
    for cid, line_name, rank, stage_name in session.execute(stages):
        groups.setdefault((cid, line_name, rank, stage_name), ([0], [], []))
    for row in session.execute(stmt):
        count, amounts, weighted = groups.setdefault(
            (row.connection_id, row.pipeline, row.sort_order, row.stage), ([0], [], []))
        count[0] += int(row.n)
        amounts.append((row.currency, row.amount))
        weighted.append((row.currency, _weighted(row.amount, row.probability)))

    def order(key: _StageKey) -> tuple[Any, ...]:
        cid, line_name, sort_order, stage_name = key
        return (cid, line_name is None, line_name or "", sort_order is None, sort_order or 0,
                stage_name or "")

    data = [{"connection_id": key[0], "pipeline": key[1], "stage": key[3],
             "sort_order": key[2], "count": count[0],
             "amount": _round(conv.total(amounts), 2),
             "weighted_amount": _round(conv.total(weighted), 2)}
            for key in sorted(groups, key=order)
            for count, amounts, weighted in [groups[key]]]
    return {"currency": conv.reporting, "data": data}


INTERVALS = ("week", "month", "quarter")
_Part = Callable[[Session, KeysFn, _Scope, dict[Any, _Acc], dict[Any, str | None]], None]
_CLOSED: tuple[_Part, ...] = (_closed_deals,)
# The queries a series metric reads (summary reads them all).
SERIES_PARTS: dict[str, tuple[_Part, ...]] = {
    **dict.fromkeys(("bookings", "deals_won", "deals_lost", "win_rate", "avg_deal_size",
                     "sales_cycle_days"), _CLOSED),
    "open_pipeline": (_open_deals,), "weighted_pipeline": (_open_deals,),
    "forecast": (_closed_deals, _open_deals), "new_accounts": (_new_accounts,)}


def _owners(session: Session, scope: _Scope, accs: dict[Any, _Acc],
            names: dict[Any, str | None]) -> None:
    """A row for every owner of a deal (any status) or a new account in the scope."""
    stmts = []
    if scope.ranges:
        stmts += [select(DEAL.c.owner_email, func.max(DEAL.c.owner_name))
                  .where(*scope.raw(DEAL, DEAL.c.close_date)).group_by(DEAL.c.owner_email),
                  select(ACCOUNT.c.owner_email, func.max(ACCOUNT.c.owner_name))
                  .where(*scope.raw(ACCOUNT, ACCOUNT.c.created_date))
                  .group_by(ACCOUNT.c.owner_email)]
    stmts += [select(table.c.owner_email, func.max(table.c.owner_name))
              .where(*conditions).group_by(table.c.owner_email)
              for table, conditions in (*scope.rollups(DEAL_MONTH, DEAL_DAY),
                                        *scope.rollups(ACCOUNT_MONTH, ACCOUNT_DAY))]
    for stmt in stmts:
        for owner, name in session.execute(stmt):
            accs.setdefault(owner, _Acc())
            _name(names, owner, name)
SERIES_METRICS = tuple(m for m in METRICS if m not in ("goal", "attainment"))
SERIES_GROUP_BY = ("none", "owner")
EPOCH = date(1, 1, 1)  # a Monday: weeks are counted from it, so every week starts on Monday


def validate_series(metric: str, interval: str, start: date, end: date, group_by: str) -> None:
    if metric not in SERIES_METRICS:
        raise ValueError(f"metric must be one of {', '.join(SERIES_METRICS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    if group_by not in SERIES_GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(SERIES_GROUP_BY)}")
    validate_range(start, end)


def timeseries(
    session: Session, *, metric: str, interval: str, start: date, end: date,
    group_by: str = "none", connection_id: int | None = None, settings: Settings,
) -> dict[str, Any]:
    """One row per period (and owner) of [start, end], empty periods included.

    {"metric","interval","start","end","currency","group_by","data":[{"period_start",
    "period_end",["owner_email","owner_name",]"value"}...]}, ordered by period then owner.
    The first and last periods count only the days inside [start, end]. The same queries
    as summary(), each also grouped by a period number computed in SQL from the date
    (close_date; created_date for new_accounts), so a row's value is exactly what
    summary() gives for that period. group_by=owner has the owners summary() lists.
    May recompute stored created dates (core.localdates): the caller commits.
    """
    validate_series(metric, interval, start, end, group_by)
    ensure_zone(session, settings.timezone)
    conv = converter(session, settings)
    shift = settings.fiscal_year_start_month - 1
    accs: dict[Any, _Acc] = defaultdict(_Acc)
    names: dict[Any, str | None] = {}
    # Weeks do not fall into months: they read the daily rollups.
    scope = _scope(session, start, end, connection_id, monthly=interval != "week")

    def keys(table: Table) -> list[Label[Any]]:
        if table in (DEAL_MONTH, ACCOUNT_MONTH):
            month = table.c.month
            period = month if interval == "month" else (month - shift) // 3
        else:
            date_column = {DEAL: "close_date", ACCOUNT: "created_date"}.get(table, "day")
            period = _period_key(session, table.c[date_column], interval, shift)
        return [*_key(group_by, table), period.label("period")]

    for part in SERIES_PARTS[metric]:
        part(session, keys, scope, accs, names)
    periods = _periods(interval, shift, start, end)
    nothing = _finish(_Acc(), conv)[metric]

    def value(key: Any) -> Any:
        acc = accs.get(key)
        return nothing if acc is None else _finish(acc, conv)[metric]

    data: list[dict[str, Any]] = []
    if group_by == "none":
        data = [{"period_start": first, "period_end": last, "value": value(number)}
                for number, first, last in periods]
    else:
        # the owners summary() lists: any deal or new account in the range, active reps
        owner_names: dict[Any, str | None] = {}
        reps: dict[Any, _Acc] = defaultdict(_Acc)
        _owners(session, scope, reps, owner_names)
        _reps(session, connection_id, reps, owner_names)
        owners = sorted(reps, key=lambda k: (k is None, k))
        data = [{"period_start": first, "period_end": last, "owner_email": owner,
                 "owner_name": owner_names.get(owner), "value": value((owner, number))}
                for number, first, last in periods for owner in owners]
    return {"metric": metric, "interval": interval, "start": start, "end": end,
            "currency": conv.reporting, "group_by": group_by, "data": data}


def _period_key(session: Session, column: ColumnElement[Any], interval: str,
                shift: int) -> ColumnElement[Any]:
    """The period number of a date column, in integer arithmetic both databases share.

    week: whole weeks since EPOCH; month: year x 12 + month - 1; quarter: (month number -
    shift) / 3, shift = fiscal year start month - 1. All operands are non-negative, so
    integer division floors on SQLite and PostgreSQL alike.
    """
    if interval == "week":
        return date_diff(session, column, literal(EPOCH, Date)) // 7
    month = cast(extract("year", column), Integer) * 12 + cast(extract("month", column),
                                                                Integer) - 1
    return month if interval == "month" else (month - shift) // 3


def _period_number(interval: str, shift: int, day: date) -> int:
    """_period_key in Python."""
    if interval == "week":
        return (day.toordinal() - 1) // 7
    month = day.year * 12 + day.month - 1
    return month if interval == "month" else (month - shift) // 3


def _period_start(interval: str, shift: int, number: int) -> date:
    if interval == "week":
        return date.fromordinal(number * 7 + 1)
    month = number if interval == "month" else number * 3 + shift
    return date(month // 12, month % 12 + 1, 1)


def _periods(interval: str, shift: int, start: date, end: date) -> list[tuple[int, date, date]]:
    """(number, first day, last day) of every period that overlaps [start, end]."""
    first, last = (_period_number(interval, shift, d) for d in (start, end))
    out = []
    for number in range(first, last + 1):
        try:
            after = _period_start(interval, shift, number + 1)
            period_end = date.fromordinal(after.toordinal() - 1)
        except ValueError:  # the period that ends the calendar (year 9999)
            period_end = date.max
        out.append((number, _period_start(interval, shift, number), period_end))
    return out
