"""Evaluation metrics (docs/evaluation.md): the funnel and days in stage, win rate and
cycle by entry cohort, sales velocity, forecast accuracy and slippage, per rep, team or
for everyone.

Counts, sums and the middle values of medians come from SQL (GROUP BY and window
functions that SQLite and PostgreSQL compute alike); Python only adds a few grouped rows
up, converts currencies (core.metrics.currency) and divides, rounding at the very end:
amounts to 2 decimals, rates and ratios to 4, days to 2 (half up).

Stage history is core.history's: the stages a deal reached (its stage now and every stage
in its changes) and its stays; deals as of a day are its deal versions.
"""

from collections import defaultdict
from collections.abc import Collection
from datetime import date
from decimal import Decimal, localcontext
from enum import StrEnum
from itertools import pairwise
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    null,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlmodel import Session

from core import history, people
from core.columns import Money
from core.config import Settings
from core.metrics import aggregates as agg
from core.metrics.aggregates import CONNECTION, DEAL, STAGE, Acc, Amounts, ratio, round_half_up
from core.metrics.currency import PRECISION, Converter, converter
from core.metrics.definitions import Interval, period_key, validate_range
from core.metrics.localdates import created_date, date_diff, read_zone
from core.models import Person, table_of
from core.types import DealStatus

PERSON = table_of(Person)
WON, LOST, OPEN = DealStatus.WON, DealStatus.LOST, DealStatus.OPEN
SECONDS_PER_DAY = 86400


class EvalGroupBy(StrEnum):
    """Rows per rep (the owner's person), per team (of the owner's person), or none."""

    NONE = "none"
    OWNER = "owner"
    TEAM = "team"


def _key(group_by: EvalGroupBy, owner: ColumnElement[Any]) -> ColumnElement[Any]:
    """The group key of rows whose owner person is `owner` (team: PERSON must be joined)."""
    if group_by == EvalGroupBy.OWNER:
        return owner
    if group_by == EvalGroupBy.TEAM:
        return PERSON.c.team
    return cast(null(), Integer)


def _key_columns(session: Session, group_by: EvalGroupBy, keys: Collection[Any],
                 names: dict[Any, str | None]) -> list[tuple[Any, dict[str, Any]]]:
    """(key, key columns) in row order: owners as in the summary, teams by name (null
    last), or the one row of everyone."""
    if group_by == EvalGroupBy.OWNER:
        columns = agg.owner_columns(session, list(keys), names)
        return [(key, columns[key]) for key in agg.owner_order(columns)]
    if group_by == EvalGroupBy.TEAM:
        order = sorted(keys, key=lambda t: (t is None, (t or "").casefold(), t or ""))
        return [(team, {"team": team}) for team in order]
    return [(None, {})]


def _days(seconds: Decimal | None) -> Decimal | None:
    return None if seconds is None else round_half_up(seconds / SECONDS_PER_DAY, 2)


# ---- the funnel ----------------------------------------------------------------------------

def _cohort(session: Session, *, start: date, end: date, group_by: EvalGroupBy,
            connection_id: int | None, pipeline: str | None,
            people_: Collection[int] | None) -> Subquery:
    """The live deals created in [start, end] (their local created date), with their
    pipeline (their stage's, else their own) and group key."""
    current = STAGE.alias("current_stage")
    line = func.coalesce(current.c.pipeline, DEAL.c.pipeline)
    created = created_date(session, DEAL)
    stmt = (select(DEAL.c.id, DEAL.c.connection_id, line.label("pipeline"), DEAL.c.status,
                   DEAL.c.close_date, created.label("created_date"),
                   _key(group_by, DEAL.c.owner_person_id).label("key"),
                   DEAL.c.owner_name)
            .select_from(DEAL)
            .outerjoin(current, and_(current.c.connection_id == DEAL.c.connection_id,
                                     current.c.remote_id == DEAL.c.stage_remote_id)))
    if group_by == EvalGroupBy.TEAM:
        stmt = stmt.outerjoin(PERSON, PERSON.c.id == DEAL.c.owner_person_id)
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None),
                                             created.between(start, end)]
    if connection_id is not None:
        conditions.append(DEAL.c.connection_id == connection_id)
    if pipeline is not None:
        conditions.append(line == pipeline)
    if people_ is not None:
        conditions.append(agg.of_people(DEAL, people_))
    return stmt.where(*conditions).subquery("cohort")


def _reached(cohort: Subquery) -> Subquery:
    """(deal_id, top): the highest sort order among the open and won stages of its pipeline
    a cohort deal is in or ever was in (its stage now, and both ends of its changes)."""
    deal_of = and_(DEAL.c.id == cohort.c.id)
    counted = and_(STAGE.c.category != LOST, STAGE.c.deleted_at.is_(None))
    now = (select(cohort.c.id.label("deal_id"), STAGE.c.sort_order.label("rank"))
           .join_from(cohort, DEAL, deal_of)
           .join(STAGE, and_(STAGE.c.connection_id == DEAL.c.connection_id,
                             STAGE.c.remote_id == DEAL.c.stage_remote_id))
           .where(counted))
    parts: list[Select[Any]] = [now]
    change = history.CHANGE
    for end in (change.c.to_stage, change.c.from_stage):
        parts.append(
            select(cohort.c.id.label("deal_id"), STAGE.c.sort_order.label("rank"))
            .join_from(cohort, DEAL, deal_of)
            .join(change, and_(change.c.connection_id == DEAL.c.connection_id,
                               change.c.deal_remote_id == DEAL.c.remote_id))
            .join(STAGE, and_(STAGE.c.connection_id == DEAL.c.connection_id,
                              STAGE.c.name == end,
                              STAGE.c.pipeline.is_not_distinct_from(cohort.c.pipeline)))
            .where(counted))
    ranks = union_all(*parts).subquery("ranks")
    return (select(ranks.c.deal_id, func.max(ranks.c.rank).label("top"))
            .group_by(ranks.c.deal_id).subquery("reached"))


def _funnel_stages(session: Session, lines: Collection[tuple[int, str | None]]
                   ) -> dict[tuple[int, str | None], list[Any]]:
    """The open and won stages of each (connection, pipeline), in stage order."""
    out: dict[tuple[int, str | None], list[Any]] = {line: [] for line in lines}
    stmt = (select(STAGE.c.connection_id, STAGE.c.pipeline, STAGE.c.name, STAGE.c.sort_order,
                   STAGE.c.category)
            .where(STAGE.c.deleted_at.is_(None), STAGE.c.category.in_((OPEN, WON)))
            .order_by(STAGE.c.connection_id, STAGE.c.sort_order, STAGE.c.name))
    for row in session.execute(stmt):
        if (row.connection_id, row.pipeline) in out:
            out[(row.connection_id, row.pipeline)].append(row)
    return out


def _stay_stats(session: Session, cohort: Subquery) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Per (key, connection, pipeline, stage): the stays that ended (n), their summed
    seconds, and the middle one or two of their durations (a median, picked by window
    functions)."""
    stays = history.stays(session, select(cohort.c.id))
    base = (select(cohort.c.key, cohort.c.connection_id, cohort.c.pipeline, stays.c.stage,
                   stays.c.seconds)
            .join_from(stays, cohort, cohort.c.id == stays.c.deal_id)
            .where(stays.c.seconds.is_not(None)).subquery("ended"))
    part = (base.c.key, base.c.connection_id, base.c.pipeline, base.c.stage)
    ranked = select(*part, base.c.seconds,
                    func.row_number().over(partition_by=part, order_by=base.c.seconds)
                    .label("rn"),
                    func.count().over(partition_by=part).label("n")).subquery("ranked")
    r = ranked.c
    group = (r.key, r.connection_id, r.pipeline, r.stage)
    stmt = select(*group, func.max(r.n).label("n"), func.sum(r.seconds).label("total"),
                  func.min(case((r.rn == (r.n + 1) // 2, r.seconds))).label("low"),
                  func.max(case((r.rn == (r.n + 2) // 2, r.seconds))).label("high")
                  ).group_by(*group)
    return {(row.key, row.connection_id, row.pipeline, row.stage): {
        "n": int(row.n), "total": int(row.total), "low": int(row.low), "high": int(row.high)}
        for row in session.execute(stmt)}


def funnel(session: Session, *, start: date, end: date,
           group_by: EvalGroupBy = EvalGroupBy.NONE, connection_id: int | None = None,
           pipeline: str | None = None, settings: Settings,
           people_: Collection[int] | None = None) -> dict[str, Any]:
    """The funnel of the deals created in [start, end], per group and (connection,
    pipeline), and their entry cohorts (docs/evaluation.md):
    {"start","end","group_by","data":[{key columns, "connection_id","pipeline","created",
    "stages":[{"stage","sort_order","category","reached","conversion","median_days",
    "mean_days","stays_ended"}]}], "cohorts":[...]}. Raises ValueError for bad parameters."""
    validate_range(start, end)
    read_zone(session, settings.timezone)
    cohort = _cohort(session, start=start, end=end, group_by=group_by,
                     connection_id=connection_id, pipeline=pipeline, people_=people_)
    reached = _reached(cohort)
    counts = (select(cohort.c.key, cohort.c.connection_id, cohort.c.pipeline,
                     reached.c.top, cohort.c.status, func.count().label("n"),
                     func.max(cohort.c.owner_name).label("name"))
              .select_from(cohort.outerjoin(reached, reached.c.deal_id == cohort.c.id))
              .group_by(cohort.c.key, cohort.c.connection_id, cohort.c.pipeline,
                        reached.c.top, cohort.c.status))
    groups: dict[tuple[Any, int, str | None], list[Any]] = defaultdict(list)
    names: dict[Any, str | None] = {}
    for row in session.execute(counts):
        groups[(row.key, row.connection_id, row.pipeline)].append(row)
        agg.keep_name(names, row.key, row.name)
    stages = _funnel_stages(session, {(cid, line) for _, cid, line in groups})
    stats = _stay_stats(session, cohort)
    data = []
    for key, columns in _key_columns(session, group_by, {k for k, _, _ in groups}, names):
        for (k, cid, line) in sorted((g for g in groups if g[0] == key),
                                     key=lambda g: (g[1], g[2] is None, g[2] or "")):
            rows = groups[(k, cid, line)]
            data.append({**columns, "connection_id": cid, "pipeline": line,
                         "created": sum(int(r.n) for r in rows),
                         "stages": _stage_rows(stages[(cid, line)], rows,
                                               {s[3]: v for s, v in stats.items()
                                                if s[:3] == (k, cid, line)})})
    return {"start": start, "end": end, "group_by": group_by, "data": data,
            "cohorts": _cohorts(session, cohort, group_by, names)}


def _stage_rows(stages: list[Any], counts: list[Any],
                stats: dict[str | None, dict[str, Any]]) -> list[dict[str, Any]]:
    """One group's funnel: reached per stage (open stages: reached it or a later one, or
    won; won stages: won), conversion to the next stage, days in each stage."""
    out: list[dict[str, Any]] = []
    for stage in stages:
        reached = sum(int(r.n) for r in counts if r.status == WON or (
            stage.category == OPEN and r.top is not None and r.top >= stage.sort_order))
        stay = stats.get(stage.name)
        with localcontext() as ctx:
            ctx.prec = PRECISION
            median = None if stay is None else Decimal(stay["low"] + stay["high"]) / 2
            mean = None if stay is None else Decimal(stay["total"]) / stay["n"]
        out.append({"stage": stage.name, "sort_order": stage.sort_order,
                    "category": stage.category, "reached": reached, "conversion": None,
                    "median_days": _days(median), "mean_days": _days(mean),
                    "stays_ended": 0 if stay is None else stay["n"]})
    for this, following in pairwise(out):
        this["conversion"] = ratio(Decimal(following["reached"]), this["reached"], 4)
    return out


def _cohorts(session: Session, cohort: Subquery, group_by: EvalGroupBy,
             names: dict[Any, str | None]) -> list[dict[str, Any]]:
    """Per group and month of creation: deals created, won, lost and open now, win rate
    and sales cycle (mean close_date - created date of the won ones, in days)."""
    month = period_key(session, cohort.c.created_date, Interval.MONTH, 0).label("month")
    won, lost = cohort.c.status == WON, cohort.c.status == LOST
    timed = and_(won, cohort.c.close_date.is_not(None))
    stmt = (select(cohort.c.key, month, func.count().label("n"),
                   func.sum(case((won, 1), else_=0)).label("won"),
                   func.sum(case((lost, 1), else_=0)).label("lost"),
                   func.sum(case((timed, date_diff(session, cohort.c.close_date,
                                                   cohort.c.created_date)))).label("days"),
                   func.sum(case((timed, 1), else_=0)).label("timed"))
            .group_by(cohort.c.key, month))
    rows = {(row.key, int(row.month)): row for row in session.execute(stmt)}
    out = []
    for key, columns in _key_columns(session, group_by, {k for k, _ in rows}, names):
        for (k, number) in sorted(m for m in rows if m[0] == key):
            row = rows[(k, number)]
            won_n, lost_n = int(row.won or 0), int(row.lost or 0)
            out.append({**columns, "cohort": f"{number // 12:04d}-{number % 12 + 1:02d}",
                        "created": int(row.n), "won": won_n, "lost": lost_n,
                        "open": int(row.n) - won_n - lost_n,
                        "win_rate": ratio(Decimal(won_n), won_n + lost_n, 4),
                        "sales_cycle_days": ratio(Decimal(int(row.days or 0)),
                                                  int(row.timed or 0), 2)})
    return out


# ---- sales velocity ------------------------------------------------------------------------

def _velocity(acc: Acc, conv: Converter) -> Decimal | None:
    """open deals x avg_deal_size x win_rate / sales_cycle_days, from exact parts; None when
    a part is missing or the cycle is 0."""
    if not acc.deals_won or not acc.cycle_deals or not acc.cycle_days:
        return None
    with localcontext() as ctx:
        ctx.prec = PRECISION
        avg = conv.total(acc.bookings) / acc.deals_won
        rate = Decimal(acc.deals_won) / (acc.deals_won + acc.deals_lost)
        cycle = Decimal(acc.cycle_days) / acc.cycle_deals
        return round_half_up(acc.open_deals * avg * rate / cycle, 2)


def _velocity_row(acc: Acc, conv: Converter) -> dict[str, Any]:
    with localcontext() as ctx:
        ctx.prec = PRECISION
        parts = {name: agg.DEFINITIONS[name](acc, conv)
                 for name in ("avg_deal_size", "win_rate", "sales_cycle_days")}
        return {"open_deals": acc.open_deals, **parts, "velocity": _velocity(acc, conv)}


def velocity(session: Session, *, start: date, end: date,
             group_by: EvalGroupBy = EvalGroupBy.NONE, connection_id: int | None = None,
             settings: Settings, people_: Collection[int] | None = None) -> dict[str, Any]:
    """Sales velocity for [start, end] (close dates in the period, as in the summary), per
    rep, team or none: {"start","end","currency","group_by","data":[row],"total":row}; a
    row holds open_deals, avg_deal_size, win_rate, sales_cycle_days and velocity (money per
    day). Raises ValueError for bad parameters, CurrencyError for a missing rate."""
    validate_range(start, end)
    read_zone(session, settings.timezone)
    conv = converter(session, settings)
    accs: dict[Any, Acc] = defaultdict(Acc)
    names: dict[Any, str | None] = {}
    scope = agg.scope(session, start, end, connection_id, people=people_)
    by = "owner" if group_by != EvalGroupBy.NONE else "none"

    def keys(table: Any) -> list[Any]:
        return agg.group_key(by, table)

    agg.closed_deals(session, keys, scope, accs, names)
    agg.open_deals(session, keys, scope, accs, names)
    total = Acc()
    for acc in accs.values():
        total.add(acc)
    grouped: dict[Any, Acc] = accs
    if group_by == EvalGroupBy.TEAM:
        team_of = people.teams(session, accs)
        grouped = defaultdict(Acc)
        for key, acc in accs.items():
            grouped[team_of.get(key)].add(acc)
    data = [] if group_by == EvalGroupBy.NONE else [
        {**columns, **_velocity_row(grouped[key], conv)}
        for key, columns in _key_columns(session, group_by, grouped, names)]
    return {"start": start, "end": end, "currency": conv.reporting, "group_by": group_by,
            "data": data or [_velocity_row(total, conv)], "total": _velocity_row(total, conv)}


# ---- forecast accuracy and slippage --------------------------------------------------------

def as_of_sums(session: Session, deals: Subquery, *, start: date, end: date,
                group_by: EvalGroupBy, connection_id: int | None,
                people_: Collection[int] | None, statuses: tuple[DealStatus, ...]
                ) -> list[Any]:
    """Per group, home currency, status and probability: the summed amount of the deals
    (as of some day) closing in [start, end]."""
    key = _key(group_by, deals.c.owner_person_id).label("key")
    stmt = (select(key, CONNECTION.c.home_currency.label("currency"), deals.c.status,
                   deals.c.probability,
                   type_coerce(func.sum(deals.c.amount_home), Money).label("amount"),
                   func.max(deals.c.owner_name).label("name"))
            .join_from(deals, CONNECTION, deals.c.connection_id == CONNECTION.c.id))
    if group_by == EvalGroupBy.TEAM:
        stmt = stmt.outerjoin(PERSON, PERSON.c.id == deals.c.owner_person_id)
    conditions = _as_of_conditions(deals, start, end, connection_id, people_)
    stmt = stmt.where(*conditions, deals.c.status.in_(statuses)).group_by(
        key, CONNECTION.c.home_currency, deals.c.status, deals.c.probability)
    return list(session.execute(stmt))


def _as_of_conditions(deals: Subquery, start: date, end: date, connection_id: int | None,
                      people_: Collection[int] | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [deals.c.close_date.between(start, end)]
    if connection_id is not None:
        conditions.append(deals.c.connection_id == connection_id)
    if people_ is not None:
        conditions.append(agg.of_people(deals, people_))
    return conditions


def forecast_accuracy(session: Session, *, start: date, end: date,
                      group_by: EvalGroupBy = EvalGroupBy.OWNER,
                      connection_id: int | None = None, settings: Settings,
                      people_: Collection[int] | None = None) -> dict[str, Any]:
    """Forecast accuracy and slippage of the period [start, end] (docs/evaluation.md), per
    rep (the owner of each deal version then), team or none.

    forecast_at_start: the forecast (bookings + weighted pipeline) of the period's deals as
    their versions showed them at the end of its first day; bookings_at_end: the bookings
    of the period as of the end of its last day; forecast_accuracy = bookings_at_end /
    forecast_at_start (null when the forecast is 0). Slipped: deals open and closing in
    the period on its first day that, while open, were later (until the end of the period)
    given a close date after it; their count, amount (as of the first day) and the deals.
    """
    validate_range(start, end)
    read_zone(session, settings.timezone)
    conv = converter(session, settings)
    at_start = history.end_of_day(start, settings.timezone)
    at_end = history.end_of_day(end, settings.timezone)
    first, last = history.deals_as_of(at_start), history.deals_as_of(at_end)
    forecast: dict[Any, Amounts] = defaultdict(list)
    bookings: dict[Any, Amounts] = defaultdict(list)
    names: dict[Any, str | None] = {}
    common: dict[str, Any] = {"start": start, "end": end, "group_by": group_by,
              "connection_id": connection_id, "people_": people_}
    for sums in as_of_sums(session, first, statuses=(WON, OPEN), **common):
        amount = (sums.amount if sums.status == WON
                  else agg.weighted(sums.amount, sums.probability))
        forecast[sums.key].append((sums.currency, amount))
        agg.keep_name(names, sums.key, sums.name)
    for sums in as_of_sums(session, last, statuses=(WON,), **common):
        bookings[sums.key].append((sums.currency, sums.amount))
        agg.keep_name(names, sums.key, sums.name)
    slipped = _slipped(session, first, at_start=at_start, at_end=at_end, **common)
    for key, deals in slipped.items():
        agg.keep_name(names, key, deals[0]["owner_name"])
    keys = set(forecast) | set(bookings) | set(slipped)

    def row(parts: list[Any]) -> dict[str, Any]:
        planned = conv.total(a for k in parts for a in forecast.get(k, []))
        booked = conv.total(a for k in parts for a in bookings.get(k, []))
        lost = [d for k in parts for d in slipped.get(k, [])]
        with localcontext() as ctx:
            ctx.prec = PRECISION
            accuracy = None if not planned else round_half_up(booked / planned, 4)
            amount = conv.total((d["currency"], d["amount"]) for d in lost)
        return {"forecast_at_start": round_half_up(planned, 2),
                "bookings_at_end": round_half_up(booked, 2), "forecast_accuracy": accuracy,
                "slipped_deals": len(lost), "slipped_amount": round_half_up(amount, 2),
                "slipped": [{k: d[k] for k in ("deal_id", "remote_id", "name", "close_date")}
                            for d in sorted(lost, key=lambda d: d["deal_id"])]}

    data = [] if group_by == EvalGroupBy.NONE else [
        {**columns, **row([key])} for key, columns in _key_columns(session, group_by, keys,
                                                                    names)]
    total = row(list(keys))
    return {"start": start, "end": end, "currency": conv.reporting, "group_by": group_by,
            "data": data or [total], "total": total}


def _slipped(session: Session, first: Subquery, *, at_start: Any, at_end: Any, start: date,
             end: date, group_by: EvalGroupBy, connection_id: int | None,
             people_: Collection[int] | None) -> dict[Any, list[dict[str, Any]]]:
    """The slipped deals (forecast_accuracy) by group key (their owner on the first day)."""
    version = history.VERSION
    moved_out = exists().where(
        version.c.connection_id == first.c.connection_id,
        version.c.deal_remote_id == first.c.remote_id,
        version.c.status == OPEN, version.c.close_date > end,
        version.c.valid_from < at_end,
        or_(version.c.valid_to.is_(None), version.c.valid_to > at_start))
    key = _key(group_by, first.c.owner_person_id).label("key")
    stmt = (select(key, first.c.id, first.c.remote_id, first.c.name, first.c.close_date,
                   first.c.amount_home, first.c.owner_name,
                   CONNECTION.c.home_currency.label("currency"))
            .join_from(first, CONNECTION, first.c.connection_id == CONNECTION.c.id))
    if group_by == EvalGroupBy.TEAM:
        stmt = stmt.outerjoin(PERSON, PERSON.c.id == first.c.owner_person_id)
    stmt = stmt.where(*_as_of_conditions(first, start, end, connection_id, people_),
                      first.c.status == OPEN, moved_out)
    out: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for r in session.execute(stmt):
        out[r.key].append({"deal_id": r.id, "remote_id": r.remote_id, "name": r.name,
                           "close_date": r.close_date, "amount": r.amount_home,
                           "currency": r.currency, "owner_name": r.owner_name})
    return out
