"""Metrics on a small hand-built dataset: every expected value is written by hand.

Runs on SQLite and PostgreSQL (the `engine` fixture). CRMSYNC_TIMEZONE is New York,
reporting currency USD; connection 1 keeps USD, connection 2 EUR at 1.1 USD per EUR.
"""

from datetime import UTC, date, datetime
from decimal import Decimal as D

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from core import store
from core.config import Settings
from core.currency import CurrencyError, set_rate
from core.db import session_scope
from core.metrics import summary
from core.models import Connection, FxRate
from core.records import AccountRecord, DealRecord, Deletion, StageRecord, UserRecord

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


@pytest.fixture
def data(engine):
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


def test_by_owner(data):
    engine, _, _ = data
    result = run(engine)
    assert (result["start"], result["end"], result["currency"], result["group_by"]) == (
        date(2025, 1, 1), date(2025, 3, 31), "USD", "owner")
    assert result["data"] == [
        {"owner_email": "ann@x.com", "owner_name": "Ann Lee",
         **metrics("1220.00", 2, 1, "0.6667", "610.00", "19.50", "0.00", "0.00", "1220.00", 1)},
        {"owner_email": "bob@x.com", "owner_name": "Bob",
         **metrics("333.33", 1, 0, "1.0000", "333.33", "14.00", "1110.01", "286.30",
                   "619.63", 1)},
        {"owner_email": "cat@x.com", "owner_name": "Cat",  # inactive, but has a deal
         **metrics("0.00", 0, 1, "0.0000", None, None, "0.00", "0.00", "0.00", 0)},
        {"owner_email": "eve@x.com", "owner_name": "Eve", **{**ZERO, "new_accounts": 1}},
        {"owner_email": "gus@x.com", "owner_name": "Gus", **ZERO},  # active, no activity
    ]
    assert result["total"] == TOTAL


def test_by_connection_and_none(data):
    engine, c1, c2 = data
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


def test_connection_filter(data):
    engine, _, c2 = data
    result = run(engine, connection_id=c2)
    assert [(r["owner_email"], r["bookings"], r["new_accounts"]) for r in result["data"]] == [
        ("ann@x.com", D("220.00"), 0), ("bob@x.com", D("0.00"), 0),
        ("eve@x.com", D("0.00"), 1)]
    assert result["total"] == metrics("220.00", 1, 0, "1.0000", "220.00", "29.00", "110.01",
                                      "36.30", "256.30", 1)


def test_empty_period_gives_zeros_and_nulls(data):
    engine, _, _ = data
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
def test_bad_parameters(data, params, message):
    engine, _, _ = data
    with pytest.raises(ValueError, match=message):
        run(engine, **params)


def test_migrations_match_the_models(engine):
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def test_migration_0002_fills_created_dates_in_utc(tmp_path):
    from sqlalchemy import text

    from core.db import make_engine, upgrade
    from core.localdates import stored_zone

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
