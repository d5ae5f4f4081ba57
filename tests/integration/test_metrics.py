"""Metrics on a small hand-built dataset: every expected value is written by hand.

Runs on SQLite and PostgreSQL (the `engine` fixture). CRMSYNC_TIMEZONE is New York,
reporting currency USD; connection 1 keeps USD, connection 2 EUR at 1.1 USD per EUR.
"""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from sqlmodel import SQLModel

from core import store
from core.config import Settings
from core.db import compared_with_models, session_scope
from core.metrics.currency import CurrencyError, set_rate
from core.metrics.definitions import drill_down, summary
from core.models import Connection, FxRate
from core.queries import ROW_COLUMNS, fetch_page
from core.records import AccountRecord, DealRecord, Deletion, StageRecord, UserRecord
from tests.shared_store import read_only

NY = Settings(timezone="America/New_York", reporting_currency="USD")
UTC_SETTINGS = Settings(timezone="UTC", reporting_currency="USD")
Q1 = {"start": date(2025, 1, 1), "end": date(2025, 3, 31)}


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def deal(rid: str, owner: str, status: str, amount: str, close: date, *,
         created: str | None = None, probability: str | None = None,
         stage: str | None = None) -> DealRecord:
    return DealRecord(rid, rid, amount=D(amount), amount_home=D(amount), status=status,
                      stage=stage or status, close_date=close, owner_email=owner,
                      owner_name=owner.split("@")[0].title(),
                      probability=D(probability) if probability else None,
                      remote_created_at=ts(created) if created else None)


def account(rid: str, owner: str, created: str) -> AccountRecord:
    return AccountRecord(rid, rid, owner_email=owner, remote_created_at=ts(created))


def seed(engine):
    with session_scope(engine) as session:
        us = Connection(provider="zoho", name="us", home_currency="USD")
        eu = Connection(provider="zoho", name="eu", home_currency="EUR")
        session.add_all([us, eu])
        session.flush()
        c1, c2 = int(us.id or 0), int(eu.id or 0)
        set_rate(session, "EUR", D("1.1"))
        up = store.upsert_records
        up(session, stream="users", connection_id=c1, records=[
            UserRecord("u1", "Ann", "ann@x.com"), UserRecord("u2", "Bob", "bob@x.com"),
            UserRecord("u3", "Cat", "cat@x.com", active=False),
            UserRecord("u4", "Eve", "eve@x.com"), UserRecord("u5", "Fay", "fay@x.com",
                                                             active=False),
            UserRecord("u6", "Gus", "gus@x.com")])
        up(session, stream="users", connection_id=c2, records=[
            UserRecord("z1", "Ann Lee", "ANN@X.COM")])
        up(session, stream="stages", connection_id=c1, records=[
            StageRecord("s1", "Prospecting", "open", probability=D("10")),
            StageRecord("s2", "Signed", "won", probability=D("100")),
            StageRecord("s3", "Parked", "lost", probability=D("0"))])
        up(session, stream="deals", connection_id=c1, records=[
            # created 23:50 on Jan 10 in New York = Jan 11 04:50 UTC: cycle 10 days, not 9
            deal("D1", "ann@x.com", "won", "1000.00", date(2025, 1, 20),
                 created="2025-01-11T04:50:00"),
            deal("D2", "ann@x.com", "lost", "500", date(2025, 2, 1), stage="Parked"),
            deal("D3", "bob@x.com", "won", "333.33", date(2025, 2, 15),
                 created="2025-02-01T12:00:00"),
            deal("D4", "bob@x.com", "open", "1000", date(2025, 3, 10), probability="25"),
            deal("D5", "ann@x.com", "won", "9999", date(2025, 2, 2)),  # deleted below
            deal("D6", "ann@x.com", "won", "700", date(2025, 4, 2)),  # after the period
            deal("D7", "cat@x.com", "lost", "100", date(2025, 1, 5), stage="Parked"),
        ])
        up(session, stream="deals", connection_id=c2, records=[
            # Jan 31 19:00 in New York: 29 days to Mar 1; 200 EUR = 220 USD
            deal("E1", "ANN@X.COM", "won", "200.00", date(2025, 3, 1),
                 created="2025-02-01T00:00:00"),
            # 100.01 EUR = 110.011 USD, weighted 33% = 36.30363 USD
            deal("E2", "bob@x.com", "open", "100.01", date(2025, 3, 31), probability="33"),
        ])
        up(session, stream="accounts", connection_id=c1, records=[
            account("A1", "ann@x.com", "2025-01-01T03:00:00"),  # Dec 31 in New York
            account("A2", "bob@x.com", "2025-02-10T12:00:00"),
            account("A4", "ann@x.com", "2025-04-01T02:00:00"),  # Mar 31 in New York
            account("A5", "bob@x.com", "2025-02-11T12:00:00"),  # deleted below
        ])
        up(session, stream="accounts", connection_id=c2, records=[
            account("A3", "eve@x.com", "2025-03-31T23:30:00")])
        gone = ts("2025-06-01T00:00:00")
        store.apply_deletions(session, connection_id=c1, deletions=[
            Deletion("deals", "D5", gone), Deletion("accounts", "A5", gone)])
    return engine, c1, c2


@pytest.fixture
def data(engine):
    """The dataset in a store of the test's own."""
    return seed(engine)


@pytest.fixture(scope="module")
def seeded_module(module_engine):
    return seed(module_engine)


@pytest.fixture
def shared_data(seeded_module):
    """The module's dataset, shared by the tests that only read; the test fails if it
    changed the store."""
    with read_only(seeded_module[0]):
        yield seeded_module


def run(engine, settings=NY, **params):
    with session_scope(engine) as session:
        return summary(session, settings=settings, **{**Q1, "group_by": "owner", **params})


def metrics(bookings, won, lost, win_rate, avg, cycle, open_, weighted, forecast, new):
    def dec(value):
        return None if value is None else D(value)
    return {"bookings": D(bookings), "deals_won": won, "deals_lost": lost,
            "win_rate": dec(win_rate), "avg_deal_size": dec(avg), "sales_cycle_days": dec(cycle),
            "open_pipeline": D(open_), "weighted_pipeline": D(weighted),
            "forecast": D(forecast), "new_accounts": new, "goal": None, "attainment": None}


ZERO = metrics("0.00", 0, 0, None, None, None, "0.00", "0.00", "0.00", 0)
TOTAL = metrics("1553.33", 3, 2, "0.6000", "517.78", "17.67", "1110.01", "286.30", "1839.63", 3)


def person_of(engine, connection_id: int, remote_id: str) -> int:
    """The person a CRM user belongs to (core.people)."""
    from sqlalchemy import text

    with engine.connect() as connection:
        return int(connection.execute(text(
            "SELECT person_id FROM crm_user WHERE connection_id = :c AND remote_id = :r"),
            {"c": connection_id, "r": remote_id}).scalar_one())


def test_by_owner(shared_data):
    engine, c1, c2 = shared_data
    result = run(engine)
    assert (result["start"], result["end"], result["currency"], result["group_by"]) == (
        date(2025, 1, 1), date(2025, 3, 31), "USD", "owner")
    ann = person_of(engine, c1, "u1")
    assert person_of(engine, c2, "z1") == ann  # one person in both CRMs (email)
    assert result["data"] == [
        # the person's name: the first of their users' (u1)
        {"person_id": ann, "owner_email": "ann@x.com", "owner_name": "Ann",
         **metrics("1220.00", 2, 1, "0.6667", "610.00", "19.50", "0.00", "0.00", "1220.00", 1)},
        {"person_id": person_of(engine, c1, "u2"), "owner_email": "bob@x.com",
         "owner_name": "Bob", **metrics("333.33", 1, 0, "1.0000", "333.33", "14.00", "1110.01",
                                        "286.30", "619.63", 1)},
        {"person_id": person_of(engine, c1, "u3"), "owner_email": "cat@x.com",
         "owner_name": "Cat",  # inactive, but has a deal
         **metrics("0.00", 0, 1, "0.0000", None, None, "0.00", "0.00", "0.00", 0)},
        {"person_id": person_of(engine, c1, "u4"), "owner_email": "eve@x.com",
         "owner_name": "Eve", **{**ZERO, "new_accounts": 1}},
        {"person_id": person_of(engine, c1, "u6"), "owner_email": "gus@x.com",
         "owner_name": "Gus", **ZERO},  # active, no activity
    ]
    assert result["total"] == TOTAL


def test_by_connection_and_none(shared_data):
    engine, c1, c2 = shared_data
    result = run(engine, group_by="connection")
    assert result["data"] == [
        {"connection_id": c1, "connection_name": "us",
         **metrics("1333.33", 2, 2, "0.5000", "666.67", "12.00", "1000.00", "250.00",
                   "1583.33", 2)},
        {"connection_id": c2, "connection_name": "eu",
         **metrics("220.00", 1, 0, "1.0000", "220.00", "29.00", "110.01", "36.30", "256.30", 1)},
    ]
    assert result["total"] == TOTAL
    none = run(engine, group_by="none")
    assert none["data"] == [TOTAL] and none["total"] == TOTAL


def test_connection_filter(shared_data):
    engine, _, c2 = shared_data
    result = run(engine, connection_id=c2)
    assert [(r["owner_email"], r["bookings"], r["new_accounts"]) for r in result["data"]] == [
        ("ann@x.com", D("220.00"), 0), ("bob@x.com", D("0.00"), 0),
        ("eve@x.com", D("0.00"), 1)]
    assert result["total"] == metrics("220.00", 1, 0, "1.0000", "220.00", "29.00", "110.01",
                                      "36.30", "256.30", 1)


def test_empty_period_gives_zeros_and_nulls(shared_data):
    engine, _, _ = shared_data
    result = run(engine, group_by="none", start=date(2030, 1, 1), end=date(2030, 1, 31))
    assert result["data"] == [ZERO] and result["total"] == ZERO


def test_missing_rate_names_the_currency_only_when_needed(data):
    engine, _, _ = data
    with session_scope(engine) as session:
        session.delete(session.get(FxRate, "EUR"))
    with pytest.raises(CurrencyError, match="EUR"):
        run(engine)
    january = run(engine, group_by="none", end=date(2025, 1, 31))  # no EUR amounts
    assert january["total"]["bookings"] == D("1000.00")


def test_time_zone_change_recomputes_created_dates(data):
    engine, _, _ = data
    ann = run(engine, UTC_SETTINGS)["data"][0]
    # in UTC: D1 created Jan 11 (9 days), E1 Feb 1 (28 days); A1 in the period, A4 not
    assert (ann["sales_cycle_days"], ann["new_accounts"]) == (D("18.50"), 1)
    assert run(engine, UTC_SETTINGS)["total"]["new_accounts"] == 3  # A1, A2, A3
    ann = run(engine)["data"][0]
    assert (ann["sales_cycle_days"], ann["new_accounts"]) == (D("19.50"), 1)


@pytest.mark.parametrize("params,message", [
    ({"group_by": "rep"}, "group_by must be one of owner, connection, none"),
    ({"start": date(2025, 4, 1)}, "start must not be after end"),
    ({"start": date(2015, 1, 1)}, "must not exceed 10 years"),
])
def test_bad_parameters(shared_data, params, message):
    engine, _, _ = shared_data
    with pytest.raises(ValueError, match=message):
        run(engine, **params)


def test_migrations_match_the_models(engine):
    # Alembic's autogenerate imported here, not by every process collecting the suite
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"include_object": compared_with_models(connection)})
        diff = compare_metadata(context, SQLModel.metadata)
    assert diff == []


def test_migration_0002_fills_created_dates_in_utc(tmp_path):
    from sqlalchemy import text

    from core.db import make_engine, upgrade
    from core.metrics.localdates import stored_zone

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    with engine.begin() as connection:
        connection.execute(text(
            "INSERT INTO connection (provider, name, config, secrets_encrypted, status, "
            "created_at, updated_at) VALUES ('zoho', 'c', '{}', '', 'active', "
            "'2025-01-01 00:00:00', '2025-01-01 00:00:00')"))
        connection.execute(text(
            "INSERT INTO deal (connection_id, remote_id, first_seen_at, last_synced_at, name, "
            "status, remote_created_at) VALUES (1, 'd', '2025-01-01 00:00:00', "
            "'2025-01-01 00:00:00', 'd', 'won', '2025-01-11 04:50:00.000000')"))
    upgrade(engine)
    with session_scope(engine) as session:
        assert stored_zone(session) == "UTC"
        created = session.execute(text("SELECT created_date FROM deal")).scalar_one()
        assert str(created) == "2025-01-11"
    engine.dispose()


def test_writes_after_a_zone_change_use_the_new_zone(data):
    engine, c1, _ = data
    run(engine)  # records New York as the store's zone
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=c1, records=[
            deal("G1", "gus@x.com", "won", "1", date(2025, 1, 20),
                 created="2025-01-11T04:50:00")])  # Jan 10, 23:50 in New York
    gus = run(engine)["data"][-1]
    assert (gus["owner_email"], gus["sales_cycle_days"]) == ("gus@x.com", D("10.00"))


# --- drill-down: the deals behind each number --------------------------------------------

def drill(engine, metric, **params):
    with session_scope(engine) as session:
        listing = drill_down(metric, **{**Q1, **params})
        rows, after = fetch_page(session, listing, after=None, limit=1000)
    assert after is None
    return rows


def recompute(rows, metric, c2):
    """A metric from its drill-down rows alone, in plain Python (EUR is 1.1 USD)."""
    from decimal import ROUND_HALF_UP
    from zoneinfo import ZoneInfo

    from core.metrics.localdates import local_date

    def usd(r):
        return r["amount_home"] * (D("1.1") if r["connection_id"] == c2 else 1)

    def rnd(value, places):
        return value.quantize(D(1).scaleb(-places), rounding=ROUND_HALF_UP)

    won = [r for r in rows if r["status"] == "won"]
    lost = [r for r in rows if r["status"] == "lost"]
    open_ = [r for r in rows if r["status"] == "open"]
    bookings = sum((usd(r) for r in won), D(0))
    weighted = sum((usd(r) * (r["probability"] or 0) / 100 for r in open_), D(0))
    zone = ZoneInfo("America/New_York")
    days = [(r["close_date"] - local_date(r["remote_created_at"], zone)).days
            for r in won if r["remote_created_at"]]
    value = {
        "bookings": rnd(bookings, 2), "deals_won": len(won), "deals_lost": len(lost),
        "win_rate": rnd(D(len(won)) / len(rows), 4) if rows else None,
        "avg_deal_size": rnd(bookings / len(won), 2) if won else None,
        "sales_cycle_days": rnd(D(sum(days)) / len(days), 2) if days else None,
        "open_pipeline": rnd(sum((usd(r) for r in open_), D(0)), 2),
        "weighted_pipeline": rnd(weighted, 2), "forecast": rnd(bookings + weighted, 2),
    }
    return value[metric]


DRILLED = ["bookings", "deals_won", "deals_lost", "win_rate", "avg_deal_size",
           "sales_cycle_days", "open_pipeline", "weighted_pipeline", "forecast"]


@pytest.mark.parametrize("metric", DRILLED)
def test_drill_down_adds_up_to_the_summary(shared_data, metric):
    engine, _, c2 = shared_data
    result = run(engine)
    assert recompute(drill(engine, metric), metric, c2) == result["total"][metric]
    for row in result["data"]:
        rows = drill(engine, metric, owner_email=row["owner_email"].upper())
        assert {r["owner_email"] for r in rows} <= {row["owner_email"]}
        assert recompute(rows, metric, c2) == row[metric], row["owner_email"]
    by_connection = run(engine, group_by="connection")["data"]
    for row in by_connection:
        rows = drill(engine, metric, connection_id=row["connection_id"])
        assert recompute(rows, metric, c2) == row[metric]


@pytest.mark.parametrize("metric,params,expected", [
    ("bookings", {}, ["D1", "D3", "E1"]),  # not D5 (deleted) nor D6 (after the period)
    ("deals_lost", {}, ["D7", "D2"]),  # Jan 5, then Feb 1
    ("win_rate", {"owner_email": "ann@x.com"}, ["D1", "D2", "E1"]),
    ("sales_cycle_days", {}, ["D1", "D3", "E1"]),
    ("open_pipeline", {}, ["D4", "E2"]),
    ("forecast", {"owner_email": "Bob@X.com"}, ["D3", "D4", "E2"]),
    ("forecast", {"end": date(2025, 1, 31)}, ["D1"]),
])
def test_drill_down_rows(shared_data, metric, params, expected):
    engine, _, _ = shared_data
    rows = drill(engine, metric, **params)
    assert [r["remote_id"] for r in rows] == expected  # by close date, then id
    assert tuple(rows[0]) == ROW_COLUMNS["deals"]
    assert not any(r["deleted"] for r in rows)


@pytest.mark.parametrize("metric,params,message", [
    ("new_accounts", {}, "metric must be one of bookings, deals_won"),
    ("bookings", {"start": date(2025, 4, 1)}, "start must not be after end"),
    ("bookings", {"start": date(2015, 1, 1)}, "must not exceed 10 years"),
])
def test_drill_down_bad_parameters(shared_data, metric, params, message):
    engine, _, _ = shared_data
    with pytest.raises(ValueError, match=message):
        drill(engine, metric, **params)


# --- pipeline: open deals now, by stage ---------------------------------------------------

def test_pipeline_by_stage_in_stage_order(data):
    from core.metrics.definitions import pipeline

    engine, c1, c2 = data
    with session_scope(engine) as session:
        store.upsert_records(session, stream="stages", connection_id=c1, records=[
            StageRecord("s4", "Proposal", "open", sort_order=2, probability=D("50")),
            StageRecord("s5", "Discovery", "open", pipeline="Enterprise", sort_order=1)])
        store.upsert_records(session, stream="deals", connection_id=c1, records=[
            DealRecord("P1", "P1", amount_home=D("200"), status="open", stage="Prospecting",
                       stage_remote_id="s1", probability=D("10"), close_date=date(2026, 1, 1)),
            DealRecord("P2", "P2", amount_home=D("50"), status="open", stage="Prospecting",
                       stage_remote_id="s1"),  # no probability: weighs nothing, no close date
            DealRecord("P3", "P3", amount_home=D("999"), status="open", stage="Proposal",
                       stage_remote_id="s4", probability=D("50")),  # deleted below
            DealRecord("P4", "P4", amount_home=D("300"), status="open", stage="Discovery",
                       stage_remote_id="s5", probability=D("40"), pipeline="Enterprise")])
        store.apply_deletions(session, connection_id=c1, deletions=[
            Deletion("deals", "P3", ts("2025-06-01T00:00:00"))])

    def row(cid, line, stage, order, count, amount, weighted):
        return {"connection_id": cid, "pipeline": line, "stage": stage, "sort_order": order,
                "count": count, "amount": D(amount), "weighted_amount": D(weighted)}

    eu = row(c2, None, "open", None, 1, "110.01", "36.30")  # 100.01 EUR, 33%
    with session_scope(engine) as session:
        result = pipeline(session, settings=NY)
        assert result == {"currency": "USD", "data": [
            row(c1, "Enterprise", "Discovery", 1, 1, "300.00", "120.00"),
            row(c1, None, "Prospecting", 0, 2, "250.00", "20.00"),
            row(c1, None, "Proposal", 2, 0, "0.00", "0.00"),  # an open stage with no deal
            row(c1, None, "open", None, 1, "1000.00", "250.00"),  # D4: no stage record
            eu]}
        assert pipeline(session, settings=NY, connection_id=c2)["data"] == [eu]
        session.delete(session.get(FxRate, "EUR"))
        session.flush()
        with pytest.raises(CurrencyError, match="EUR"):
            pipeline(session, settings=NY)


# --- timeseries: one row per period (and owner) -------------------------------------------

def series(engine, settings=NY, **params):
    from core.metrics.definitions import timeseries

    with session_scope(engine) as session:
        result = timeseries(session, settings=settings, **{**Q1, "group_by": "none", **params})
    return [(r["period_start"], r["period_end"], *([r["owner_email"]] if "owner_email" in r
                                                    else []), r["value"]) for r in result["data"]]


def test_timeseries_months_include_empty_periods(shared_data):
    engine, _, _ = shared_data
    assert series(engine, metric="bookings", interval="month", start=date(2024, 12, 15),
                  end=date(2025, 4, 10)) == [
        (date(2024, 12, 1), date(2024, 12, 31), D("0.00")),  # nothing happened
        (date(2025, 1, 1), date(2025, 1, 31), D("1000.00")),
        (date(2025, 2, 1), date(2025, 2, 28), D("333.33")),  # not D5 (deleted)
        (date(2025, 3, 1), date(2025, 3, 31), D("220.00")),  # 200 EUR
        (date(2025, 4, 1), date(2025, 4, 30), D("700.00"))]  # D6 on Apr 2 (up to Apr 10)
    assert [v for *_, v in series(engine, metric="sales_cycle_days", interval="month")] == [
        D("10.00"), D("14.00"), D("29.00")]  # D1 created 23:50 Jan 10 in New York


def test_timeseries_weeks_start_on_monday(shared_data):
    engine, _, _ = shared_data
    weeks = {"interval": "week", "start": date(2025, 1, 15), "end": date(2025, 2, 16)}
    assert series(engine, metric="deals_won", **weeks) == [
        (date(2025, 1, 13), date(2025, 1, 19), 0),
        (date(2025, 1, 20), date(2025, 1, 26), 1),  # D1 on Monday Jan 20
        (date(2025, 1, 27), date(2025, 2, 2), 0),  # D5 on Sunday Feb 2 is deleted
        (date(2025, 2, 3), date(2025, 2, 9), 0),
        (date(2025, 2, 10), date(2025, 2, 16), 1)]  # D3 on Saturday Feb 15
    assert [v for *_, v in series(engine, metric="win_rate", **weeks)] == [
        None, D("1.0000"), D("0.0000"), None, D("1.0000")]  # D2 lost on Feb 1


def test_timeseries_quarters_honour_the_fiscal_year(shared_data):
    engine, _, _ = shared_data
    assert series(engine, metric="bookings", interval="quarter", end=date(2025, 6, 30)) == [
        (date(2025, 1, 1), date(2025, 3, 31), D("1553.33")),
        (date(2025, 4, 1), date(2025, 6, 30), D("700.00"))]
    february = Settings(timezone="America/New_York", reporting_currency="USD",
                        fiscal_year_start_month=2)
    assert series(engine, february, metric="bookings", interval="quarter",
                  end=date(2025, 4, 30)) == [
        (date(2024, 11, 1), date(2025, 1, 31), D("1000.00")),
        (date(2025, 2, 1), date(2025, 4, 30), D("1253.33"))]  # D3 + E1 + D6


def test_timeseries_by_owner_has_every_owner_in_every_period(shared_data):
    engine, _, _ = shared_data
    rows = series(engine, metric="new_accounts", interval="month", group_by="owner")
    owners = ["ann@x.com", "bob@x.com", "cat@x.com", "eve@x.com", "gus@x.com"]
    counts = {(date(2025, 2, 1), "bob@x.com"): 1,  # A2 (A5 is deleted)
              (date(2025, 3, 1), "ann@x.com"): 1,  # A4: 22:00 Mar 31 in New York
              (date(2025, 3, 1), "eve@x.com"): 1}  # A3
    assert [(first, owner, value) for first, _, owner, value in rows] == [
        (first, owner, counts.get((first, owner), 0))
        for first in (date(2025, 1, 1), date(2025, 2, 1), date(2025, 3, 1)) for owner in owners]


def test_the_metric_sets_of_drill_down_and_timeseries_are_the_summary_metrics_they_name():
    from core.metrics.definitions import (
        DRILL_STATUSES,
        SERIES_PARTS,
        DrillMetric,
        Metric,
        SeriesMetric,
    )

    assert list(SeriesMetric) == [m for m in Metric if m not in (Metric.GOAL, Metric.ATTAINMENT)]
    assert set(SERIES_PARTS) == set(SeriesMetric)
    assert set(DrillMetric) == set(DRILL_STATUSES) < set(Metric)
    assert set(Metric) - set(DrillMetric) == {"new_accounts", "goal", "attainment"}


@pytest.mark.parametrize("interval", ["week", "month", "quarter"])
def test_timeseries_values_equal_the_summary_of_each_period(shared_data, interval):
    from core.metrics.definitions import SERIES_METRICS

    engine, _, _ = shared_data
    span = {"start": date(2024, 12, 20), "end": date(2025, 4, 5), "interval": interval}
    periods: dict = {}
    for metric in SERIES_METRICS:
        for group_by in ("none", "owner"):
            for first, last, *owner, value in series(engine, metric=metric, group_by=group_by,
                                                     **span):
                if (first, group_by) not in periods:
                    periods[first, group_by] = run(engine, start=max(first, span["start"]),
                                                   end=min(last, span["end"]), group_by=group_by)
                period = periods[first, group_by]
                rows = {r.get("owner_email"): r for r in period["data"]}
                # an owner with nothing in this period (but some in the range) has zeros
                expected = (rows.get(owner[0], ZERO)[metric] if owner
                            else period["total"][metric])
                assert value == expected, (metric, first, owner)


@pytest.mark.parametrize("params,message", [
    ({"metric": "goal"}, "metric must be one of bookings"),
    ({"interval": "day"}, "interval must be one of week, month, quarter"),
    ({"group_by": "connection"}, "group_by must be one of none, owner, team"),
    ({"start": date(2025, 4, 1)}, "start must not be after end"),
    ({"start": date(2015, 1, 1)}, "must not exceed 10 years"),
])
def test_timeseries_bad_parameters(shared_data, params, message):
    engine, _, _ = shared_data
    with pytest.raises(ValueError, match=message):
        series(engine, **{"metric": "bookings", "interval": "month", **params})


def test_drill_down_pages_by_close_date_then_id_through_ties(engine):
    """Pages of one row each give every deal once, by close date and then id, deals sharing
    a close date included (the position is the last row's id; its close date is read back)."""
    with session_scope(engine) as session:
        connection = Connection(provider="zoho", name="c", home_currency="USD")
        session.add(connection)
        session.flush()
        days = [date(2025, 2, 3), date(2025, 1, 9), date(2025, 2, 3), date(2025, 1, 9),
                date(2025, 3, 1), date(2025, 2, 3)]
        store.upsert_records(session, stream="deals", connection_id=int(connection.id or 0),
                             records=[deal(f"T{i}", "ann@x.com", "won", "10", day)
                                      for i, day in enumerate(days)])
    listing = drill_down("bookings", **Q1)
    seen, after = [], None
    with session_scope(engine) as session:
        while True:
            rows, after = fetch_page(session, listing, after=after, limit=1)
            seen += rows
            if after is None:
                break
    assert [(r["close_date"], r["remote_id"]) for r in seen] == sorted(
        (day, f"T{i}") for i, day in enumerate(days))
