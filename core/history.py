"""Deal history (docs/evaluation.md): stage changes and deal versions, as the evaluation
metrics (core.metrics.evaluation) and the API read them.

- deal_stage_change holds every stage move crmsync knows: observed by syncs and webhooks
  (core.store, source sync|webhook) and backfilled from a CRM's own stage history
  (store_stage_changes, source crm). One move recorded twice (observed and backfilled) is
  one move: stays() collapses consecutive entries into the same stage.
- deal_version holds every observed version of a deal's tracked fields (core.store);
  deals_as_of() reads what each deal showed at an instant.

Every function takes the caller's session and never commits.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Subquery,
    and_,
    cast,
    func,
    literal,
    or_,
    select,
    type_coerce,
    union_all,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from core import store
from core.columns import UTCDateTime
from core.models import Deal, DealStageChange, DealVersion, Stage, table_of
from core.queries import Listing
from core.records import StageChangeRecord
from core.types import DealStatus, as_utc, utcnow

DEAL, CHANGE, VERSION, STAGE = (table_of(m) for m in (Deal, DealStageChange, DealVersion, Stage))
# The backfill's sync_state row: {"after_id": last deal id done, "finished": the last run
# reached the end, "started_at"/"finished_at" of the last run (ISO), "last_error"}.
BACKFILL_STREAM = "stage_history"
STAGE_CHANGE_COLUMNS = (
    "id", "connection_id", "deal_id", "deal_remote_id", "deal_name", "pipeline",
    "owner_person_id", "owner_email", "owner_name", "from_stage", "to_stage", "changed_at",
    "source")


# ---- writing -------------------------------------------------------------------------------

def store_stage_changes(session: Session, *, connection_id: int,
                        changes: Sequence[StageChangeRecord], source: str = "crm") -> int:
    """Insert moves from a CRM's stage history; a move already stored (same deal, time and
    stage) is kept as it is. Returns how many were new."""
    if not changes:
        return 0
    rows = {(c.deal_remote_id, as_utc(c.changed_at), c.to_stage): {
        "connection_id": connection_id, "deal_remote_id": c.deal_remote_id,
        "from_stage": c.from_stage, "to_stage": c.to_stage,
        "changed_at": as_utc(c.changed_at), "source": source} for c in changes}
    dialect = session.get_bind().dialect.name
    insert = pg_insert(CHANGE) if dialect == "postgresql" else sqlite_insert(CHANGE)
    stmt = insert.on_conflict_do_nothing().returning(CHANGE.c.id)
    return len(session.execute(stmt, list(rows.values())).all())


def backfill_batch(session: Session, *, connection_id: int, after_id: int,
                   limit: int) -> list[tuple[int, str]]:
    """The next `limit` live deals of a connection after deal id `after_id`, as
    (id, remote_id), in id order (a backfill walks them and records where it stopped)."""
    stmt = (select(DEAL.c.id, DEAL.c.remote_id)
            .where(DEAL.c.connection_id == connection_id, DEAL.c.deleted_at.is_(None),
                   DEAL.c.id > after_id)
            .order_by(DEAL.c.id).limit(limit))
    return [(int(i), str(r)) for i, r in session.execute(stmt)]


def backfill_progress(session: Session, *, connection_id: int) -> dict[str, Any]:
    """Where the connection's stage history backfill stands (BACKFILL_STREAM's state): live
    deals done (id up to after_id) of all live deals, whether its last run finished, when
    that run started and ended, and its error."""
    state = store.get_state(session, connection_id=connection_id, stream=BACKFILL_STREAM)
    after = int(state.get("after_id") or 0)
    live = DEAL.c.connection_id == connection_id, DEAL.c.deleted_at.is_(None)
    total, done = session.execute(
        select(func.count(), func.count().filter(DEAL.c.id <= after)).where(*live)).one()
    return {"deals_done": int(done or 0), "deals_total": int(total or 0),
            "finished": bool(state.get("finished")), "started_at": state.get("started_at"),
            "finished_at": state.get("finished_at"), "last_error": state.get("last_error")}


# ---- stage changes, flat (BI) --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ChangeFilters:
    """Filters of the flat stage-change list: changed_at in [since, until), the deal's
    pipeline, owner (person) and connection; `people` (not None) the deals of those people
    only."""

    since: datetime | None = None
    until: datetime | None = None
    pipeline: str | None = None
    owner_person_id: int | None = None
    connection_id: int | None = None
    deal_id: int | None = None
    people: frozenset[int] | None = None


def stage_changes_listing(filters: ChangeFilters) -> Listing:
    """Stage changes of live deals with their deal's keys, in id order (core.queries)."""
    columns = [CHANGE.c.id, CHANGE.c.connection_id, DEAL.c.id.label("deal_id"),
               CHANGE.c.deal_remote_id, DEAL.c.name.label("deal_name"), DEAL.c.pipeline,
               DEAL.c.owner_person_id, DEAL.c.owner_email, DEAL.c.owner_name,
               CHANGE.c.from_stage, CHANGE.c.to_stage, CHANGE.c.changed_at, CHANGE.c.source]
    conditions: list[ColumnElement[bool]] = [DEAL.c.deleted_at.is_(None)]
    f = filters
    if f.since is not None:
        conditions.append(CHANGE.c.changed_at >= as_utc(f.since))
    if f.until is not None:
        conditions.append(CHANGE.c.changed_at < as_utc(f.until))
    if f.pipeline is not None:
        conditions.append(DEAL.c.pipeline == f.pipeline)
    if f.owner_person_id is not None:
        conditions.append(DEAL.c.owner_person_id == f.owner_person_id)
    if f.connection_id is not None:
        conditions.append(CHANGE.c.connection_id == f.connection_id)
    if f.deal_id is not None:
        conditions.append(DEAL.c.id == f.deal_id)
    if f.people is not None:
        conditions.append(DEAL.c.owner_person_id.in_(sorted(f.people)))
    stmt = (select(*columns)
            .join_from(CHANGE, DEAL, and_(DEAL.c.connection_id == CHANGE.c.connection_id,
                                          DEAL.c.remote_id == CHANGE.c.deal_remote_id))
            .where(*conditions))

    def to_row(row: Any) -> dict[str, Any]:
        return dict(zip(STAGE_CHANGE_COLUMNS, row, strict=True))

    return Listing(stmt, CHANGE.c.id, to_row)


# ---- stays: how long deals stayed in each stage -------------------------------------------

def seconds_between(session: Session, later: ColumnElement[Any],
                    earlier: ColumnElement[Any]) -> ColumnElement[Any]:
    """later - earlier in whole seconds (rounded), for stored timestamps, on SQLite and
    PostgreSQL alike."""
    if session.get_bind().dialect.name == "sqlite":
        days = func.julianday(later) - func.julianday(earlier)
        return cast(func.round(days * 86400), BigInteger)
    return cast(func.round(func.extract("epoch", later - earlier)), BigInteger)


def stays(session: Session, deals: Any) -> Subquery:
    """Every stay of the deals `deals` (a select of deal ids) in a stage: (deal_id, stage,
    entered_at, left_at, seconds), left_at and seconds null while the deal is still in it.

    A deal enters its first stage when it is created in the CRM (remote_created_at): the
    from_stage of its earliest change, or its stage now when it never moved; a deal whose
    earliest change has no from_stage (a CRM's history starts with the creation stage)
    enters there. Each change enters its to_stage. An entry into the stage the deal was
    already in (a move recorded by a sync and by the CRM's history) is no new stay. A stay
    ends when the next one starts."""
    key = and_(CHANGE.c.connection_id == DEAL.c.connection_id,
               CHANGE.c.deal_remote_id == DEAL.c.remote_id)
    first = (select(CHANGE.c.from_stage).where(key)
             .order_by(CHANGE.c.changed_at, CHANGE.c.id).limit(1).correlate(DEAL)
             .scalar_subquery())
    moved = select(CHANGE.c.id).where(key).correlate(DEAL).exists()
    starts = (select(DEAL.c.id.label("deal_id"),
                     func.coalesce(first, DEAL.c.stage).label("stage"),
                     DEAL.c.remote_created_at.label("entered_at"),
                     literal(0).label("seq"))
              .where(DEAL.c.id.in_(deals), DEAL.c.remote_created_at.is_not(None),
                     or_(~moved, first.is_not(None))))
    entries = (select(DEAL.c.id.label("deal_id"), CHANGE.c.to_stage.label("stage"),
                      CHANGE.c.changed_at.label("entered_at"), CHANGE.c.id.label("seq"))
               .join_from(CHANGE, DEAL, key).where(DEAL.c.id.in_(deals)))
    every = union_all(starts, entries).subquery("entries")
    order = (every.c.entered_at, every.c.seq)
    with_previous = select(
        every.c.deal_id, every.c.stage, every.c.entered_at, every.c.seq,
        func.lag(every.c.stage).over(partition_by=every.c.deal_id, order_by=order)
        .label("previous")).subquery("with_previous")
    p = with_previous
    new = select(p.c.deal_id, p.c.stage, p.c.entered_at, p.c.seq).where(
        or_(p.c.previous.is_(None), p.c.previous.is_distinct_from(p.c.stage))).subquery("new")
    left = func.lead(new.c.entered_at).over(partition_by=new.c.deal_id,
                                            order_by=(new.c.entered_at, new.c.seq))
    timed = select(new.c.deal_id, new.c.stage, new.c.entered_at,
                   left.label("left_at")).subquery("timed")
    return select(timed.c.deal_id, timed.c.stage,
                  type_coerce(timed.c.entered_at, UTCDateTime()).label("entered_at"),
                  type_coerce(timed.c.left_at, UTCDateTime()).label("left_at"),
                  seconds_between(session, timed.c.left_at, timed.c.entered_at)
                  .label("seconds")).subquery("stays")


def days(seconds: int | None) -> float | None:
    """Seconds as days (2 decimals) for display; None stays None."""
    return None if seconds is None else round(seconds / 86400, 2)


def deal_stages(session: Session, deal_id: int, *, now: datetime | None = None,
                people: Collection[int] | None = None) -> dict[str, Any] | None:
    """A deal's stays in its stages and its stage changes, oldest first; None when there is
    no such live deal (or it is outside `people`). The current stay of an open deal counts
    its days to `now`; that of a won or lost deal has none."""
    conditions = [DEAL.c.id == deal_id, DEAL.c.deleted_at.is_(None)]
    if people is not None:
        conditions.append(DEAL.c.owner_person_id.in_(sorted(people)))
    deal = session.execute(select(DEAL.c.id, DEAL.c.connection_id, DEAL.c.remote_id,
                                  DEAL.c.name, DEAL.c.stage, DEAL.c.status, DEAL.c.pipeline)
                           .where(*conditions)).one_or_none()
    if deal is None:
        return None
    now = now or utcnow()
    table = stays(session, select(literal(deal_id)))
    rows = []
    for row in session.execute(select(table).order_by(table.c.entered_at)):
        entered = as_utc(row.entered_at)
        left = None if row.left_at is None else as_utc(row.left_at)
        seconds = row.seconds
        if left is None and deal.status == DealStatus.OPEN:
            seconds = int((now - entered).total_seconds())
        rows.append({"stage": row.stage, "entered_at": entered, "left_at": left,
                     "days": days(seconds)})
    listing = stage_changes_listing(ChangeFilters(deal_id=deal_id))
    changes = [listing.to_row(r) for r in session.execute(
        listing.stmt.order_by(CHANGE.c.changed_at, CHANGE.c.id))]
    return {"deal_id": deal.id, "connection_id": deal.connection_id,
            "remote_id": deal.remote_id, "name": deal.name, "pipeline": deal.pipeline,
            "stage": deal.stage, "status": deal.status, "stays": rows,
            "changes": [{k: c[k] for k in ("from_stage", "to_stage", "changed_at", "source")}
                        for c in changes]}


# ---- versions: deals as of an instant ------------------------------------------------------

def end_of_day(day: date, zone: str) -> datetime:
    """The first instant after `day` in `zone`, in UTC (a day's versions are those valid
    then)."""
    if day == date.max:  # the last day there is: every version counts
        return datetime.max.replace(tzinfo=UTC)
    after = datetime.combine(day + timedelta(days=1), time(), ZoneInfo(zone))
    try:
        return as_utc(after)
    except OverflowError:  # past 9999-12-31 in UTC
        return datetime.max.replace(tzinfo=UTC)


def deals_as_of(moment: datetime) -> Subquery:
    """Every live deal as its version valid at `moment` showed it (none: created later):
    deal-like columns (id, connection_id, remote_id, name, amount, currency, amount_home,
    stage, stage_remote_id, status, probability, close_date, owner_person_id, owner_email,
    pipeline, deleted_at, owner_name; name and owner_name are the deal's now). Deleted deals
    never count (docs/metrics.md), so deals deleted since have no row."""
    at = literal(as_utc(moment), UTCDateTime())
    v = VERSION
    return (select(DEAL.c.id, v.c.connection_id, DEAL.c.remote_id, DEAL.c.name, v.c.amount,
                   v.c.currency,
                   v.c.amount_home, v.c.stage, v.c.stage_remote_id, v.c.status,
                   v.c.probability, v.c.close_date, v.c.owner_person_id, v.c.owner_email,
                   v.c.pipeline, DEAL.c.deleted_at, DEAL.c.owner_name)
            .join_from(v, DEAL, and_(DEAL.c.connection_id == v.c.connection_id,
                                     DEAL.c.remote_id == v.c.deal_remote_id))
            .where(DEAL.c.deleted_at.is_(None), v.c.valid_from < at,
                   or_(v.c.valid_to.is_(None), v.c.valid_to >= at))
            .subquery("deals_as_of"))


__all__ = [
    "BACKFILL_STREAM",
    "STAGE_CHANGE_COLUMNS",
    "ChangeFilters",
    "backfill_batch",
    "backfill_progress",
    "deal_stages",
    "deals_as_of",
    "end_of_day",
    "seconds_between",
    "stage_changes_listing",
    "stays",
    "store_stage_changes",
]
