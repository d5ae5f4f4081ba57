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
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

from sqlalchemy import ColumnElement, Integer, Table, and_, case, cast, func, select, type_coerce
from sqlmodel import Session

from core.config import Settings
from core.currency import PRECISION, Converter, converter
from core.localdates import ensure_zone
from core.models import Account, Connection, Deal, User
from core.types import Money

GROUP_BY = ("owner", "connection", "none")
METRICS = ("bookings", "deals_won", "deals_lost", "win_rate", "avg_deal_size",
           "sales_cycle_days", "open_pipeline", "weighted_pipeline", "forecast",
           "new_accounts", "goal", "attainment")
MAX_RANGE_DAYS = 3653  # ten years, leap days included

Amounts = list[tuple[str | None, Decimal | None]]  # (home currency, exact sum)


def _table(model: type[Any]) -> Table:
    table: Table = model.__table__
    return table


DEAL, ACCOUNT, CONNECTION, USER = (_table(m) for m in (Deal, Account, Connection, User))


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
    deal_key = _key(group_by, DEAL)
    _closed_deals(session, deal_key, start, end, connection_id, accs, names)
    _open_deals(session, deal_key, start, end, connection_id, accs, names)
    _new_accounts(session, _key(group_by, ACCOUNT), start, end, connection_id, accs, names)
    if group_by == "owner":
        _reps(session, connection_id, accs, names)
    elif group_by == "connection":
        _connections(session, connection_id, accs, names)
    total = _Acc()
    for acc in accs.values():
        total.add(acc)
    total_row = _finish(total, conv)
    if group_by == "none":
        data = [dict(total_row)]
    else:
        data = [_keyed(group_by, key, names.get(key)) | _finish(accs[key], conv)
                for key in sorted(accs, key=lambda k: (k is None, k))]
    return {"start": start, "end": end, "currency": conv.reporting, "group_by": group_by,
            "data": data, "total": total_row}


def _keyed(group_by: str, key: Any, name: str | None) -> dict[str, Any]:
    if group_by == "owner":
        return {"owner_email": key, "owner_name": name}
    return {"connection_id": key, "connection_name": name}


def _key(group_by: str, table: Table) -> list[ColumnElement[Any]]:
    if group_by == "owner":
        return [func.lower(table.c.owner_email).label("key")]
    if group_by == "connection":
        return [table.c.connection_id.label("key")]
    return []


def _row_key(row: Any, keys: list[ColumnElement[Any]]) -> Any:
    return row.key if keys else None


def _deals_in_period(start: date, end: date, connection_id: int | None) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None),
                                             DEAL.c.close_date.between(start, end)]
    if connection_id is not None:
        conditions.append(DEAL.c.connection_id == connection_id)
    return and_(*conditions)


def _days(session: Session) -> ColumnElement[Any]:
    """close_date - created_date in whole days (both are plain dates)."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.julianday(DEAL.c.close_date) - func.julianday(DEAL.c.created_date),
                    Integer)
    return DEAL.c.close_date - DEAL.c.created_date


def _name(names: dict[Any, str | None], key: Any, name: str | None) -> None:
    if name and not names.get(key):
        names[key] = name


def _closed_deals(session: Session, keys: list[ColumnElement[Any]], start: date, end: date,
                  connection_id: int | None, accs: dict[Any, _Acc],
                  names: dict[Any, str | None]) -> None:
    won = DEAL.c.status == "won"
    timed = and_(won, DEAL.c.created_date.is_not(None))
    stmt = (
        select(*keys, CONNECTION.c.home_currency.label("currency"),
               type_coerce(func.sum(case((won, DEAL.c.amount_home))), Money).label("bookings"),
               func.sum(case((won, 1), else_=0)).label("won"),
               func.sum(case((DEAL.c.status == "lost", 1), else_=0)).label("lost"),
               func.sum(case((timed, _days(session)))).label("days"),
               func.sum(case((timed, 1), else_=0)).label("timed"),
               func.max(DEAL.c.owner_name).label("name"))
        .join_from(DEAL, CONNECTION, DEAL.c.connection_id == CONNECTION.c.id)
        .where(_deals_in_period(start, end, connection_id),
               DEAL.c.status.in_(("won", "lost")))
        .group_by(*keys, CONNECTION.c.home_currency)
    )
    for row in session.execute(stmt):
        acc = accs[_row_key(row, keys)]
        acc.bookings.append((row.currency, row.bookings))
        acc.deals_won += int(row.won or 0)
        acc.deals_lost += int(row.lost or 0)
        acc.cycle_days += int(row.days or 0)
        acc.cycle_deals += int(row.timed or 0)
        _name(names, _row_key(row, keys), row.name)


def _open_deals(session: Session, keys: list[ColumnElement[Any]], start: date, end: date,
                connection_id: int | None, accs: dict[Any, _Acc],
                names: dict[Any, str | None]) -> None:
    stmt = (
        select(*keys, CONNECTION.c.home_currency.label("currency"),
               DEAL.c.probability.label("probability"),
               type_coerce(func.sum(DEAL.c.amount_home), Money).label("amount"),
               func.max(DEAL.c.owner_name).label("name"))
        .join_from(DEAL, CONNECTION, DEAL.c.connection_id == CONNECTION.c.id)
        .where(_deals_in_period(start, end, connection_id), DEAL.c.status == "open")
        .group_by(*keys, CONNECTION.c.home_currency, DEAL.c.probability)
    )
    for row in session.execute(stmt):
        acc = accs[_row_key(row, keys)]
        acc.open_pipeline.append((row.currency, row.amount))
        if row.amount is not None and row.probability:  # no probability weighs nothing
            with localcontext() as ctx:
                ctx.prec = PRECISION
                acc.weighted.append((row.currency, row.amount * row.probability / 100))
        _name(names, _row_key(row, keys), row.name)


def _new_accounts(session: Session, keys: list[ColumnElement[Any]], start: date, end: date,
                  connection_id: int | None, accs: dict[Any, _Acc],
                  names: dict[Any, str | None]) -> None:
    conditions: list[ColumnElement[bool]] = [ACCOUNT.c.deleted_at.is_(None),
                                             ACCOUNT.c.created_date.between(start, end)]
    if connection_id is not None:
        conditions.append(ACCOUNT.c.connection_id == connection_id)
    stmt = (select(*keys, func.count().label("n"), func.max(ACCOUNT.c.owner_name).label("name"))
            .where(*conditions).group_by(*keys))
    for row in session.execute(stmt):
        accs[_row_key(row, keys)].new_accounts += int(row.n)
        _name(names, _row_key(row, keys), row.name)


def _reps(session: Session, connection_id: int | None, accs: dict[Any, _Acc],
          names: dict[Any, str | None]) -> None:
    """Every active rep gets a row; reps' names win over the names on deals."""
    email = func.lower(USER.c.email)
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


def _finish(acc: _Acc, conv: Converter) -> dict[str, Any]:
    """The metrics of one row, converted, rounded at the very end."""
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
            "goal": None,
            "attainment": None,
        }


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _ratio(numerator: Decimal, denominator: int, places: int) -> Decimal | None:
    return None if denominator == 0 else _round(numerator / denominator, places)

