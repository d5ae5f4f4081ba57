"""Pipedrive connector against respx-faked Pipedrive answers (docs/vendors/pipedrive.md
shapes): v2 cursor paging, deleted deals, won/lost by status, custom-field hashes, OAuth
refresh, rate-limit headers, errors, and webhook verification."""

import asyncio
import base64
import hashlib
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import respx

from connectors.base import WebhookRejected, WebhookRequest, WebhookSecrets
from connectors.endpoints import EndpointRefused
from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.pipedrive import PipedriveConfig, PipedriveConnector, PipedriveSecrets
from connectors.pipedrive.client import BudgetExhausted
from connectors.pipedrive.mapping import named_fields
from connectors.pipedrive.wire import CUSTOM_FIELD_KEY
from core.errors import AuthError, ConfigError
from core.types import DealStatus

API = "https://acme.pipedrive.com"
OAUTH = "https://oauth.pipedrive.com/oauth/token"
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
REGION = hashlib.sha1(b"region").hexdigest()
INDUSTRY = hashlib.sha1(b"industry").hexdigest()
UNNAMED = hashlib.sha1(b"nobody named me").hexdigest()


def connector(secrets: dict[str, str] | None = None, **config: Any) -> PipedriveConnector:
    api = ApiClient(build_client(), max_in_flight=4, retry=FAST)
    return PipedriveConnector(
        PipedriveConfig.model_validate({"company_domain": "acme", **config}),
        PipedriveSecrets.model_validate(secrets or {"api_token": "tok-123"}), api)


def deal(i: int, updated: str, **extra: Any) -> dict[str, Any]:
    return {"id": 700 + i, "title": f"Deal {i}", "owner_id": 11, "org_id": 42,
            "pipeline_id": 1, "stage_id": 4, "value": 1200.5, "currency": "EUR",
            "status": "open", "probability": None, "add_time": "2026-01-04T10:44:11Z",
            "update_time": updated, "won_time": None, "lost_time": None,
            "expected_close_date": "2026-03-31", "is_deleted": False,
            "custom_fields": {REGION: "EMEA", UNNAMED: "secret sauce"}, **extra}


def ok(data: Any, **additional: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data,
                                     "additional_data": additional or None},
                          headers={"x-ratelimit-limit": "20", "x-ratelimit-remaining": "19",
                                   "x-ratelimit-reset": "2"})


def metadata(router: respx.MockRouter) -> None:
    """The metadata every deal read needs: me, custom fields, pipelines, stages."""
    router.get(f"{API}/api/v1/users/me").mock(return_value=ok(
        {"id": 11, "default_currency": "USD", "company_id": 5, "company_name": "Acme"}))
    router.get(f"{API}/api/v1/dealFields").mock(return_value=ok(
        [{"key": "title", "name": "Title"}, {"key": REGION, "name": "Region"}],
        pagination={"more_items_in_collection": False}))
    router.get(f"{API}/api/v1/organizationFields").mock(return_value=ok(
        [{"key": INDUSTRY, "name": "Industry"}], pagination={"more_items_in_collection": False}))
    router.get(f"{API}/api/v2/pipelines").mock(return_value=ok(
        [{"id": 1, "name": "Standard"}], next_cursor=None))
    router.get(f"{API}/api/v1/users").mock(return_value=ok(
        [{"id": 11, "name": "Jane Roe", "email": "Jane@Acme.test"}],
        pagination={"more_items_in_collection": False}))
    router.get(f"{API}/api/v2/stages").mock(return_value=ok(
        [{"id": 4, "name": "Proposal", "pipeline_id": 1, "order_nr": 3,
          "deal_probability": 60}], next_cursor=None))


async def read(source: PipedriveConnector, stream: str,
               cursor: dict[str, Any] | None = None) -> list[Any]:
    return [page async for page in source.read(stream, cursor)]


@respx.mock
async def test_v2_paging_follows_next_cursor_until_null_oldest_change_first():
    metadata(respx.mock)
    calls: list[httpx.Request] = []

    def deals(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        assert request.headers["x-api-token"] == "tok-123"  # §1: a header, not the URL
        assert "api_token" not in request.url.params
        params = request.url.params
        assert (params["limit"], params["sort_by"], params["sort_direction"]) == \
            ("500", "update_time", "asc")
        if "cursor" not in params:
            return ok([deal(1, "2026-02-01T00:00:00Z"), deal(2, "2026-02-02T00:00:00Z")],
                      next_cursor="c2")
        assert params["cursor"] == "c2"
        return ok([deal(3, "2026-02-02T00:00:00Z")], next_cursor=None)

    respx.get(f"{API}/api/v2/deals").mock(side_effect=deals)
    source = connector()
    pages = await read(source, "deals")
    assert [len(p.records) for p in pages] == [2, 1]
    assert pages[-1].cursor == {"updated_since": "2026-02-02T00:00:00Z"}
    again = await read(source, "deals", pages[-1].cursor)  # incremental: at or after
    assert calls[-1].url.params["updated_since"] == "2026-02-02T00:00:00Z"
    assert {r.remote_id for p in again for r in p.records}


@respx.mock
async def test_deleted_deals_become_tombstones_at_their_update_time():
    metadata(respx.mock)
    route = respx.get(f"{API}/api/v2/deals").mock(return_value=ok(
        [deal(9, "2026-03-05T08:00:00Z", status="deleted", is_deleted=True)],
        next_cursor=None))
    [page] = await read(connector(), "deletions")
    assert route.calls.last.request.url.params["status"] == "deleted"
    [gone] = page.deletions
    assert (gone.entity, gone.remote_id) == ("deals", "709")
    assert gone.deleted_at == datetime(2026, 3, 5, 8, tzinfo=UTC)


@respx.mock
async def test_won_and_lost_come_from_the_status_and_keep_the_stage():
    metadata(respx.mock)
    respx.get(f"{API}/api/v2/deals").mock(return_value=ok([
        deal(1, "2026-02-01T00:00:00Z", status="won", won_time="2026-02-10T15:00:00Z",
             currency="USD"),
        deal(2, "2026-02-01T00:00:00Z", status="lost", lost_time="2026-02-11T09:00:00Z",
             lost_reason="Price"),
        deal(3, "2026-02-01T00:00:00Z")], next_cursor=None))
    [page] = await read(connector(), "deals")
    won, lost, still = page.records
    assert (won.status, won.stage, won.stage_remote_id) == (DealStatus.WON, "Proposal", "4")
    assert won.close_date == date(2026, 2, 10)  # won_time's date, not the expected one
    assert (won.owner_remote_id, won.owner_email, won.owner_name) == (
        "11", "jane@acme.test", "Jane Roe")  # from the users list: v2 gives owner_id only
    assert (won.amount_home, won.exchange_rate) == (Decimal("1200.5"), Decimal(1))  # home
    assert (lost.status, lost.stage, lost.close_date) == (DealStatus.LOST, "Proposal",
                                                          date(2026, 2, 11))
    assert lost.amount_home is None  # EUR: the FX table converts it when stored
    assert (still.status, still.close_date) == (DealStatus.OPEN, date(2026, 3, 31))
    assert still.probability == Decimal(60)  # the stage's deal_probability
    [stages] = await read(connector(), "stages")
    categories = {(s.remote_id, s.category) for s in stages.records}
    assert categories == {("4", "open"), ("1:won", "won"), ("1:lost", "lost")}


@respx.mock
async def test_custom_field_hashes_never_leak_into_mapped_fields():
    metadata(respx.mock)
    respx.get(f"{API}/api/v2/deals").mock(return_value=ok(
        [deal(1, "2026-02-01T00:00:00Z", **{INDUSTRY: "v1-style top-level hash"})],
        next_cursor=None))
    respx.get(f"{API}/api/v2/organizations").mock(return_value=ok(
        [{"id": 42, "name": "Acme", "owner_id": 11, "add_time": "2025-01-01T00:00:00Z",
          "update_time": "2025-02-01T00:00:00Z", "custom_fields": {INDUSTRY: "Retail"}}],
        next_cursor=None))
    [deals] = await read(connector(), "deals")
    [orgs] = await read(connector(), "accounts")
    record, org = deals.records[0], orgs.records[0]
    assert record.raw is not None and record.raw["custom_fields"] == {"Region": "EMEA"}
    assert (org.industry, org.raw and org.raw["custom_fields"]) == ("Retail",
                                                                   {"Industry": "Retail"})
    dumped = orjson.dumps([record.raw, org.raw]).decode()
    assert not [k for k in (REGION, INDUSTRY, UNNAMED) if k in dumped]
    assert CUSTOM_FIELD_KEY.match(REGION)
    assert named_fields({"a": 1, REGION: 2}, {REGION: "Region"}) == {
        "a": 1, "custom_fields": {"Region": 2}}


@respx.mock
async def test_oauth_refreshes_once_on_401_and_uses_the_api_domain():
    grants: list[httpx.Request] = []

    def token(request: httpx.Request) -> httpx.Response:
        grants.append(request)
        return httpx.Response(200, json={"access_token": f"at-{len(grants)}",
                                         "refresh_token": "rt", "expires_in": 3600,
                                         "token_type": "Bearer", "api_domain": API})

    respx.post(OAUTH).mock(side_effect=token)
    seen: list[str] = []

    def me(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] == "Bearer at-1":
            return httpx.Response(401, json={"success": False, "error": "expired"})
        return ok({"id": 1, "default_currency": "EUR", "company_name": "Acme"})

    respx.get(f"{API}/api/v1/users/me").mock(side_effect=me)
    source = connector({"client_id": "cid", "client_secret": "csecret", "refresh_token": "rt"},
                       company_domain=None)
    info = await source.check()
    assert info.home_currency == "EUR"
    assert seen == ["Bearer at-1", "Bearer at-2"]
    first = grants[0]
    assert first.headers["Authorization"] == "Basic " + base64.b64encode(
        b"cid:csecret").decode()
    assert first.content == b"grant_type=refresh_token&refresh_token=rt"
    assert "rt" not in str(first.url)


@respx.mock
async def test_a_refused_refresh_token_and_a_refused_api_token_say_what_to_do():
    respx.post(OAUTH).mock(return_value=httpx.Response(400, json={"error": "invalid_grant"}))
    source = connector({"client_id": "c", "client_secret": "s", "refresh_token": "bad"})
    with pytest.raises(AuthError, match="authorize the app again"):
        await source.check()
    respx.get(f"{API}/api/v1/users/me").mock(return_value=httpx.Response(
        401, json={"success": False, "error": "unauthorized access", "errorCode": 401}))
    with pytest.raises(AuthError, match="api_token") as refused:
        await connector({"api_token": "tok-secret-value"}).check()
    assert "tok-secret-value" not in str(refused.value)


@respx.mock
async def test_429_waits_the_rate_limit_reset_and_an_empty_daily_budget_stops():
    answers = iter([
        httpx.Response(429, json={"success": False, "error": "Request over limit"},
                       headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}),
        ok({"id": 1, "default_currency": "USD"}),
    ])
    route = respx.get(f"{API}/api/v1/users/me").mock(side_effect=lambda _: next(answers))
    source = connector()
    assert (await source.check()).home_currency == "USD"
    assert route.call_count == 2
    assert source.rate.headers["x-ratelimit-remaining"] == "19"  # the headers are read
    respx.get(f"{API}/api/v1/users/me").mock(return_value=httpx.Response(
        429, json={"success": False, "error": "Daily rate limit exceeded"},
        headers={"x-daily-ratelimit-token-remaining": "0", "Retry-After": "3600"}))
    with pytest.raises(BudgetExhausted, match="daily API token budget"):
        await connector().check()


@respx.mock
async def test_remaining_zero_pauses_the_next_call_until_the_window_resets():
    respx.get(f"{API}/api/v1/users/me").mock(return_value=httpx.Response(
        200, json={"success": True, "data": {"id": 1}},
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1"}))
    source = connector()
    await source.check()
    loop_time = asyncio.get_running_loop().time()
    assert source.rate.pause_until - loop_time > 0.5


def test_settings_refuse_mixed_or_missing_credentials_and_need_a_host():
    with pytest.raises(ValueError, match="not both"):
        PipedriveSecrets.model_validate({"api_token": "t", "client_id": "c",
                                         "client_secret": "s", "refresh_token": "r"})
    with pytest.raises(ValueError, match="give api_token"):
        PipedriveSecrets.model_validate({"client_id": "c"})
    with pytest.raises(ConfigError, match="company_domain"):
        connector(company_domain=None)
    config = PipedriveConfig.model_validate({"company_domain": "acme"})
    assert [e.url for e in config.credential_endpoints()] == [OAUTH, API]
    with pytest.raises(ValueError):
        PipedriveConfig.model_validate({"company_domain": "acme.evil.com/x"})


@respx.mock
async def test_credentials_never_leave_pipedrive_hosts_unless_allowed():
    route = respx.get("https://evil.example/api/v1/users/me").mock(return_value=ok({}))
    with pytest.raises(EndpointRefused):
        await connector(api_url="https://evil.example").check()
    assert not route.called  # refused before anything was sent


# -- webhooks (§5) ----------------------------------------------------------------------------
def hook(user: str = "crmsync-u", password: str = "pw", **meta: Any) -> WebhookRequest:
    body = {"meta": {"action": "change", "entity": "deal", "entity_id": "746",
                     "id": "ev-1", "timestamp": "2026-05-15T18:00:00.000Z",
                     "webhook_id": "456", **meta},
            "data": {"id": 746}, "previous": {"status": "open"}}
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    return WebhookRequest(orjson.dumps(body), {"authorization": auth}, {})


KNOWN = WebhookSecrets({"api_token": "t"}, {"456": "crmsync-u:pw", "457": "other:pw2"})


def test_webhook_basic_credentials_are_accepted_and_split_into_one_event():
    intake = PipedriveConnector.parse_webhook(hook(), KNOWN)
    assert intake.events == [("pipedrive:ev-1", {
        "action": "change", "entity": "deals", "entity_id": "746",
        "timestamp": "2026-05-15T18:00:00.000Z"})]
    assert PipedriveConnector.parse_webhook(hook(entity="person"), KNOWN).events == []


@pytest.mark.parametrize("request_", [
    hook(password="wrong"), hook(user="nobody"),
    WebhookRequest(b"{}", {}, {}), WebhookRequest(b"{}", {"authorization": "Bearer x"}, {})])
def test_webhooks_without_the_right_credentials_are_refused(request_):
    with pytest.raises(WebhookRejected) as refused:
        PipedriveConnector.parse_webhook(request_, KNOWN)
    assert refused.value.status == 401
    with pytest.raises(WebhookRejected):
        PipedriveConnector.parse_webhook(hook(), WebhookSecrets({"api_token": "t"}, {}))


@respx.mock
async def test_a_retried_429_takes_its_own_slot_of_the_2_second_window():
    """§6: Pipedrive counts every request against the window, retries too: with a burst
    of 2, a call retried after a 429 and a second call make three requests, and the third
    waits until the first has left the window (before, the retry went out at once and drew
    more 429s)."""
    sent: list[float] = []
    answers = iter([httpx.Response(429, json={"success": False, "error": "Request over limit"},
                                   headers={"x-ratelimit-remaining": "1",
                                            "x-ratelimit-reset": "0"})])

    def answer(_request: httpx.Request) -> httpx.Response:
        sent.append(asyncio.get_running_loop().time())
        return next(answers, None) or ok({"id": 1, "default_currency": "USD"})

    respx.get(f"{API}/api/v1/users/me").mock(side_effect=answer)
    source = connector(burst_limit=2)
    await asyncio.gather(source.check(), source.check())
    assert len(sent) == 3
    assert sent[2] - sent[0] >= 1.9  # BURST_WINDOW (2 s), less the clock's jitter


@respx.mock
async def test_a_stage_or_user_added_since_the_metadata_was_read_makes_a_job_read_it_again():
    """Jobs reuse a company's metadata for META_TTL; a page naming a stage or an owner it
    does not know (added in Pipedrive since) reads it again first, so the deals keep their
    stage's name and their owner's email (their person). Ids still unknown then are not
    read for again by later jobs."""
    metadata(respx.mock)
    stages = [{"id": 4, "name": "Proposal", "pipeline_id": 1, "order_nr": 3,
               "deal_probability": 60}]
    users = [{"id": 11, "name": "Jane Roe", "email": "Jane@Acme.test"}]
    read_stages = respx.get(f"{API}/api/v2/stages").mock(
        side_effect=lambda _: ok(list(stages), next_cursor=None))
    respx.get(f"{API}/api/v1/users").mock(side_effect=lambda _: ok(
        list(users), pagination={"more_items_in_collection": False}))
    current = {"deal": deal(1, "2026-02-01T00:00:00Z")}
    respx.get(f"{API}/api/v2/deals").mock(
        side_effect=lambda _: ok([current["deal"]], next_cursor=None))
    limits = LocalLimits()  # the worker process's, held by its job context

    async def sync() -> Any:  # a job: a connector of its own on the process's limits
        api = ApiClient(build_client(), max_in_flight=4, retry=FAST, limits=limits)
        source = PipedriveConnector(PipedriveConfig(company_domain="acme"),
                                    PipedriveSecrets(api_token="tok-123"), api)
        [page] = await read(source, "deals")
        return page.records[0]

    first = await sync()
    assert (first.stage, first.owner_email, read_stages.call_count) == (
        "Proposal", "jane@acme.test", 1)
    assert (await sync()).stage == "Proposal" and read_stages.call_count == 1  # reused
    stages.append({"id": 5, "name": "Negotiation", "pipeline_id": 1, "order_nr": 4,
                   "deal_probability": 80})
    users.append({"id": 12, "name": "Max Mustermann", "email": "max@acme.test"})
    current["deal"] = deal(1, "2026-02-02T00:00:00Z", stage_id=5, owner_id=12)
    moved = await sync()
    assert (moved.stage, moved.stage_remote_id, moved.owner_email) == (
        "Negotiation", "5", "max@acme.test")
    assert read_stages.call_count == 2
    current["deal"] = deal(1, "2026-02-03T00:00:00Z", stage_id=99, owner_id=77)
    for reads in (3, 3):  # read again once; then known to be unknown
        odd = await sync()
        assert (odd.stage, odd.stage_remote_id, odd.owner_email) == (None, "99", None)
        assert read_stages.call_count == reads
