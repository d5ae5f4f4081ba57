"""A first full sync's pages (core.store.upsert_records with new=True: on PostgreSQL the rows
the store does not have are inserted without the merge's lookups, the rest merged) end
exactly as the merge leaves them: a record on two pages, a later page with a newer or an
older copy, a record a webhook stored meanwhile. On SQLite and PostgreSQL."""

import dataclasses
import threading
from datetime import date, timedelta
from typing import Any

from sqlalchemy import event, select, text

from core import store
from core.db import session_scope
from core.models import Account, Connection, Deal, DealStageChange, DealVersion, Person, RollupDirty
from core.records import Page
from core.sync import SyncEngine
from tests.integration.test_store_and_engine import (
    T0,
    ListSource,
    account,
    add_connection,
    deal,
    new_run,
)


def owned(i: int, owner: str = "u1", close_date: date | None = date(2025, 3, 1),
          **kw: Any) -> Any:
    record = deal(i, owner_remote_id=owner, owner_email=f"{owner}@example.com", **kw)
    return dataclasses.replace(record, close_date=close_date)


# each a page, in its own transaction: a first sync's pages as Zoho may return them
PAGES: list[tuple[str, list[Any]]] = [
    ("deals", [owned(1), owned(2, close_date=date(2024, 12, 1)), owned(3, close_date=None)]),
    ("accounts", [account(1, "u1"), account(2, "u2")]),
    ("deals", [owned(3, close_date=None), owned(4, "u2")]),  # 3 again: a shifting page
    ("deals", [owned(1, stage="Won", minutes=5), owned(5, close_date=date(2025, 6, 30))]),
    ("deals", [owned(2, stage="Lost", minutes=-5, close_date=date(2024, 12, 1)),
               owned(6)]),  # an older copy of 2
    ("deals", [owned(7, deleted_at=T0 + timedelta(hours=1))]),  # arrives voided
    ("accounts", [account(2, "u3"), account(3, "u1")]),
]


def write(engine: Any, connection_id: int, pages: list[tuple[str, list[Any]]], *,
          new: bool, source: str = "sync") -> None:
    for stream, records in pages:
        with session_scope(engine) as session:
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records, new=new, source=source)


def stored(engine: Any, connection_id: int) -> dict[str, Any]:
    """A connection's rows as comparable values (no ids or write times)."""
    def rows(model: Any, *skip: str) -> list[tuple[Any, ...]]:
        table = model.__table__
        columns = [c for c in table.c if c.name not in {"id", "connection_id", *skip}]
        return sorted(session.execute(select(*columns).where(
            table.c.connection_id == connection_id)).all(), key=repr)

    with session_scope(engine) as session:
        return {
            "deal": rows(Deal, "first_seen_at", "last_synced_at"),
            "account": rows(Account, "first_seen_at", "last_synced_at"),
            "deal_version": rows(DealVersion),
            "deal_stage_change": rows(DealStageChange),
            "rollup_dirty": sorted(set(session.scalars(select(RollupDirty.month).where(
                RollupDirty.connection_id == connection_id)))),
        }


def test_first_sync_pages_end_as_the_merge_leaves_them(engine):
    merged, inserted = add_connection(engine), add_connection_named(engine, "c2")
    write(engine, merged, PAGES, new=False)
    write(engine, inserted, PAGES, new=True)
    after = stored(engine, inserted)
    assert after == stored(engine, merged)
    # and what that is: one row per record, the newest copy, its versions and stage change
    with session_scope(engine) as session:
        deals = {d.remote_id: d for d in session.scalars(
            select(Deal).where(Deal.connection_id == inserted))}
        assert sorted(deals) == ["1", "2", "3", "4", "5", "6", "7"]
        assert (deals["1"].stage, deals["2"].stage) == ("Won", "Proposal")
        assert deals["7"].deleted_at == T0 + timedelta(hours=1)
        assert deals["4"].owner_person_id != deals["1"].owner_person_id is not None
        versions = session.execute(
            select(DealVersion.deal_remote_id, DealVersion.stage, DealVersion.valid_to)
            .where(DealVersion.connection_id == inserted)
            .order_by(DealVersion.deal_remote_id, DealVersion.valid_from)).all()
        assert [(v.deal_remote_id, v.stage) for v in versions] == [
            ("1", "Proposal"), ("1", "Won"), *((str(i), "Proposal") for i in range(2, 8))]
        assert versions[0].valid_to == T0 + timedelta(minutes=5)
        change = session.execute(
            select(DealStageChange.deal_remote_id, DealStageChange.from_stage,
                   DealStageChange.to_stage)
            .where(DealStageChange.connection_id == inserted)).one()
        assert tuple(change) == ("1", "Proposal", "Won")
        owners = dict(session.execute(select(Account.remote_id, Account.owner_remote_id)
                                      .where(Account.connection_id == inserted)).all())
        assert owners == {"A1": "u1", "A2": "u3", "A3": "u1"}
    # the deals' months (the accounts have no creation date)
    assert after["rollup_dirty"] == [2024 * 12 + 11, 2025 * 12 + 2, 2025 * 12 + 5]


def add_connection_named(engine: Any, name: str) -> int:
    with session_scope(engine) as session:
        c = Connection(provider="zoho", name=name, config={})
        session.add(c)
        session.flush()
        return int(c.id or 0)


def test_a_deal_a_webhook_stored_first_is_merged_not_inserted_again(engine):
    # The webhook's copy is newer than the page's: the page leaves it, and adds no version
    webhook = [("deals", [owned(2, stage="Won", minutes=10)])]
    page = [("deals", [owned(1), owned(2), owned(3)])]
    merged, inserted = add_connection(engine), add_connection_named(engine, "c2")
    for connection_id, new in ((merged, False), (inserted, True)):
        write(engine, connection_id, webhook, new=False, source="webhook")
        write(engine, connection_id, page, new=new)
    assert stored(engine, inserted) == stored(engine, merged)
    with session_scope(engine) as session:
        versions = session.execute(select(DealVersion.deal_remote_id, DealVersion.source)
                                   .where(DealVersion.connection_id == inserted)
                                   .order_by(DealVersion.deal_remote_id)).all()
        assert [tuple(v) for v in versions] == [("1", "sync"), ("2", "webhook"), ("3", "sync")]
        deals = {d.remote_id: d for d in session.scalars(
            select(Deal).where(Deal.connection_id == inserted))}
        assert deals["2"].stage == "Won"
        # seen by the page (a full sync's end must not tombstone it)
        assert deals["2"].last_synced_at == deals["1"].last_synced_at > deals["2"].first_seen_at


def test_a_page_waits_for_a_webhook_inserting_the_same_deal_then_merges_it(pg_engine):
    # The webhook's transaction inserted deal 2 and has not committed when the first sync's
    # page inserts it too: the page waits for it, then merges its copy into the webhook's
    # row (older: it changes nothing) instead of adding a second first version.
    connection_id = add_connection(pg_engine)
    with session_scope(pg_engine) as session:  # the owner's person: no wait there
        session.add(Person(name="u1", email="u1@example.com"))
    hold, done, written = threading.Event(), threading.Event(), threading.Event()

    def webhook() -> None:
        with session_scope(pg_engine) as session:
            store.upsert_records(session, stream="deals", connection_id=connection_id,
                                 records=[owned(2, stage="Won", minutes=10)], source="webhook")
            written.set()
            hold.wait(timeout=20)

    thread = threading.Thread(target=webhook)
    thread.start()
    assert written.wait(timeout=20)
    page = threading.Thread(target=write, args=(pg_engine, connection_id,
                                                [("deals", [owned(1), owned(2)])]),
                            kwargs={"new": True})
    page.start()
    try:
        with pg_engine.connect() as watch:  # the page waits for the webhook's transaction
            for _ in range(200):
                waiting = watch.execute(text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'transactionid' "
                    "AND query LIKE 'WITH inserted AS%'")).scalar()
                watch.rollback()
                if waiting:
                    break
                done.wait(0.05)
            assert waiting == 1
    finally:
        hold.set()
        thread.join()
        page.join()
    with session_scope(pg_engine) as session:
        versions = session.execute(select(DealVersion.deal_remote_id, DealVersion.stage,
                                          DealVersion.source)
                                   .order_by(DealVersion.deal_remote_id)).all()
        assert [tuple(v) for v in versions] == [("1", "Proposal", "sync"),
                                                ("2", "Won", "webhook")]
        deals = {d.remote_id: d for d in session.scalars(select(Deal))}
        assert {i: d.stage for i, d in deals.items()} == {"1": "Proposal", "2": "Won"}
        assert deals["2"].last_synced_at == deals["1"].last_synced_at
        assert session.scalars(select(DealStageChange)).all() == []


async def test_only_a_first_full_sync_takes_the_insert_first_path(engine):
    # The engine asks for it when the store has none of the stream's rows of the connection
    statements: list[str] = []

    def before(conn, cursor, statement, *args: Any) -> None:
        statements.append(statement)

    pages = {"deals": [Page(records=[owned(1), owned(2)], cursor={"n": 0}),
                       Page(records=[owned(2), owned(3, stage="Won")], cursor={"n": 1})]}
    connection_id = add_connection(engine)
    event.listen(engine, "before_cursor_execute", before)
    try:
        for run in range(2):
            statements.clear()
            summary = await SyncEngine(
                engine, ListSource(pages), connection_id=connection_id,
                run_id=new_run(engine, connection_id, "full"), mode="full",
                streams=("deals",)).run()
            assert summary["deals"]["upserted"] == 4
            first = [s for s in statements if s.startswith("WITH inserted AS")]
            assert len(first) == (2 if run == 0 and engine.dialect.name == "postgresql" else 0)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    with session_scope(engine) as session:
        assert session.execute(select(DealVersion.deal_remote_id, DealVersion.stage)
                               .order_by(DealVersion.deal_remote_id)).all() == [
            ("1", "Proposal"), ("2", "Proposal"), ("3", "Won")]
