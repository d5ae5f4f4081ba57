"""A changed CRMSYNC_TIMEZONE is applied in the background (issue F1 item 15); until then
a metrics read computes local dates itself and skips the rollups: exact at once, and the
same numbers after the background job. Both databases."""

from datetime import UTC, date, datetime
from decimal import Decimal

from core import store
from core.config import Settings
from core.db import session_scope
from core.metrics import definitions as metrics
from core.metrics import localdates, rollups, zone
from core.models import Connection
from core.records import AccountRecord, DealRecord, UserRecord

TOKYO = "Asia/Tokyo"  # UTC+9: 2025-03-31 20:00 UTC is April 1 there


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def seed(engine) -> None:
    with session_scope(engine) as session:
        connection = Connection(provider="zoho", name="org", home_currency="USD")
        session.add(connection)
        session.flush()
        cid = int(connection.id or 0)
        store.upsert_records(session, stream="users", connection_id=cid,
                             records=[UserRecord("u1", "Ann Lee", "ann@x.com")])
        store.upsert_records(session, stream="accounts", connection_id=cid, records=[
            AccountRecord("a1", "Late March", owner_remote_id="u1", owner_email="ann@x.com",
                          remote_created_at=at("2025-03-31T20:00:00"),
                          remote_modified_at=at("2025-04-01T00:00:00")),
            AccountRecord("a2", "Mid April", owner_remote_id="u1", owner_email="ann@x.com",
                          remote_created_at=at("2025-04-15T10:00:00"),
                          remote_modified_at=at("2025-04-16T00:00:00"))])
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            DealRecord("d1", "Won", amount=Decimal("1000"), currency="USD",
                       amount_home=Decimal("1000"), status="won", close_date=date(2025, 4, 10),
                       remote_created_at=at("2025-03-31T20:00:00"),
                       remote_modified_at=at("2025-04-10T00:00:00"), owner_remote_id="u1",
                       owner_email="ann@x.com")])


def read(engine, zone: str) -> tuple[dict, dict]:
    settings = Settings(database_url="sqlite://", timezone=zone, reporting_currency="USD")
    with session_scope(engine) as session:
        q1 = metrics.summary(session, start=date(2025, 1, 1), end=date(2025, 3, 31),
                             group_by="none", settings=settings)["total"]
        q2 = metrics.summary(session, start=date(2025, 4, 1), end=date(2025, 6, 30),
                             group_by="none", settings=settings)["total"]
    return q1, q2


def test_a_pending_zone_is_read_exactly_without_recomputing(engine):
    seed(engine)
    rollups.refresh(engine)
    q1_utc, q2_utc = read(engine, "UTC")
    assert (q1_utc["new_accounts"], q2_utc["new_accounts"]) == (1, 1)
    assert q2_utc["sales_cycle_days"] == 10  # created March 31 (UTC), closed April 10

    q1, q2 = read(engine, TOKYO)  # the zone changed; the job has not run yet
    assert (q1["new_accounts"], q2["new_accounts"]) == (0, 2)
    assert q2["sales_cycle_days"] == 9  # created April 1 in Tokyo
    with session_scope(engine) as session:
        assert localdates.stored_zone(session) == "UTC"  # the read changed nothing
        assert rollups.clean_months(session, range(0, 10**6))  # nor threw rollups away

    with session_scope(engine) as session:  # the background job (workers.jobs.apply_zone)
        assert zone.ensure_zone(session, TOKYO) is True
    rollups.refresh(engine)
    assert read(engine, TOKYO) == (q1, q2)


def test_sqlite_function_matches_zoneinfo():
    assert localdates.sqlite_local_date("2025-03-31 20:00:00.000000", TOKYO) == "2025-04-01"
    assert localdates.sqlite_local_date("2025-03-31 20:00:00", "UTC") == "2025-03-31"
    assert localdates.sqlite_local_date(None, TOKYO) is None
