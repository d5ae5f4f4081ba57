"""The store's upserts and the sync engine, on SQLite and PostgreSQL (no CRM involved)."""

import asyncio
import dataclasses
import threading
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select, text

from core import store
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.errors import AuthError, ConfigError
from core.metrics.currency import set_rate
from core.models import (
    Account,
    Connection,
    Deal,
    DealStageChange,
    DealVersion,
    Person,
    SyncRun,
    SyncState,
)
from core.records import AccountRecord, DealRecord, Deletion, Page, SourceInfo
from core.sync import SyncEngine

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def deal(i: int, stage: str = "Proposal", minutes: int = 0, **kw: Any) -> DealRecord:
    return DealRecord(remote_id=str(i), name=f"D{i}", amount=Decimal("100.10"),
                      amount_home=Decimal("100.10"), currency="USD", exchange_rate=Decimal(1),
                      stage=stage, close_date=date(2025, 3, 1),
                      remote_modified_at=T0 + timedelta(minutes=minutes),
                      raw={"id": str(i)}, **kw)


def add_connection(engine) -> int:
    with session_scope(engine) as session:
        c = Connection(provider="zoho", name="c1", config={})
        session.add(c)
        session.flush()
        return int(c.id or 0)


@pytest.fixture
def connection_id(engine) -> int:
    return add_connection(engine)


def test_upsert_is_idempotent_exact_and_records_stage_changes(engine, connection_id):
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1), deal(2)])
    with session_scope(engine) as session:  # same page again, one deal moved on
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1, stage="Closed Won", minutes=5), deal(2)])
    with session_scope(engine) as session:
        rows = session.scalars(select(Deal).order_by(Deal.remote_id)).all()
        assert [(r.remote_id, r.stage) for r in rows] == [("1", "Closed Won"), ("2", "Proposal")]
        assert rows[0].amount == Decimal("100.1000")
        total = session.scalar(select(func.sum(Deal.amount)))
        assert total == Decimal("200.2")
        change = session.scalars(select(DealStageChange)).one()
        assert (change.from_stage, change.to_stage) == ("Proposal", "Closed Won")
        assert change.changed_at == T0 + timedelta(minutes=5)
        assert rows[0].first_seen_at <= rows[0].last_synced_at


def test_an_older_copy_never_rolls_a_row_back_but_counts_as_seen(engine, connection_id):
    """A sync page read before a webhook stored a newer version arrives after it."""
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1, stage="Closed Won", minutes=10)],
                             source="webhook")
    seen_from = datetime.now(UTC)
    with session_scope(engine) as session:  # the older copy, as a full sync read it
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1, stage="Proposal", minutes=5), deal(2)])
        assert store.tombstone_unseen(session, stream="deals", connection_id=connection_id,
                                      since=seen_from, now=datetime.now(UTC)) == 0
    with session_scope(engine) as session:
        rows = {r.remote_id: r for r in session.scalars(select(Deal))}
        assert rows["1"].stage == "Closed Won"
        assert rows["1"].remote_modified_at == T0 + timedelta(minutes=10)
        assert rows["1"].deleted_at is None and rows["2"].deleted_at is None
        assert session.scalars(select(DealStageChange)).all() == []
    with session_scope(engine) as session:  # the same version again: still applied
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1, stage="Lost", minutes=10)])
    with session_scope(engine) as session:
        assert session.scalars(select(Deal.stage).where(Deal.remote_id == "1")).one() == "Lost"
        change = session.scalars(select(DealStageChange)).one()
        assert (change.from_stage, change.to_stage, change.source) == (
            "Closed Won", "Lost", "sync")


def test_deletions_tombstone_but_never_a_restored_record(engine, connection_id):
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1), deal(2, minutes=60)])
        n = store.apply_deletions(session, connection_id=connection_id, deletions=[
            Deletion("deals", "1", T0 + timedelta(minutes=30)),
            Deletion("deals", "2", T0 + timedelta(minutes=30)),  # modified after: restored
            Deletion("deals", "404", T0),  # never seen: nothing to do
        ])
        assert n == 1
    with session_scope(engine) as session:
        alive = {r.remote_id: r.deleted_at for r in session.scalars(select(Deal))}
        assert alive == {"1": T0 + timedelta(minutes=30), "2": None}


def test_deletions_set_each_records_own_time_in_their_order(engine, connection_id):
    # Set-based, a thousand rows a statement: each row still gets its own deletion's time,
    # and a record listed twice the first of its deletions not older than its change.
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(i, minutes=i % 7) for i in range(1, 1006)])
        store.upsert_records(session, stream="accounts", connection_id=connection_id, records=[
            AccountRecord(remote_id="a1", name="A1", remote_modified_at=T0, raw={})])
        n = store.apply_deletions(session, connection_id=connection_id, deletions=[
            Deletion("deals", "6", T0 + timedelta(minutes=5)),  # changed at 6: restored
            *(Deletion("deals", str(i), T0 + timedelta(minutes=10 + i))
              for i in range(1, 1004)),
            Deletion("deals", "1", T0 + timedelta(minutes=3)),  # already tombstoned
            Deletion("deals", "1004", T0 + timedelta(minutes=1)),  # changed at 3: restored
            Deletion("deals", "1004", T0 + timedelta(minutes=4)),
            Deletion("accounts", "a1", T0 + timedelta(minutes=2)),
        ])
        assert n == 1004 + 1
    with session_scope(engine) as session:
        gone = dict(session.execute(select(Deal.remote_id, Deal.deleted_at)).tuples().all())
        account = session.scalars(select(Account.deleted_at)).one()
    assert gone == {**{str(i): T0 + timedelta(minutes=10 + i) for i in range(1, 1004)},
                    "1004": T0 + timedelta(minutes=4), "1005": None}
    assert account == T0 + timedelta(minutes=2)


def test_deletions_of_records_never_stored_cost_one_query_per_entity(engine, connection_id):
    # A full sync reads every deleted record the CRM still lists, most never stored: they
    # once cost two statements each while the page held both of the run's connections.
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1), deal(2)])
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        with session_scope(engine) as session:
            n = store.apply_deletions(session, connection_id=connection_id, deletions=[
                *(Deletion("deals", str(1000 + i), T0) for i in range(300)),
                *(Deletion("accounts", str(i), T0) for i in range(50)),
                Deletion("deals", "2", T0 + timedelta(minutes=30)),
            ])
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert n == 1
    # deals and accounts looked up once each; then deal 2's rollup mark and tombstone
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 2
    assert len(statements) == 4, statements
    with session_scope(engine) as session:
        alive = {r.remote_id: r.deleted_at for r in session.scalars(select(Deal))}
        assert alive == {"1": None, "2": T0 + timedelta(minutes=30)}


def test_pages_of_one_stream_in_one_transaction_never_merge_twice(engine, connection_id):
    # PostgreSQL's load table is emptied only by a commit: a second page in the same
    # transaction once merged the first page again, undoing the tombstone set in between
    # (and failing outright when both pages held the same id).
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1)])
        store.apply_deletions(session, connection_id=connection_id,
                              deletions=[Deletion("deals", "1", T0 + timedelta(minutes=30))])
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(2)])
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(2, stage="Won", minutes=1)])
    with session_scope(engine) as session:
        rows = {r.remote_id: (r.deleted_at, r.stage) for r in session.scalars(select(Deal))}
        assert rows == {"1": (T0 + timedelta(minutes=30), "Proposal"), "2": (None, "Won")}


class ListSource:
    """A connector stand-in serving fixed pages (the engine's contract, not our store)."""

    def __init__(self, pages: dict[str, list[Page]], fail_on: str | None = None) -> None:
        self.pages = pages
        self.fail_on = fail_on
        self.cursors: dict[str, Any] = {}

    @property
    def api_calls(self) -> int:
        return sum(len(p) for p in self.pages.values())

    async def check(self) -> SourceInfo:
        if self.fail_on == "check":
            raise AuthError("token revoked")
        return SourceInfo(home_currency="EUR")

    async def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        self.cursors[stream] = cursor
        for i, page in enumerate(self.pages.get(stream, [])):
            if self.fail_on == stream and i == 1:
                raise RuntimeError("boom")
            yield page


def new_run(engine, connection_id: int, mode: str) -> int:
    with session_scope(engine) as session:
        return int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)


async def test_engine_commits_each_page_with_its_cursor_and_resumes(engine, connection_id):
    pages = {"deals": [Page(records=[deal(1)], cursor={"modified_since": "a"}),
                       Page(records=[deal(2)], cursor={"modified_since": "b"}),
                       Page(records=[deal(3)], cursor={"modified_since": "c"})]}
    source = ListSource(pages, fail_on="deals")
    run_id = new_run(engine, connection_id, "incremental")
    with pytest.raises(RuntimeError, match="boom"):
        await SyncEngine(engine, source, connection_id=connection_id, run_id=run_id,
                         mode="incremental", streams=("deals",)).run()
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 1
        state = session.get(SyncState, (connection_id, "deals"))
        assert state is not None and state.cursor == {"cursor": {"modified_since": "a"},
                                                      "full_started_at": None}
        run = session.get(SyncRun, run_id)
        assert run is not None and run.status == "failed" and "boom" in (run.error or "")
        assert session.get(Connection, connection_id).status == "error"  # type: ignore[union-attr]

    source = ListSource({"deals": pages["deals"][1:]})
    run_id = new_run(engine, connection_id, "incremental")
    summary = await SyncEngine(engine, source, connection_id=connection_id, run_id=run_id,
                               mode="incremental", streams=("deals",)).run()
    assert source.cursors["deals"] == {"modified_since": "a"}  # resumed from the commit
    assert summary["deals"] == {"fetched": 2, "upserted": 2, "deleted": 0}
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 3
        run = session.get(SyncRun, run_id)
        assert run is not None and run.status == "succeeded" and run.counts == summary
        connection = session.get(Connection, connection_id)
        assert connection is not None and connection.status == "active"
        assert connection.home_currency == "EUR"


async def test_full_sync_tombstones_unseen_rows_even_after_an_interruption(engine,
                                                                           connection_id):
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[deal(1), deal(2), deal(3)])
    pages = [Page(records=[deal(1)], cursor={"m": 1}), Page(records=[deal(2)], cursor={"m": 2})]
    run_id = new_run(engine, connection_id, "full")
    with pytest.raises(RuntimeError):
        await SyncEngine(engine, ListSource({"deals": pages}, fail_on="deals"),
                         connection_id=connection_id, run_id=run_id, mode="full",
                         streams=("deals",)).run()
    with session_scope(engine) as session:  # interrupted: nothing tombstoned yet
        assert session.scalar(select(func.count()).where(Deal.deleted_at.is_not(None))) == 0
    source = ListSource({"deals": pages[1:]})
    run_id = new_run(engine, connection_id, "full")
    await SyncEngine(engine, source, connection_id=connection_id, run_id=run_id, mode="full",
                     streams=("deals",)).run()
    assert source.cursors["deals"] == {"m": 1}  # the full read resumed, not restarted
    with session_scope(engine) as session:
        gone = session.scalars(select(Deal.remote_id).where(Deal.deleted_at.is_not(None))).all()
        assert gone == ["3"]


async def test_auth_failure_marks_needs_reauth(engine, connection_id):
    run_id = new_run(engine, connection_id, "incremental")
    with pytest.raises(AuthError):
        await SyncEngine(engine, ListSource({}, fail_on="check"), connection_id=connection_id,
                         run_id=run_id, mode="incremental").run()
    with session_scope(engine) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None and connection.status == "needs_reauth"
        assert "Re-enter" in (connection.last_error or "")


def test_deals_without_a_crm_rate_convert_with_the_callers_reporting_currency(
        engine, connection_id, monkeypatch):
    """A deal that comes with no home amount (a CRM that keeps no rate on deals) is
    converted through the reporting currency of the settings its caller holds, not of the
    process environment."""
    monkeypatch.delenv("CRMSYNC_REPORTING_CURRENCY", raising=False)
    with session_scope(engine) as session:
        session.get(Connection, connection_id).home_currency = "USD"  # type: ignore[union-attr]
        set_rate(session, "USD", Decimal("0.8"))  # EUR per 1 USD
        set_rate(session, "GBP", Decimal("1.2"))  # EUR per 1 GBP
    bare = DealRecord(remote_id="fx1", name="GBP deal", amount=Decimal("100.00"),
                      currency="GBP", stage="Proposal", remote_modified_at=T0, raw={})
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=[bare], settings=Settings(reporting_currency="EUR"))
        row = session.scalars(select(Deal).where(Deal.remote_id == "fx1")).one()
        # 100 GBP = 120 EUR = 150 USD; the environment's default (the first connection's
        # USD as reporting currency, USD taken as 1) would give 120
        assert row.amount_home == Decimal("150")
        assert row.exchange_rate is not None and round(row.exchange_rate, 4) == Decimal("0.6667")


def test_deals_in_a_currency_without_a_rate_are_stored_and_logged_once_a_write(
        engine, connection_id, monkeypatch, caplog):
    """Deals of a currency the FX table has no rate for keep no home amount: one warning a
    write for each missing rate, with how many deals and a few ids, not one a deal."""
    monkeypatch.delenv("CRMSYNC_REPORTING_CURRENCY", raising=False)
    with session_scope(engine) as session:
        session.get(Connection, connection_id).home_currency = "USD"  # type: ignore[union-attr]
    bare = [DealRecord(remote_id=f"jp{i}", name="JPY deal", amount=Decimal("1000"),
                       currency="JPY", stage="Proposal", remote_modified_at=T0, raw={})
            for i in range(5)]
    bare.append(DealRecord(remote_id="eu1", name="EUR deal", amount=Decimal("10"),
                           currency="EUR", stage="Proposal", remote_modified_at=T0, raw={}))
    with caplog.at_level("WARNING", logger="crmsync.store"), session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=connection_id,
                             records=bare, settings=Settings(reporting_currency="USD"))
    warnings = sorted(r.getMessage() for r in caplog.records if "home amount" in r.getMessage())
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith("1 deal keeps no home amount (eu1): ")
    assert "EUR" in warnings[0]
    assert warnings[1].startswith("5 deals keep no home amount (jp0, jp1, jp2, ...): ")
    assert "JPY" in warnings[1]
    with session_scope(engine) as session:
        homes = session.scalars(select(Deal.amount_home).where(
            Deal.connection_id == connection_id)).all()
        assert len(homes) == 6 and set(homes) == {None}


class RefusingSource(ListSource):
    """Serves its pages but refuses the optional activities stream, as a CRM does when the
    credentials were granted before crmsync read activities (Zoho OAUTH_SCOPE_MISMATCH,
    HubSpot 403 MISSING_SCOPES)."""

    def __init__(self, pages: dict[str, list[Page]], error: Exception) -> None:
        super().__init__(pages)
        self.error = error

    async def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        if stream == "activities":
            raise self.error
        async for page in super().read(stream, cursor):
            yield page


@pytest.mark.parametrize("error", [AuthError("OAUTH_SCOPE_MISMATCH: invalid oauth scope"),
                                   ConfigError("403 MISSING_SCOPES")])
async def test_a_refused_optional_stream_is_a_warning_and_the_rest_syncs(engine, connection_id,
                                                                         error):
    source = RefusingSource({"deals": [Page(records=[deal(1), deal(2)], cursor={"c": 1})]},
                            error)
    run_id = new_run(engine, connection_id, "full")
    summary = await SyncEngine(engine, source, connection_id=connection_id, run_id=run_id,
                               mode="full", streams=("deals", "activities")).run()
    assert summary["deals"]["upserted"] == 2 and summary["activities"]["fetched"] == 0
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 2
        run = session.get(SyncRun, run_id)
        connection = session.get(Connection, connection_id)
        assert run is not None and run.status == "succeeded"
        assert connection is not None and connection.status == "active"
        assert connection.last_error is not None
        assert connection.last_error.startswith("warning: activities not synced")
        assert str(error) in connection.last_error


async def test_a_refused_required_stream_still_fails_the_run(engine, connection_id):
    class Refusing(ListSource):
        async def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
            raise ConfigError("403 MISSING_SCOPES")
            yield Page()

    run_id = new_run(engine, connection_id, "full")
    with pytest.raises(ConfigError):
        await SyncEngine(engine, Refusing({}), connection_id=connection_id, run_id=run_id,
                         mode="full", streams=("deals",)).run()


async def test_pages_waiting_for_the_writer_are_written_together_as_if_one_by_one(
        engine, connection_id):
    # The pages are all ready at once, so they wait in the stream's queue while the first
    # one is written: they are merged together (fewer progress reports than pages) with
    # the newest cursor; deal 1, read again (changed) in the fourth page, is not merged
    # with its first copy, so it keeps both versions and its stage change; the page with
    # a deletion is written on its own, after the records before it.
    pages = [Page(records=[deal(1), deal(2)], cursor={"n": 1}),
             Page(records=[deal(3), deal(4)], cursor=None),
             Page(records=[deal(5)], cursor={"n": 3}),
             Page(records=[deal(1, stage="Won", minutes=5), deal(6)], cursor={"n": 4}),
             Page(deletions=[Deletion("deals", "6", T0 + timedelta(minutes=30))],
                  cursor={"n": 5}),
             Page(records=[deal(7)], cursor={"n": 6})]
    reports: list[int] = []
    run_id = new_run(engine, connection_id, "incremental")
    summary = await SyncEngine(
        engine, ListSource({"deals": pages}), connection_id=connection_id, run_id=run_id,
        mode="incremental", streams=("deals",),
        progress=lambda stream, counts, done: reports.append(counts.pages)).run()
    assert summary["deals"] == {"fetched": 9, "upserted": 8, "deleted": 1}
    assert reports[-1] == 6 and len(reports) < 7  # 6 pages, fewer writes (+ the last report)
    with session_scope(engine) as session:
        rows = {r.remote_id: (r.stage, r.deleted_at) for r in session.scalars(select(Deal))}
        assert rows == {"1": ("Won", None), "2": ("Proposal", None), "3": ("Proposal", None),
                        "4": ("Proposal", None), "5": ("Proposal", None),
                        "6": ("Proposal", T0 + timedelta(minutes=30)), "7": ("Proposal", None)}
        versions = session.execute(select(DealVersion.stage).where(
            DealVersion.deal_remote_id == "1").order_by(DealVersion.valid_from)).scalars().all()
        assert versions == ["Proposal", "Won"]
        moves = session.execute(select(DealStageChange.from_stage, DealStageChange.to_stage)
                                .where(DealStageChange.deal_remote_id == "1")).all()
        assert [tuple(m) for m in moves] == [("Proposal", "Won")]
        state = session.get(SyncState, (connection_id, "deals"))
        assert state is not None and state.cursor == {"cursor": {"n": 6}, "full_started_at": None}


async def test_pages_written_together_hold_at_most_merge_records(engine, connection_id,
                                                                  monkeypatch):
    # Ten pages of two deals, ready at once: with MERGE_RECORDS 5 each write takes two of
    # them (a third would make six), never more, and every deal is stored once.
    monkeypatch.setattr("core.sync.MERGE_RECORDS", 5)
    pages = [Page(records=[deal(2 * n), deal(2 * n + 1)], cursor={"n": n}) for n in range(10)]
    written: list[int] = []

    def report(stream: str, counts: Any, done: bool) -> None:
        if not done:
            written.append(counts.fetched - sum(written))

    run_id = new_run(engine, connection_id, "full")
    summary = await SyncEngine(
        engine, ListSource({"deals": pages}), connection_id=connection_id, run_id=run_id,
        mode="full", streams=("deals",), progress=report).run()
    assert summary["deals"]["upserted"] == 20
    assert sum(written) == 20 and max(written) <= 5 and 4 in written
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 20
        state = session.get(SyncState, (connection_id, "deals"))
        assert state is not None and state.cursor["cursor"] == {"n": 9}


def account(i: int, owner: str) -> AccountRecord:
    return AccountRecord(remote_id=f"A{i}", name=f"A{i}", owner_remote_id=owner,
                         owner_email=f"{owner}@example.com", owner_name=owner,
                         remote_modified_at=T0, raw={"id": f"A{i}"})


def owned_deals(first: int, owner: str) -> list[DealRecord]:
    return [deal(i, owner_remote_id=owner, owner_email=f"{owner}@example.com")
            for i in range(first, first + 3)]


class HoldingSource(ListSource):
    """Its deals pages come only once `ready` is set (a thread's event)."""

    def __init__(self, pages: dict[str, list[Page]], ready: threading.Event) -> None:
        super().__init__(pages)
        self.ready = ready

    async def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        if stream == "deals":
            assert await asyncio.to_thread(self.ready.wait, 20)
        async for page in super().read(stream, cursor):
            yield page


async def run_with_hooks(engine, source: ListSource, hooks: dict[str, Any]) -> dict[str, Any]:
    connection_id = add_connection(engine)
    for name, hook in hooks.items():
        event.listen(engine, name, hook)
    try:
        return await SyncEngine(
            engine, source, connection_id=connection_id,
            run_id=new_run(engine, connection_id, "full"), mode="full",
            streams=("deals", "accounts")).run()
    finally:
        for name, hook in hooks.items():
            event.remove(engine, name, hook)


async def test_on_postgresql_deals_and_accounts_pages_are_written_at_the_same_time(pg_engine):
    # The first deals merge waits (in the database driver, its transaction open) until an
    # accounts page was merged on the run's other connection: with one connection for
    # everything it would wait in vain.
    accounts_merged, waited = threading.Event(), []

    def before(conn, cursor, statement, *args: Any) -> None:
        if "INSERT INTO account (" in statement:
            accounts_merged.set()
        elif "INSERT INTO deal (" in statement and not waited:
            waited.append(accounts_merged.wait(timeout=20))

    pages = {"deals": [Page(records=owned_deals(n, "u1"), cursor={"n": n}) for n in (0, 3)],
             "accounts": [Page(records=[account(i, "a1") for i in range(3)], cursor={"n": 0})]}
    summary = await run_with_hooks(pg_engine, ListSource(pages),
                                   {"before_cursor_execute": before})
    assert waited == [True]
    assert summary["deals"]["upserted"] == 6 and summary["accounts"]["upserted"] == 3


async def test_a_person_the_other_connection_adds_is_the_deals_owner_once_committed(pg_engine):
    # The accounts page adds the owner's person and holds its commit back; the deals page of
    # the same owner, written meanwhile on the other connection, must not take the person
    # as there already: it adds it too (waiting for the other commit) and links it.
    accounts_merged, deals_merged = threading.Event(), threading.Event()
    merging_accounts = threading.local()

    def before(conn, cursor, statement, *args: Any) -> None:
        if "INSERT INTO account (" in statement:
            merging_accounts.now = True
            accounts_merged.set()

    def after(conn, cursor, statement, *args: Any) -> None:
        if "INSERT INTO deal (" in statement:
            deals_merged.set()

    def commit(conn) -> None:
        if getattr(merging_accounts, "now", False):
            merging_accounts.now = False
            deals_merged.wait(timeout=2)

    pages = {"deals": [Page(records=owned_deals(0, "u1"), cursor={"n": 0})],
             "accounts": [Page(records=[account(i, "u1") for i in range(3)], cursor={"n": 0})]}
    await run_with_hooks(pg_engine, HoldingSource(pages, accounts_merged),
                         {"before_cursor_execute": before, "after_cursor_execute": after,
                          "commit": commit})
    with session_scope(pg_engine) as session:
        people = session.execute(select(Person.id, Person.email)).all()
        assert [email for _, email in people] == ["u1@example.com"]
        for model in (Deal, Account):
            owners = session.execute(select(model.owner_person_id)).scalars().all()
            assert owners == [people[0][0]] * 3


async def test_a_stream_failing_on_one_connection_leaves_each_streams_last_committed_page(
        pg_engine):
    # accounts fail at their second page while deals are written on the other connection:
    # each stream's cursor is its last committed page, and the next run resumes from there
    connection_id = add_connection(pg_engine)
    pages = {"deals": [Page(records=[deal(i)], cursor={"n": i}) for i in range(40)],
             "accounts": [Page(records=[account(i, "u1")], cursor={"n": i}) for i in range(3)]}
    with pytest.raises(RuntimeError, match="boom"):
        await SyncEngine(pg_engine, ListSource(pages, fail_on="accounts"),
                         connection_id=connection_id,
                         run_id=new_run(pg_engine, connection_id, "incremental"),
                         mode="incremental", streams=("deals", "accounts")).run()
    with session_scope(pg_engine) as session:
        stored = {s.stream: s.cursor for s in session.scalars(select(SyncState))}
        assert stored["accounts"] == {"cursor": {"n": 0}, "full_started_at": None}
        deals = session.execute(select(Deal.remote_id)).scalars().all()
        committed = stored.get("deals")
        assert len(deals) == (committed["cursor"]["n"] + 1 if committed else 0)
        assert session.execute(select(Account.remote_id)).scalars().all() == ["A0"]
    source = ListSource({"deals": pages["deals"][len(deals):],
                         "accounts": pages["accounts"][1:]})
    await SyncEngine(pg_engine, source, connection_id=connection_id,
                     run_id=new_run(pg_engine, connection_id, "incremental"),
                     mode="incremental", streams=("deals", "accounts")).run()
    assert source.cursors["accounts"] == {"n": 0}
    with session_scope(pg_engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 40
        assert session.scalar(select(func.count()).select_from(Account)) == 3


def test_a_sync_that_doubled_deal_analyzes_what_the_drill_down_reads(empty_pg_url):
    """PostgreSQL: a sync's ANALYZE of deal covers the drill-down's close_date and status
    too (without them a page of a quarter's 63,883 won deals sorted all of them). On a
    database of its own: nothing else writes there, and no earlier statistics."""
    engine = make_engine(empty_pg_url)
    try:
        upgrade(engine)
        cid = add_connection(engine)
        with session_scope(engine) as session:
            store.upsert_records(session, stream="deals", connection_id=cid, records=[
                dataclasses.replace(deal(i), close_date=date(2031, 7, 17), status="won")
                for i in range(50)])
            store.refresh_statistics(session, stream="deals", written=50)
        with session_scope(engine) as session:
            stats = dict(session.execute(text(
                "SELECT attname, most_common_vals::text FROM pg_stats "
                "WHERE tablename = 'deal' AND attname IN ('close_date', 'status')")).all())
    finally:
        engine.dispose()
    assert stats == {"close_date": "{2031-07-17}", "status": "{won}"}
