"""Monthly rollups (core.metrics.rollups): the metrics read clean months from them and give
exactly what the deals give, after every kind of write, on SQLite and PostgreSQL."""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlmodel import Session

from core import store
from core.config import Settings
from core.db import session_scope
from core.metrics import aggregates as agg
from core.metrics import rollups
from core.metrics.definitions import summary, timeseries
from core.metrics.zone import ensure_zone
from core.models import Account, Connection, Deal, DealMonth, RollupDirty
from core.records import AccountRecord, DealRecord, Deletion

SETTINGS = Settings(timezone="Europe/Berlin", reporting_currency="EUR")
Q1 = (date(2025, 1, 1), date(2025, 3, 31))


def _deal(rid: str, close: date, status: str, amount: str, owner: str = "ann@x.com",
          probability: str | None = None) -> DealRecord:
    return DealRecord(rid, f"deal {rid}", amount=Decimal(amount), amount_home=Decimal(amount),
                      currency="EUR", status=status, close_date=close,
                      probability=Decimal(probability) if probability else None,
                      remote_created_at=datetime(2024, 12, 31, 23, 30, tzinfo=UTC),
                      remote_modified_at=datetime(2025, 1, 1, tzinfo=UTC),
                      owner_email=owner, owner_name=owner.split("@")[0].title())


DEALS = [
    _deal("d1", date(2025, 1, 10), "won", "1000.10"),
    _deal("d2", date(2025, 1, 31), "lost", "500"),
    _deal("d3", date(2025, 2, 1), "won", "250.25", owner="BOB@x.com"),
    _deal("d4", date(2025, 2, 14), "open", "999.99", probability="33.33"),
    _deal("d5", date(2025, 3, 31), "open", "100", owner="bob@x.com", probability="50"),
    _deal("d6", date(2025, 3, 15), "won", "0.01"),
]


def _load(engine) -> int:
    with session_scope(engine) as session:
        connection = Connection(provider="zoho", name="crm", home_currency="EUR")
        session.add(connection)
        session.flush()
        cid = int(connection.id or 0)
        ensure_zone(session, SETTINGS.timezone)
        store.upsert_records(session, stream="deals", connection_id=cid, records=DEALS)
        store.upsert_records(session, stream="accounts", connection_id=cid, records=[
            AccountRecord("a1", "Acme", owner_email="ann@x.com",
                          remote_created_at=datetime(2025, 1, 31, 23, 30, tzinfo=UTC))])
    return cid


def _numbers(engine, start: date = Q1[0], end: date = Q1[1]) -> list[object]:
    with session_scope(engine) as session:
        out: list[object] = [summary(session, start=start, end=end, group_by=g,
                                     settings=SETTINGS) for g in ("owner", "none")]
        for interval in ("month", "quarter", "week"):
            out.append(timeseries(session, metric="bookings", interval=interval, start=start,
                                  end=end, group_by="owner", settings=SETTINGS))
            out.append(timeseries(session, metric="weighted_pipeline", interval=interval,
                                  start=start, end=end, settings=SETTINGS))
    return out


def _clean(engine) -> list[int]:
    with session_scope(engine) as session:
        return sorted(rollups.clean_months(session, range(JAN, MAR + 1)))


JAN, FEB, MAR = (rollups.month_of(date(2025, m, 1)) for m in (1, 2, 3))


def test_rollups_serve_clean_months_with_the_same_numbers(engine):
    _load(engine)
    from_deals = _numbers(engine)
    assert _clean(engine) == []  # never built: everything is read from the deals
    assert rollups.refresh(engine) == 3  # the whole span, the first time
    assert _clean(engine) == [JAN, FEB, MAR]
    assert _numbers(engine) == from_deals
    assert _numbers(engine, date(2025, 1, 15), date(2025, 3, 2)) == _numbers_raw(
        engine, date(2025, 1, 15), date(2025, 3, 2))
    assert rollups.refresh(engine) == 3  # the months _numbers_raw marked
    assert rollups.refresh(engine) == 0  # nothing dirty


def _numbers_raw(engine, start: date, end: date) -> list[object]:
    """The same numbers with every rollup marked dirty (read from the deals)."""
    with session_scope(engine) as session:
        session.add_all(RollupDirty(month=m) for m in (JAN, FEB, MAR))
    return _numbers(engine, start, end)


def test_every_write_marks_its_months_until_the_next_refresh(engine):
    cid = _load(engine)
    rollups.refresh(engine)
    # an edit that moves a deal from January to March and changes its amount
    moved = _deal("d1", date(2025, 3, 20), "won", "1200")
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=[moved])
    assert _clean(engine) == [FEB]
    after_edit = _numbers(engine)
    assert after_edit[1]["total"]["bookings"] == Decimal("1450.26")  # type: ignore[index]
    rollups.refresh(engine)
    assert _clean(engine) == [JAN, FEB, MAR]
    assert _numbers(engine) == after_edit

    with session_scope(engine) as session:  # a vendor deletion
        store.apply_deletions(session, connection_id=cid, deletions=[
            Deletion("deals", "d3", datetime(2025, 6, 1, tzinfo=UTC))])
    assert _clean(engine) == [JAN, MAR]
    after_delete = _numbers(engine)
    assert after_delete[1]["total"]["bookings"] == Decimal("1200.01")  # type: ignore[index]
    rollups.refresh(engine)
    assert _numbers(engine) == after_delete

    with session_scope(engine) as session:  # a full sync that no longer sees anything
        store.tombstone_unseen(session, stream="deals", connection_id=cid,
                               since=datetime(2100, 1, 1, tzinfo=UTC), now=datetime.now(UTC))
    assert _clean(engine) == []
    rollups.refresh(engine)
    total = _numbers(engine)[1]["total"]  # type: ignore[index]
    assert (total["bookings"], total["deals_lost"], total["new_accounts"]) == (0, 0, 1)


def test_a_new_time_zone_drops_every_rollup_until_rebuilt(engine):
    _load(engine)
    rollups.refresh(engine)
    berlin = _numbers(engine)
    utc = Settings(timezone="UTC", reporting_currency="EUR")
    kept = _clean(engine)
    with session_scope(engine) as session:  # a read in the new zone changes nothing...
        pending = summary(session, start=Q1[0], end=Q1[1], group_by="none", settings=utc)
    assert _clean(engine) == kept != []
    with session_scope(engine) as session:  # ...the background job applies it
        assert ensure_zone(session, "UTC") is True
    assert _clean(engine) == []
    assert rollups.refresh(engine) == 3
    with session_scope(engine) as session:  # the numbers read before the job were right
        assert summary(session, start=Q1[0], end=Q1[1], group_by="none",
                       settings=utc) == pending
    with session_scope(engine) as session:  # back to Berlin: equal to before
        ensure_zone(session, SETTINGS.timezone)
    rollups.refresh(engine)
    assert _numbers(engine) == berlin


def test_deleting_a_connection_deletes_its_rollups(engine):
    cid = _load(engine)
    rollups.refresh(engine)
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(DealMonth)) > 0
        session.delete(session.get(Connection, cid))
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(DealMonth)) == 0


def test_series_by_owner_list_the_summary_owners_whatever_the_metric(engine):
    cid = _load(engine)
    with session_scope(engine) as session:  # an owner with only an open deal in April
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("d9", date(2025, 4, 2), "open", "10", owner="cy@x.com", probability="10")])
    for built in (False, True):
        if built:
            rollups.refresh(engine)
        with session_scope(engine) as session:
            start, end = date(2025, 1, 1), date(2025, 4, 30)
            owners = {row["owner_email"] for row in summary(
                session, start=start, end=end, group_by="owner", settings=SETTINGS)["data"]}
            assert owners == {"ann@x.com", "bob@x.com", "cy@x.com"}
            for metric in ("bookings", "new_accounts", "open_pipeline"):
                series = timeseries(session, metric=metric, interval="month", start=start,
                                    end=end, group_by="owner", settings=SETTINGS)["data"]
                assert {row["owner_email"] for row in series} == owners, metric
                assert len(series) == 4 * len(owners)


async def test_the_scheduled_refresh_rebuilds_what_a_time_zone_change_dropped(engine):
    from cryptography.fernet import Fernet

    from core.security import SecretBox
    from workers.context import JobContext
    from workers.jobs import refresh_rollups

    _load(engine)
    ctx = JobContext(settings=SETTINGS, engine=engine, secrets=SecretBox(Fernet.generate_key()))
    assert await refresh_rollups(ctx) == 3
    with session_scope(engine) as session:
        ensure_zone(session, "Asia/Tokyo")
    assert _clean(engine) == []
    assert await refresh_rollups(ctx) == 3
    assert _clean(engine) == [JAN, FEB, MAR]
    assert await refresh_rollups(ctx) == 0


def test_a_write_committed_during_a_refresh_keeps_its_month_dirty(pg_engine):
    """PostgreSQL, where writers never wait for a refresh: the refresh's snapshot does not
    see a write still in flight, so it must not clear that write's mark either."""
    cid = _load(pg_engine)
    rollups.refresh(pg_engine)
    with session_scope(pg_engine) as session:  # March is dirty: a committed write
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("d5", date(2025, 3, 31), "won", "100", owner="bob@x.com")])
    with Session(pg_engine) as writer:  # another page, in flight
        store.upsert_records(writer, stream="deals", connection_id=cid, records=[
            _deal("d6", date(2025, 3, 15), "won", "5000")])
        writer.flush()
        assert rollups.refresh(pg_engine) == 1  # March, without waiting for the writer
        writer.commit()
    assert _clean(pg_engine) == [JAN, FEB]
    bookings = _numbers(pg_engine)[1]["total"]["bookings"]  # type: ignore[index]
    assert bookings == Decimal("6350.35")  # d1 1000.10 + d3 250.25 + d5 100 + d6 5000
    assert rollups.refresh(pg_engine) == 1
    assert _clean(pg_engine) == [JAN, FEB, MAR]
    assert _numbers(pg_engine)[1]["total"]["bookings"] == bookings  # type: ignore[index]


# -- weekly rollups (Monday to Sunday) -------------------------------------------------


PERIOD_OF = {"month": rollups.month_of, "week": rollups.week_of, "day": lambda day: day}


def _week_rows(engine) -> dict[str, set[tuple[object, ...]]]:
    return _rollup_rows(engine, "week")


def _weeks_recomputed(engine) -> dict[str, set[tuple[object, ...]]]:
    return _recomputed(engine, "week")


def _rollup_rows(engine, period: str) -> dict[str, set[tuple[object, ...]]]:
    """The stored rollups of `period` (month, week or day), as comparable rows."""
    deal, account = rollups.ROLLUP_OF["deal"][period], rollups.ROLLUP_OF["account"][period]
    with session_scope(engine) as session:
        deals = {tuple(row) for row in session.execute(select(
            deal.c[period], deal.c.connection_id, deal.c.owner_person_id, deal.c.status,
            deal.c.probability, deal.c.owner_name, deal.c.deals, deal.c.amount,
            deal.c.cycle_days, deal.c.cycle_deals))}
        accounts = {tuple(row) for row in session.execute(select(
            account.c[period], account.c.connection_id, account.c.owner_person_id,
            account.c.owner_name, account.c.accounts))}
    return {"deals": deals, "accounts": accounts}


def _recomputed(engine, period: str) -> dict[str, set[tuple[object, ...]]]:
    """The same rows computed here, in Python, from the live deals and accounts."""
    key_of = PERIOD_OF[period]
    deals: dict[tuple[object, ...], list[Any]] = {}
    accounts: dict[tuple[object, ...], list[Any]] = {}
    with session_scope(engine) as session:
        for d in session.scalars(select(Deal).where(Deal.deleted_at.is_(None))):
            key = (key_of(d.close_date), d.connection_id, d.owner_person_id, d.status,
                   d.probability if d.status == "open" else None)
            row = deals.setdefault(key, [None, 0, None, 0, 0])
            row[0] = max(filter(None, (row[0], d.owner_name)), default=None)
            row[1] += 1
            if d.amount_home is not None:
                row[2] = (row[2] or 0) + d.amount_home
            if d.created_date is not None:
                row[3] += (d.close_date - d.created_date).days
                row[4] += 1
        for a in session.scalars(select(Account).where(Account.deleted_at.is_(None))):
            key = (key_of(a.created_date), a.connection_id, a.owner_person_id)
            row = accounts.setdefault(key, [None, 0])
            row[0] = max(filter(None, (row[0], a.owner_name)), default=None)
            row[1] += 1
    return {"deals": {(*k, *v) for k, v in deals.items()},
            "accounts": {(*k, *v) for k, v in accounts.items()}}


def test_weekly_rollups_equal_a_recompute_after_every_kind_of_change(engine):
    cid = _load(engine)
    with session_scope(engine) as session:  # Sunday 23:30 UTC: Monday in Berlin
        store.upsert_records(session, stream="accounts", connection_id=cid, records=[
            AccountRecord("a2", "Beta", owner_email="bob@x.com",
                          remote_created_at=datetime(2025, 2, 2, 23, 30, tzinfo=UTC))])
    rollups.refresh(engine)
    assert _week_rows(engine) == _weeks_recomputed(engine)
    assert rollups.week_of(date(2025, 1, 31)) in {row[0] for row in _week_rows(engine)["deals"]}

    # Jan 27 - Feb 2 lies in two months: an edit in February alone rebuilds it whole
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("d3", date(2025, 2, 2), "won", "300", owner="BOB@x.com")])
    assert _clean(engine) == [JAN, MAR]
    assert rollups.refresh(engine) == 1
    assert _week_rows(engine) == _weeks_recomputed(engine)

    with session_scope(engine) as session:  # a move across months, then a deletion
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("d1", date(2025, 2, 1), "won", "1000.10")])
        store.apply_deletions(session, connection_id=cid, deletions=[
            Deletion("deals", "d2", datetime(2025, 6, 1, tzinfo=UTC))])
    rollups.refresh(engine)
    assert _week_rows(engine) == _weeks_recomputed(engine)

    with session_scope(engine) as session:  # a time zone change moves a2 to Sunday
        ensure_zone(session, "UTC")
    assert rollups.refresh(engine) == 3
    rows = _week_rows(engine)
    assert rows == _weeks_recomputed(engine)
    assert rollups.week_of(date(2025, 2, 2)) in {row[0] for row in rows["accounts"]}


def test_partial_months_and_weekly_series_read_whole_weeks_with_the_same_numbers(engine):
    _load(engine)
    start, end = date(2025, 1, 6), date(2025, 2, 16)  # Monday to Sunday, six weeks
    rollups.refresh(engine)
    with session_scope(engine) as session:
        read = agg.scope(session, start, end, None)
        assert (read.months, read.days, read.ranges) == ([], [], [])
        assert read.weeks == list(range(rollups.week_of(start), rollups.week_of(end) + 1))
        # a month series reads no weeks (a week row does not say its month)
        monthly = agg.scope(session, start, end, None, weekly=False)
        assert (monthly.weeks, monthly.days) == ([], [(start, end)])
    for first, last in ((start, end), (date(2025, 1, 1), date(2025, 3, 20))):
        from_rollups = _numbers(engine, first, last)
        assert from_rollups == _numbers_raw(engine, first, last)
        rollups.refresh(engine)


def test_whole_weeks_cuts_a_range_at_mondays():
    monday, sunday = date(2025, 1, 6), date(2025, 1, 12)
    assert rollups.whole_weeks(monday, sunday) == ([rollups.week_of(monday)], [])
    assert rollups.whole_weeks(date(2025, 1, 7), date(2025, 1, 20)) == (
        [rollups.week_of(date(2025, 1, 13))],
        [(date(2025, 1, 7), sunday), (date(2025, 1, 20), date(2025, 1, 20))])
    assert rollups.whole_weeks(date(2025, 1, 7), date(2025, 1, 11)) == (
        [], [(date(2025, 1, 7), date(2025, 1, 11))])
    assert rollups.week_first(rollups.week_of(date(2025, 1, 1))) == date(2024, 12, 30)
    assert rollups.week_last(rollups.week_of(date.max)) == date.max
    assert rollups.whole_weeks(date(9999, 12, 27), date.max) == (
        [rollups.week_of(date.max)], [])


def test_a_scope_of_rollups_alone_reads_without_parallel_workers(pg_engine):
    """On PostgreSQL, a scope read from the rollups alone turns parallel workers off for
    the rest of its transaction (aggregates.serial); one reading deals keeps them."""
    _load(pg_engine)

    def workers(start: date, end: date) -> str:
        with Session(pg_engine) as session:
            agg.scope(session, start, end, None)
            return str(session.execute(text("SHOW max_parallel_workers_per_gather")).scalar())

    default = workers(*Q1)  # never built: the deals themselves
    assert default != "0"
    rollups.refresh(pg_engine)
    assert workers(*Q1) == "0"
    assert workers(date(2025, 1, 15), date(2025, 3, 2)) == "0"  # weeks and days: rollups
    with session_scope(pg_engine) as session:
        session.add(RollupDirty(month=FEB))
    assert workers(*Q1) == default
    with Session(pg_engine) as session:  # the setting ended with its transaction
        assert session.execute(text("SHOW max_parallel_workers_per_gather")).scalar() == default


def _month_rows(engine) -> dict[int, set[tuple[object, ...]]]:
    """deal_month's rows (with their ids: a rebuilt row gets a new one) per connection."""
    with Session(engine) as session:
        found = session.exec(select(DealMonth.connection_id, DealMonth.id,  # type: ignore[call-overload]
                                    DealMonth.month, DealMonth.deals, DealMonth.amount)).all()
    out: dict[int, set[tuple[object, ...]]] = {}
    for cid, *row in found:
        out.setdefault(cid, set()).add(tuple(row))
    return out


def _second(engine, deals: list[DealRecord]) -> int:
    """A second connection, of these deals."""
    with session_scope(engine) as session:
        other = Connection(provider="hubspot", name="other", home_currency="EUR")
        session.add(other)
        session.flush()
        second = int(other.id or 0)
        store.upsert_records(session, stream="deals", connection_id=second, records=deals)
    return second


def test_a_refresh_after_one_connections_sync_rebuilds_only_its_months(engine):
    first = _load(engine)
    second = _second(engine, DEALS)
    assert rollups.refresh(engine) == 3
    before = _month_rows(engine)

    with session_scope(engine) as session:  # the first's sync: a move into April, a deletion
        store.upsert_records(session, stream="deals", connection_id=first, records=[
            _deal("d1", date(2025, 4, 2), "won", "1200")])
        store.apply_deletions(session, connection_id=first, deletions=[
            Deletion("deals", "d5", datetime(2025, 6, 1, tzinfo=UTC))])
    with session_scope(engine) as session:  # the second's webhook, not refreshed yet
        store.upsert_records(session, stream="deals", connection_id=second, records=[
            _deal("d3", date(2025, 2, 3), "won", "300")])
    # January and March: its own marks; April, never built, by the store-wide part
    assert rollups.refresh(engine, first) == 3
    after = _month_rows(engine)
    assert after[second] == before[second]  # the other connection's rows untouched
    gone = {tuple(row[1:]) for row in before[first] - after[first]}
    if engine.dialect.name == "postgresql":  # only the rows that changed were written:
        # d1's January row and d5's March row went, April (built by the store-wide part)
        # has d1; the rest kept their ids
        assert gone == {(JAN, 1, Decimal("1000.10")), (MAR, 1, Decimal("100"))}
        assert {tuple(row[1:]) for row in after[first] - before[first]} == {
            (rollups.month_of(date(2025, 4, 1)), 1, Decimal("1200"))}
    else:  # the rows of its dirty months rewritten
        assert {row[0] for row in gone} == {JAN, MAR}
    assert _clean(engine) == [JAN, MAR]  # February waits for the second's refresh
    with session_scope(engine) as session:
        assert rollups.clean_months(session, range(rollups.month_of(date(2025, 4, 1)),
                                                   rollups.month_of(date(2025, 5, 1))))

    assert rollups.refresh(engine) == 1  # the schedule's: the second's February
    assert _clean(engine) == [JAN, FEB, MAR]
    per_connection = _numbers(engine, Q1[0], date(2025, 4, 30))
    assert per_connection[1]["total"]["deals_won"] == 6  # type: ignore[index]
    with session_scope(engine) as session:
        rollups.invalidate(session)
    rollups.refresh(engine)  # the whole store rebuilt from the deals
    assert _numbers(engine, Q1[0], date(2025, 4, 30)) == per_connection
    assert _week_rows(engine) == _weeks_recomputed(engine)


def test_months_weeks_and_days_equal_a_recompute_after_each_connections_refresh(engine):
    """Months and weeks are summed from the day rollups (core.metrics.rollups._from_days):
    after moves across months and across a week lying in two months, deletions, amounts in
    another currency, missing amounts and creation dates, and refreshes of one connection at
    a time, every period equals what the deals give, and a rebuild of the whole store."""
    first = _load(engine)
    second = _second(engine, [
        DealRecord("u1", "usd", amount=Decimal("100"), amount_home=Decimal("91.7431"),
                   currency="USD", status="won", close_date=date(2025, 1, 31),
                   owner_email="ann@x.com", owner_name="Ann"),
        DealRecord("u2", "no rate", amount=Decimal("7"), amount_home=None, currency="JPY",
                   status="open", probability=Decimal("10"), close_date=date(2025, 2, 2),
                   remote_created_at=datetime(2025, 1, 20, tzinfo=UTC),
                   owner_email="cy@x.com", owner_name="Cy")])
    rollups.refresh(engine)

    _assert_exact(engine)
    week = rollups.week_of(date(2025, 1, 31))  # Jan 27 - Feb 2, in two months
    assert week == rollups.week_of(date(2025, 2, 2))
    changes = [  # (connection, records, deletions)
        (first, [_deal("d2", date(2025, 2, 2), "lost", "500")], []),  # across months, one week
        (second, [DealRecord("u1", "usd", amount=Decimal("100"), amount_home=Decimal("93.5"),
                             currency="USD", status="won", close_date=date(2025, 3, 3),
                             owner_email="ann@x.com", owner_name="Ann")], []),
        (first, [_deal("d4", date(2025, 1, 30), "open", "999.99", probability="50")],
         [Deletion("deals", "d6", datetime(2025, 6, 1, tzinfo=UTC))]),
        (second, [], [Deletion("deals", "u2", datetime(2025, 6, 1, tzinfo=UTC))]),
    ]
    for cid, records, deletions in changes:
        with session_scope(engine) as session:
            store.upsert_records(session, stream="deals", connection_id=cid, records=records)
            store.apply_deletions(session, connection_id=cid, deletions=deletions)
        assert rollups.refresh(engine, cid) >= 1
        _assert_exact(engine)
    assert _clean(engine) == [JAN, FEB, MAR]
    weekly = {row[:2] for row in _rollup_rows(engine, "week")["deals"]}
    assert (week, first) in weekly
    assert (week, second) not in weekly  # u1 moved out, u2 deleted
    _assert_a_rebuild_changes_nothing(engine)


def _assert_exact(engine) -> None:
    """Every period's rollups equal a recompute from the live deals and accounts."""
    for period in ("month", "week", "day"):
        assert _rollup_rows(engine, period) == _recomputed(engine, period), period


def _assert_a_rebuild_changes_nothing(engine) -> None:
    """The rollups equal a rebuild of the whole store from the deals."""
    rows = {period: _rollup_rows(engine, period) for period in ("month", "week", "day")}
    with session_scope(engine) as session:
        rollups.invalidate(session)
    rollups.refresh(engine)
    assert {period: _rollup_rows(engine, period) for period in rows} == rows


def test_the_first_build_leaves_statistics_for_the_planner(engine):
    """Both databases: after the first build the rollup tables have statistics (SQLite
    keeps none unless asked; without them it read a few days of deal_day through the
    (connection, day) index by connection alone, every day of the connection: a summary of
    two partial months at a million deals took 223 ms instead of 28)."""
    _load(engine)
    rollups.refresh(engine)
    with session_scope(engine) as session:
        if engine.dialect.name == "sqlite":
            analyzed = set(session.scalars(text("SELECT DISTINCT tbl FROM sqlite_stat1")))
        else:
            analyzed = set(session.scalars(text(
                "SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL "
                "OR last_autoanalyze IS NOT NULL")))
    assert {"deal_day", "deal_week", "deal_month", "account_day"} <= analyzed


def _rows_with_ids(engine) -> dict[str, dict[tuple[object, ...], int]]:
    """Every rollup row of every period, its values (the period, the connection, ...) -> its
    id (a rewritten row gets a new one)."""
    out: dict[str, dict[tuple[object, ...], int]] = {}
    with Session(engine) as session:
        for kind in ("deal", "account"):
            for period, table in rollups.ROLLUP_OF[kind].items():
                columns = [table.c[period], *(c for c in table.c
                                              if c.name not in ("id", period))]
                out[f"{kind}_{period}"] = {tuple(row[1:]): row[0] for row in session.execute(
                    select(table.c.id, *columns))}
    return out


def _marked_days(engine, cid: int) -> set[date | None]:
    with Session(engine) as session:
        return set(session.scalars(select(RollupDirty.day).where(
            RollupDirty.connection_id == cid)))


def test_a_connections_refresh_rebuilds_its_dirty_days_and_writes_only_changed_rows(engine):
    """Writes mark days; a connection's refresh rebuilds those days, re-sums the weeks and
    months holding them and (PostgreSQL) leaves every row whose values did not change as
    it was. After
    moves to a day of another month and across years (a week lying in two years), a
    deletion, an owner change and new deals on more days of a month than DAY_MARKS (the
    month marked whole), every period equals a recompute from the deals, and a rebuild
    of the whole store."""
    first = _load(engine)
    second = _second(engine, DEALS)
    with session_scope(engine) as session:  # Monday Dec 30 2024 - Sunday Jan 5 2025
        store.upsert_records(session, stream="deals", connection_id=first, records=[
            _deal("y1", date(2024, 12, 30), "won", "70"),
            _deal("y2", date(2024, 12, 2), "lost", "80", owner="bob@x.com")])
    rollups.refresh(engine)

    _assert_exact(engine)
    many = [_deal(f"m{i}", date(2025, 2, 3 + 2 * i), "open", "5", probability="20")
            for i in range(rollups.DAY_MARKS + 1)]
    changes = [  # (records, deletions, the days marked)
        ([_deal("d1", date(2025, 3, 5), "won", "1000.10")], [],
         {date(2025, 1, 10), date(2025, 3, 5)}),  # another day, another month
        ([], [Deletion("deals", "d3", datetime(2025, 6, 1, tzinfo=UTC))], {date(2025, 2, 1)}),
        ([_deal("d4", date(2025, 2, 14), "open", "999.99", owner="bob@x.com",
                probability="33.33")], [], {date(2025, 2, 14)}),  # another owner
        ([_deal("y1", date(2025, 1, 2), "won", "70"),  # across years, the same week
          _deal("y2", date(2025, 1, 31), "lost", "80", owner="bob@x.com")], [],
         {date(2024, 12, 30), date(2025, 1, 2), date(2024, 12, 2), date(2025, 1, 31)}),
        (many, [], {None}),  # more days of a month than DAY_MARKS: the month
    ]
    for records, deletions, days in changes:
        before = _rows_with_ids(engine)
        with session_scope(engine) as session:
            store.upsert_records(session, stream="deals", connection_id=first, records=records)
            store.apply_deletions(session, connection_id=first, deletions=deletions)
        assert _marked_days(engine, first) == days
        months = {rollups.month_of(d) if d else FEB for d in days}
        assert rollups.refresh(engine, first) == len(months)
        assert _marked_days(engine, first) == set()
        _assert_exact(engine)
        after = _rows_with_ids(engine)
        for name, rows in after.items():  # PostgreSQL: a row of the same values stays
            assert engine.dialect.name == "sqlite" or all(
                before[name].get(values, i) == i for values, i in rows.items()), name
            assert set(before[name]) - set(rows) <= {  # only the first's dirty periods
                values for values in before[name] if values[1] == first}
        assert after != before
        assert {values for values in after["deal_day"]  # other days as they were
                if values[0] not in days and (None not in days or values[0].month != 2)
                } <= set(before["deal_day"])
    assert _clean(engine) == [JAN, FEB, MAR]
    assert {row[1] for row in _rollup_rows(engine, "day")["deals"]} == {first, second}
    _assert_a_rebuild_changes_nothing(engine)


def test_marks_without_a_day_rebuild_the_connections_whole_month(engine):
    """A mark written before rollup_dirty had days (migration 0021) stands for its whole
    month: the connection's refresh rebuilds every day of it."""
    cid = _load(engine)
    rollups.refresh(engine)
    with session_scope(engine) as session:  # a row changed around core.store, then marked
        session.execute(text("UPDATE deal SET amount_home = amount_home * 2 "
                             "WHERE remote_id = 'd2'"))
        session.add(RollupDirty(month=JAN, connection_id=cid))
    assert rollups.refresh(engine, cid) == 1
    assert _rollup_rows(engine, "day") == _recomputed(engine, "day")
    assert _rollup_rows(engine, "month") == _recomputed(engine, "month")
    assert _numbers(engine)[1]["total"]["deals_lost"] == 1  # type: ignore[index]


def test_a_refresh_of_days_decades_apart_rebuilds_them_in_parts(engine):
    """A connection's refresh rebuilds 120 months at a time (a month re-summed names each
    of its days, and SQLite's bound parameters are limited): days decades apart, and a week
    lying in two parts, equal a recompute."""
    cid = _load(engine)
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("o1", date(1999, 12, 31), "won", "1"), _deal("o2", date(2000, 1, 1), "won", "2"),
            _deal("o3", date(2010, 1, 1), "lost", "3")])
    rollups.refresh(engine)
    with session_scope(engine) as session:  # Nov 30 - Dec 6 2009 lies in two parts
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            _deal("o1", date(1999, 12, 30), "won", "10"),
            _deal("o2", date(2000, 1, 2), "won", "2"),
            _deal("o3", date(2009, 11, 30), "lost", "3"),
            _deal("o4", date(2009, 12, 1), "won", "4"),
            _deal("d1", date(2025, 1, 11), "won", "5")])
    assert rollups.refresh(engine, cid) == 6
    _assert_exact(engine)
