"""HubSpot connector against respx-faked HubSpot answers (docs/vendors/hubspot.md shapes):
paging, search windows past the 10,000 cap (also >10,000 records in one millisecond),
archived records, merges, token refresh by expiry, 429 policies, rate-limit headers,
error bodies, dates and currency."""

import asyncio
import sys
import time
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import respx

from connectors.base import WebhookRejected, WebhookRequest, WebhookSecrets
from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector, HubSpotSecrets
from connectors.hubspot import client as hubspot_client
from connectors.hubspot.client import DailyLimitReached, HubSpotError
from connectors.hubspot.wire import SEARCH_CAP, signature_v3
from core.errors import AuthError, ConfigError, RateLimited

API = "https://api.hubapi.com"
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
T0 = 1_767_000_000_000  # epoch ms


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def deal(i: int, modified_ms: int, **props: Any) -> dict[str, Any]:
    return {"id": str(i), "properties": {
        "dealname": f"Deal {i}", "amount": "100.00", "deal_currency_code": "EUR",
        "amount_in_home_currency": "108.70", "dealstage": "closedwon", "pipeline": "default",
        "closedate": "2026-03-31T00:00:00Z", "hubspot_owner_id": "910901",
        "createdate": iso(T0 - 86_400_000), "hs_lastmodifieddate": iso(modified_ms),
        "hs_object_id": str(i), **props},
        "createdAt": iso(T0 - 86_400_000), "updatedAt": iso(modified_ms), "archived": False,
        "modified_ms": modified_ms}  # for FakeSearch; not a HubSpot field


def connector(secrets: dict[str, str] | None = None, **config: Any) -> HubSpotConnector:
    api = ApiClient(build_client(), retry=FAST, limits=LocalLimits())
    return HubSpotConnector(HubSpotConfig.model_validate(config),
                            HubSpotSecrets.model_validate(secrets or {"access_token": "pat-1"}),
                            api)


def mount_metadata(router: respx.MockRouter) -> None:
    router.get(f"{API}/crm/v3/owners/").mock(side_effect=lambda r: httpx.Response(200, json={
        "results": [] if r.url.params["archived"] == "true" else [
            {"id": "910901", "userId": 1296619, "email": "J.Smith@Example.com",
             "firstName": "John", "lastName": "Smith", "archived": False,
             "teams": [{"id": "178588", "name": "West Coast Sales", "primary": True}]}]}))
    router.get(f"{API}/settings/v3/currencies/company-currency").mock(
        return_value=httpx.Response(200, json={"currencyCode": "USD"}))
    router.get(f"{API}/settings/v3/currencies/exchange-rates/current").mock(
        return_value=httpx.Response(200, json={"results": [
            {"fromCurrencyCode": "EUR", "toCurrencyCode": "USD", "conversionRate": 1.087}]}))
    router.get(f"{API}/crm/v3/pipelines/deals").mock(return_value=httpx.Response(200, json={
        "results": [{"id": "default", "label": "Sales", "stages": [
            {"id": "appt", "label": "Appointment", "displayOrder": 0,
             "metadata": {"isClosed": "false", "probability": "0.2"}},
            {"id": "closedwon", "label": "Signed!", "displayOrder": 5,
             "metadata": {"isClosed": "true", "probability": "1.0"}},
            {"id": "closedlost", "label": "Gone quiet", "displayOrder": 6,
             "metadata": {"isClosed": "true", "probability": "0.0"}}]}]}))


class FakeSearch:
    """§3 search over `rows`: filters on hs_lastmodifieddate / hs_object_id, one sort,
    200 a page, 400 past the 10,000 cap."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.bodies: list[dict[str, Any]] = []
        self.modified = {r["id"]: r["modified_ms"] for r in rows}
        self.found: dict[bytes, list[dict[str, Any]]] = {}

    def value(self, row: dict[str, Any], name: str) -> int:
        if name == "hs_object_id":
            return int(row["id"])
        return self.modified[row["id"]]

    def matches(self, filters: list[dict[str, str]], sort: dict[str, str]) -> list[Any]:
        """The rows a search's filters match, in its order; the pages of one search filter
        and sort once (the rows do not change during a test)."""
        key = orjson.dumps([filters, sort])
        if key not in self.found:
            ops = {"GTE": int.__ge__, "LTE": int.__le__, "GT": int.__gt__, "EQ": int.__eq__}
            found = [r for r in self.rows if all(
                ops[f["operator"]](self.value(r, f["propertyName"]), int(f["value"]))
                for f in filters)]
            found.sort(key=lambda r: (self.value(r, sort["propertyName"]), int(r["id"])))
            self.found[key] = found
        return self.found[key]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        self.bodies.append(body)
        after, limit = int(body.get("after") or 0), body["limit"]
        assert limit <= 200 and len(request.content) <= 3000
        if after + limit > SEARCH_CAP:
            return httpx.Response(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                             "message": "paging past 10000", "correlationId": "x"})
        found = self.matches(body["filterGroups"][0]["filters"],
                             (body.get("sorts") or [{"propertyName": "hs_object_id"}])[0])
        page = found[after:after + limit]
        answer: dict[str, Any] = {"total": len(found), "results": page}
        if after + limit < len(found):
            answer["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=answer)


def no_associations(request: httpx.Request) -> httpx.Response:
    ids = [i["id"] for i in orjson.loads(request.content)["inputs"]]
    return httpx.Response(200, json={"status": "COMPLETE", "results": [
        {"from": {"id": i}, "to": [{"toObjectId": 201, "associationTypes": []}]} for i in ids]})


@pytest.fixture(autouse=True)
def fast_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hubspot_client, "SEARCH_RATE", hubspot_client.RateBudget(10_000, 1.0))


@respx.mock
async def test_a_full_read_pages_with_after_and_maps_deals() -> None:
    mount_metadata(respx)
    first = [deal(1, T0), deal(2, T0 + 5)]
    first[0]["associations"] = {"companies": {"results": [{"id": "201",
                                                           "type": "deal_to_company"}]}}
    route = respx.get(f"{API}/crm/v3/objects/deals").mock(side_effect=[
        httpx.Response(200, json={"results": first, "paging": {"next": {"after": "3"}}}),
        httpx.Response(200, json={"results": [deal(3, T0 + 1, amount_in_home_currency=None,
                                                   dealstage="closedlost")]})])
    source = connector()
    pages = [p async for p in source.read("deals", None)]
    assert [p.cursor for p in pages] == [
        {"after": "3", "newest": T0 + 5, "started": pages[0].cursor["started"]},  # type: ignore[index]
        {"since": T0 + 5}]
    assert route.calls[1].request.url.params["after"] == "3"
    assert route.calls[0].request.url.params["limit"] == "100"
    one, _, three = [r for p in pages for r in p.records]
    assert (one.status, one.stage, one.account_remote_id) == ("won", "Signed!", "201")
    assert (one.amount, one.currency, one.amount_home) == (Decimal("100.00"), "EUR",
                                                           Decimal("108.70"))
    assert one.close_date == date(2026, 3, 31)  # the calendar day picked, no zone shift
    assert (one.owner_remote_id, one.owner_email, one.owner_name) == (
        "910901", "j.smith@example.com", "John Smith")  # the owner id, not the userId
    assert three.status == "lost"
    assert three.amount_home == Decimal("108.7000")  # amount x conversionRate (§6)
    assert three.exchange_rate == (Decimal(1) / Decimal("1.087")).quantize(Decimal("1e-10"))


@respx.mock
async def test_incremental_search_windows_never_page_past_the_cap() -> None:
    mount_metadata(respx)
    respx.post(f"{API}/crm/v4/associations/deals/companies/batch/read").mock(
        side_effect=no_associations)
    # 10,300 deals modified in one millisecond, then 450 later ones spread out
    rows = [deal(100_000 + i, T0 + 10_000) for i in range(10_300)]
    rows += [deal(200_000 + i, T0 + 20_000 + i) for i in range(450)]
    fake = FakeSearch(rows)
    respx.post(f"{API}/crm/v3/objects/deals/search").mock(side_effect=fake)
    source = connector(burst_limit=190)  # §7: Professional's 190 calls per 10 s (not 100)
    pages = [p async for p in source.read("deals", {"since": T0})]
    seen = [r.remote_id for p in pages for r in p.records]
    assert set(seen) == {r["id"] for r in rows}  # everything, despite the cap
    assert all(int(b.get("after") or 0) + b["limit"] <= SEARCH_CAP for b in fake.bodies)
    walks = [b for b in fake.bodies if b.get("sorts", [{}])[0].get("propertyName") ==
             "hs_object_id"]
    assert walks, "more than 10,000 in one millisecond needs the hs_object_id walk"
    assert all(p.cursor and p.cursor["since"] >= T0 for p in pages)
    first = fake.bodies[0]["filterGroups"][0]["filters"]
    assert first[0] == {"propertyName": "hs_lastmodifieddate", "operator": "GTE",
                        "value": str(T0 - 1000)}  # the overlap
    assert len(seen) == len(rows)  # the crowded instant is walked once, nothing re-read


@respx.mock
async def test_a_search_page_s_associations_are_read_in_one_call() -> None:
    """§2: the association batch read takes up to 1,000 ids (since 2025-02-10): a search page
    of 150 changed deals asks for their companies once, not in batches of 100."""
    mount_metadata(respx)
    links = respx.post(f"{API}/crm/v4/associations/deals/companies/batch/read").mock(
        side_effect=no_associations)
    rows = [deal(300_000 + i, T0 + 1_000 + i) for i in range(150)]
    respx.post(f"{API}/crm/v3/objects/deals/search").mock(side_effect=FakeSearch(rows))
    pages = [p async for p in connector().read("deals", {"since": T0})]
    records = [r for p in pages for r in p.records]
    assert len(records) == 150 and {r.account_remote_id for r in records} == {"201"}
    assert links.call_count == 1
    assert len(orjson.loads(links.calls[0].request.content)["inputs"]) == 150


@respx.mock
async def test_a_207_naming_records_without_a_company_leaves_them_without_one() -> None:
    """§2: inputs without an association are named in `errors` with a 207 (a success): the
    others keep their company, those get none, and the read goes on."""
    mount_metadata(respx)

    def half(request: httpx.Request) -> httpx.Response:
        ids = [i["id"] for i in orjson.loads(request.content)["inputs"]]
        linked, alone = ids[::2], ids[1::2]
        return httpx.Response(207, json={
            "status": "COMPLETE", "numErrors": len(alone),
            "results": [{"from": {"id": i}, "to": [{"toObjectId": 201, "associationTypes": []}]}
                        for i in linked],
            "errors": [{"status": "error", "category": "OBJECT_NOT_FOUND",
                        "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                        "message": f"No company is associated with deal {i}.",
                        "context": {"fromObjectId": [i]}} for i in alone]})

    respx.post(f"{API}/crm/v4/associations/deals/companies/batch/read").mock(side_effect=half)
    rows = [deal(400_000 + i, T0 + 1_000 + i) for i in range(4)]
    respx.post(f"{API}/crm/v3/objects/deals/search").mock(side_effect=FakeSearch(rows))
    pages = [p async for p in connector().read("deals", {"since": T0})]
    found = {r.remote_id: r.account_remote_id for p in pages for r in p.records}
    assert found == {"400000": "201", "400001": None, "400002": "201", "400003": None}


@respx.mock
async def test_a_crowded_instant_after_earlier_records_is_read_once() -> None:
    """A mass update after the cursor's last records: the window's first page holds a few
    earlier records, then the instant of over 10,000; those are read, then the instant is
    walked by id, not first read up to the cap by the window."""
    mount_metadata(respx)
    respx.post(f"{API}/crm/v4/associations/deals/companies/batch/read").mock(
        side_effect=no_associations)
    rows = [deal(90_000 + i, T0 - 500 + i) for i in range(40)]  # inside the overlap
    rows += [deal(100_000 + i, T0 + 10_000) for i in range(10_300)]
    fake = FakeSearch(rows)
    respx.post(f"{API}/crm/v3/objects/deals/search").mock(side_effect=fake)
    pages = [p async for p in connector(burst_limit=190).read("deals", {"since": T0})]
    seen = [r.remote_id for p in pages for r in p.records]
    assert set(seen) == {r["id"] for r in rows}
    assert len(seen) == len(rows)  # nothing read twice
    assert all(int(b.get("after") or 0) + b["limit"] <= SEARCH_CAP for b in fake.bodies)
    # a page, two counts, the walk's 52 pages and the empty window after it (reading the
    # instant up to the cap first would take 50 more)
    assert len(fake.bodies) <= 57, len(fake.bodies)


@respx.mock
async def test_archived_records_become_tombstones_once() -> None:
    archived = [{"id": "7", "properties": {"hs_object_id": "7"}, "archived": True,
                 "archivedAt": iso(T0)},
                {"id": "8", "properties": {"hs_object_id": "8"}, "archived": True,
                 "archivedAt": iso(T0 + 60_000)}]
    deals = respx.get(f"{API}/crm/v3/objects/deals", params={"archived": "true"}).mock(
        return_value=httpx.Response(200, json={"results": archived}))
    respx.get(f"{API}/crm/v3/objects/companies", params={"archived": "true"}).mock(
        return_value=httpx.Response(200, json={"results": []}))
    source = connector()
    pages = [p async for p in source.read("deletions", None)]
    assert {(d.entity, d.remote_id) for p in pages for d in p.deletions} == {
        ("deals", "7"), ("deals", "8")}
    cursor = pages[-1].cursor
    assert cursor == {"deals": T0 + 60_000, "accounts": 0}
    later = [p async for p in source.read("deletions", {"deals": T0 + 30_000, "accounts": 0})]
    assert [d.remote_id for p in later for d in p.deletions] == ["8"]
    assert deals.calls[0].request.url.params["archived"] == "true"


@respx.mock
async def test_merged_away_ids_are_tombstoned_with_the_primary() -> None:
    mount_metadata(respx)
    respx.get(f"{API}/crm/v3/objects/deals").mock(return_value=httpx.Response(200, json={
        "results": [deal(5, T0 + 9, hs_merged_object_ids="11;12")]}))
    pages = [p async for p in connector().read("deals", None)]
    gone = [(d.entity, d.remote_id, d.deleted_at) for p in pages for d in p.deletions]
    assert [g[:2] for g in gone] == [("deals", "11"), ("deals", "12")]
    assert all(g[2] == pages[0].records[0].remote_modified_at for g in gone)


@respx.mock
async def test_oauth_tokens_are_refreshed_by_expires_in_not_by_a_401() -> None:
    grants = iter(range(100))
    token = respx.post(f"{API}/oauth/2026-03/token").mock(side_effect=lambda r: httpx.Response(
        200, json={"token_type": "bearer", "access_token": f"tok-{next(grants)}",
                   "refresh_token": "r", "expires_in": 121}))
    used: list[str] = []

    def currency(request: httpx.Request) -> httpx.Response:
        used.append(request.headers["Authorization"])
        return httpx.Response(200, json={"currencyCode": "USD"})

    respx.get(f"{API}/settings/v3/currencies/company-currency").mock(side_effect=currency)
    source = connector({"client_id": "c", "client_secret": "s", "refresh_token": "r"})
    await source.call("GET", "/settings/v3/currencies/company-currency")
    await source.call("GET", "/settings/v3/currencies/company-currency")
    assert token.call_count == 1 and used == ["Bearer tok-0", "Bearer tok-0"]
    form = dict(x.split("=") for x in token.calls[0].request.content.decode().split("&"))
    assert form == {"grant_type": "refresh_token", "client_id": "c", "client_secret": "s",
                    "refresh_token": "r"}
    await asyncio.sleep(1.1)  # expires_in 121 s less the 120 s margin has run out
    await source.call("GET", "/settings/v3/currencies/company-currency")
    assert token.call_count == 2 and used[-1] == "Bearer tok-1"


@respx.mock
async def test_the_legacy_token_endpoint_is_the_fallback_and_rfc6749_errors_need_reauth() -> None:
    respx.post(f"{API}/oauth/2026-03/token").mock(return_value=httpx.Response(404))
    respx.post(f"{API}/oauth/v1/token").mock(return_value=httpx.Response(400, json={
        "error": "invalid_grant", "error_description": "missing or unknown refresh token",
        "status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}))
    source = connector({"client_id": "c", "client_secret": "s", "refresh_token": "revoked"})
    with pytest.raises(AuthError) as caught:
        await source.check()
    assert "invalid_grant" in str(caught.value) and "BAD_REFRESH_TOKEN" in str(caught.value)
    assert "revoked" not in str(caught.value).replace("was revoked", "")  # no secret echoed


@respx.mock
async def test_429_ten_secondly_backs_off_and_daily_stops_the_run() -> None:
    body = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
            "errorType": "RATE_LIMIT", "correlationId": "c", "policyName": "TEN_SECONDLY_ROLLING"}
    route = respx.get(f"{API}/settings/v3/currencies/company-currency").mock(side_effect=[
        httpx.Response(429, json=body), httpx.Response(200, json={"currencyCode": "EUR"})])
    assert (await connector().call("GET", "/settings/v3/currencies/company-currency")) == {
        "currencyCode": "EUR"}
    assert route.call_count == 2
    daily = {**body, "policyName": "DAILY", "message": "You have reached your daily limit."}
    route = respx.get(f"{API}/crm/v3/pipelines/deals").mock(
        return_value=httpx.Response(429, json=daily))
    with pytest.raises(DailyLimitReached, match="next sync resumes"):
        await connector().call("GET", "/crm/v3/pipelines/deals")
    assert route.call_count == 1  # not retried
    route = respx.get(f"{API}/crm/v3/owners/").mock(return_value=httpx.Response(429, json=body))
    with pytest.raises(RateLimited):
        await connector().call("GET", "/crm/v3/owners/")
    assert route.call_count == FAST.attempts


@respx.mock
async def test_the_rate_limit_headers_lower_the_burst_budget() -> None:
    respx.get(f"{API}/crm/v3/pipelines/deals").mock(return_value=httpx.Response(
        200, json={"results": []}, headers={"X-HubSpot-RateLimit-Max": "20",
                                            "X-HubSpot-RateLimit-Remaining": "19",
                                            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}))
    source = connector(burst_limit=100)
    assert source.burst_budget() == 90
    await source.call("GET", "/crm/v3/pipelines/deals")
    assert source.burst_budget() == 18  # 90% of what HubSpot says the tier allows


@pytest.mark.parametrize(("status", "body", "error"), [
    (401, {"status": "error", "message": "expired", "category": "EXPIRED_AUTHENTICATION",
           "correlationId": "c"}, AuthError),
    (403, {"status": "error", "message": "missing scopes", "category": "MISSING_SCOPES",
           "correlationId": "c"}, ConfigError),
    (400, {"status": "error", "message": "bad filter", "category": "VALIDATION_ERROR",
           "correlationId": "c"}, HubSpotError),
    (404, {"status": "error", "message": "gone", "category": "OBJECT_NOT_FOUND",
           "correlationId": "c"}, HubSpotError),
])
@respx.mock
async def test_every_error_body_is_classified(status: int, body: dict[str, Any],
                                              error: type[Exception]) -> None:
    route = respx.get(f"{API}/crm/v3/pipelines/deals").mock(
        return_value=httpx.Response(status, json=body))
    with pytest.raises(error) as caught:
        await connector().call("GET", "/crm/v3/pipelines/deals")
    assert route.call_count == 1
    assert "pat-1" not in str(caught.value)
    if isinstance(caught.value, HubSpotError):
        assert caught.value.category == body["category"]


@respx.mock
async def test_server_errors_are_retried() -> None:
    route = respx.get(f"{API}/crm/v3/pipelines/deals").mock(side_effect=[
        httpx.Response(502, text="bad gateway"), httpx.Response(200, json={"results": []})])
    assert await connector().call("GET", "/crm/v3/pipelines/deals") == {"results": []}
    assert route.call_count == 2


def test_secrets_need_a_token_or_a_whole_oauth_client() -> None:
    HubSpotSecrets.model_validate({"access_token": "pat"})
    HubSpotSecrets.model_validate({"client_id": "c", "client_secret": "s", "refresh_token": "r"})
    for bad in ({}, {"client_id": "c", "client_secret": "s"}, {"access_token": " "}):
        with pytest.raises(ValueError):
            HubSpotSecrets.model_validate(bad)


# -- webhooks (§8) -------------------------------------------------------------------------

URL = "https://crm.example.com/api/v1/webhooks/hubspot/3"
EVENTS = [{"eventId": 1, "subscriptionId": 4, "portalId": 62515, "appId": 54321,
           "occurredAt": T0, "subscriptionType": "deal.propertyChange", "attemptNumber": 0,
           "objectId": 512, "propertyName": "amount", "propertyValue": "10"},
          {"eventId": 2, "subscriptionId": 4, "portalId": 62515, "appId": 54321,
           "occurredAt": T0, "subscriptionType": "deal.deletion", "attemptNumber": 0,
           "objectId": 513}]


def signed(body: bytes, *, secret: str = "app-secret", url: str = URL,
           at_ms: int | None = None) -> WebhookRequest:
    stamp = str(int(time.time() * 1000) if at_ms is None else at_ms)
    return WebhookRequest(body, {"X-HubSpot-Signature-v3": signature_v3(secret, "POST", url, body,
                                                                         stamp),
                                 "X-HubSpot-Request-Timestamp": stamp}, {}, "POST", url)


KNOWN = WebhookSecrets({"client_secret": "app-secret"}, {})


def test_a_signed_batch_is_accepted_and_split_by_event_id() -> None:
    intake = HubSpotConnector.parse_webhook(signed(orjson.dumps(EVENTS)), KNOWN)
    assert [key for key, _ in intake.events] == ["54321:1", "54321:2"]
    assert intake.events[1][1]["subscriptionType"] == "deal.deletion"


def test_forged_unsigned_stale_and_secretless_callbacks_are_refused() -> None:
    body = orjson.dumps(EVENTS)
    forged = signed(body, secret="guess")
    unsigned = WebhookRequest(body, {}, {}, "POST", URL)
    stale = signed(body, at_ms=int(time.time() * 1000) - 5 * 60 * 1000 - 1000)
    moved = signed(body, url="https://evil.example.com/hook")
    altered = signed(body)
    altered = WebhookRequest(body.replace(b"512", b"999"), altered.headers, {}, "POST", URL)
    for request in (forged, unsigned, stale, altered, WebhookRequest(
            moved.body, moved.headers, {}, "POST", URL)):
        with pytest.raises(WebhookRejected) as caught:
            HubSpotConnector.parse_webhook(request, KNOWN)
        assert caught.value.status == 401
    with pytest.raises(WebhookRejected) as caught:
        HubSpotConnector.parse_webhook(signed(body), WebhookSecrets({}, {}))
    assert caught.value.status == 401 and "client_secret" in str(caught.value)
    with pytest.raises(WebhookRejected) as caught:
        HubSpotConnector.parse_webhook(signed(b'{"not": "a list"}'), KNOWN)
    assert caught.value.status == 422


def test_the_signed_uri_decodes_the_characters_hubspot_lists() -> None:
    body = b"[]"
    stamp = str(int(time.time() * 1000))
    plain = "https://crm.example.com/hook?x=a:b/c"
    signature = signature_v3("app-secret", "POST", plain, body, stamp)
    encoded = WebhookRequest(body, {"x-hubspot-signature-v3": signature,
                                    "x-hubspot-request-timestamp": stamp}, {}, "POST",
                             "https://crm.example.com/hook?x=a%3Ab%2Fc")
    assert HubSpotConnector.parse_webhook(encoded, KNOWN).events == []


@respx.mock
async def test_full_windows_continue_from_their_last_timestamp(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A cap of 1,000 (as if HubSpot lowered it): spread records, and a crowded instant in
    the middle of a window, all read, every query under the cap."""
    monkeypatch.setattr(HubSpotConnector, "search_cap", 1000)
    monkeypatch.setattr(sys.modules[__name__], "SEARCH_CAP", 1000)
    mount_metadata(respx)
    respx.post(f"{API}/crm/v4/associations/deals/companies/batch/read").mock(
        side_effect=no_associations)
    rows = [deal(300_000 + i, T0 + i * 7) for i in range(2_500)]
    rows += [deal(400_000 + i, T0 + 5_000) for i in range(1_200)]  # one crowded millisecond
    fake = FakeSearch(rows)
    respx.post(f"{API}/crm/v3/objects/deals/search").mock(side_effect=fake)
    pages = [p async for p in connector().read("deals", {"since": T0 + 1000})]
    seen = [r.remote_id for p in pages for r in p.records]
    assert set(seen) == {r["id"] for r in rows}
    assert len(seen) < len(rows) * 1.5  # windows overlap at their edges only
    assert all(int(b.get("after") or 0) + b["limit"] <= 1000 for b in fake.bodies)
    cursors = [p.cursor["since"] for p in pages if p.cursor]
    assert cursors == sorted(cursors)  # committed cursors never go back


@respx.mock
async def test_a_retried_429_takes_its_own_slot_of_the_burst_window(monkeypatch):
    """§7: HubSpot counts every request against the burst window, retries too: nine calls,
    the first retried after a 429, with room for nine a window (90% of the lowest limit,
    10), make ten requests and the tenth waits for the window (shortened to 1 s here)."""
    monkeypatch.setattr("connectors.hubspot.client.BURST_WINDOW", 1.0)
    sent: list[float] = []
    refused = iter([httpx.Response(429, json={"status": "error", "message": "slow down",
                                              "errorType": "RATE_LIMIT",
                                              "policyName": "TEN_SECONDLY_ROLLING"},
                                   headers={"Retry-After": "0"})])

    def answer(_request: httpx.Request) -> httpx.Response:
        sent.append(asyncio.get_running_loop().time())
        return next(refused, None) or httpx.Response(200, json={"results": []})

    respx.get(f"{API}/crm/v3/owners").mock(side_effect=answer)
    source = connector(burst_limit=10)
    assert source.burst_budget() == 9
    await asyncio.gather(*(source.call("GET", "/crm/v3/owners") for _ in range(9)))
    assert len(sent) == 10
    assert sent[9] - sent[0] >= 0.9
