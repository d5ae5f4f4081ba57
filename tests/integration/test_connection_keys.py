"""The rows of a connection never outlive it and never exist without it, on SQLite (foreign
keys) and PostgreSQL (the bulk-written tables' keys kept by statement triggers, migration
0022), concurrent deletes included."""

import threading
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import IntegrityError

from core import store
from core.db import session_scope
from core.metrics import rollups
from core.models import Connection, Deal, SQLModel
from core.records import AccountRecord, ActivityRecord, DealRecord, StageRecord, UserRecord
from core.types import ActivityType, DealStatus
from tests.integration.test_first_sync_pages import add_connection_named

T0 = datetime(2025, 3, 1, tzinfo=UTC)
# every table with a connection_id that refers to connection, by the models
OWNED_BY_CONNECTION = sorted(
    table.name for table in SQLModel.metadata.sorted_tables
    if any(key.column.table.name == "connection" for key in table.foreign_keys))


def deals(stage: str) -> list[DealRecord]:
    return [DealRecord(remote_id=f"d{i}", name=f"Deal {i}", amount=Decimal(100),
                       amount_home=Decimal(100), currency="USD", stage=stage,
                       status=DealStatus.OPEN, close_date=date(2025, 3, i + 1),
                       remote_created_at=T0, owner_remote_id="u1",
                       owner_email="ann@x.com", account_remote_id="a1",
                       raw={"id": f"d{i}"}) for i in range(3)]


def sync_some(engine: Engine, connection_id: int) -> None:
    """Rows in every table a sync and a refresh of the rollups write."""
    pages: list[tuple[str, list[Any]]] = [
        ("users", [UserRecord(remote_id="u1", name="Ann", email="ann@x.com")]),
        ("stages", [StageRecord(remote_id="s1", name="Proposal", category=DealStatus.OPEN)]),
        ("accounts", [AccountRecord(remote_id="a1", name="Acme", owner_remote_id="u1",
                                    owner_email="ann@x.com", remote_created_at=T0)]),
        ("deals", deals("Proposal")),
        ("deals", deals("Negotiation")),  # stage changes and second versions
        ("activities", [ActivityRecord(remote_id="c1", type=ActivityType.CALL,
                                       occurred_at=T0, owner_remote_id="u1",
                                       owner_email="ann@x.com", deal_remote_id="d0")]),
    ]
    for stream, records in pages:
        with session_scope(engine) as session:
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records)
    rollups.refresh(engine)


def rows_of(engine: Engine, connection_id: int) -> dict[str, int]:
    with engine.connect() as connection:
        return {table: connection.scalar(text(
            f"SELECT count(*) FROM {table} WHERE connection_id = :c"), {"c": connection_id})
            for table in OWNED_BY_CONNECTION}


def test_deleting_a_connection_deletes_its_rows_in_every_table_and_no_other(engine):
    kept, deleted = add_connection_named(engine, "kept"), add_connection_named(engine, "deleted")
    for connection_id in (kept, deleted):
        sync_some(engine, connection_id)
    before = rows_of(engine, kept)
    written = {t for t, n in rows_of(engine, deleted).items() if n}
    assert {"deal", "deal_version", "deal_stage_change", "account", "activity", "crm_user",
            "stage", "deal_day", "deal_month", "account_day"} <= written
    with session_scope(engine) as session:
        session.delete(session.get(Connection, deleted))
    assert rows_of(engine, deleted) == dict.fromkeys(OWNED_BY_CONNECTION, 0)
    assert rows_of(engine, kept) == before


@pytest.mark.parametrize("stream", ["users", "stages", "accounts", "deals", "activities"])
def test_rows_of_a_connection_that_does_not_exist_are_refused(engine, stream):
    records = {"users": [UserRecord(remote_id="u1", name="Ann", email="ann@x.com")],
               "stages": [StageRecord(remote_id="s1", name="P", category=DealStatus.OPEN)],
               "accounts": [AccountRecord(remote_id="a1", name="Acme")],
               "deals": deals("Proposal"),
               "activities": [ActivityRecord(remote_id="c1", type=ActivityType.CALL,
                                             occurred_at=T0)]}[stream]
    with pytest.raises(IntegrityError, match="connection"), session_scope(engine) as session:
        store.upsert_records(session, stream=stream, connection_id=4242, records=records)
    assert rows_of(engine, 4242) == dict.fromkeys(OWNED_BY_CONNECTION, 0)


def test_every_key_to_a_connection_is_a_constraint_or_its_triggers(pg_engine):
    """PostgreSQL: each key the models declare is enforced, by the constraint or by the
    triggers of migration 0022 (a new bulk-written table gets one or the other)."""
    with pg_engine.connect() as connection:
        constraints = set(connection.scalars(text(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
            "AND confrelid = 'connection'::regclass")))
        triggers = set(connection.scalars(text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
    by_trigger = {t for t in OWNED_BY_CONNECTION if {f"{t}_connection_id_fkey",
                                                     f"{t}_connection_id_fixed"} <= triggers}
    assert {"deal", "deal_version", "account", "activity"} <= by_trigger
    assert constraints | by_trigger == set(OWNED_BY_CONNECTION)
    assert not constraints & by_trigger
    assert "connection_rows_deleted" in triggers


def test_a_row_never_moves_to_another_connection(pg_engine):
    first = add_connection_named(pg_engine, "first")
    second = add_connection_named(pg_engine, "second")
    sync_some(pg_engine, first)
    with pytest.raises(IntegrityError, match="never moves"), pg_engine.begin() as connection:
        connection.execute(text("UPDATE deal SET connection_id = :s"), {"s": second})
    with session_scope(pg_engine) as session:  # an update that leaves it alone works
        session.execute(text("UPDATE deal SET name = name || '!', connection_id = connection_id"))
        assert session.scalar(select(func.count()).where(Deal.connection_id == first)) == 3


def test_a_delete_waits_for_rows_being_written_and_deletes_them_too(pg_engine):
    """As with a foreign key: the writer locks its connection (FOR KEY SHARE), the delete
    waits for it to commit, then deletes what it wrote."""
    connection_id = add_connection_named(pg_engine, "c")
    writer = pg_engine.connect()
    writer.begin()
    with session_scope(writer) as session:  # the writer's transaction stays open
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=deals("Proposal"))
    done = threading.Event()

    def delete() -> None:
        with session_scope(pg_engine) as session:
            session.delete(session.get(Connection, connection_id))
        done.set()

    deleter = threading.Thread(target=delete)
    deleter.start()
    assert not done.wait(1.0)  # waits for the writer's lock on the connection
    writer.commit()
    writer.close()
    deleter.join(30)
    assert done.is_set()
    assert rows_of(pg_engine, connection_id) == dict.fromkeys(OWNED_BY_CONNECTION, 0)


def test_rows_written_while_their_connection_is_deleted_are_refused(pg_engine):
    """The writer waits for the delete; once it commits, the write fails and leaves
    nothing behind."""
    connection_id = add_connection_named(pg_engine, "c")
    deleter = pg_engine.connect()
    deleter.begin()
    deleter.execute(text("DELETE FROM connection WHERE id = :c"), {"c": connection_id})
    outcome: list[BaseException | None] = []

    def write() -> None:
        try:
            with session_scope(pg_engine) as session:
                store.upsert_records(session, stream="deals", connection_id=connection_id,
                                     records=deals("Proposal"))
            outcome.append(None)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join(1.0)
    assert writer.is_alive()  # waits for the delete
    deleter.commit()
    deleter.close()
    writer.join(30)
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert "foreign key" in str(outcome[0])
    assert rows_of(pg_engine, connection_id) == dict.fromkeys(OWNED_BY_CONNECTION, 0)


def test_a_sync_writer_keeps_a_merges_new_rows_in_memory(pg_engine):
    """The statement triggers read a merge's new rows (a transition table): the run's
    connections hold them in memory (core.store.fast_commits)."""
    with pg_engine.connect() as connection:
        default = connection.scalar(text("SHOW work_mem"))
        store.fast_commits(connection, True)
        assert connection.scalar(text("SHOW work_mem")) == store.WRITER_WORK_MEM.strip("'")
        store.fast_commits(connection, False)
        assert connection.scalar(text("SHOW work_mem")) == default
