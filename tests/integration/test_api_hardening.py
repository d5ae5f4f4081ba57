"""Zero 5xx on hostile input (issue 11 item 4), on SQLite and on the real PostgreSQL: ids
past BIGINT, crafted cursors, datetimes at the edge of the calendar, CSV errors before the
stream starts."""

import base64

import httpx
import pytest
import pytest_asyncio

from api.listing import MAX_ID, decode_cursor, encode_cursor
from tests.api_support import add_connection, running_api, seed
from tests.shared_store import SHARED_LOOP

BIG = str(2**63)  # one past PostgreSQL's BIGINT
JUST_OVER = str(MAX_ID + 1)  # one past the id columns' INTEGER
HUGE = "9" * 40
PERIOD = "start=2025-01-01&end=2025-02-01"


pytestmark = SHARED_LOOP  # every test here runs in the event loop of seeded_module


async def seeded(engine):
    """The seeded store and its app: the test's own (api), or the module's (seeded_module
    in tests/conftest.py, for shared_api)."""
    async with running_api(engine) as api:
        api.cid = add_connection(engine, "main")
        seed(engine, api.cid, deals=5)
        await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": 1})
        yield api


@pytest_asyncio.fixture(loop_scope="module")
async def api(engine):
    """A seeded store and its app, the test's own: for a test that writes or changes the
    client."""
    async for api in seeded(engine):
        yield api


def assert_422(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, (response.request.url, response.text)
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(d["field"] == field for d in error["details"]), error
    for value in (BIG, HUGE, JUST_OVER):  # never echoed
        assert value not in response.text


ID_ROUTES = [
    ("GET", "/api/v1/connections/{}", "connection_id", None),
    ("PATCH", "/api/v1/connections/{}", "connection_id", {"name": "x"}),
    ("DELETE", "/api/v1/connections/{}", "connection_id", None),
    ("POST", "/api/v1/connections/{}/sync", "connection_id", None),
    ("GET", "/api/v1/connections/{}/sync-runs", "connection_id", None),
    ("GET", "/api/v1/sync-runs/{}", "run_id", None),
    ("GET", "/api/v1/sync-runs?connection_id={}", "connection_id", None),
    ("DELETE", "/api/v1/api-keys/{}", "key_id", None),
    ("GET", "/api/v1/goals/{}", "goal_id", None),
    ("PATCH", "/api/v1/goals/{}", "goal_id", {"target": 1}),
    ("DELETE", "/api/v1/goals/{}", "goal_id", None),
    ("GET", "/api/v1/goals?person_id={}", "person_id", None),
    ("GET", "/api/v1/deals?connection_id={}", "connection_id", None),
    ("GET", "/api/v1/deals?connection_id={}&format=csv", "connection_id", None),
    ("GET", "/api/v1/users?connection_id={}", "connection_id", None),
    ("GET", "/api/v1/accounts?connection_id={}", "connection_id", None),
    ("GET", "/api/v1/stages?connection_id={}", "connection_id", None),
    ("GET", "/api/v1/metrics/summary?" + PERIOD + "&connection_id={}", "connection_id", None),
    ("GET", "/api/v1/metrics/pipeline?connection_id={}", "connection_id", None),
    ("GET", "/api/v1/metrics/timeseries?metric=bookings&interval=month&" + PERIOD
     + "&connection_id={}", "connection_id", None),
    ("GET", "/api/v1/metrics/deals?metric=won&" + PERIOD + "&connection_id={}",
     "connection_id", None),
]


@pytest.mark.parametrize("value", [JUST_OVER, BIG, "0"])
@pytest.mark.parametrize(("method", "url", "field", "body"), ID_ROUTES)
async def test_ids_out_of_range_are_422(shared_api, method, url, field, body, value):
    response = await shared_api.client.request(method, url.format(value), json=body)
    assert_422(response, field)


@pytest.mark.parametrize("value", [HUGE, "-1", f"-{BIG}", "1e3", "1.5"])
@pytest.mark.parametrize(("method", "url", "field", "body"), ID_ROUTES[:1] + ID_ROUTES[12:13])
async def test_other_bad_ids_are_422(shared_api, method, url, field, body, value):
    response = await shared_api.client.request(method, url.format(value), json=body)
    assert_422(response, field)


async def test_the_largest_id_is_a_plain_404(shared_api):
    response = await shared_api.get(f"/api/v1/connections/{MAX_ID}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    response = await shared_api.get(f"/api/v1/deals?connection_id={MAX_ID}")
    assert response.status_code == 200 and response.json()["data"] == []


@pytest.mark.parametrize("value", [JUST_OVER, BIG, HUGE, "0"])
async def test_ids_in_bodies_are_bounded(shared_api, value):
    response = await shared_api.client.post("/api/v1/goals/push",
                                     content=f'{{"connection_id": {value}}}',
                                     headers={"Content-Type": "application/json"})
    assert_422(response, "connection_id")
    response = await shared_api.client.post("/api/v1/goals", content=(
        f'{{"person_id": {value}, "metric": "bookings", "period_start": "2025-01-01", '
        '"period_end": "2025-01-31", "target": 1}'), headers={"Content-Type": "application/json"})
    assert_422(response, "person_id")
    response = await shared_api.client.patch("/api/v1/goals/1", content=f'{{"person_id": {value}}}',
                                      headers={"Content-Type": "application/json"})
    assert_422(response, "person_id")


@pytest.mark.parametrize("value", [JUST_OVER, BIG, HUGE, "0"])
async def test_the_unauthenticated_webhook_route_bounds_its_id(api, value):
    api.client.headers.pop("Authorization")
    response = await api.client.post(f"/api/v1/webhooks/zoho/{value}", json={})
    assert_422(response, "connection_id")
    response = await api.client.post(f"/api/v1/webhooks/zoho/{MAX_ID}", json={})
    assert response.status_code == 404


def crafted(payload: bytes) -> str:
    return base64.urlsafe_b64encode(payload).rstrip(b"=").decode()


@pytest.mark.parametrize("cursor", [
    crafted(b"k1:" + JUST_OVER.encode()), crafted(b"k1:" + BIG.encode()),
    crafted(b"k1:" + HUGE.encode()), crafted(b"k1:0"),
    crafted(b"k1:" + b"9" * 5000)[:64], crafted("k1:\u00b2".encode()), "A" * 65, "%%%",
    crafted(b"k1:-5"),
])
@pytest.mark.parametrize("path", ["deals", "sync-runs", "goals"])
async def test_crafted_cursors_are_422(shared_api, path, cursor):
    response = await shared_api.get(f"/api/v1/{path}", params={"cursor": cursor})
    assert_422(response, "cursor")


async def test_real_cursors_still_page(shared_api):
    assert decode_cursor(encode_cursor(MAX_ID)) == MAX_ID
    rows = await shared_api.all_pages("/api/v1/deals", limit=2)
    assert len(rows) == 4  # 5 seeded, one tombstoned
    response = await shared_api.get("/api/v1/deals", params={"cursor": encode_cursor(MAX_ID)})
    assert response.status_code == 200 and response.json()["data"] == []


@pytest.mark.parametrize("value", [
    "0001-01-01T00:00:00+05:00", "0001-01-01T04:59:59+05:00",
    "9999-12-31T23:59:59-05:00", "9999-12-31T20:00:00-04:00",
])
@pytest.mark.parametrize("fmt", ["json", "csv"])
@pytest.mark.parametrize("path", ["deals", "accounts"])
async def test_datetimes_outside_the_calendar_in_utc_are_422(shared_api, path, fmt, value):
    response = await shared_api.get(f"/api/v1/{path}", params={"modified_since": value,
                                                      "format": fmt})
    assert_422(response, "modified_since")
    assert "years 1 to 9999" in response.json()["error"]["message"]


@pytest.mark.parametrize(("value", "rows"), [
    ("0001-01-01T00:00:00-05:00", 4), ("0001-01-01", 4), ("0001-01-01T05:00:00+05:00", 4),
    ("9999-12-31T23:59:59+05:00", 0), ("9999-12-31T23:59:59.999999", 0),
    ("2025-01-01T02:30:00+01:00", 2),  # 01:30 UTC: deals modified at 02:00 and 03:00 UTC
])
async def test_datetimes_at_the_edge_that_fit_are_answered(shared_api, value, rows):
    response = await shared_api.get("/api/v1/deals", params={"modified_since": value})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == rows


@pytest.mark.parametrize("url", [
    "/api/v1/metrics/summary?start=0001-01-01&end=0001-01-01&group_by=owner",
    "/api/v1/metrics/summary?start=9999-12-31&end=9999-12-31&group_by=connection",
    "/api/v1/metrics/timeseries?metric=bookings&interval=week&start=0001-01-01"
    "&end=0001-01-20",
    "/api/v1/metrics/timeseries?metric=bookings&interval=quarter&start=9999-10-01"
    "&end=9999-12-31",
    "/api/v1/goals?start=0001-01-01&end=9999-12-31",
    "/api/v1/deals?close_from=0001-01-01&close_to=9999-12-31",
])
@pytest.mark.parametrize("fmt", ["json", "csv"])
async def test_calendar_edges_in_metrics_and_lists_are_never_5xx(shared_api, url, fmt):
    response = await shared_api.get(f"{url}&format={fmt}")
    assert response.status_code < 500, response.text
    assert response.status_code in (200, 422), response.text


async def test_csv_errors_are_a_normal_answer_before_the_stream(shared_api):
    """The first rows are read before the answer starts: a failing query is an ordinary
    error response (a JSON envelope with its status), not a CSV cut after its header."""
    bad = await shared_api.get("/api/v1/deals", params={"format": "csv", "connection_id": BIG})
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/json")
    good = await shared_api.get("/api/v1/deals", params={"format": "csv"})
    assert good.status_code == 200
    assert good.headers["content-type"].startswith("text/csv")
    assert len(good.text.strip().splitlines()) == 5


async def test_a_query_that_fails_is_a_500_envelope_not_a_broken_csv(shared_api, monkeypatch):
    """A failure of the CSV query (an exception where the rows are read) still answers a
    complete JSON 500 instead of a 200 whose CSV stops after the header."""
    from core import queries

    def failing_iter_rows(*args, **kwargs):
        raise RuntimeError("the database went away")
        yield  # pragma: no cover

    monkeypatch.setattr("api.listing.iter_rows", failing_iter_rows)
    assert queries.iter_rows is not failing_iter_rows
    response = await shared_api.get("/api/v1/deals", params={"format": "csv"})
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error",
                                         "message": "internal server error"}}


@pytest.mark.parametrize(("method", "url", "body"), [
    ("GET", "/api/v1/deals?owner_email=a%00b", None),
    ("GET", "/api/v1/goals?owner_email=a%00b", None),
    ("GET", "/api/v1/metrics/deals?metric=won&" + PERIOD + "&owner_email=a%00b", None),
    ("POST", "/api/v1/api-keys", {"name": "a\u0000b"}),
    ("GET", f"/api/v1/people/{BIG}", None),  # a route without the bounded id type
])
async def test_values_the_database_cannot_store_are_422(api, method, url, body):
    """The backstop for any route: PostgreSQL's "out of range" and NUL-in-text errors are the
    request's data, so a 422 envelope (SQLite stores them: there the answer is a 2xx/4xx)."""
    response = await api.client.request(method, url, json=body)
    assert response.status_code < 500, response.text
    if "people" in url:
        assert response.status_code == 422
    if response.status_code == 422:
        assert response.json()["error"]["code"] == "validation_error"
        assert "a\x00b" not in response.text and BIG not in response.text
