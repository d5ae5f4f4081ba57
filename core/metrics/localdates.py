"""Calendar dates of creation times in CRMSYNC_TIMEZONE, identical on SQLite and PostgreSQL.

The same holds for activity.activity_date, the local date of an activity's occurred_at
(activity_date()): a task due on a date only arrives at 00:00:00 UTC of that date
(core.records.ActivityRecord) and keeps that date in every zone.

Design: SQLite has no time zones, so "the date of remote_created_at in the configured
zone" is not computed by the database at query time. Instead deal.created_date and
account.created_date are stored, computed in Python (zoneinfo) when rows are written
(core.store.upsert_records), in the zone recorded in store_meta
('created_date_timezone'). Metrics then compare plain DATE columns, which both
databases handle the same way, and the column can be indexed.

core.metrics.zone.ensure_zone() records CRMSYNC_TIMEZONE before anything writes (the
start of every sync and webhook job, and the scheduled rollup job; on a new store that
only records it), and after a change recomputes every stored created_date in the new zone, in one
transaction that locks the store_meta row on PostgreSQL. Writers read the zone from
store_meta, never from their own settings, so rows are always in the recorded zone.

A metrics read never recomputes. Until the background job has applied a new zone,
read_zone() makes the read compute each date from remote_created_at in the new zone
(created_date(); PostgreSQL's timezone(), a registered function on SQLite) and skip
the rollups, which were built in the old zone: exact, only slower, meanwhile.
"""

from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Date,
    Integer,
    Select,
    Table,
    Time,
    and_,
    case,
    cast,
    func,
    select,
)
from sqlmodel import Session

from core.models import StoreMeta, table_of
from core.types import ActivityType, as_utc

ZONE_KEY = "created_date_timezone"



def local_date(value: datetime | None, zone: ZoneInfo) -> date | None:
    """The calendar date of an instant in `zone` (naive means UTC)."""
    return None if value is None else as_utc(value).astimezone(zone).date()


def activity_date(kind: str, occurred_at: datetime | None, zone: ZoneInfo) -> date | None:
    """An activity's activity_date: the date of occurred_at in `zone`, except a task due on
    a date only (occurred_at at 00:00:00 UTC), which keeps that date."""
    if occurred_at is not None and kind == ActivityType.TASK \
            and as_utc(occurred_at).time() == time(0):
        return as_utc(occurred_at).date()
    return local_date(occurred_at, zone)


def stored_zone(session: Session, *, lock: str | None = None) -> str:
    """The zone the stored created_date columns are in (UTC when never recorded).

    lock="share" (writers) or "update" (ensure_zone) locks the store_meta row on
    PostgreSQL until the transaction ends, so a page written in the old zone and a
    recomputation never interleave. SQLite serializes writers by itself.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    value = session.execute(_zone_query(lock if postgres else None)).scalar_one_or_none()
    return str(value) if value else "UTC"


@lru_cache(maxsize=4)
def _zone_query(lock: str | None) -> Select[Any]:
    """stored_zone's query, built once (a sync reads it for every page)."""
    meta = table_of(StoreMeta)
    stmt = select(meta.c.value).where(meta.c.key == ZONE_KEY)
    return stmt.with_for_update(read=lock == "share") if lock else stmt


PENDING = "crmsync_zone_pending"  # Session.info key: the zone a read must compute dates in
SQLITE_LOCAL_DATE = "crmsync_local_date"


def read_zone(session: Session, zone_name: str) -> None:
    """Before a metrics read: when the stored dates are not in `zone_name` yet (a change
    the background job has not applied), this session's reads compute them instead."""
    session.info[PENDING] = None if stored_zone(session) == zone_name else zone_name


def zone_pending(session: Session) -> bool:
    """Whether this session's reads compute dates (and so must not use the rollups)."""
    return session.info.get(PENDING) is not None


def created_date(session: Session, table: Table) -> ColumnElement[Any]:
    """The local creation date of `table`'s rows: the stored column, or, while a new zone
    is pending (read_zone), the date of remote_created_at in that zone computed by SQL."""
    zone = session.info.get(PENDING)
    if zone is None:
        return table.c.created_date
    return _in_zone(session, table.c.remote_created_at, zone)


def activity_day(session: Session, table: Table) -> ColumnElement[Any]:
    """activity.activity_date as created_date() gives created_date: the stored column, or
    while a new zone is pending, computed by SQL (activity_date()'s rule)."""
    zone = session.info.get(PENDING)
    if zone is None:
        return table.c.activity_date
    at = table.c.occurred_at
    if session.get_bind().dialect.name == "postgresql":
        midnight = cast(func.timezone("UTC", at), Time) == time(0)
    else:
        midnight = func.time(at) == "00:00:00"
    return case((and_(table.c.type == ActivityType.TASK.value, midnight),
                 _in_zone(session, at, "UTC")), else_=_in_zone(session, at, zone))


def _in_zone(session: Session, column: Any, zone: str) -> ColumnElement[Any]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone(zone, column), Date)
    return func.crmsync_local_date(column, zone, type_=Date)


def sqlite_local_date(value: str | None, zone_name: str) -> str | None:
    """SQLite function crmsync_local_date(stored UTC timestamp, zone): 'YYYY-MM-DD'."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(zone_name)).date().isoformat()


def date_diff(session: Session, later: ColumnElement[Any],
              earlier: ColumnElement[Any]) -> ColumnElement[Any]:
    """later - earlier in whole days, for plain dates, on SQLite and PostgreSQL alike."""
    if session.get_bind().dialect.name == "sqlite":
        return cast(func.julianday(later) - func.julianday(earlier), Integer)
    return later - earlier
