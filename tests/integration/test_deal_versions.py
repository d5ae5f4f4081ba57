"""Deal versions (core.store, migration 0010; docs/evaluation.md) on SQLite and PostgreSQL:
a version per observed change of a tracked field, written with the deal's merge."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text

from core import store
from core.db import make_engine, session_scope, upgrade
from core.models import DealVersion
from core.records import DealRecord
from tests.api_support import add_connection

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CREATED = datetime(2024, 12, 1, 9, tzinfo=UTC)


def deal(i: int, minutes: int = 0, **kw: Any) -> DealRecord:
    values: dict[str, Any] = {
        "name": f"D{i}", "amount": Decimal("100.10"), "amount_home": Decimal("100.10"),
        "currency": "USD", "stage": "Proposal", "close_date": date(2025, 3, 1),
        "probability": Decimal(50), "owner_remote_id": "u1", "owner_email": "ann@x.com",
        "remote_created_at": CREATED, "remote_modified_at": T0 + timedelta(minutes=minutes),
        "raw": {"id": str(i)}} | kw
    return DealRecord(remote_id=str(i), **values)


@pytest.fixture
def connection_id(engine) -> int:
    return add_connection(engine)


def versions(engine, remote_id: str = "1") -> list[tuple[Any, ...]]:
    with session_scope(engine) as session:
        rows = session.scalars(select(DealVersion).where(DealVersion.deal_remote_id == remote_id)
                               .order_by(DealVersion.valid_from, DealVersion.id)).all()
        return [(v.valid_from, v.valid_to, v.stage, v.amount, v.close_date, v.status,
                 v.owner_email, v.source) for v in rows]


def put(engine, cid: int, *records: DealRecord, source: str = "sync") -> None:
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=list(records),
                             source=source)


def test_a_version_per_change_of_a_tracked_field_only(engine, connection_id):
    put(engine, connection_id, deal(1), deal(2))
    first = (CREATED, None, "Proposal", Decimal("100.10"), date(2025, 3, 1), "open",
             "ann@x.com", "sync")
    assert versions(engine) == [first]
    # the same copy again, and a change of an untracked field (name): no new version
    put(engine, connection_id, deal(1))
    put(engine, connection_id, deal(1, minutes=5, name="renamed"))
    assert versions(engine) == [first]
    t1, t2, t3 = (T0 + timedelta(minutes=m) for m in (10, 20, 30))
    put(engine, connection_id, deal(1, minutes=10, stage="Negotiation", probability=Decimal(80)))
    put(engine, connection_id, deal(1, minutes=20, stage="Negotiation", probability=Decimal(80),
                                    close_date=date(2025, 4, 15)), source="webhook")
    put(engine, connection_id, deal(1, minutes=30, stage="Closed Won", status="won",
                                    amount=Decimal(120), owner_email="bo@x.com",
                                    close_date=date(2025, 4, 15)))
    assert versions(engine) == [
        (CREATED, t1, *first[2:]),
        (t1, t2, "Negotiation", Decimal("100.10"), date(2025, 3, 1), "open", "ann@x.com",
         "sync"),
        (t2, t3, "Negotiation", Decimal("100.10"), date(2025, 4, 15), "open", "ann@x.com",
         "webhook"),
        (t3, None, "Closed Won", Decimal(120), date(2025, 4, 15), "won", "bo@x.com", "sync"),
    ]
    assert len(versions(engine, "2")) == 1  # the other deal did not change


def test_an_older_copy_changes_no_version(engine, connection_id):
    put(engine, connection_id, deal(1, minutes=10, stage="Negotiation"))
    put(engine, connection_id, deal(1, minutes=5, stage="Proposal"))  # read before the webhook
    assert [v[2] for v in versions(engine)] == ["Negotiation"]


def test_two_pages_in_one_transaction_chain_their_versions(engine, connection_id):
    with session_scope(engine) as session:
        for minutes, stage in ((0, "Proposal"), (10, "Negotiation")):
            store.upsert_records(session, stream="deals", connection_id=connection_id,
                                 records=[deal(1, minutes=minutes, stage=stage)])
    rows = versions(engine)
    assert [(v[1], v[2]) for v in rows] == [(T0 + timedelta(minutes=10), "Proposal"),
                                           (None, "Negotiation")]


def test_migration_0010_seeds_one_version_per_deal(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0009")
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO connection (provider, name, config, secrets_encrypted, status, "
            "created_at, updated_at) VALUES ('zoho', 'c1', '{}', '', 'active', "
            "'2025-01-01 00:00:00', '2025-01-01 00:00:00')"))
        for rid, created, deleted in (("d1", "'2024-11-02 10:00:00.000000'", "NULL"),
                                      ("d2", "NULL", "'2025-01-03 00:00:00.000000'")):
            conn.execute(text(
                "INSERT INTO deal (connection_id, remote_id, first_seen_at, last_synced_at, "
                "name, status, stage, amount, close_date, remote_created_at, deleted_at) "
                f"VALUES (1, '{rid}', '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00', "
                f"'{rid}', 'open', 'Proposal', 100000, '2025-02-01', {created}, {deleted})"))
    upgrade(engine)
    with session_scope(engine) as session:
        rows = session.scalars(select(DealVersion).order_by(DealVersion.deal_remote_id)).all()
        assert [(v.deal_remote_id, v.valid_from, v.valid_to, v.stage, v.amount, v.source)
                for v in rows] == [
            ("d1", datetime(2024, 11, 2, 10, tzinfo=UTC), None, "Proposal", Decimal(10), "seed"),
            ("d2", datetime(2025, 1, 1, tzinfo=UTC), None, "Proposal", Decimal(10), "seed")]
