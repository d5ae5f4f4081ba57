"""Routes: /metrics/summary (shape, 422s, missing FX rate) and /fx-rates."""

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from core import store
from core.db import session_scope
from core.models import Connection
from core.records import DealRecord, StageRecord, UserRecord
from tests.api_support import make_key, running_api

URL = "/api/v1/metrics/summary"
PERIOD = {"start": "2025-01-01", "end": "2025-03-31"}


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        with session_scope(sqlite_engine) as session:
            us = Connection(provider="zoho", name="us", home_currency="USD")
            eu = Connection(provider="zoho", name="eu", home_currency="EUR")
            session.add_all([us, eu])
            session.flush()
            store.upsert_records(session, stream="users", connection_id=us.id, records=[
                UserRecord("u1", "Ann", "ann@x.com")])
            store.upsert_records(session, stream="deals", connection_id=us.id, records=[
                DealRecord("d1", "D1", amount_home=Decimal("100.10"), status="won",
                           close_date=date(2025, 2, 1), owner_email="ann@x.com",
                           remote_created_at=datetime(2025, 1, 22, 12, tzinfo=UTC))])
            store.upsert_records(session, stream="deals", connection_id=eu.id, records=[
                DealRecord("e1", "E1", amount_home=Decimal("10"), status="won",
                           close_date=date(2025, 3, 1), owner_email="ANN@x.com")])
        yield api


async def test_missing_rate_is_a_422_naming_the_currency_then_works(api):
    response = await api.get(URL, params=PERIOD)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "missing_fx_rate" and "no FX rate for EUR" in error["message"]
    put = await api.client.put("/api/v1/fx-rates/eur", json={"rate_to_reporting": 1.5})
    assert put.status_code == 200, put.text
    response = await api.get(URL, params={**PERIOD, "group_by": "owner"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"], body["currency"], body["group_by"]) == (
        "2025-01-01", "2025-03-31", "USD", "owner")
    assert body["data"] == [{
        "person_id": 1, "owner_email": "ann@x.com", "owner_name": "Ann", "bookings": 115.1,
        "deals_won": 2,
        "deals_lost": 0, "win_rate": 1.0, "avg_deal_size": 57.55, "sales_cycle_days": 10.0,
        "open_pipeline": 0, "weighted_pipeline": 0, "forecast": 115.1, "new_accounts": 0,
        "goal": None, "attainment": None}]
    assert '"bookings":115.10,' in response.text  # exact decimal literal, 2 places
    assert body["total"] == {k: v for k, v in body["data"][0].items()
                             if k not in ("person_id", "owner_email", "owner_name")}


async def test_timestamps_are_taken_as_their_date(api):
    await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": "2"})
    response = await api.get(URL, params={"start": "2025-02-01T00:00:00.000Z",
                                          "end": "2025-02-28T23:59:59+01:00"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["start"], body["end"], body["total"]["bookings"]) == (
        "2025-02-01", "2025-02-28", 100.1)
    by_connection = (await api.get(URL, params={**PERIOD, "group_by": "connection"})).json()
    assert [(r["connection_name"], r["bookings"]) for r in by_connection["data"]] == [
        ("us", 100.1), ("eu", 20)]


@pytest.mark.parametrize("params,field,message", [
    ({"start": "2025-03-01", "end": "2025-01-01"}, None, "start must not be after end"),
    ({"start": "2010-01-01", "end": "2025-01-01"}, None, "must not exceed 10 years"),
    ({**PERIOD, "group_by": "rep"}, "group_by", "must be one of owner, connection, none"),
    ({"start": "2025-13-01", "end": "2025-12-31"}, "start", "must be a date (YYYY-MM-DD)"),
    ({"start": "yesterday", "end": "2025-12-31"}, "start", "ISO-8601 timestamp"),
    ({"end": "2025-12-31"}, "start", "is required"),
    ({**PERIOD, "colour": "red"}, "colour", "is not a known parameter"),
])
async def test_bad_parameters_are_422s_saying_what_is_allowed(api, params, field, message):
    response = await api.get(URL, params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert message in error["message"]
    if field:
        assert error["details"][0]["field"] == field


async def test_metrics_need_a_key_with_read_scope(api):
    response = await api.client.get(URL, params=PERIOD, headers={"Authorization": "Bearer x"})
    assert response.status_code == 401


async def test_fx_rates_put_and_get(api):
    read = {"Authorization": f"Bearer {make_key(api.engine, 'read')}"}
    write = {"Authorization": f"Bearer {make_key(api.engine, 'write')}"}
    url = "/api/v1/fx-rates"
    assert (await api.client.put(f"{url}/EUR", json={"rate_to_reporting": 1},
                                 headers=read)).status_code == 403
    first = await api.client.put(f"{url}/eur", json={"rate_to_reporting": 1.0825},
                                 headers=write)
    assert first.status_code == 200, first.text
    assert first.json()["code"] == "EUR" and '"rate_to_reporting":1.0825,' in first.text
    again = await api.client.put(f"{url}/EUR", json={"rate_to_reporting": "1.09"},
                                 headers=write)
    assert again.json()["rate_to_reporting"] == 1.09
    await api.client.put(f"{url}/CNY", json={"rate_to_reporting": 0.14}, headers=write)
    listed = await api.client.get(url, headers=read)
    assert listed.status_code == 200
    body = listed.json()
    assert body["reporting_currency"] == "USD" and body["next_cursor"] is None
    assert [(r["code"], r["rate_to_reporting"]) for r in body["data"]] == [
        ("CNY", 0.14), ("EUR", 1.09)]


@pytest.mark.parametrize("code,body,field", [
    ("EUR", {"rate_to_reporting": 0}, "rate_to_reporting"),
    ("EUR", {"rate_to_reporting": -1.5}, "rate_to_reporting"),
    ("EUR", {"rate_to_reporting": "abc"}, "rate_to_reporting"),
    ("EUR", {"rate_to_reporting": "NaN"}, "rate_to_reporting"),
    ("EUR", {}, "rate_to_reporting"),
    ("EUR", {"rate_to_reporting": 1, "extra": 1}, "extra"),
    ("EURO", {"rate_to_reporting": 1}, "code"),
    ("E1R", {"rate_to_reporting": 1}, "code"),
])
async def test_bad_fx_rates_are_422s_and_change_nothing(api, code, body, field):
    response = await api.client.put(f"/api/v1/fx-rates/{code}", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == field
    assert (await api.get("/api/v1/fx-rates")).json()["data"] == []


DEALS_URL = "/api/v1/metrics/deals"


async def test_drill_down_pages_and_csv(api):
    # no FX rate is needed: the rows are in their connection's home currency
    first = await api.get(DEALS_URL, params={**PERIOD, "metric": "bookings", "limit": 1})
    assert first.status_code == 200, first.text
    body = first.json()
    assert [r["remote_id"] for r in body["data"]] == ["d1"] and body["next_cursor"]
    assert body["data"][0]["amount_home"] == 100.1 and body["data"][0]["deleted"] is False
    rows = await api.all_pages(DEALS_URL, **PERIOD, metric="deals_won", limit=1,
                               owner_email="ANN@X.COM")
    assert [r["remote_id"] for r in rows] == ["d1", "e1"]
    assert (await api.get(DEALS_URL, params={**PERIOD, "metric": "deals_lost"})).json() == {
        "data": [], "next_cursor": None}
    csv = await api.get(DEALS_URL, params={"start": "2025-02-01T00:00:00Z", "end": "2025-03-31",
                                           "metric": "forecast", "format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith("id,connection_id,remote_id,name,amount,currency,amount_home,")
    assert [line.split(",")[2] for line in lines[1:]] == ["d1", "e1"]
    assert ",100.1,,won,,2025-02-01," in lines[1]  # exact amount_home; no stage


@pytest.mark.parametrize("params,field,message", [
    ({**PERIOD}, "metric", "is required"),
    ({**PERIOD, "metric": "new_accounts"}, "metric", "must be one of bookings, deals_won"),
    ({"start": "2025-03-01", "end": "2025-01-01", "metric": "bookings"}, None,
     "start must not be after end"),
    ({"start": "2010-01-01", "end": "2025-01-01", "metric": "bookings"}, None,
     "must not exceed 10 years"),
    ({"start": "2025-02-30", "end": "2025-03-01", "metric": "bookings"}, "start",
     "must be a date (YYYY-MM-DD)"),
    ({**PERIOD, "metric": "bookings", "limit": 0}, "limit", ""),
    ({**PERIOD, "metric": "bookings", "cursor": "zzz"}, "cursor", "is not a cursor"),
    ({**PERIOD, "metric": "bookings", "group_by": "owner"}, "group_by",
     "is not a known parameter"),
])
async def test_drill_down_bad_parameters(api, params, field, message):
    response = await api.get(DEALS_URL, params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"]
    if field:
        assert error["details"][0]["field"] == field


async def test_pipeline_json_csv_and_422s(api):
    url = "/api/v1/metrics/pipeline"
    with session_scope(api.engine) as session:
        store.upsert_records(session, stream="stages", connection_id=1, records=[
            StageRecord("s1", "Qualify", "open", sort_order=1),
            StageRecord("s2", "Won", "won", sort_order=9)])
        store.upsert_records(session, stream="deals", connection_id=1, records=[
            DealRecord("o1", "O1", amount_home=Decimal("80.5"), status="open",
                       stage="Qualify", stage_remote_id="s1", probability=Decimal("50"))])
        store.upsert_records(session, stream="deals", connection_id=2, records=[
            DealRecord("o2", "O2", amount_home=Decimal("10"), status="open")])
    missing = await api.get(url)
    assert missing.status_code == 422 and missing.json()["error"]["code"] == "missing_fx_rate"
    us_only = await api.get(url, params={"connection_id": 1})
    assert us_only.status_code == 200, us_only.text
    assert us_only.json() == {"currency": "USD", "data": [
        {"connection_id": 1, "pipeline": None, "stage": "Qualify", "sort_order": 1, "count": 1,
         "amount": 80.5, "weighted_amount": 40.25}]}
    await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": "1.5"})
    csv = await api.get(url, headers={"Accept": "text/csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines() == [
        "connection_id,pipeline,stage,sort_order,count,amount,weighted_amount",
        "1,,Qualify,1,1,80.50,40.25",
        "2,,,,1,15.00,0.00"]
    for params, field in [({"format": "xml"}, "format"), ({"start": "2025-01-01"}, "start"),
                          ({"connection_id": "x"}, "connection_id")]:
        bad = await api.get(url, params=params)
        assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == field


SERIES_URL = "/api/v1/metrics/timeseries"


async def test_timeseries_json_and_csv(api):
    await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": "1.5"})
    params = {"metric": "bookings", "interval": "month", "start": "2025-01-01",
              "end": "2025-03-31T12:00:00Z"}
    response = await api.get(SERIES_URL, params=params)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "metric": "bookings", "interval": "month", "start": "2025-01-01", "end": "2025-03-31",
        "currency": "USD", "group_by": "none", "data": [
            {"period_start": "2025-01-01", "period_end": "2025-01-31", "value": 0},
            {"period_start": "2025-02-01", "period_end": "2025-02-28", "value": 100.1},
            {"period_start": "2025-03-01", "period_end": "2025-03-31", "value": 15}]}
    csv = await api.get(SERIES_URL, params={**params, "group_by": "owner", "format": "csv",
                                            "interval": "quarter"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.text.splitlines() == [
        "period_start,period_end,person_id,owner_email,owner_name,value",
        "2025-01-01,2025-03-31,1,ann@x.com,Ann,115.10"]
    teams = await api.get(SERIES_URL, params={**params, "group_by": "team",
                                              "interval": "quarter"})
    assert teams.status_code == 200, teams.text
    assert teams.json()["data"] == [  # Ann has no team: the row of team null
        {"period_start": "2025-01-01", "period_end": "2025-03-31", "team": None,
         "value": 115.1}]
    csv = await api.get(SERIES_URL, params={**params, "group_by": "team", "format": "csv"})
    assert csv.text.splitlines() == [
        "period_start,period_end,team,value", "2025-01-01,2025-01-31,,0.00",
        "2025-02-01,2025-02-28,,100.10", "2025-03-01,2025-03-31,,15.00"]
    win_rate = await api.get(SERIES_URL, params={**params, "metric": "win_rate",
                                                  "interval": "week", "end": "2025-01-12"})
    assert [(r["period_start"], r["value"]) for r in win_rate.json()["data"]] == [
        ("2024-12-30", None), ("2025-01-06", None)]  # Mondays; no deal closed: null


@pytest.mark.parametrize("params,field,message", [
    ({"metric": "goal"}, "metric", "must be one of bookings, deals_won"),
    ({"interval": "day"}, "interval", "must be one of week, month, quarter"),
    ({"group_by": "connection"}, "group_by", "must be one of none, owner, team"),
    ({"start": "2025-04-01"}, None, "start must not be after end"),
    ({"start": "2010-01-01"}, None, "must not exceed 10 years"),
    ({"end": "31/03/2025"}, "end", "must be a date (YYYY-MM-DD)"),
    ({"format": "pdf"}, "format", ""),
    ({"owner_email": "ann@x.com"}, "owner_email", "is not a known parameter"),
])
async def test_timeseries_bad_parameters(api, params, field, message):
    base = {"metric": "bookings", "interval": "month", **PERIOD}
    response = await api.get(SERIES_URL, params={**base, **params})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert message in error["message"]
    if field:
        assert error["details"][0]["field"] == field


async def test_timeseries_missing_rate_is_a_422_for_money_only(api):
    response = await api.get(SERIES_URL, params={"metric": "bookings", "interval": "month",
                                                 **PERIOD})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "missing_fx_rate"
    counts = await api.get(SERIES_URL, params={"metric": "deals_won", "interval": "month",
                                               **PERIOD})  # a count needs no rate
    assert counts.status_code == 200, counts.text
    assert sum(row["value"] for row in counts.json()["data"]) > 0


@pytest.fixture
async def team(api):
    """ann (two won deals), bob (active, nothing), cat (one lost), dan (one won, no name)."""
    with session_scope(api.engine) as session:
        store.upsert_records(session, stream="users", connection_id=1, records=[
            UserRecord("u2", "bob", "bob@x.com"), UserRecord("u3", "Cat", "cat@x.com")])
        store.upsert_records(session, stream="deals", connection_id=1, records=[
            DealRecord("c1", "C1", amount_home=Decimal("5"), status="lost",
                       close_date=date(2025, 2, 1), owner_email="cat@x.com"),
            DealRecord("n1", "N1", amount_home=Decimal("40"), status="won",
                       close_date=date(2025, 2, 1), owner_email="dan@x.com")])
    await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": "1.5"})
    return api


async def _order(api, **params):
    response = await api.get(URL, params={**PERIOD, "group_by": "owner", **params})
    assert response.status_code == 200, response.text
    return [row["owner_email"] for row in response.json()["data"]]


async def test_summary_sort(team):
    # key order without sort; nulls last both ways; ties keep key order
    assert await _order(team) == ["ann@x.com", "bob@x.com", "cat@x.com", "dan@x.com"]
    assert await _order(team, sort="-win_rate") == [
        "ann@x.com", "dan@x.com", "cat@x.com", "bob@x.com"]  # 1, 1, 0, null
    assert await _order(team, sort="win_rate") == [
        "cat@x.com", "ann@x.com", "dan@x.com", "bob@x.com"]
    assert await _order(team, sort="-bookings") == [
        "ann@x.com", "dan@x.com", "bob@x.com", "cat@x.com"]  # 115.1, 40, 0, 0
    assert await _order(team, sort="bookings") == [
        "bob@x.com", "cat@x.com", "dan@x.com", "ann@x.com"]
    assert await _order(team, sort="-attainment") == [  # every goal is null for now
        "ann@x.com", "bob@x.com", "cat@x.com", "dan@x.com"]
    # names case-insensitively (Ann, bob, Cat), the nameless owner last either way
    assert await _order(team, sort="-owner_name") == [
        "cat@x.com", "bob@x.com", "ann@x.com", "dan@x.com"]
    assert await _order(team, sort="owner_name") == [
        "ann@x.com", "bob@x.com", "cat@x.com", "dan@x.com"]
    assert await _order(team, sort="-owner_email") == [
        "dan@x.com", "cat@x.com", "bob@x.com", "ann@x.com"]
    body = (await team.get(URL, params={**PERIOD, "group_by": "connection",
                                        "sort": "-connection_name"})).json()
    assert [r["connection_name"] for r in body["data"]] == ["us", "eu"]
    assert body["total"]["bookings"] == 155.1  # sorting never changes the total


@pytest.mark.parametrize("group_by,sort,allowed", [
    ("owner", "-rank", "must be one of person_id, owner_email, owner_name, bookings,"),
    ("owner", "connection_name", "must be one of person_id, owner_email, owner_name,"),
    ("connection", "owner_email", "must be one of connection_id, connection_name, bookings,"),
    ("none", "owner_email", "must be one of bookings, deals_won, deals_lost, win_rate,"),
    ("owner", "", "goal, attainment, activities (for this group_by), with a leading - for "
               "descending"),
])
async def test_summary_unknown_sort_is_a_422_listing_the_fields(team, group_by, sort, allowed):
    response = await team.get(URL, params={**PERIOD, "group_by": group_by, "sort": sort})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["details"][0]["field"] == "sort" and allowed in error["message"]


async def test_summary_csv(team):
    response = await team.get(URL, params={**PERIOD, "group_by": "owner", "format": "csv",
                                           "sort": "-bookings"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.text.splitlines() == [
        "row_type,person_id,owner_email,owner_name,bookings,deals_won,deals_lost,win_rate,"
        "avg_deal_size,sales_cycle_days,open_pipeline,weighted_pipeline,forecast,new_accounts,"
        "goal,attainment",
        "data,1,ann@x.com,Ann,115.10,2,0,1.0000,57.55,10.00,0.00,0.00,115.10,0,,",
        "data,4,dan@x.com,,40.00,1,0,1.0000,40.00,,0.00,0.00,40.00,0,,",  # a deal's owner
        "data,2,bob@x.com,bob,0.00,0,0,,,,0.00,0.00,0.00,0,,",
        "data,3,cat@x.com,Cat,0.00,0,1,0.0000,,,0.00,0.00,0.00,0,,",
        "total,,,,155.10,3,1,0.7500,51.70,10.00,0.00,0.00,155.10,0,,"]
    by_header = await team.get(URL, params={**PERIOD, "group_by": "none"},
                               headers={"Accept": "text/csv"})
    assert by_header.headers["content-type"].startswith("text/csv")
    lines = by_header.text.splitlines()
    assert lines[0].startswith("row_type,bookings,deals_won,")
    assert [line.split(",")[:2] for line in lines[1:]] == [["data", "155.10"],
                                                           ["total", "155.10"]]
    connection = await team.get(URL, params={**PERIOD, "group_by": "connection",
                                             "format": "csv"})
    assert [line.split(",")[:4] for line in connection.text.splitlines()] == [
        ["row_type", "connection_id", "connection_name", "bookings"],
        ["data", "1", "us", "140.10"], ["data", "2", "eu", "15.00"],
        ["total", "", "", "155.10"]]
    as_json = await team.get(URL, params={**PERIOD, "format": "json"},
                             headers={"Accept": "text/csv"})  # format wins over Accept
    assert as_json.json()["total"]["deals_won"] == 3
    bad = await team.get(URL, params={**PERIOD, "format": "pdf"})
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "format"
