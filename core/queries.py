"""Read side of the store: record filters, keyset pagination and chunked iteration.

Rows come back as plain dicts of Python values (Decimal, datetime, date), in the
column order of ROW_COLUMNS; the caller chooses how to render them (JSON, CSV).
Pagination is keyset on the primary key, so pages never lose or repeat a row.
"""

import operator
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Table, func, literal, select, tuple_
from sqlmodel import Session, col

from core.models import SYNCED_TABLES, ApiKey, Connection, SyncRun
from core.types import ActivityType, DealStatus, RunStatus, as_utc

ROW_COLUMNS: dict[str, tuple[str, ...]] = {
    "users": ("id", "connection_id", "remote_id", "name", "email", "active", "team", "deleted"),
    "accounts": (
        "id", "connection_id", "remote_id", "name", "industry", "owner_email", "owner_name",
        "owner_person_id", "remote_created_at", "remote_modified_at", "deleted",
    ),
    "stages": (
        "id", "connection_id", "remote_id", "pipeline", "name", "sort_order", "probability",
        "category", "deleted",
    ),
    "deals": (
        "id", "connection_id", "remote_id", "name", "amount", "currency", "amount_home",
        "stage", "status", "probability", "close_date", "remote_created_at",
        "remote_modified_at", "owner_email", "owner_name", "owner_person_id", "account_remote_id",
        "account_name", "pipeline", "deleted",
    ),
    "activities": (
        "id", "connection_id", "remote_id", "type", "kind", "subject", "occurred_at",
        "activity_date", "done", "completed_at", "duration_seconds", "owner_email",
        "owner_name", "owner_person_id", "deal_remote_id", "account_remote_id",
        "remote_created_at", "remote_modified_at", "deleted",
    ),
}
SYNC_RUN_COLUMNS = (
    "id", "connection_id", "mode", "status", "started_at", "finished_at", "counts",
    "api_calls", "error",
)
DEAL_STATUSES = tuple(DealStatus)
ACTIVITY_TYPES = tuple(ActivityType)
RUN_STATUSES = tuple(RunStatus)

RowFn = Callable[[Any], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class RecordFilters:
    """Filters of the record lists. A filter a stream does not have is an error.

    `people` (not None) keeps only the rows of those people: users who are one of them,
    accounts, deals and activities one of them owns (a dashboard user's scope)."""

    connection_id: int | None = None
    owner_email: str | None = None
    owner_person_id: int | None = None
    status: DealStatus | None = None
    modified_since: datetime | None = None
    close_from: date | None = None
    close_to: date | None = None
    type: ActivityType | None = None
    date_from: date | None = None  # activity_date
    date_to: date | None = None
    deal_remote_id: str | None = None
    include_deleted: bool = False
    people: frozenset[int] | None = None


@dataclass(frozen=True, slots=True)
class Listing:
    """A query ready to page: `stmt` without ORDER BY, `key` the keyset column.

    `to_row` turns a result row into a dict that holds the key as "id". With `order` (a
    column of the key's table) the rows come by `order`, then `key`, and a page's position
    is still the key of its last row: the next page starts after that row's (order, key).
    """

    stmt: Select[Any]
    key: Any
    to_row: RowFn
    descending: bool = False
    order: Any = None


def records_listing(stream: str, filters: RecordFilters) -> Listing:
    """Rows of users, accounts, stages, deals or activities matching `filters`."""
    table = _table(stream)
    columns = [c for c in ROW_COLUMNS[stream] if c != "deleted"]
    stmt = select(*(table.c[c] for c in columns), table.c.deleted_at)
    stmt = stmt.where(*_conditions(stream, table, filters))

    def to_row(row: Any) -> dict[str, Any]:
        values = dict(zip(columns, row, strict=False))
        values["deleted"] = row[-1] is not None
        return values

    return Listing(stmt, table.c.id, to_row)


def _conditions(stream: str, table: Table, f: RecordFilters) -> list[ColumnElement[bool]]:
    c = table.c
    conditions: list[ColumnElement[bool]] = []
    if f.connection_id is not None:
        conditions.append(c.connection_id == f.connection_id)
    if not f.include_deleted:
        conditions.append(c.deleted_at.is_(None))
    if f.modified_since is not None:
        conditions.append(c.remote_modified_at >= as_utc(f.modified_since))
    if f.owner_email is not None:
        column = c.get("email" if stream == "users" else "owner_email")
        _require(column is not None, "owner_email", stream)
        assert column is not None
        conditions.append(column == literal(f.owner_email.strip().lower()))  # stored lower
    if f.owner_person_id is not None:
        _require("owner_person_id" in c, "owner_person_id", stream)
        conditions.append(c.owner_person_id == f.owner_person_id)
    if f.people is not None:
        column = c.get("person_id" if stream == "users" else "owner_person_id")
        _require(column is not None, "people", stream)
        assert column is not None
        conditions.append(column.in_(sorted(f.people)))
    return conditions + _stream_conditions(stream, c, f)


ONLY: dict[str, str] = {"status": "deals", "close_from": "deals", "close_to": "deals",
                       "type": "activities", "date_from": "activities",
                       "date_to": "activities", "deal_remote_id": "activities"}
"""The filters only one stream has, and that stream."""
CHOICES: dict[str, tuple[str, ...]] = {"status": DEAL_STATUSES, "type": ACTIVITY_TYPES}
BOUNDS: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "close_from": ("close_date", operator.ge), "close_to": ("close_date", operator.le),
    "date_from": ("activity_date", operator.ge), "date_to": ("activity_date", operator.le)}
"""Inclusive date filters: the column and how it compares."""


def _stream_conditions(stream: str, c: Any, f: RecordFilters) -> list[ColumnElement[bool]]:
    """The conditions of the filters only one stream has (ONLY)."""
    conditions: list[ColumnElement[bool]] = []
    for name, owner in ONLY.items():
        value = getattr(f, name)
        if value is None:
            continue
        _require(stream == owner, name, stream)
        if name in CHOICES and value not in CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(CHOICES[name])}")
        if name in BOUNDS:
            column, compare = BOUNDS[name]
            conditions.append(compare(c[column], value))
        else:
            conditions.append(c[name] == value)
    return conditions


def _require(ok: bool, name: str, stream: str) -> None:
    if not ok:
        raise ValueError(f"{stream} cannot be filtered by {name}")


def sync_runs_listing(*, connection_id: int | None = None,
                      status: RunStatus | None = None) -> Listing:
    """Sync runs, newest first."""
    stmt: Select[Any] = select(SyncRun)
    if connection_id is not None:
        stmt = stmt.where(col(SyncRun.connection_id) == connection_id)
    if status is not None:
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUSES)}")
        stmt = stmt.where(col(SyncRun.status) == status)
    return Listing(stmt, SyncRun.id, sync_run_row, descending=True)


def sync_run_row(run: Any) -> dict[str, Any]:
    """The public shape of a sync run (a SyncRun, or a result row holding one)."""
    if not isinstance(run, SyncRun):
        run = run[0]
    return {name: getattr(run, name) for name in SYNC_RUN_COLUMNS}


def connections_listing() -> Listing:
    """Connections, oldest first, as all their columns (the caller hides the secrets)."""
    return Listing(select(Connection), Connection.id, lambda row: row[0].model_dump())


def api_keys_listing() -> Listing:
    """API keys, oldest first, without their hashes."""
    return Listing(select(ApiKey), ApiKey.id, lambda row: row[0].model_dump(exclude={"key_hash"}))


def _ordered(listing: Listing, after: int | None) -> Select[Any]:
    stmt, key, order = listing.stmt, listing.key, listing.order
    if order is None:
        if after is not None:
            stmt = stmt.where(key < after if listing.descending else key > after)
        return stmt.order_by(key.desc() if listing.descending else key.asc())
    if after is not None:  # after the row `after`: its order value read from the table
        row = key.table.alias()
        position = select(row.c[order.name]).where(row.c[key.name] == after).scalar_subquery()
        stmt = stmt.where(tuple_(order, key) > tuple_(position, after))
    return stmt.order_by(order.asc(), key.asc())


def fetch_page(
    session: Session, listing: Listing, *, after: int | None, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page after the keyset position `after`, and the position of the next page (or None)."""
    raw_rows: Sequence[Any] = session.execute(_ordered(listing, after).limit(limit + 1)).all()
    rows = [listing.to_row(r) for r in raw_rows[:limit]]
    if len(raw_rows) <= limit:
        return rows, None
    return rows, int(rows[-1]["id"])


def iter_rows(
    engine: Engine, listing: Listing, *, chunk_size: int = 1000
) -> Iterator[dict[str, Any]]:
    """Every matching row, read in keyset chunks of `chunk_size`.

    Memory stays constant, and no connection is held between chunks, so a slow
    reader of a long export does not pin a pooled connection.
    """
    after: int | None = None
    while True:
        with Session(engine) as session:
            raw_rows = session.execute(_ordered(listing, after).limit(chunk_size)).all()
            rows = [listing.to_row(r) for r in raw_rows]
        yield from rows
        if len(raw_rows) < chunk_size:
            return
        after = int(rows[-1]["id"])


__all__ = [
    "DEAL_STATUSES",
    "ROW_COLUMNS",
    "RUN_STATUSES",
    "SYNC_RUN_COLUMNS",
    "Listing",
    "RecordFilters",
    "api_keys_listing",
    "connections_listing",
    "fetch_page",
    "iter_rows",
    "records_listing",
    "sync_run_row",
    "sync_runs_listing",
]


def _table(stream: str) -> Table:
    table: Table = SYNCED_TABLES[stream].__table__  # type: ignore[attr-defined]
    return table


def store_summary(session: Session, connection_id: int) -> dict[str, Any]:
    """Active reps, live accounts and deals, and won amount (home currency) of a connection."""
    users, accounts, deals = (_table(s) for s in ("users", "accounts", "deals"))

    def count(table: Any, *where: ColumnElement[bool]) -> int:
        query = select(func.count()).select_from(table).where(
            table.c.connection_id == connection_id, table.c.deleted_at.is_(None), *where)
        return int(session.execute(query).scalar_one())

    won = session.execute(select(func.sum(deals.c.amount_home)).where(
        deals.c.connection_id == connection_id, deals.c.deleted_at.is_(None),
        deals.c.status == DealStatus.WON)).scalar_one()
    return {
        "reps": count(users, users.c.active.is_(True)),
        "accounts": count(accounts),
        "deals": count(deals),
        "won_deals": count(deals, deals.c.status == DealStatus.WON),
        "won_amount": won,
    }
