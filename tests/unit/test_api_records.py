"""Record lists: shapes, every filter, keyset pagination, CSV, bad input."""

import csv
import io
import json
from decimal import Decimal

import pytest
import pytest_asyncio

from core import store
from core.db import session_scope
from core.queries import ROW_COLUMNS
from core.records import DealRecord
from tests.api_support import add_connection, running_api, seed
from tests.shared_store import SHARED_LOOP

pytestmark = SHARED_LOOP  # every test here runs in the event loop of seeded_module


async def seeded(engine):
    """The seeded store and its app: the test's own (api), or the module's (seeded_module
    in tests/conftest.py, for shared_api)."""
    async with running_api(engine) as api:
        api.cid = add_connection(engine, "main")
        seed(engine, api.cid, deals=30)  # d029 and account a4 are tombstoned
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def api(sqlite_engine):
    """A seeded store and its app, the test's own: for a test that writes."""
    async for api in seeded(sqlite_engine):
        yield api


async def rows(api, path, **params):
    return await api.all_pages(f"/api/v1/{path}", **params)


def remote_ids(items):
    return [r["remote_id"] for r in items]


def deal_ids(*numbers):
    return [f"d{i:03}" for i in numbers]


@pytest.mark.parametrize("path", ["users", "accounts", "stages", "deals"])
async def test_row_shapes_are_the_contract(shared_api, path):
    response = await shared_api.get(f"/api/v1/{path}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "next_cursor"}
    assert body["data"] and all(list(r) == list(ROW_COLUMNS[path]) for r in body["data"])
    spec = (await shared_api.get("/openapi.json")).json()["components"]["schemas"]
    model = {"users": "UserRow", "accounts": "AccountRow", "stages": "StageRow",
             "deals": "DealRow"}[path]
    assert list(spec[model]["properties"]) == list(ROW_COLUMNS[path])


async def test_deal_values_are_typed_json(shared_api):
    response = await shared_api.get("/api/v1/deals", params={"limit": 2})
    deal = response.json()["data"][1]
    assert deal == {
        "id": deal["id"], "connection_id": shared_api.cid, "remote_id": "d001", "name": "Deal 1",
        "amount": 1001.25, "currency": "EUR", "amount_home": 500.625, "stage": "Closed Won",
        "status": "won", "probability": 100, "close_date": "2025-01-02",
        "remote_created_at": "2024-12-22T00:00:00Z", "remote_modified_at": "2025-01-01T01:00:00Z",
        "owner_email": "bob@example.com", "owner_name": "Bob Roy",
        "owner_person_id": 2,  # Bob's person (the second rep)
        "account_remote_id": "a1", "account_name": "Account 1", "pipeline": "Standard",
        "deleted": False,
    }
    assert '"amount":1001.25,' in response.text  # a number literal, not a string


async def test_amounts_keep_every_digit(api):
    with session_scope(api.engine) as session:
        store.upsert_records(session, stream="deals", connection_id=api.cid, records=[
            DealRecord("big", "Big", amount=Decimal("123456789012345.6789"), currency="EUR",
                       amount_home=Decimal("0.0001"))])
    big = next(r for r in await rows(api, "deals") if r["remote_id"] == "big")
    assert big["amount_home"] == 0.0001
    text = (await api.get("/api/v1/deals", params={"cursor": "", "limit": 1000})).text
    assert '"amount":123456789012345.6789,' in text
    parsed = json.loads(text, parse_float=Decimal)
    assert Decimal("123456789012345.6789") in [r["amount"] for r in parsed["data"]]


async def test_users_accounts_stages(shared_api):
    users = await rows(shared_api, "users")
    assert [(u["email"], u["active"], u["team"]) for u in users] == [
        ("ann@example.com", True, "East"), ("bob@example.com", False, "West")]
    stages = await rows(shared_api, "stages")
    assert [(s["name"], s["category"], s["sort_order"], s["probability"]) for s in stages] == [
        ("Qualify", "open", 1, 20), ("Closed Won", "won", 2, 100), ("Closed Lost", "lost", 3, 0)]
    accounts = await rows(shared_api, "accounts")
    assert remote_ids(accounts) == ["a0", "a1", "a2", "a3"]
    assert accounts[0]["remote_created_at"] == "2024-12-02T00:00:00Z"


async def test_include_deleted(shared_api):
    assert len(await rows(shared_api, "deals")) == 29
    everything = await rows(shared_api, "deals", include_deleted="true")
    assert len(everything) == 30
    assert [r["remote_id"] for r in everything if r["deleted"]] == ["d029"]
    accounts = await rows(shared_api, "accounts", include_deleted=True)
    assert [a["remote_id"] for a in accounts if a["deleted"]] == ["a4"]


async def test_connection_filter(api):
    other = add_connection(api.engine, "other")
    seed(api.engine, other, deals=4)
    assert len(await rows(api, "deals", connection_id=other)) == 3
    assert len(await rows(api, "deals", connection_id=api.cid)) == 29
    assert len(await rows(api, "deals")) == 32
    assert len(await rows(api, "users", connection_id=other)) == 2
    assert await rows(api, "stages", connection_id=999) == []


async def test_owner_email_is_case_insensitive(shared_api):
    ann = await rows(shared_api, "deals", owner_email="Ann@Example.COM")
    assert remote_ids(ann) == deal_ids(*range(0, 29, 2))  # d000 is stored upper-case
    assert remote_ids(await rows(shared_api, "users", owner_email="BOB@example.com")) == ["u2"]
    accounts = await rows(shared_api, "accounts", owner_email="ann@example.com")
    assert remote_ids(accounts) == ["a0", "a2"]
    assert await rows(shared_api, "deals", owner_email="nobody@example.com") == []


async def test_status_filter(shared_api):
    assert remote_ids(await rows(shared_api, "deals", status="won")) == deal_ids(*range(1, 29, 3))
    assert remote_ids(await rows(shared_api, "deals", status="lost")) == deal_ids(*range(2, 29, 3))
    assert len(await rows(shared_api, "deals", status="open")) == 10


@pytest.mark.parametrize(("since", "first"), [
    ("2025-01-01T10:00:00Z", 10),
    ("2025-01-01T12:00:00+02:00", 10),
    ("2025-01-01T10:00:00", 10),  # naive means UTC
    ("2025-01-02", 24),  # a date means its midnight UTC
    ("2024-06-01", 0),
])
async def test_modified_since(shared_api, since, first):
    assert remote_ids(await rows(shared_api, "deals", modified_since=since)) == deal_ids(
        *range(first, 29))
    accounts = await rows(shared_api, "accounts", modified_since="2025-01-01T02:00:00Z")
    assert remote_ids(accounts) == ["a2", "a3"]


async def test_close_date_range_is_inclusive(shared_api):
    found = await rows(shared_api, "deals", close_from="2025-01-05", close_to="2025-01-10")
    assert remote_ids(found) == deal_ids(*range(4, 10))
    assert remote_ids(await rows(shared_api, "deals", close_to="2025-01-02")) == deal_ids(0, 1)
    assert len(await rows(shared_api, "deals", close_from="2025-01-29", include_deleted=True)) == 2
    combined = await rows(shared_api, "deals", close_from="2025-01-05", close_to="2025-01-20",
                          status="won", owner_email="bob@example.com")
    assert remote_ids(combined) == deal_ids(7, 13, 19)


@pytest.mark.parametrize("limit", [1, 7, 29, 30, 1000])
async def test_pages_lose_and_repeat_nothing(shared_api, limit):
    all_rows = await rows(shared_api, "deals", include_deleted=True, limit=limit)
    ids = [r["id"] for r in all_rows]
    assert ids == sorted(set(ids)) and len(ids) == 30
    first = (await shared_api.get("/api/v1/deals", params={"limit": limit})).json()
    assert len(first["data"]) == min(limit, 29)
    assert (first["next_cursor"] is None) == (limit >= 29)


async def test_default_limit_is_100(api):
    seed(api.engine, add_connection(api.engine, "big"), deals=150)
    page = (await api.get("/api/v1/deals")).json()
    assert len(page["data"]) == 100 and page["next_cursor"]


async def test_a_cursor_keeps_the_filters_it_is_used_with(shared_api):
    page = (await shared_api.get("/api/v1/deals", params={"status": "won", "limit": 3})).json()
    rest = (await shared_api.get("/api/v1/deals", params={"status": "won",
                                                   "cursor": page["next_cursor"]})).json()
    assert remote_ids(page["data"] + rest["data"]) == deal_ids(*range(1, 29, 3))


def parse_csv(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.mark.parametrize("how", [{"params": {"format": "csv"}},
                                 {"headers": {"Accept": "text/csv"}}])
async def test_csv_streams_every_matching_row(api, how):
    seed(api.engine, add_connection(api.engine, "big"), deals=250)
    params = {**how.get("params", {}), "limit": 5}  # limit does not apply to CSV
    response = await api.get("/api/v1/deals", params=params, headers=how.get("headers", {}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="deals.csv"'
    header = response.text.splitlines()[0]
    assert header == ",".join(ROW_COLUMNS["deals"])
    table = parse_csv(response.text)
    assert len(table) == 29 + 249
    assert len({r["id"] for r in table}) == len(table)
    first = table[1]
    assert first["amount"] == "1001.25" and first["amount_home"] == "500.625"
    assert first["deleted"] == "false" and first["close_date"] == "2025-01-02"
    assert first["remote_modified_at"] == "2025-01-01T01:00:00Z"


async def test_csv_applies_the_filters(shared_api):
    response = await shared_api.get("/api/v1/deals", params={"format": "csv", "status": "lost",
                                                     "include_deleted": "true"})
    assert remote_ids(parse_csv(response.text)) == deal_ids(*range(2, 30, 3))
    empty = await shared_api.get("/api/v1/users", params={"format": "csv", "owner_email": "x@y.z"})
    assert empty.text == ",".join(ROW_COLUMNS["users"]) + "\r\n"
    json_anyway = await shared_api.get("/api/v1/users", params={"format": "json"},
                                headers={"Accept": "text/csv"})
    assert json_anyway.json()["data"]


@pytest.mark.parametrize(("path", "params", "field"), [
    ("deals", {"limit": 1001}, "limit"),
    ("deals", {"limit": 0}, "limit"),
    ("deals", {"limit": "ten"}, "limit"),
    ("deals", {"status": "pending"}, "status"),
    ("deals", {"modified_since": "2025-13-01"}, "modified_since"),
    ("deals", {"modified_since": "yesterday"}, "modified_since"),
    ("deals", {"close_from": "2025-01-32"}, "close_from"),
    ("deals", {"close_from": "2025-02-01", "close_to": "2025-01-01"}, "close_from"),
    ("deals", {"connection_id": "main"}, "connection_id"),
    ("deals", {"include_deleted": "perhaps"}, "include_deleted"),
    ("deals", {"format": "xml"}, "format"),
    ("deals", {"owner": "ann@example.com"}, "owner"),
    ("stages", {"status": "open"}, "status"),
    ("stages", {"owner_email": "ann@example.com"}, "owner_email"),
    ("users", {"close_from": "2025-01-01"}, "close_from"),
    ("accounts", {"status": "won"}, "status"),
    ("deals", {"cursor": "not-a-cursor"}, "cursor"),
    ("deals", {"cursor": "azE6LTE"}, "cursor"),  # base64 of "k1:-1"
    ("deals", {"cursor": "eyJpZCI6IDF9"}, "cursor"),  # base64 of a JSON object
])
async def test_bad_filters_are_422_naming_the_parameter(shared_api, path, params, field):
    response = await shared_api.get(f"/api/v1/{path}", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}: ")
