"""Zoho connector against respx-faked Zoho responses (docs/vendors/zoho.md shapes)."""

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from connectors.http import ApiClient, RetryPolicy, build_client
from connectors.zoho import ZohoConfig, ZohoConnector, ZohoSecrets
from core.errors import AuthError

ACCOUNTS = "https://accounts.zoho.eu"
API = "https://www.zohoapis.eu"
FAST = RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.01)


_grants = itertools.count()


def token_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": f"tok-{next(_grants)}",
                                     "api_domain": API, "token_type": "Bearer",
                                     "expires_in": 3600})


def deal(i: int, modified: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": str(1000 + i), "Deal_Name": f"Deal {i}", "Amount": 710, "Currency": "CNY",
        "Exchange_Rate": 7.1, "Stage": "Closed Won", "Pipeline": "Standard (Standard)",
        "Probability": 100, "Closing_Date": "2025-06-30",
        "Owner": {"name": "Jean Lafleur", "id": "77", "email": "Jean.Lafleur@Example.com"},
        "Account_Name": {"name": "King", "id": "55"},
        "Created_Time": "2025-03-01T23:50:00+08:00", "Modified_Time": modified, **extra,
    }


class FakeZoho:
    """Serves Deals sorted by Modified_Time asc with page_token, as §2 documents."""

    def __init__(self, deals: list[dict[str, Any]]) -> None:
        self.deals = deals
        self.requests: list[httpx.Request] = []

    def list(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["Authorization"].startswith("Zoho-oauthtoken ")
        params = request.url.params
        assert "fields" in params and len(params["fields"].split(",")) <= 50
        rows = sorted(self.deals, key=lambda d: (d["Modified_Time"], d["id"]))
        since = request.headers.get("If-Modified-Since")
        if since:
            cut = datetime.fromisoformat(since)
            rows = [d for d in rows if datetime.fromisoformat(d["Modified_Time"]) >= cut]
        if not rows:
            return httpx.Response(304 if since else 204)
        start = int(params.get("page_token", "0") or 0)
        if "page" in params and int(params["page"]) > 10:
            return httpx.Response(400, json={"code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED",
                                             "details": {"limit": 2000}, "status": "error",
                                             "message": "You can only get the first 2000"})
        chunk = rows[start:start + 200]
        more = start + 200 < len(rows)
        return httpx.Response(200, json={"data": chunk, "info": {
            "per_page": 200, "count": len(chunk), "more_records": more,
            "next_page_token": str(start + 200) if more else None}})


def mount_metadata(router: respx.MockRouter) -> None:
    router.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
    router.get(f"{API}/crm/v8/org/currencies").mock(return_value=httpx.Response(200, json={
        "currencies": [{"iso_code": "USD", "is_base": True, "exchange_rate": "1.000000000"},
                       {"iso_code": "CNY", "is_base": False, "exchange_rate": "7.100000000"}]}))
    router.get(f"{API}/crm/v8/org").mock(return_value=httpx.Response(200, json={
        "org": [{"company_name": "Acme", "currency": "USD"}]}))
    router.get(f"{API}/crm/v8/settings/fields").mock(return_value=httpx.Response(200, json={
        "fields": [{"api_name": n} for n in (
            "Deal_Name", "Amount", "Currency", "Exchange_Rate", "Pipeline",
            "Probability", "Closing_Date", "Owner", "Account_Name", "Created_Time",
            "Modified_Time")] + [{"api_name": "Stage", "pick_list_values": [
                {"display_value": "Closed Won", "probability": 100,
                 "forecast_type": "Closed Won"}]}]}))
    router.get(f"{API}/crm/v8/settings/layouts").mock(return_value=httpx.Response(200, json={
        "layouts": [{"id": "9", "name": "Standard"}]}))
    router.get(f"{API}/crm/v8/settings/pipeline").mock(return_value=httpx.Response(200, json={
        "pipeline": [{"display_value": "Standard (Standard)", "id": "P1", "maps": [
            {"display_value": "Qualification", "sequence_number": 1, "id": "S1",
             "forecast_type": "Open"},
            {"display_value": "Closed Won", "sequence_number": 2, "id": "S2",
             "forecast_type": "Closed Won"},
            {"display_value": "Went elsewhere", "sequence_number": 3, "id": "S3",
             "forecast_type": "Closed Lost"}]}]}))


async def collect(stream: str, cursor: dict[str, Any] | None = None,
                  router: respx.MockRouter | None = None) -> tuple[list[Any], ZohoConnector]:
    async with build_client() as client:
        api = ApiClient(client, retry=FAST)
        connector = ZohoConnector(
            ZohoConfig(dc="eu"),
            ZohoSecrets(client_id="cid", client_secret="csecret", refresh_token="rtok"), api)
        pages = [p async for p in connector.read(stream, cursor)]
        return pages, connector


def modified(second: int) -> str:
    base = datetime(2025, 5, 20, 9, 0, tzinfo=UTC).astimezone()
    return (base + timedelta(seconds=second)).isoformat(timespec="seconds")


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_pages_past_2000_records_with_page_token_in_modified_order(respx_mock):
    mount_metadata(respx_mock)
    # 2,450 deals, 450 of which share one Modified_Time straddling page boundaries
    deals = [deal(i, modified(i)) for i in range(2000)]
    deals += [deal(i, modified(5000)) for i in range(2000, 2450)]
    fake = FakeZoho(deals)
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, _ = await collect("deals")
    ids = [r.remote_id for p in pages for r in p.records]
    assert len(ids) == 2450 and len(set(ids)) == 2450
    assert all("page" not in r.url.params for r in fake.requests[1:])  # page_token after p1
    assert all(r.url.params["sort_by"] == "Modified_Time" for r in fake.requests)
    assert all(r.url.params["sort_order"] == "asc" for r in fake.requests)
    assert all(r.url.params["per_page"] == "200" for r in fake.requests)
    assert pages[-1].cursor == {"modified_since": modified(5000)}
    assert len(fake.requests) == 13  # ceil(2450 / 200)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_incremental_overlaps_the_cursor_and_loses_no_same_second_record(respx_mock):
    mount_metadata(respx_mock)
    deals = [deal(i, modified(10)) for i in range(250)]  # all in one second
    fake = FakeZoho(deals)
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, _ = await collect("deals", {"modified_since": modified(10)})
    sent = datetime.fromisoformat(fake.requests[0].headers["If-Modified-Since"])
    assert sent == datetime.fromisoformat(modified(10)) - timedelta(seconds=1)
    assert len({r.remote_id for p in pages for r in p.records}) == 250


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_304_and_204_are_empty(respx_mock):
    mount_metadata(respx_mock)
    fake = FakeZoho([deal(1, modified(1))])
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, _ = await collect("deals", {"modified_since": modified(60)})
    assert pages == [] and fake.requests and "If-Modified-Since" in fake.requests[0].headers
    fake.deals = []
    pages, _ = await collect("deals")
    assert pages == []


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_mapping_converts_currency_times_owner_and_stage_category(respx_mock):
    mount_metadata(respx_mock)
    lost = deal(2, "2025-05-20T09:02:11-04:00", Stage="Went elsewhere", Amount=100,
                Currency="USD", Exchange_Rate=1)
    fake = FakeZoho([deal(1, "2025-05-20T09:02:11+08:00"), lost])
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, _ = await collect("deals")
    won, lost_rec = sorted((r for p in pages for r in p.records), key=lambda r: r.remote_id)
    assert won.amount == Decimal("710") and won.exchange_rate == Decimal("7.1")
    assert won.amount_home == Decimal("100.0") and won.currency == "CNY"
    assert won.status == "won" and won.stage_remote_id == "P1:S2"
    assert won.owner_email == "jean.lafleur@example.com"
    assert won.remote_modified_at == datetime(2025, 5, 20, 1, 2, 11, tzinfo=UTC)
    assert won.remote_created_at == datetime(2025, 3, 1, 15, 50, tzinfo=UTC)
    assert won.raw is not None and won.raw["Amount"] == 710
    assert lost_rec.status == "lost"  # typed by forecast_type, not by its name


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_stages_come_from_pipeline_metadata(respx_mock):
    mount_metadata(respx_mock)
    pages, _ = await collect("stages")
    by_name = {s.name: s for s in pages[0].records}
    assert {n: s.category for n, s in by_name.items()} == {
        "Qualification": "open", "Closed Won": "won", "Went elsewhere": "lost"}
    assert by_name["Closed Won"].probability == Decimal(100)


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_deletions_become_tombstones_with_cursor(respx_mock):
    mount_metadata(respx_mock)
    respx_mock.get(f"{API}/crm/v8/Deals/deleted").mock(return_value=httpx.Response(200, json={
        "data": [{"id": "1001", "type": "recycle", "deleted_time": "2025-06-19T11:19:38+05:30",
                  "display_name": "Deal 1", "deleted_by": None, "created_by": None}],
        "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}}))
    respx_mock.get(f"{API}/crm/v8/Accounts/deleted").mock(return_value=httpx.Response(204))
    respx_mock.get(f"{API}/crm/v8/Calls/deleted").mock(return_value=httpx.Response(200, json={
        "data": [{"id": "3001", "type": "permanent", "deleted_time": "2025-06-20T08:00:00+00:00",
                  "display_name": None, "deleted_by": None, "created_by": None}],
        "info": {"per_page": 200, "count": 1, "page": 1, "more_records": False}}))
    for module in ("Events", "Tasks"):
        respx_mock.get(f"{API}/crm/v8/{module}/deleted").mock(return_value=httpx.Response(204))
    pages, _ = await collect("deletions")
    deletions = [d for p in pages for d in p.deletions]
    assert [(d.entity, d.remote_id) for d in deletions] == [("deals", "1001"),
                                                            ("activities", "3001")]
    assert deletions[0].deleted_at == datetime(2025, 6, 19, 5, 49, 38, tzinfo=UTC)
    assert pages[-1].cursor == {"deals": "2025-06-19T11:19:38+05:30", "accounts": None,
                                "Calls": "2025-06-20T08:00:00+00:00", "Events": None,
                                "Tasks": None}  # docs/vendors/zoho.md §14: per module


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_expired_token_mid_sync_refreshes_once_and_retries(respx_mock):
    mount_metadata(respx_mock)
    fake = FakeZoho([deal(i, modified(i)) for i in range(450)])
    state = {"n": 0}

    def expiring(request: httpx.Request) -> httpx.Response:
        state["n"] += 1
        if state["n"] == 2:  # the second page finds the token expired
            return httpx.Response(401, json={"code": "INVALID_TOKEN", "details": {},
                                             "message": "invalid oauth token",
                                             "status": "error"})
        return fake.list(request)

    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=expiring)
    pages, _ = await collect("deals")
    assert sum(len(p.records) for p in pages) == 450
    token_calls = respx_mock.routes[0].calls
    assert len(token_calls) == 2  # the first grant and one refresh
    tokens = {r.headers["Authorization"] for r in fake.requests}
    assert len(tokens) == 2


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_429_and_500_are_retried(respx_mock):
    mount_metadata(respx_mock)
    fake = FakeZoho([deal(i, modified(i)) for i in range(10)])
    answers = iter([
        httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "details": {},
                                  "message": "too many", "status": "error"}),
        httpx.Response(500, json={"code": "INTERNAL_ERROR", "details": {},
                                  "message": "x", "status": "error"}),
        httpx.Response(200, content=b'{"data": [{"id": "1"'),  # truncated body
    ])
    respx_mock.get(f"{API}/crm/v8/Deals").mock(
        side_effect=lambda r: next(answers, None) or fake.list(r))
    pages, connector = await collect("deals")
    assert sum(len(p.records) for p in pages) == 10
    assert connector.api_calls >= 4 + 1  # three failures, the success, the token


@pytest.mark.parametrize("error", ["invalid_code", "invalid_client"])
@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_rejected_refresh_token_is_an_auth_error_without_secrets(respx_mock, error):
    respx_mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(
        return_value=httpx.Response(200, json={"error": error}))
    with pytest.raises(AuthError) as caught:
        await collect("deals")
    message = str(caught.value)
    assert error in message
    assert "csecret" not in message and "rtok" not in message
    sent = respx_mock.calls[0].request
    assert b"rtok" in sent.content and "rtok" not in str(sent.url)  # form body, not URL


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_token_endpoint_throttle_backs_off(respx_mock):
    answers = iter([httpx.Response(400, json={
        "error": "Access Denied",
        "error_description": "You have made too many requests continuously."})])
    respx_mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(
        side_effect=lambda r: next(answers, None) or token_ok(r))
    mount_metadata(respx_mock)
    async with build_client() as client:
        api = ApiClient(client, retry=RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.01))
        connector = ZohoConnector(ZohoConfig(dc="eu"), ZohoSecrets(
            client_id="c", client_secret="s", refresh_token="r"), api)
        info = await connector.check()
    assert info.home_currency == "USD" and info.organization == "Acme"


async def test_config_validation():
    assert ZohoConfig(dc="com.cn").token_url == "https://accounts.zoho.com.cn/oauth/v2/token"
    assert ZohoConfig(accounts_url="http://127.0.0.1:9/").token_url == (
        "http://127.0.0.1:9/oauth/v2/token")
    with pytest.raises(ValueError, match="dc"):
        ZohoConfig(dc="mars")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ZohoSecrets(client_id="a", client_secret=" ", refresh_token="r")


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_an_org_without_multi_currency_syncs_in_its_home_currency(respx_mock):
    """GET /org/currencies answers 403 CURRENCIES_NOT_ENABLED below Enterprise (zoho/crm-oas
    getCurrencies example response-403-currenciesnotenabled) and deals have no Currency or
    Exchange_Rate: home currency from /org iso_code, amount_home = Amount."""
    mount_metadata(respx_mock)
    respx_mock.get(f"{API}/crm/v8/org/currencies").mock(return_value=httpx.Response(403, json={
        "code": "CURRENCIES_NOT_ENABLED", "details": {},
        "message": "Multi currency is not enabled", "status": "error"}))
    respx_mock.get(f"{API}/crm/v8/org").mock(return_value=httpx.Response(200, json={
        "org": [{"company_name": "Acme", "iso_code": "INR", "currency": "Indian Rupee - INR",
                 "mc_status": False}]}))
    respx_mock.get(f"{API}/crm/v8/settings/fields").mock(return_value=httpx.Response(200, json={
        "fields": [{"api_name": n} for n in ("Deal_Name", "Amount", "Stage", "Closing_Date",
                                             "Owner", "Modified_Time")]}))
    one = deal(1, modified(0))
    del one["Currency"], one["Exchange_Rate"]
    fake = FakeZoho([one])
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, connector = await collect("deals")
    [record] = pages[0].records
    assert (record.currency, record.exchange_rate) == ("INR", Decimal(1))
    assert record.amount == record.amount_home == Decimal(710)
    asked = fake.requests[0].url.params["fields"].split(",")
    assert "Amount" in asked and not {"Currency", "Exchange_Rate"} & set(asked)
    assert connector.home_currency == "INR" and connector.multi_currency is False


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_a_deal_matches_its_stage_on_display_or_actual_value(respx_mock):
    """v8 pipeline maps may differ in display and actual value (crm-oas getPipelines example
    response-200-pipelinegetresponse: "Identify Decision Makers" / "Id. Decision Makers")."""
    mount_metadata(respx_mock)
    respx_mock.get(f"{API}/crm/v8/settings/pipeline").mock(return_value=httpx.Response(
        200, json={"pipeline": [{"display_value": "Standard (Standard)", "id": "P1", "maps": [
            {"display_value": "Identify Decision Makers", "actual_value": "Id. Decision Makers",
             "sequence_number": 3, "id": "S3", "forecast_type": "Open"},
            {"display_value": "Lost (competition)", "actual_value": "Closed Lost to Competition",
             "sequence_number": 8, "id": "S8", "forecast_type": "Closed Lost"}]}]}))
    fake = FakeZoho([deal(1, modified(0), Stage="Id. Decision Makers"),
                     deal(2, modified(1), Stage="Identify Decision Makers"),
                     deal(3, modified(2), Stage="Closed Lost to Competition")])
    respx_mock.get(f"{API}/crm/v8/Deals").mock(side_effect=fake.list)
    pages, _ = await collect("deals")
    got = [(r.stage, r.stage_remote_id, r.status) for r in pages[0].records]
    assert got == [("Identify Decision Makers", "P1:S3", "open"),
                   ("Identify Decision Makers", "P1:S3", "open"),
                   ("Lost (competition)", "P1:S8", "lost")]


def test_every_data_centre_has_its_accounts_server():
    """https://www.zoho.com/accounts/protocol/oauth/multi-dc.html (and CN, AE)."""
    servers = {dc: ZohoConfig(dc=dc).token_url for dc in (  # type: ignore[arg-type]
        "com", "us", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa", "uk", "ae")}
    assert servers["us"] == servers["com"] == "https://accounts.zoho.com/oauth/v2/token"
    assert servers["uk"] == "https://accounts.zoho.uk/oauth/v2/token"
    assert servers["ca"] == "https://accounts.zohocloud.ca/oauth/v2/token"
    assert len(set(servers.values())) == 10


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_stage_history_is_ordered_mapped_and_without_repeats(respx_mock):
    # §13: a related list, newest first (order not relied on), 204 for a deal without rows
    mount_metadata(respx_mock)
    rows = [{"id": "h3", "Stage": "Closed Won", "Last_Modified_Time": modified(300)},
            {"id": "h2", "Stage": "Qualification", "Last_Modified_Time": modified(200)},
            {"id": "h1", "Stage": "Qualification", "Last_Modified_Time": modified(0)}]
    history = respx_mock.get(f"{API}/crm/v8/Deals/77/Stage_History").mock(
        return_value=httpx.Response(200, json={"data": rows, "info": {
            "per_page": 200, "count": 3, "page": 1, "more_records": False}}))
    respx_mock.get(f"{API}/crm/v8/Deals/78/Stage_History").mock(
        return_value=httpx.Response(204))
    async with build_client() as client:
        connector = ZohoConnector(
            ZohoConfig(dc="eu"),
            ZohoSecrets(client_id="cid", client_secret="csecret", refresh_token="rtok"),
            ApiClient(client, retry=FAST))
        changes = await connector.read_stage_history(["77", "78"])
    assert [(c.deal_remote_id, c.from_stage, c.to_stage, c.changed_at.second)
            for c in changes] == [("77", None, "Qualification", 0),
                                  ("77", "Qualification", "Closed Won", 0)]
    assert changes[1].changed_at - changes[0].changed_at == timedelta(seconds=300)
    params = history.calls[0].request.url.params
    assert (params["fields"], params["per_page"]) == (
        "Stage,Probability,Last_Modified_Time,Modified_By", "200")


def test_timestamps_are_utc_and_the_newest_is_compared_as_an_instant() -> None:
    """mapping.timestamp: any offset, a trailing Z and a naive time (UTC) give the same
    aware UTC instant; _newest keeps the value as sent, and the first of equal instants."""
    from connectors.zoho import mapping
    from connectors.zoho.connector import _newest

    at = datetime(2024, 3, 1, 4, 30, tzinfo=UTC)
    for sent in ("2024-03-01T10:00:00+05:30", "2024-03-01T04:30:00Z",
                 "2024-03-01T04:30:00", "2024-02-29T21:30:00-07:00"):
        parsed = mapping.timestamp(sent)
        assert parsed == at and parsed is not None and parsed.tzinfo is UTC, sent
    assert mapping.timestamp(None) is None and mapping.timestamp("") is None
    assert _newest("2024-03-01T10:00:00+05:30",
                   ["2024-03-01T04:30:00Z", "2024-03-01T04:29:59Z"]) == "2024-03-01T10:00:00+05:30"
    assert _newest(None, ["2024-03-01T10:00:00+05:30", "2024-03-01T04:30:01",
                          None]) == "2024-03-01T04:30:01"
