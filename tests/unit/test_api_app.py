"""The app itself: lifespan, error envelope, /health, JSON and CSV rendering, cursors."""

import gc
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import httpx
import pytest

from api.app import create_app
from api.listing import decode_cursor, dumps, encode_cursor, scalar_text
from core import collector
from core.config import Settings
from core.db import make_engine
from core.queries import RecordFilters, iter_rows, records_listing
from tests.api_support import SECRET, add_connection, make_key, running_api, seed


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        yield api


async def test_unhandled_errors_are_500_json_without_details(api):
    async def boom() -> None:
        raise RuntimeError(f"database said {SECRET} at line 3")

    api.app.add_api_route("/api/v1/boom", boom)
    response = await api.get("/api/v1/boom")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "internal_error",
                                         "message": "internal server error"}}
    assert SECRET not in response.text and "Traceback" not in response.text


async def test_the_started_api_has_frozen_its_heap_and_collects_young_objects_less_often(api):
    """core.collector.tune, once per process at the first start-up (this one or an
    earlier test's): the objects alive then are out of the collector's scans (the young
    generation's figure is the API's, or a worker's if one started in this process)."""
    assert gc.get_freeze_count() > 10_000
    assert gc.get_threshold()[0] in (collector.API_YOUNG, collector.WORKER_YOUNG)
    assert (await api.get("/health")).status_code == 200


async def test_unknown_routes_and_methods_are_json(api):
    missing = await api.get("/api/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = await api.client.put("/api/v1/deals")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["code"] == "method_not_allowed"


async def test_health_reports_an_unreachable_database_as_503(api):
    api.app.state.engine = make_engine(
        "postgresql://crmsync:hunter2-password@127.0.0.1:9/nowhere", pool_size=1)
    try:
        response = await api.get("/health")
    finally:
        api.app.state.engine.dispose()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["database"].startswith("error: ")
    assert "hunter2" not in response.text


async def test_embedded_sqlite_is_migrated_and_keyed_on_startup(tmp_path):
    db = tmp_path / "fresh" / "crmsync.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", redis_url=None))
    async with app.router.lifespan_context(app):
        key = make_key(app.state.engine, "read")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test") as client:
            assert (await client.get("/health")).json() == {
                "status": "ok", "database": "ok", "redis": "not configured",
                "worker": {"status": "in-process"}}
            response = await client.get("/api/v1/deals",
                                        headers={"Authorization": f"Bearer {key}"})
            assert response.json() == {"data": [], "next_cursor": None}
    assert (tmp_path / "fresh" / "crmsync.db.key").stat().st_mode & 0o777 == 0o600


async def test_a_database_without_secret_key_fails_startup_clearly(tmp_path):
    app = create_app(Settings(database_url="postgresql://postgres@127.0.0.1:5432/test"))
    with pytest.raises(ValueError, match="CRMSYNC_SECRET_KEY must be set"):
        async with app.router.lifespan_context(app):
            pass


def test_json_numbers_are_exact_and_times_are_utc():
    value = {
        "a": Decimal("1E+3"), "b": Decimal("-0.50"), "c": Decimal("NaN"),
        "d": Decimal("98765432109876.5432"), "e": 1.5, "f": True, "g": None,
        "h": datetime(2025, 3, 1, 12, 30, tzinfo=timezone(timedelta(hours=2))),
        "i": datetime(2025, 3, 1, 12, 30, 0, 5), "j": date(2025, 3, 1),
        "k": ["x\"y", {"n": 1}], "l": "\u00e9\u4e2d",
    }
    text = dumps(value)
    assert text == (
        '{"a":1000,"b":-0.50,"c":null,"d":98765432109876.5432,"e":1.5,"f":true,"g":null,'
        '"h":"2025-03-01T10:30:00Z","i":"2025-03-01T12:30:00.000005Z","j":"2025-03-01",'
        '"k":["x\\"y",{"n":1}],"l":"\u00e9\u4e2d"}'
    )
    assert json.loads(text, parse_float=Decimal)["d"] == Decimal("98765432109876.5432")
    with pytest.raises(TypeError):
        dumps({"x": object()})
    # subclasses (enums) as their values; keys as text, True and 1 apart
    from core.types import DealStatus

    assert dumps({DealStatus.WON: [DealStatus.LOST, (1, None)], True: 1}) == (
        '{"won":["lost",[1,null]],"True":1}')
    assert dumps({1: True}) == '{"1":true}'

    # orjson's path (string keys) and the encoder's (the fallback) write the same text
    from api import listing
    from core.types import DealStatus as Status

    rows = {"data": [{**value, "s": Status.WON, "t": (Decimal("0E-7"), 2**63 - 1, -0.0),
                      "u": "\u2028\x1f"}] * 3}
    assert listing.encode(rows) == listing._text(rows).encode()
    assert dumps({"big": 2**70}) == '{"big":1180591620717411303424}'  # the fallback

    assert scalar_text(datetime(2025, 1, 1, tzinfo=UTC)) == "2025-01-01T00:00:00Z"
    assert scalar_text({"deals": {"fetched": 1}}) == '{"deals":{"fetched":1}}'


def test_cursors_round_trip_and_refuse_tampering():
    from fastapi.exceptions import RequestValidationError

    for after in (1, 2, 2**31 - 1):  # ids are 1..2^31-1 (INTEGER columns)
        assert decode_cursor(encode_cursor(after)) == after
    assert decode_cursor(None) is None and decode_cursor("") is None
    for bad in ("%%%", "abc", encode_cursor(5)[:-1] + "!", "azE6eA", encode_cursor(0),
                encode_cursor(2**31), encode_cursor(2**63)):
        with pytest.raises(RequestValidationError):
            decode_cursor(bad)


def test_iter_rows_reads_in_chunks_without_losing_rows(sqlite_engine):
    cid = add_connection(sqlite_engine)
    seed(sqlite_engine, cid, deals=23)
    listing = records_listing("deals", RecordFilters(include_deleted=True))
    for chunk in (1, 5, 23, 100):
        ids = [r["id"] for r in iter_rows(sqlite_engine, listing, chunk_size=chunk)]
        assert len(ids) == 23 and ids == sorted(set(ids))


def test_filters_a_stream_does_not_have_are_refused():
    with pytest.raises(ValueError, match="stages cannot be filtered by owner_email"):
        records_listing("stages", RecordFilters(owner_email="a@b.c"))
    with pytest.raises(ValueError, match="users cannot be filtered by status"):
        records_listing("users", RecordFilters(status="won"))

