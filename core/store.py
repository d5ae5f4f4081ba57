"""Writes to the normalized store: set-based upserts, tombstones, cursors, run rows.

Every function takes the caller's session and never commits: the caller owns
the transaction, so a page of upserts and its cursor commit together.
"""

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache, partial
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    MetaData,
    Table,
    and_,
    bindparam,
    case,
    column,
    delete,
    exists,
    func,
    literal,
    or_,
    text,
    true,
    update,
    values,
)
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.types import TypeDecorator
from sqlmodel import Session, select

from core import people
from core.columns import UTCDateTime
from core.config import Settings
from core.metrics import rollups
from core.metrics.currency import CurrencyError, converter
from core.metrics.localdates import activity_date, local_date, stored_zone
from core.models import (
    SYNCED_TABLES,
    Account,
    Activity,
    Deal,
    DealStageChange,
    DealState,
    DealVersion,
    SyncedRow,
    SyncRun,
    SyncState,
    User,
    table_of,
)
from core.models import Connection as ConnectionRow
from core.records import Deletion
from core.types import RunStatus, SyncMode, as_utc, utcnow

log = logging.getLogger("crmsync.store")
_NEVER_UPDATED = {"id", "connection_id", "remote_id", "first_seen_at"}
# The deal fields whose every change makes a new deal_version (docs/evaluation.md).
TRACKED = tuple(DealState.model_fields)
# what a new deal's first version is made of besides TRACKED (_new_rows_statement)
_FIRST_VERSION = {*TRACKED, "remote_created_at", "remote_modified_at", "owner_person_id"}
_EMAIL_COLUMNS = {"email", "owner_email"}
OWNED = (Deal, Account, Activity)  # rows with an owner: owner_person_id (core.people)


def _insert(session: Session | str, table: Table) -> Any:
    """The dialect's INSERT of `table` (for ON CONFLICT): a session's, or a dialect name's."""
    dialect = session if isinstance(session, str) else session.get_bind().dialect.name
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)



def upsert_records(
    session: Session,
    *,
    stream: str,
    connection_id: int,
    records: Sequence[Any],
    now: datetime | None = None,
    source: str = "sync",
    owners_known: set[tuple[Any, Any]] | None = None,
    settings: Settings | None = None,
    new: bool = False,
) -> int:
    """INSERT ... ON CONFLICT (connection_id, remote_id) DO UPDATE for a whole page.

    `new`: the records are probably not stored yet (a first full sync): on PostgreSQL the
    page first inserts the ones the store does not have (_new_rows_statement), and merges
    only the rest as below, if any. The outcome is the same either way, only its cost differs.

    `settings`: the caller's (its reporting currency converts deals that come without a
    home amount, see _fill_home_amounts); None: no CRMSYNC_REPORTING_CURRENCY, the first
    connection's home currency is the reporting one.

    `owners_known` (a sync run keeps one across the pages of each of its connections): the
    (owner remote id, owner email) pairs whose person an earlier page on the same connection
    made sure of (a person another connection adds is seen once that one commits); a page of deals,
    accounts or activities whose owners are all in it skips core.people.ensure_owner_persons (one
    statement a page saved on the hot path).

    A record seen alive clears its tombstone; a record that arrives already
    voided (record.deleted_at set) keeps the first tombstone time.
    Deals whose stage changed are recorded in deal_stage_change (with `source`: sync or
    webhook), as seen before the merge; new deals and deals whose TRACKED fields changed get
    a new deal_version (the one before it closed), in the same statement. The page is
    loaded into a temporary table and merged with one INSERT ... SELECT, which also sets
    deals' and accounts' owner_person_id (core.people.owner_person). A users page is
    followed by core.people.after_users_page (new users get their person).
    Returns the number of records merged; a copy older than the stored row is counted (it
    was seen: last_synced_at) but does not replace it (see _on_conflict_update).
    """
    if not records:
        return 0
    model = SYNCED_TABLES[stream]
    table = table_of(model)
    now = now or utcnow()
    unique: dict[str, Any] = {r.remote_id: r for r in records}  # last copy of an id wins
    fields = tuple(f for f in unique[next(iter(unique))].__slots__ if f in table.c)
    zone = ZoneInfo(stored_zone(session, lock="share")) if model in OWNED else None
    local = None if zone is None else "activity_date" if model is Activity else "created_date"
    alive = "deleted_at" not in fields  # a record without deleted_at is alive
    # Each row a list in the order of `columns` (the load table's, COPY writes it as it is):
    # the record's fields (one attrgetter call), then what the store adds to every row.
    columns = (*fields, "connection_id", "first_seen_at", "last_synced_at",
               *((local,) if local else ()), *(("deleted_at",) if alive else ()))
    values = attrgetter(*fields)  # every record has several (remote_id, raw, ...)
    added = [connection_id, now, now]
    emails = [i for i, f in enumerate(fields) if f in _EMAIL_COLUMNS]
    mobile = fields.index("mobile") if "mobile" in fields else None
    rows = []
    for record in unique.values():
        row = [*values(record), *added]
        for i in emails:  # people are matched across connections by lower-cased email
            row[i] = row[i].strip().lower() if row[i] else None
        if mobile is not None:  # and then by mobile number
            row[mobile] = people.normalize_mobile(row[mobile])
        if zone is not None and model is Activity:  # local dates: core.metrics.localdates
            row.append(activity_date(record.type, record.occurred_at, zone))
        elif zone is not None:
            row.append(local_date(record.remote_created_at, zone))
        if alive:
            row.append(None)
        rows.append(row)
    if model is Deal:
        _fill_home_amounts(session, connection_id, columns, rows, settings)
    owners: set[tuple[Any, Any]] = set()
    if model in OWNED:  # taken before the COPY converts the rows
        at = columns.index("owner_remote_id"), columns.index("owner_email")
        owners = {(row[at[0]], row[at[1]]) for row in rows}
    load = _fill_load_table(session, table, columns, rows)
    # set-based: index lookups in the merge statement itself
    if model in OWNED and (owners_known is None or not owners <= owners_known):
        people.ensure_owner_persons(session, load)
        if owners_known is not None:
            owners_known |= owners
    _merge(session, model, columns, source=source, now=now, new=new)
    if model is User:
        people.after_users_page(session, connection_id=connection_id, remote_ids=list(unique))
    return len(rows)


def _merge(session: Session, model: type[SyncedRow], columns: tuple[str, ...], *,
           source: str, now: datetime, new: bool) -> None:
    """Merge the page in the load table of `columns` (see upsert_records)."""
    dialect = session.get_bind().dialect.name
    if new and dialect == "postgresql":
        statement, timed = _new_rows_statement(model, columns, source)
        left = session.scalars(statement, {"now": now} if timed else None).all()
        if not left:
            return
        load = _load_table(table_of(model), columns)  # the rows inserted are done
        session.execute(delete(load).where(load.c.remote_id.not_in(left)))
    for statement, timed in _merge_statements(model, columns, source, dialect):
        session.execute(statement, {"now": now} if timed else None)


def _fill_home_amounts(session: Session, connection_id: int, columns: tuple[str, ...],
                       rows: list[list[Any]], settings: Settings | None) -> None:
    """Deals that arrive with an amount in some currency but no home amount (a CRM that
    keeps no exchange rate on a deal, e.g. docs/pipedrive.md) get amount_home and
    exchange_rate from the FX table, through the reporting currency (core.metrics.currency).
    A currency without a rate leaves amount_home empty (logged once a write for each missing
    rate, with how many deals and a few of their ids, not once a deal: a first sync of an org
    with thousands of deals in such a currency); the deal is converted when it is stored
    again after the rate is set. `rows` are lists in the order of `columns`."""
    at = {name: columns.index(name) for name in
          ("remote_id", "amount", "currency", "amount_home", "exchange_rate")}
    amount, currency, home_amount = at["amount"], at["currency"], at["amount_home"]
    needed = [r for r in rows if r[home_amount] is None and r[amount] is not None
              and r[currency]]
    if not needed:
        return
    home = session.get(ConnectionRow, connection_id)
    home_currency = home.home_currency if home is not None else None
    if not home_currency:
        return
    conv = converter(session, settings)
    unconverted: dict[str, list[str]] = {}  # why -> the deals
    for row in needed:
        try:
            row[home_amount] = conv.exchange(row[amount], str(row[currency]), home_currency)
        except CurrencyError as exc:
            unconverted.setdefault(str(exc), []).append(str(row[at["remote_id"]]))
            continue
        if row[amount]:
            row[at["exchange_rate"]] = row[amount] / row[home_amount] if row[home_amount] \
                else None
    for why, deals in unconverted.items():
        log.warning("%d %s no home amount (%s%s): %s", len(deals),
                    "deals keep" if len(deals) > 1 else "deal keeps", ", ".join(deals[:3]),
                    ", ..." if len(deals) > 3 else "", why,
                    extra={"connection_id": connection_id})


@lru_cache(maxsize=64)
def _merge_statements(model: type[Any], columns: tuple[str, ...], source: str,
                      dialect: str) -> tuple[tuple[Any, bool], ...]:
    """The statements that merge a page from its load table of `columns`, in order, each
    with whether it takes the bind parameter "now" (the time of the write).

    Built once per shape and reused by every page: SQLAlchemy keeps a statement's cache
    key with it, so a page costs no statement building and no cache-key walk (they took
    about a third of the writer thread's CPU). The rollup marks, stage changes and deal
    versions run before the merge and all see the rows as they were before it: on
    PostgreSQL in the merge statement itself, one round trip (data-modifying CTEs share
    the main statement's snapshot); on SQLite one after the other."""
    table = table_of(model)
    load = _load_table(table, columns)
    now = bindparam("now", type_=UTCDateTime())
    before = [(rollups.page_marks(model, load), False)]
    if model is Deal:
        before.append((_stage_changes(dialect, load, source=source, now=now), True))
        before.extend((s, True) for s in _deal_versions(dialect, load, source=source, now=now))
    selected: list[Any] = list(load.c)
    if model in OWNED:  # set-based: index lookups in the merge statement itself
        selected.append(people.owner_person(load).label("owner_person_id"))
        columns += ("owner_person_id",)
    stmt = _insert(dialect, table).from_select(columns, sa_select(*selected).where(true()))
    merge = _on_conflict_update(stmt, table, columns)
    first = [(s, timed) for s, timed in before if s is not None]
    if dialect == "postgresql":
        ctes = (s.cte(f"before_{i}") for i, (s, _) in enumerate(first))
        return ((merge.add_cte(*ctes), any(timed for _, timed in first)),)
    return (*first, (merge, False))


@lru_cache(maxsize=16)
def _new_rows_statement(model: type[Any], columns: tuple[str, ...],
                        source: str) -> tuple[Any, bool]:
    """PostgreSQL, a page of records the store probably does not have yet (a first full
    sync): one statement inserts the loaded rows that have no stored row (ON CONFLICT DO
    NOTHING: a row another transaction is inserting is waited for), with their rollup
    marks and first deal versions computed from the rows it inserted, and returns the
    remote ids of the loaded rows it did not insert (a record an earlier page or a webhook
    stored; usually none). _merge merges those as usual after it, with the stored rows as
    they are then.

    In a first sync this leaves out every lookup of a stored row that finds nothing: the
    merge looks each loaded deal up four times before it inserts it (marks, stage changes,
    versions closed and added), and its owner's person twice (docs/benchmarks.md, p2-sync4).
    Returns the statement and whether it takes the bind parameter "now"."""
    table = table_of(model)
    load = _load_table(table, columns)
    selected: list[Any] = list(load.c)
    if model in OWNED:
        selected.append(people.owner_person(load).label("owner_person_id"))
        columns += ("owner_person_id",)
    key = ("connection_id", "remote_id")
    kept = [c for c in columns if c in key or c == rollups.marked_column(model)
            or (model is Deal and c in _FIRST_VERSION)]
    inserted = (pg_insert(table).from_select(columns, sa_select(*selected).where(true()))
                .on_conflict_do_nothing(index_elements=list(key))
                .returning(*(table.c[c] for c in kept)).cte("inserted"))
    ctes = [rollups.new_row_marks(model, inserted)]
    timed = model is Deal
    if model is Deal:
        now = bindparam("now", type_=UTCDateTime())
        values = _version_values(inserted, _first_valid_from(inserted, now),
                                 inserted.c.owner_person_id, source)
        ctes.append(pg_insert(table_of(DealVersion)).from_select(
            list(values), sa_select(*values.values())))
    left = (sa_select(load.c.remote_id)
            .where(~exists().where(inserted.c.connection_id == load.c.connection_id,
                                   inserted.c.remote_id == load.c.remote_id))
            .add_cte(*(s.cte(f"inserted_{i}") for i, s in enumerate(ctes) if s is not None)))
    return left, timed


def _on_conflict_update(stmt: Any, table: Table, columns: tuple[str, ...]) -> Any:
    """Update a stored row only with a version at least as new as its own: a sync page
    read before a webhook wrote a newer version never rolls that row back. A row seen but
    kept still gets last_synced_at (a full sync saw it: it must not be tombstoned)."""
    excluded = stmt.excluded
    newer = or_(table.c.remote_modified_at.is_(None), excluded.remote_modified_at.is_(None),
                excluded.remote_modified_at >= table.c.remote_modified_at)
    updates: dict[str, Any] = {c: case((newer, excluded[c]), else_=table.c[c])
                               for c in columns if c not in _NEVER_UPDATED}
    updates["deleted_at"] = case((newer, _keep_first_tombstone(table, excluded)),
                                 else_=table.c.deleted_at)
    updates["last_synced_at"] = excluded.last_synced_at
    return stmt.on_conflict_do_update(index_elements=["connection_id", "remote_id"], set_=updates)


@lru_cache(maxsize=32)
def _load_table(table: Table, columns: tuple[str, ...]) -> Table:
    """The session-local temporary table a page is loaded into before it is merged.

    Cached, so that statements built on it hit SQLAlchemy's compiled cache."""
    return Table(f"load_{table.name}", MetaData(),
                 *(Column(c, table.c[c].type) for c in columns))


def _fill_load_table(session: Session, table: Table, columns: tuple[str, ...],
                     rows: list[list[Any]]) -> Table:
    """Put a page into its temporary load table (created on first use per connection).
    `rows` are lists in the order of `columns`; on PostgreSQL their values are converted
    in place (the caller is done with them).

    PostgreSQL gets the rows by COPY (one round trip instead of one per row);
    SQLite, in-process, by executemany.
    """
    load = _load_table(table, columns)
    names = ", ".join(columns)
    if session.get_bind().dialect.name != "postgresql":
        session.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {load.name} AS "
                             f"SELECT {names} FROM {table.name} LIMIT 0"))
        session.execute(load.delete())
        session.execute(load.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
        return load
    # Emptied by every commit (a truncate, so no dead rows pile up in a long sync). A second
    # page of the same stream in the same transaction must not merge the first page's rows
    # again (that would undo tombstones set in between): empty it first. One round trip.
    session.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {load.name} ON COMMIT DELETE ROWS "
                         f"AS SELECT {names} FROM {table.name} WITH NO DATA; "
                         f"DELETE FROM {load.name}"))
    dialect = session.get_bind().dialect
    converters = [(i, convert) for i, c in enumerate(columns)  # the columns that need one
                  if (convert := _copy_converter(table.c[c].type, dialect)) is not None]
    connection = session.connection()
    types = _column_types(connection, load.name)
    dbapi = connection.connection.driver_connection
    assert dbapi is not None
    # Binary COPY: psycopg's C dumpers write ints, dates and timestamps as they are, with
    # no text to format here or to parse in the server; JSON goes through orjson. (psycopg
    # imported here: a process on SQLite never loads it.)
    from psycopg.types.json import set_json_dumps

    with dbapi.cursor() as cursor:
        set_json_dumps(orjson.dumps, cursor)
        with cursor.copy(f"COPY {load.name} ({names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types([types[c] for c in columns])
            for row in rows:
                for i, convert in converters:
                    if (value := row[i]) is not None:
                        row[i] = convert(value)
                copy.write_row(row)
    return load


def _column_types(connection: Connection, name: str) -> dict[str, int]:
    """The type oids of a temporary load table's columns (binary COPY needs them), read
    once per database connection (the table lives as long as the connection)."""
    known: dict[str, dict[str, int]] = connection.info.setdefault("crmsync_load_types", {})
    if name not in known:
        rows = connection.exec_driver_sql(
            "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %(name)s::regclass "
            "AND attnum > 0 AND NOT attisdropped", {"name": name})
        known[name] = {str(column): int(oid) for column, oid in rows}
    return known[name]


def _copy_converter(column_type: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """How a value is written by COPY: what the column type would bind, minus overhead
    (JSON as it is: the COPY dumps it; a type's one-argument bind_value where it has one,
    not its process_bind_param through a partial: about 1 us less a value)."""
    if isinstance(column_type, JSON):
        return None
    if isinstance(column_type, UTCDateTime):  # PostgreSQL: the COPY dumps any aware time
        return as_utc
    if (bind_value := getattr(column_type, "bind_value", None)) is not None:
        return bind_value  # type: ignore[no-any-return]
    if isinstance(column_type, TypeDecorator) and (
        type(column_type).process_bind_param is not TypeDecorator.process_bind_param
    ):
        return partial(column_type.process_bind_param, dialect=dialect)
    return column_type.bind_processor(dialect)  # type: ignore[no-any-return]


def _stage_changes(dialect: str, load: Table, *, source: str, now: Any) -> Any:
    """The insert of a deal_stage_change for every loaded deal the store has in another
    stage (run before the page is merged)."""
    deal = table_of(Deal)
    moved = (
        sa_select(deal.c.connection_id, deal.c.remote_id, deal.c.stage, load.c.stage,
                  func.coalesce(load.c.remote_modified_at, now), literal(source))
        .join_from(load, deal, and_(deal.c.connection_id == load.c.connection_id,
                                    deal.c.remote_id == load.c.remote_id))
        .where(deal.c.stage.is_distinct_from(load.c.stage),
               or_(deal.c.remote_modified_at.is_(None), load.c.remote_modified_at.is_(None),
                   load.c.remote_modified_at >= deal.c.remote_modified_at))  # not an old copy
    )
    columns = ["connection_id", "deal_remote_id", "from_stage", "to_stage", "changed_at", "source"]
    stmt = _insert(dialect, table_of(DealStageChange)).from_select(columns, moved)
    return stmt.on_conflict_do_nothing()


def _deal_versions(dialect: str, load: Table, *, source: str, now: Any) -> list[Any]:
    """The statements that keep deal_version (run before the page is merged): close the
    current version of every loaded deal whose TRACKED fields changed, and insert a new
    version for it and for every deal the store does not have yet. A copy older than the
    stored deal changes nothing (as in the merge). A new deal's first version is valid from
    its creation in the CRM; a change's from the copy's modified time (else `now`, the
    write's time as a bind parameter)."""
    deal, version = table_of(Deal), table_of(DealVersion)
    same_deal = and_(deal.c.connection_id == load.c.connection_id,
                     deal.c.remote_id == load.c.remote_id)
    tracked = [name for name in TRACKED if name in load.c]
    changed = and_(
        or_(*(deal.c[name].is_distinct_from(load.c[name]) for name in tracked)),
        or_(deal.c.remote_modified_at.is_(None), load.c.remote_modified_at.is_(None),
            load.c.remote_modified_at >= deal.c.remote_modified_at))
    changed_at = func.coalesce(load.c.remote_modified_at, now)
    close = (update(version)
             .where(version.c.connection_id == load.c.connection_id,
                    version.c.deal_remote_id == load.c.remote_id,
                    version.c.valid_to.is_(None), same_deal, changed)
             .values(valid_to=changed_at))
    valid_from = case((deal.c.id.is_(None), _first_valid_from(load, now)), else_=changed_at)
    values = _version_values(load, valid_from, people.owner_person(load), source)
    rows = (sa_select(*values.values())
            .outerjoin_from(load, deal, same_deal)
            .where(or_(deal.c.id.is_(None), changed)))
    insert = _insert(dialect, version).from_select(list(values), rows)
    return [close, insert]


def _first_valid_from(rows: Any, now: Any) -> Any:
    """When a new deal's first version starts: its creation in the CRM, else the copy's
    modified time, else `now`."""
    changed_at = func.coalesce(rows.c.remote_modified_at, now)
    return func.coalesce(rows.c.remote_created_at, changed_at) \
        if "remote_created_at" in rows.c else changed_at


def _version_values(rows: Any, valid_from: Any, owner_person_id: Any,
                    source: str) -> dict[str, Any]:
    """The columns of the deal_version of each row of `rows` (deals: a load table, or the
    rows a statement inserted), by deal_version's column names."""
    return {"connection_id": rows.c.connection_id, "deal_remote_id": rows.c.remote_id,
            "valid_from": valid_from, **{name: rows.c[name] for name in TRACKED
                                         if name in rows.c},
            "owner_person_id": owner_person_id, "source": literal(source)}


def _keep_first_tombstone(table: Table, excluded: Any) -> Any:
    return case(
        (excluded.deleted_at.is_(None), None),
        else_=func.coalesce(table.c.deleted_at, excluded.deleted_at),
    )


def apply_deletions(session: Session, *, connection_id: int, deletions: Sequence[Deletion]) -> int:
    """Tombstone deleted records that the store knows and that were not changed since.

    A record modified after its deletion time was restored, so it stays alive. Deletions
    are taken in their order: a record listed twice is tombstoned by the first of its
    deletions that is not older than its modified time.

    One query per entity first finds the stored rows the deletions can tombstone (alive,
    not modified after the deletion): a full sync reads every deleted record the CRM still
    lists, most of them never stored. Those rows then get their rollup marks and their
    tombstones set-based, two statements per entity and thousand rows, each row with its
    deletion's time (they once cost two statements per deleted record: docs/testing.md).
    """
    count = 0
    for entity, gone in _tombstones(session, connection_id, deletions).items():
        model = SYNCED_TABLES[entity]
        table = table_of(model)
        for start in range(0, len(gone), 1000):  # SQLite's bound parameters stay few
            rows = values(column("remote_id", table.c.remote_id.type),
                          column("deleted_at", UTCDateTime()), name="gone",
                          ).data(gone[start:start + 1000]).cte()
            where = (
                table.c.connection_id == connection_id,
                table.c.remote_id == rows.c.remote_id,
                table.c.deleted_at.is_(None),
                or_(
                    table.c.remote_modified_at.is_(None),
                    table.c.remote_modified_at <= rows.c.deleted_at,
                ),
            )
            rollups.mark_rows(session, model, *where)
            count += len(session.execute(update(table).where(*where)
                                         .values(deleted_at=rows.c.deleted_at)
                                         .returning(table.c.id)).all())
    return count


def _tombstones(session: Session, connection_id: int,
                deletions: Sequence[Deletion]) -> dict[str, list[tuple[str, datetime]]]:
    """Per entity, the stored alive rows the deletions tombstone, as (remote id, deletion
    time): for each, its first deletion (in their order) not older than its modified time.
    apply_deletions' statements check that again."""
    stored: dict[tuple[str, str], datetime | None] = {}
    for entity in dict.fromkeys(d.entity for d in deletions):
        table = table_of(SYNCED_TABLES[entity])
        ids = list({d.remote_id for d in deletions if d.entity == entity})
        for start in range(0, len(ids), 1000):  # SQLite's bound parameters stay few
            rows = session.execute(
                sa_select(table.c.remote_id, table.c.remote_modified_at)
                .where(table.c.connection_id == connection_id, table.c.deleted_at.is_(None),
                       table.c.remote_id.in_(ids[start:start + 1000])))
            stored.update(((entity, remote_id), modified) for remote_id, modified in rows)
    taken: dict[tuple[str, str], datetime] = {}
    for d in deletions:
        key = (d.entity, d.remote_id)
        if key in stored and key not in taken and (
                (modified := stored[key]) is None or modified <= as_utc(d.deleted_at)):
            taken[key] = d.deleted_at
    gone: dict[str, list[tuple[str, datetime]]] = {}
    for (name, remote_id), deleted_at in taken.items():
        gone.setdefault(name, []).append((remote_id, deleted_at))
    return gone


def stores_any(session: Session, *, stream: str, connection_id: int) -> bool:
    """Whether the store holds a row of `stream` (live or tombstoned) of the connection;
    False for a stream without a table."""
    model = SYNCED_TABLES.get(stream)
    if model is None:
        return False
    table = table_of(model)
    return session.scalar(sa_select(exists().where(table.c.connection_id == connection_id))) \
        is True


def tombstone_unseen(
    session: Session, *, stream: str, connection_id: int, since: datetime, now: datetime
) -> int:
    """After a complete full read: tombstone rows the read did not touch."""
    model = SYNCED_TABLES[stream]
    table = table_of(model)
    unseen = and_(
        table.c.connection_id == connection_id,
        table.c.deleted_at.is_(None),
        table.c.last_synced_at < since,
    )
    rollups.mark_rows(session, model, unseen)
    result = session.execute(update(table).where(unseen).values(deleted_at=now))
    return max(result.rowcount or 0, 0)  # type: ignore[attr-defined]


WRITER_WORK_MEM = "'32MB'"


def fast_commits(connection: Connection, on: bool) -> None:
    """Let this connection's commits return without waiting for their WAL flush
    (PostgreSQL; `on=False` restores the default before it goes back to the pool).

    Safe for sync pages: a page and its cursor commit together, so if the database
    loses the last few commits in a crash, it loses their cursors too, and the next
    sync reads those pages again.

    The same connection plans index lookups as cheap as they are on the cached tables a
    sync writes (random_page_cost 1.1, the usual value for SSDs): with the default 4, a
    merge of a few pages closed the current deal versions by reading every version
    (EXPLAIN ANALYZE, 800 deals merged at 46,000 versions: 14 ms of the statement's 45)
    rather than by 800 index lookups.

    And it keeps up to 32 MB of a statement's new rows in memory (work_mem) for the
    statement triggers that check their keys to connection (migration 0022): a merge of
    MERGE_RECORDS deals of about 1.3 KB each would otherwise write them to a temporary
    file."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SET synchronous_commit = {'off' if on else 'DEFAULT'}")
        connection.exec_driver_sql(f"SET random_page_cost = {'1.1' if on else 'DEFAULT'}")
        connection.exec_driver_sql(f"SET work_mem = {WRITER_WORK_MEM if on else 'DEFAULT'}")
        connection.commit()


DRILL_COLUMNS = ", close_date, status, deleted_at"  # ix_deal_close's, for the drill-down


def refresh_statistics(session: Session, *, stream: str, written: int) -> None:
    """ANALYZE a table that grew a lot, and deal_version with deal (PostgreSQL): when the
    `written` rows of this sync (or webhook batch: core.webhooks.apply_changes) are at
    least as many as the table held at its last statistics (it at least doubled). Without
    fresh statistics, the lookups of a first sync into an empty table turn into sequential
    scans (closing the current versions of a page scanned every version: 5.7 ms a page at
    12,000 deals, growing with the table; a webhook batch's merge took 1.4 s). A table
    shared by many connections is left alone: another connection's sync barely changes it,
    and each ANALYZE of it takes seconds and waits for every other one (300 connections
    syncing together spent most of their time there: docs/benchmarks.md, many connections).

    Only the columns the sync's own lookups join on are analyzed (the table's size is
    counted either way), and deal's that the drill-down's page reads by (close date, id):
    without them, right after a first sync of a million deals, PostgreSQL sorted all 63,883
    won deals of a quarter for a page of 100 (223 ms; 1.7 ms with them: docs/benchmarks.md).
    The whole rows took about five times as long (deal's 27 columns, `raw` among them: 1.2
    s against 0.2 s at 20,000 deals), and autovacuum analyzes the rest of a table that grew
    this much within a minute."""
    if session.get_bind().dialect.name != "postgresql":
        return
    model = SYNCED_TABLES[stream]
    name = table_of(model).name
    known = session.scalar(text("SELECT reltuples FROM pg_class WHERE oid = CAST(:t AS regclass)"),
                           {"t": name})
    if known is not None and known > 0 and written < known:
        return
    tables = [f"{name} (connection_id, remote_id{DRILL_COLUMNS if model is Deal else ''})"]
    if model is Deal:
        tables.append(f"{table_of(DealVersion).name} (connection_id, deal_remote_id, valid_to)")
    session.execute(text(f"ANALYZE {', '.join(tables)}"))


def get_state(session: Session, *, connection_id: int, stream: str) -> dict[str, Any]:
    cursor = session.execute(_STATE_SELECT, {"connection_id": connection_id,
                                             "stream": stream}).scalar()
    return dict(cursor or {})


def get_states(session: Session, *, connection_id: int) -> dict[str, dict[str, Any]]:
    """Every stream's state of a connection (get_state of each), in one statement."""
    rows = session.execute(_STATES_SELECT, {"connection_id": connection_id})
    return {str(stream): dict(cursor or {}) for stream, cursor in rows}


_STATE = table_of(SyncState)
_STATES_SELECT = sa_select(_STATE.c.stream, _STATE.c.cursor).where(
    _STATE.c.connection_id == bindparam("connection_id"))
_STATE_SELECT = sa_select(_STATE.c.cursor).where(
    _STATE.c.connection_id == bindparam("connection_id"), _STATE.c.stream == bindparam("stream"))
"""get_state's statement, built once (an ORM get of the row cost each stream a millisecond)."""


def set_state(session: Session, *, connection_id: int, stream: str, state: dict[str, Any]) -> None:
    values = {"connection_id": connection_id, "stream": stream, "cursor": state,
              "updated_at": utcnow()}
    session.execute(_state_upsert(session.get_bind().dialect.name), values)


@lru_cache(maxsize=4)
def _state_upsert(dialect: str) -> Any:
    """set_state's statement, built once per dialect (the values are bound per call)."""
    stmt = _insert(dialect, table_of(SyncState))
    return stmt.on_conflict_do_update(
        index_elements=["connection_id", "stream"],
        set_={"cursor": stmt.excluded.cursor, "updated_at": stmt.excluded.updated_at},
    )


def update_run(session: Session, run_id: int, **values: Any) -> None:
    table = table_of(SyncRun)
    session.execute(update(table).where(table.c.id == run_id).values(**values))


__all__ = [
    "SyncedRow",
    "active_run",
    "apply_deletions",
    "create_run",
    "fast_commits",
    "get_state",
    "get_states",
    "refresh_statistics",
    "set_state",
    "stores_any",
    "tombstone_unseen",
    "update_run",
    "upsert_records",
]


def create_run(session: Session, *, connection_id: int, mode: SyncMode) -> SyncRun:
    """A queued sync_run row (flushed, so it has its id)."""
    run = SyncRun(connection_id=connection_id, mode=mode, status=RunStatus.QUEUED, counts={})
    session.add(run)
    session.flush()
    return run


def active_run(session: Session, *, connection_id: int) -> SyncRun | None:
    """The queued or running sync of a connection, if there is one."""
    return session.exec(
        select(SyncRun)
        .where(SyncRun.connection_id == connection_id,
               SyncRun.status.in_((RunStatus.QUEUED, RunStatus.RUNNING)))  # type: ignore[attr-defined]
        .order_by(SyncRun.id.desc())  # type: ignore[union-attr]
    ).first()
