"""Sales metrics (docs/metrics.md): the summary (leaderboard), drill-down, pipeline
and timeseries, computed in SQL with GROUP BY from the parts in core.metrics.aggregates.

Sums are exact; each per-currency sum is converted with the FX table and rounded only
at the end: amounts to 2 decimals, rates and ratios to 4, days to 2 (half up).
"""

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import replace
from datetime import date
from enum import StrEnum
from functools import partial
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Label,
    Table,
    and_,
    func,
    select,
    type_coerce,
)
from sqlmodel import Session

from core.activities import TOTAL, activity_counts, counts_by_connection
from core.columns import Money
from core.config import Settings
from core.goals.targets import GoalTargets, goal_targets
from core.history import deals_as_of, end_of_day
from core.metrics import aggregates as agg
from core.metrics.aggregates import (
    ACCOUNT,
    ACCOUNT_MONTH,
    ACCOUNT_WEEK,
    CONNECTION,
    DEAL,
    DEAL_MONTH,
    DEAL_WEEK,
    STAGE,
    Amounts,
    KeysFn,
)
from core.metrics.currency import Converter, converter
from core.metrics.localdates import created_date, read_zone
from core.metrics.rollups import month_number, month_of, week_first, week_number, week_of
from core.models import live_open
from core.people import normalize_email, person_of_email_expr, team_members, teams
from core.queries import Listing, RecordFilters, records_listing
from core.types import DealStatus


class GroupBy(StrEnum):
    """The rows of a summary: one per owner (person), per team (of the owners' people),
    per connection, or none (the total)."""

    OWNER = "owner"
    CONNECTION = "connection"
    NONE = "none"
    TEAM = "team"


class Metric(StrEnum):
    """The metrics of a summary row (docs/metrics.md), in column order."""

    BOOKINGS = "bookings"
    DEALS_WON = "deals_won"
    DEALS_LOST = "deals_lost"
    WIN_RATE = "win_rate"
    AVG_DEAL_SIZE = "avg_deal_size"
    SALES_CYCLE_DAYS = "sales_cycle_days"
    OPEN_PIPELINE = "open_pipeline"
    WEIGHTED_PIPELINE = "weighted_pipeline"
    FORECAST = "forecast"
    NEW_ACCOUNTS = "new_accounts"
    GOAL = "goal"
    ATTAINMENT = "attainment"


class DrillMetric(StrEnum):
    """The metrics read from deals, whose deals a drill-down lists (DRILL_STATUSES)."""

    BOOKINGS = "bookings"
    DEALS_WON = "deals_won"
    AVG_DEAL_SIZE = "avg_deal_size"
    SALES_CYCLE_DAYS = "sales_cycle_days"
    DEALS_LOST = "deals_lost"
    WIN_RATE = "win_rate"
    OPEN_PIPELINE = "open_pipeline"
    WEIGHTED_PIPELINE = "weighted_pipeline"
    FORECAST = "forecast"


GROUP_BY = tuple(GroupBy)
METRICS = tuple(Metric)
MAX_RANGE_DAYS = 3653  # ten years, leap days included
WON, LOST, OPEN = DealStatus.WON, DealStatus.LOST, DealStatus.OPEN
# The deals behind each deal metric (drill-down): the statuses that metric reads.
DRILL_STATUSES: dict[DrillMetric, tuple[DealStatus, ...]] = {
    DrillMetric.BOOKINGS: (WON,), DrillMetric.DEALS_WON: (WON,),
    DrillMetric.AVG_DEAL_SIZE: (WON,), DrillMetric.SALES_CYCLE_DAYS: (WON,),
    DrillMetric.DEALS_LOST: (LOST,), DrillMetric.WIN_RATE: (WON, LOST),
    DrillMetric.OPEN_PIPELINE: (OPEN,), DrillMetric.WEIGHTED_PIPELINE: (OPEN,),
    DrillMetric.FORECAST: (WON, OPEN),
}


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
    session: Session, *, start: date, end: date, group_by: GroupBy,
    connection_id: int | None = None, settings: Settings,
    people: Collection[int] | None = None, activities: bool = False,
) -> dict[str, Any]:
    """{"start","end","currency","group_by","data":[row...],"total":{...}}.

    `people` limits everything to the deals, accounts and goals of those people (their
    owner person; None: everyone, with the deals of no owner and company-wide goals).
    group_by=team sums the exact per-person ingredients of each team's people (people
    without a team, and the deals of no owner, in the row of team null), so its win rate,
    averages and cycle are the team's own, not sums of its reps' rows.
    `activities` adds to every row and the total `activities`, the number of activities
    that count in the period (core.activities; a team's is the sum over its people), and a
    row for every person (connection) with some.
    Reads local dates in CRMSYNC_TIMEZONE even before a zone change is applied (localdates).
    Raises ValueError for bad parameters and currency.CurrencyError for a missing rate.
    """
    return summaries(session, start=start, end=end, group_bys=(group_by,),
                     connection_id=connection_id, settings=settings, people=people,
                     activities=activities)[group_by]


def summaries(
    session: Session, *, start: date, end: date, group_bys: Sequence[GroupBy],
    connection_id: int | None = None, settings: Settings,
    people: Collection[int] | None = None, activities: bool = False,
) -> dict[GroupBy, dict[str, Any]]:
    """summary() for each of `group_bys` at once (group_by -> its answer). Owner and team
    rows are both sums per person: their queries run once for both (the leaderboard shows
    reps and team subtotals)."""
    for group_by in group_bys:
        validate(start, end, group_by)
    read_zone(session, settings.timezone)
    conv = converter(session, settings)
    scope = agg.scope(session, start, end, connection_id, people=people)
    targets = goal_targets(session, start=start, end=end,  # core.goals: bookings goals
                           people=scope.people)
    parts: dict[GroupBy, tuple[dict[Any, agg.Acc], dict[Any, str | None]]] = {}
    counted: dict[GroupBy, dict[Any, int] | None] = {}
    out = {}
    for group_by in group_bys:
        kind = GroupBy.OWNER if group_by in (GroupBy.OWNER, GroupBy.TEAM) else group_by
        if kind not in parts:
            parts[kind] = _ingredients(session, kind, scope, targets, connection_id)
            counted[kind] = _activity_totals(session, kind, scope, start, end, connection_id,
                                             parts[kind][0]) if activities else None
        (accs, names), totals = parts[kind], counted[kind]
        total = agg.Acc()
        for acc in accs.values():
            total.add(acc)
        total_row = agg.finish(total, conv, targets.total()) | _count(totals, totals or {})
        if group_by == GroupBy.NONE:
            data = [dict(total_row)]
        elif group_by == GroupBy.OWNER:
            owners = agg.owner_columns(session, list(accs), names)
            data = [owners[key] | agg.finish(accs[key], conv, targets.row(group_by, key))
                    | _count(totals, [key]) for key in agg.owner_order(owners)]
        elif group_by == GroupBy.TEAM:
            data = _team_rows(session, accs, conv, targets, totals)
        else:
            data = [{"connection_id": key, "connection_name": names.get(key)}
                    | agg.finish(accs[key], conv, targets.row(group_by, key))
                    | _count(totals, [key])
                    for key in sorted(accs, key=lambda k: (k is None, k))]
        out[group_by] = {"start": start, "end": end, "currency": conv.reporting,
                         "group_by": group_by, "data": data, "total": total_row}
    return out


def _activity_totals(session: Session, kind: GroupBy, scope: agg.Scope, start: date,
                     end: date, connection_id: int | None,
                     accs: dict[Any, agg.Acc]) -> dict[Any, int]:
    """The activities that count (core.activities) per row key of `kind` (a person, a
    connection; None: every one together); a key with some gets its row in `accs`."""
    count = counts_by_connection if kind == GroupBy.CONNECTION else activity_counts
    found = count(session, start=start, end=end, people=scope.people,
                  connection_id=connection_id)
    totals: dict[Any, int] = {key: row[TOTAL] for key, row in found.items()}
    if kind == GroupBy.NONE:
        return {None: sum(totals.values())}
    for key in totals:
        accs.setdefault(key, agg.Acc())
    return totals


def _count(totals: dict[Any, int] | None, keys: Iterable[Any]) -> dict[str, int]:
    """{"activities": the sum of `totals` over `keys`}, or nothing without totals."""
    return {} if totals is None else {ACTIVITIES: sum(totals.get(k, 0) for k in keys)}


def _ingredients(session: Session, kind: GroupBy, scope: agg.Scope, targets: GoalTargets,
                 connection_id: int | None,
                 ) -> tuple[dict[Any, agg.Acc], dict[Any, str | None]]:
    """The exact ingredients of every row keyed by `kind` (owner: per person, with a row
    for every owner with a goal and every active rep), and the names on the records."""
    accs: dict[Any, agg.Acc] = defaultdict(agg.Acc)
    names: dict[Any, str | None] = {}

    def keys(table: Table) -> list[Label[Any]]:
        return agg.group_key(kind, table)

    agg.closed_deals(session, keys, scope, accs, names)
    agg.open_deals(session, keys, scope, accs, names)
    agg.new_accounts(session, keys, scope, accs, names)
    if kind == GroupBy.OWNER:
        for owner in targets.by_owner:
            accs.setdefault(owner, agg.Acc())  # an owner with a goal in the period has a row
        agg.reps(session, connection_id, accs, scope.people)
    elif kind == GroupBy.CONNECTION:
        agg.connection_rows(session, connection_id, accs, names)
    return accs, names


def _team_rows(session: Session, accs: dict[Any, agg.Acc], conv: Converter,
               targets: GoalTargets,
               totals: dict[Any, int] | None = None) -> list[dict[str, Any]]:
    """One row per team of the people in `accs` (by team name; team null last): their
    summed ingredients, the sum of their goals (and of their activities' `totals`)."""
    team_of = teams(session, accs)
    team_accs: dict[str | None, agg.Acc] = defaultdict(agg.Acc)
    members: dict[str | None, list[int]] = defaultdict(list)
    keys: dict[str | None, list[Any]] = defaultdict(list)
    for key, acc in accs.items():
        team = team_of.get(key)
        team_accs[team].add(acc)
        keys[team].append(key)
        if key is not None:
            members[team].append(key)
    return [{"team": team} | agg.finish(team_accs[team], conv, targets.of(members[team]))
            | _count(totals, keys[team]) for team in team_order(team_accs)]


def team_order(names: Iterable[str | None]) -> list[str | None]:
    """Teams in row order: by name (case-insensitive), the row of no team last."""
    return sorted(names, key=lambda t: (t is None, (t or "").casefold(), t or ""))


KEY_COLUMNS: dict[GroupBy, tuple[str, ...]] = {
    GroupBy.OWNER: ("person_id", "owner_email", "owner_name"), GroupBy.TEAM: ("team",),
    GroupBy.CONNECTION: ("connection_id", "connection_name"), GroupBy.NONE: ()}
ACTIVITIES = "activities"  # the opt-in count of summaries(activities=True)
SORT_FIELDS = (*(c for g in GroupBy for c in KEY_COLUMNS[g]), *METRICS, ACTIVITIES)
"""Every field a summary can be sorted by (for some group_by)."""


def sort_fields(group_by: GroupBy) -> tuple[str, ...]:
    """The fields a summary of `group_by` can be sorted by: its key columns, then the metrics."""
    return (*KEY_COLUMNS[group_by], *METRICS, ACTIVITIES)


def sort_rows(rows: list[dict[str, Any]], sort: str,
              group_by: GroupBy) -> list[dict[str, Any]]:
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


def _deals_in_period(start: date, end: date, connection_id: int | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None),
                                             DEAL.c.close_date.between(start, end)]
    if connection_id is not None:
        conditions.append(DEAL.c.connection_id == connection_id)
    return and_(*conditions)


def drill_down(metric: DrillMetric, *, start: date, end: date, owner_email: str | None = None,
               person_id: int | None = None, connection_id: int | None = None,
               team: str | None = None, people: Collection[int] | None = None) -> Listing:
    """The deals behind `metric` for the period (and owner, team, connection): deal rows,
    paged.

    The same conditions as summary(): not deleted, close_date in [start, end], the
    statuses the metric reads; sales_cycle_days only the won deals with a created date.
    The owner is a person: `person_id`, or the person of `owner_email`
    (core.people.person_of_email; no deals when it names nobody); `team` the deals of
    that team's people (a summary's group_by=team row); `people` (not None) limits the
    deals to those people's, as in summary().
    Raises ValueError for bad parameters.
    """
    if metric not in DRILL_STATUSES:
        raise ValueError(f"metric must be one of {', '.join(DRILL_STATUSES)}")
    validate_range(start, end)
    conditions = [_deals_in_period(start, end, connection_id),
                  DEAL.c.status.in_(DRILL_STATUSES[metric])]
    if person_id is not None:
        conditions.append(DEAL.c.owner_person_id == person_id)  # the owner index serves this
    if owner_email is not None:
        conditions.append(DEAL.c.owner_person_id == person_of_email_expr(
            normalize_email(owner_email) or ""))
    if team is not None:
        conditions.append(DEAL.c.owner_person_id.in_(team_members(team)))
    if people is not None:
        conditions.append(agg.of_people(DEAL, people))
    if metric == DrillMetric.SALES_CYCLE_DAYS:
        conditions.append(DEAL.c.created_date.is_not(None))
    listing = records_listing("deals", RecordFilters(include_deleted=True))
    # by close date, then id: the period's deals in the order of an index on close_date, so a
    # page reads its rows and stops (by id alone, a store whose ids follow the CRM's
    # modification order read every deal of the period for the first page: 230 ms for
    # 64,000 won deals in a quarter, docs/benchmarks.md)
    return replace(listing, stmt=listing.stmt.where(*conditions), order=DEAL.c.close_date)


_StageKey = tuple[int, str | None, int | None, str | None]  # connection, pipeline, order, name
PIPELINE_COLUMNS = ("connection_id", "pipeline", "stage", "sort_order", "count", "amount",
                    "weighted_amount")


def pipeline(session: Session, *, connection_id: int | None = None,
             settings: Settings, people: Collection[int] | None = None,
             as_of: date | None = None) -> dict[str, Any]:
    """Open deals now (any close date), by stage in stage order: {"currency","data":[row...]}.

    With `as_of`, the open deals of that day instead: each live deal as its latest version
    on or before the day (in CRMSYNC_TIMEZONE) showed it (core.history.deals_as_of), its
    owner then; stages are today's stage records.
    A deal's stage is its stage record (deal.stage_remote_id) when known, else the names on
    the deal (sorted after the known stages). Every open stage that is not deleted gets a
    row, zeros when it holds no deal. Amounts are in the reporting currency, weighted by
    each deal's probability as in weighted_pipeline. `people` (not None) counts only those
    people's deals, as in summary(). Raises CurrencyError for a missing rate.
    """
    conv = converter(session, settings)
    deals: Any = DEAL if as_of is None else deals_as_of(end_of_day(as_of, settings.timezone))
    stage_join = and_(STAGE.c.connection_id == deals.c.connection_id,
                      STAGE.c.remote_id == deals.c.stage_remote_id)
    line = func.coalesce(STAGE.c.pipeline, deals.c.pipeline)
    name = func.coalesce(STAGE.c.name, deals.c.stage)
    conditions: list[ColumnElement[bool]] = [live_open(deals)]
    if connection_id is not None:
        conditions.append(deals.c.connection_id == connection_id)
    if people is not None:
        conditions.append(agg.of_people(deals, people))
    stmt = (
        select(deals.c.connection_id.label("connection_id"), line.label("pipeline"),
               STAGE.c.sort_order.label("sort_order"), name.label("stage"),
               CONNECTION.c.home_currency.label("currency"),
               deals.c.probability.label("probability"), func.count().label("n"),
               type_coerce(func.sum(deals.c.amount_home), Money).label("amount"))
        .join_from(deals, CONNECTION, deals.c.connection_id == CONNECTION.c.id)
        .outerjoin(STAGE, stage_join)
        .where(*conditions)
        .group_by(deals.c.connection_id, line, STAGE.c.sort_order, name,
                  CONNECTION.c.home_currency, deals.c.probability)
    )
    groups: dict[_StageKey, tuple[list[int], Amounts, Amounts]] = {}
    stages = select(STAGE.c.connection_id, STAGE.c.pipeline, STAGE.c.sort_order,
                    STAGE.c.name).where(STAGE.c.deleted_at.is_(None),
                                        STAGE.c.category == OPEN)
    if connection_id is not None:
        stages = stages.where(STAGE.c.connection_id == connection_id)
    for cid, line_name, rank, stage_name in session.execute(stages):
        groups.setdefault((cid, line_name, rank, stage_name), ([0], [], []))
    for row in session.execute(stmt):
        count, amounts, weighted = groups.setdefault(
            (row.connection_id, row.pipeline, row.sort_order, row.stage), ([0], [], []))
        count[0] += int(row.n)
        amounts.append((row.currency, row.amount))
        weighted.append((row.currency, agg.weighted(row.amount, row.probability)))

    def order(key: _StageKey) -> tuple[Any, ...]:
        cid, line_name, sort_order, stage_name = key
        return (cid, line_name is None, line_name or "", sort_order is None, sort_order or 0,
                stage_name or "")

    data = [{"connection_id": key[0], "pipeline": key[1], "stage": key[3],
             "sort_order": key[2], "count": count[0],
             "amount": agg.round_half_up(conv.total(amounts), 2),
             "weighted_amount": agg.round_half_up(conv.total(weighted), 2)}
            for key in sorted(groups, key=order)
            for count, amounts, weighted in [groups[key]]]
    return {"currency": conv.reporting, "data": data}




class Interval(StrEnum):
    WEEK = "week"  # Monday to Sunday
    MONTH = "month"
    QUARTER = "quarter"  # fiscal (CRMSYNC_FISCAL_YEAR_START_MONTH)


class SeriesMetric(StrEnum):
    """The metrics with a time series: all but goal and attainment."""

    BOOKINGS = "bookings"
    DEALS_WON = "deals_won"
    DEALS_LOST = "deals_lost"
    WIN_RATE = "win_rate"
    AVG_DEAL_SIZE = "avg_deal_size"
    SALES_CYCLE_DAYS = "sales_cycle_days"
    OPEN_PIPELINE = "open_pipeline"
    WEIGHTED_PIPELINE = "weighted_pipeline"
    FORECAST = "forecast"
    NEW_ACCOUNTS = "new_accounts"


class SeriesGroupBy(StrEnum):
    NONE = "none"
    OWNER = "owner"
    TEAM = "team"  # the owners' teams, from their exact per-person ingredients


INTERVALS = tuple(Interval)
_Part = Callable[[Session, KeysFn, agg.Scope, dict[Any, agg.Acc], dict[Any, str | None] | None],
                 None]


def _closed(*fields: str) -> _Part:
    return partial(agg.closed_deals, fields=fields)


# The queries a series metric reads, and of the closed deals only the sums it needs
# (summary reads them all).
SERIES_PARTS: dict[SeriesMetric, tuple[_Part, ...]] = {
    SeriesMetric.BOOKINGS: (_closed("bookings"),),
    SeriesMetric.DEALS_WON: (_closed("deals_won"),),
    SeriesMetric.DEALS_LOST: (_closed("deals_lost"),),
    SeriesMetric.WIN_RATE: (_closed("deals_won", "deals_lost"),),
    SeriesMetric.AVG_DEAL_SIZE: (_closed("bookings", "deals_won"),),
    SeriesMetric.SALES_CYCLE_DAYS: (_closed("cycle_days", "cycle_deals"),),
    SeriesMetric.OPEN_PIPELINE: (agg.open_deals,),
    SeriesMetric.WEIGHTED_PIPELINE: (agg.open_deals,),
    SeriesMetric.FORECAST: (_closed("bookings"), agg.open_deals),
    SeriesMetric.NEW_ACCOUNTS: (agg.new_accounts,)}


SERIES_METRICS = tuple(SeriesMetric)
SERIES_GROUP_BY = tuple(SeriesGroupBy)


def validate_series(metric: str, interval: str, start: date, end: date, group_by: str) -> None:
    if metric not in SERIES_METRICS:
        raise ValueError(f"metric must be one of {', '.join(SERIES_METRICS)}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    if group_by not in SERIES_GROUP_BY:
        raise ValueError(f"group_by must be one of {', '.join(SERIES_GROUP_BY)}")
    validate_range(start, end)


def timeseries(
    session: Session, *, metric: SeriesMetric, interval: Interval, start: date, end: date,
    group_by: SeriesGroupBy = SeriesGroupBy.NONE, connection_id: int | None = None,
    settings: Settings, people: Collection[int] | None = None,
) -> dict[str, Any]:
    """One row per period (and owner) of [start, end], empty periods included.

    {"metric","interval","start","end","currency","group_by","data":[{"period_start",
    "period_end",["person_id","owner_email","owner_name",|"team",]"value"}...]}, ordered by
    period then owner (in the summary's owner order) or team (summary's team order).
    The first and last periods count only the days inside [start, end]. The same queries
    as summary(), each also grouped by a period number computed in SQL from the date
    (close_date; created_date for new_accounts), so a row's value is exactly what
    summary() gives for that period. group_by=owner has the owners summary() lists;
    group_by=team one row per team of those owners, each the sum of its people's exact
    ingredients, grouped by the team in SQL (as summary's group_by=team: people without a
    team and deals of no owner in the row of team null).
    `people` (not None) limits it to those people's deals and accounts, as in summary().
    Reads local dates in CRMSYNC_TIMEZONE even before a zone change is applied (localdates).
    """
    validate_series(metric, interval, start, end, group_by)
    read_zone(session, settings.timezone)
    conv = converter(session, settings)
    shift = settings.fiscal_year_start_month - 1
    accs: dict[Any, agg.Acc] = defaultdict(agg.Acc)
    # Weeks do not fall into months: they read the weekly (and daily) rollups; months and
    # quarters the monthly (and daily) ones.
    weeks = interval == Interval.WEEK
    scope = agg.scope(session, start, end, connection_id, monthly=not weeks, weekly=weeks,
                      people=people)

    def keys(table: Table) -> list[Label[Any]]:
        period: ColumnElement[Any]
        if table in (DEAL_WEEK, ACCOUNT_WEEK):
            period = table.c.week
        elif table in (DEAL_MONTH, ACCOUNT_MONTH):
            month = table.c.month
            period = month if interval == Interval.MONTH else (month - shift) // 3
        else:
            column = (table.c.close_date if table is DEAL else created_date(session, table)
                      if table is ACCOUNT else table.c.day)
            period = period_key(session, column, interval, shift)
        by = [agg.team_key()] if group_by == SeriesGroupBy.TEAM else \
            agg.group_key(group_by, table)
        return [*by, period.label("period")]

    for part in SERIES_PARTS[metric]:
        part(session, keys, scope, accs, None)  # owners are named by agg.owners below
    periods = _periods(interval, shift, start, end)
    values, nothing = agg.finish_each(accs, conv, metric)
    data: list[dict[str, Any]] = []
    if group_by == SeriesGroupBy.NONE:
        data = [{"period_start": first, "period_end": last,
                 "value": values.get(number, nothing)} for number, first, last in periods]
    else:
        # the owners summary() lists: any deal or new account in the range, active reps
        owner_names: dict[Any, str | None] = {}
        reps: dict[Any, agg.Acc] = defaultdict(agg.Acc)
        agg.owners(session, scope, reps, owner_names)
        agg.reps(session, connection_id, reps, scope.people)
        if group_by == SeriesGroupBy.OWNER:
            columns = agg.owner_columns(session, list(reps), owner_names)
            owners = [(owner, columns[owner]) for owner in agg.owner_order(columns)]
            data = [{"period_start": first, "period_end": last, **owner_keys,
                     "value": values.get((owner, number), nothing)}
                    for number, first, last in periods for owner, owner_keys in owners]
        else:  # accs are by (team, period), summed in SQL (aggregates.team_key)
            team_of = teams(session, reps)
            in_order = team_order({team_of.get(owner) for owner in reps})
            data = [{"period_start": first, "period_end": last, "team": team,
                     "value": values.get((team, number), nothing)}
                    for number, first, last in periods for team in in_order]
    return {"metric": metric, "interval": interval, "start": start, "end": end,
            "currency": conv.reporting, "group_by": group_by, "data": data}


def period_key(session: Session, column: ColumnElement[Any], interval: Interval,
                shift: int) -> ColumnElement[Any]:
    """The period number of a date column, in integer arithmetic both databases share.

    week: core.metrics.rollups.week_number; month: year x 12 + month - 1 (month_number);
    quarter: (month number - shift) / 3, shift = fiscal year start month - 1. All operands
    are non-negative, so integer division floors on SQLite and PostgreSQL alike.
    """
    if interval == Interval.WEEK:
        return week_number(session, column)
    month = month_number(column)
    return month if interval == Interval.MONTH else (month - shift) // 3


def _period_number(interval: Interval, shift: int, day: date) -> int:
    """period_key in Python."""
    if interval == Interval.WEEK:
        return week_of(day)
    month = month_of(day)
    return month if interval == Interval.MONTH else (month - shift) // 3


def _period_start(interval: Interval, shift: int, number: int) -> date:
    if interval == Interval.WEEK:
        return week_first(number)
    month = number if interval == Interval.MONTH else number * 3 + shift
    return date(month // 12, month % 12 + 1, 1)


def _periods(interval: Interval, shift: int, start: date,
             end: date) -> list[tuple[int, date, date]]:
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
