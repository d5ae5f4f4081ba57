"""Zoho notifications (docs/vendors/zoho.md §5): subscribe/renew against respx, callback parsing,
re-reading notified ids, and the renew_channels job on SQLite."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
import respx
from cryptography.fernet import Fernet
from sqlmodel import select

from connectors.base import WebhookRejected, WebhookRequest, WebhookSecrets
from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.zoho import ZohoConfig, ZohoConnector, ZohoSecrets, notifications
from core.config import Settings
from core.db import session_scope
from core.models import Connection, NotificationChannel
from core.security import SecretBox
from workers.context import JobContext
from workers.jobs import renew_channels

ACCOUNTS = "https://accounts.zoho.eu"
API = "https://www.zohoapis.eu"
FAST = RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.01)
PUBLIC = "https://crmsync.example.com"


def token_ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"access_token": "tok", "api_domain": API,
                                     "token_type": "Bearer", "expires_in": 3600})


def watch_ok(request: httpx.Request) -> httpx.Response:
    """§5 subscribe response, granting what was asked; POST answers 201 Created (zoho/crm-oas
    v8.0/notifications createNotifications, example response-201-sample), PATCH 200."""
    item = json.loads(request.content)["watch"][0]
    return httpx.Response(201 if request.method == "POST" else 200, json={"watch": [{
        "code": "SUCCESS", "status": "success", "message": "Successfully subscribed",
        "details": {"events": [{"channel_expiry": item["channel_expiry"],
                                "resource_name": "Deals", "channel_id": item["channel_id"]}]}}]})


def connector(client: httpx.AsyncClient, limits: LocalLimits | None = None) -> ZohoConnector:
    return ZohoConnector(ZohoConfig(dc="eu"), ZohoSecrets(client_id="c", client_secret="s",
                                                          refresh_token="r"),
                         ApiClient(client, retry=FAST, limits=limits))


# ---- subscribe / renew (respx) ---------------------------------------------------------------


async def test_subscribe_posts_the_documented_body_and_reads_the_granted_expiry():
    wanted = datetime.now(UTC) + notifications.EXPIRY
    sub = notifications.Subscription("1000000068002", notifications.new_token(),
                                     f"{PUBLIC}/api/v1/webhooks/zoho/1", wanted)
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        route = mock.post(f"{API}/crm/v8/actions/watch").mock(side_effect=watch_ok)
        async with build_client() as client:
            granted = await notifications.subscribe(connector(client), sub)
    sent = json.loads(route.calls.last.request.content)["watch"][0]
    assert route.calls.last.request.headers["Authorization"] == "Zoho-oauthtoken tok"
    assert sent["events"] == ["Deals.all", "Accounts.all"]
    assert sent["channel_id"] == "1000000068002" and sent["notify_url"] == sub.notify_url
    assert len(sent["token"]) <= 50  # §5
    assert sent["notify_on_related_action"] is False  # no re-reads for related records
    expiry = datetime.fromisoformat(sent["channel_expiry"])
    assert expiry <= datetime.now(UTC) + timedelta(days=7)  # §5: at most a week
    assert abs((granted - wanted).total_seconds()) < 1


async def test_renew_patches_and_a_refusal_is_an_error():
    sub = notifications.Subscription("1000000068002", "t" * 50, f"{PUBLIC}/x",
                                     datetime.now(UTC) + timedelta(days=6))
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        route = mock.patch(f"{API}/crm/v8/actions/watch").mock(side_effect=[
            watch_ok(httpx.Request("PATCH", "/", content=orjson.dumps(
                {"watch": [{"channel_expiry": "2030-01-01T00:00:00+00:00",
                            "channel_id": "1000000068002"}]}))),
            httpx.Response(400, json={"code": "INVALID_DATA", "details": {},
                                      "message": "invalid channel", "status": "error"}),
        ])
        async with build_client() as client:
            zoho = connector(client)
            granted = await notifications.renew(zoho, sub)
            with pytest.raises(Exception, match="INVALID_DATA"):
                await notifications.renew(zoho, sub)
    assert granted == datetime(2030, 1, 1, tzinfo=UTC)
    assert json.loads(route.calls[0].request.content)["watch"][0]["token"] == "t" * 50


# ---- callbacks ------------------------------------------------------------------------------

KNOWN = WebhookSecrets(secrets={}, channels={"1000000068001": "TOKEN_1", "77": "other"})
BODY = {"server_time": 1718117126473, "query_params": {}, "module": "Deals",
        "resource_uri": "https://www.zohoapis.com/crm/v2/Deals", "ids": ["5725767000003000064"],
        "affected_fields": [], "operation": "update", "channel_id": "1000000068001",
        "token": "TOKEN_1"}


def request(body: Any) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return WebhookRequest(body=raw, headers={}, query={})


def test_a_documented_notification_becomes_one_event_without_the_token():
    intake = notifications.parse(request(BODY), KNOWN)
    [(key, payload)] = intake.events
    assert payload == {"channel_id": "1000000068001", "module": "Deals", "operation": "update",
                       "ids": ["5725767000003000064"], "server_time": 1718117126473}
    assert "TOKEN_1" not in json.dumps(payload)
    assert notifications.parse(request(BODY), KNOWN).events[0][0] == key  # a redelivery
    later = notifications.parse(request({**BODY, "server_time": BODY["server_time"] + 1}), KNOWN)
    assert later.events[0][0] != key


@pytest.mark.parametrize(("body", "status"), [
    (b"{not json", 400),
    ([1, 2], 422),
    ({**BODY, "token": "TOKEN_2"}, 401),
    ({**BODY, "channel_id": "77"}, 401),  # a token of another channel
    ({k: v for k, v in BODY.items() if k != "token"}, 401),
    ({**BODY, "ids": "5725767000003000064"}, 422),
    ({**BODY, "operation": None}, 422),
    ({**BODY, "server_time": "yesterday"}, 422),
])
def test_bad_notifications_are_rejected(body: Any, status: int):
    with pytest.raises(WebhookRejected) as caught:
        notifications.parse(request(body), KNOWN)
    assert caught.value.status == status
    assert "TOKEN" not in str(caught.value)


async def test_resolve_rereads_ids_and_tombstones_only_deletes_it_no_longer_finds():
    payloads = [
        {"module": "Deals", "operation": "update", "ids": ["1", "2"], "server_time": 1_000},
        {"module": "Deals", "operation": "delete", "ids": ["3"], "server_time": 2_000},
        {"module": "Deals", "operation": "delete", "ids": ["1"], "server_time": 500},  # restored
        {"module": "Tasks", "operation": "insert", "ids": ["9"], "server_time": 2_000},
    ]
    deal = {"id": "1", "Deal_Name": "One", "Amount": 10, "Stage": "Qualification",
            "Modified_Time": "2025-05-20T09:02:11+08:00", "Created_Time": "2025-01-01T00:00:00Z",
            "Owner": {"id": "u", "name": "U", "email": "u@example.com"}}
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": []})
        mock.get(f"{API}/crm/v8/settings/layouts").respond(200, json={"layouts": []})
        mock.get(f"{API}/crm/v8/org/currencies").respond(200, json={"currencies": [
            {"iso_code": "USD", "is_base": True}]})
        mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{"company_name": "X"}]})
        deals = mock.get(f"{API}/crm/v8/Deals").respond(200, json={"data": [deal]})
        async with build_client() as client:
            changes = await notifications.resolve(connector(client), payloads)
    assert deals.call_count == 1
    params = deals.calls.last.request.url.params
    assert sorted(params["ids"].split(",")) == ["1", "2", "3"] and params["fields"]
    streams = dict(changes)
    assert [r.remote_id for r in streams["deals"].records] == ["1"]
    [gone] = streams["deletions"].deletions
    assert (gone.entity, gone.remote_id) == ("deals", "3")
    assert gone.deleted_at == datetime.fromtimestamp(2, UTC)


async def test_resolve_in_a_one_currency_org_asks_only_for_fields_it_has():
    """CURRENCIES_NOT_ENABLED (HTTP 403, crm-oas getCurrencies example) is not an error: the
    home currency is /org's iso_code, Currency and Exchange_Rate are never asked for."""
    fields = [{"api_name": n} for n in ("Deal_Name", "Amount", "Stage", "Owner",
                                        "Modified_Time", "Closing_Date")]
    deal = {"id": "1", "Deal_Name": "One", "Amount": 1250.5, "Stage": "Qualification",
            "Modified_Time": "2025-05-20T09:02:11+08:00",
            "Owner": {"id": "u", "name": "U", "email": "u@example.com"}}
    with respx.mock(assert_all_called=True) as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": fields})
        mock.get(f"{API}/crm/v8/settings/layouts").respond(200, json={"layouts": []})
        mock.get(f"{API}/crm/v8/org/currencies").respond(403, json={
            "code": "CURRENCIES_NOT_ENABLED", "details": {},
            "message": "Multi currency is not enabled", "status": "error"})
        mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{"iso_code": "GBP"}]})
        deals = mock.get(f"{API}/crm/v8/Deals").respond(200, json={"data": [deal]})
        async with build_client() as client:
            changes = await notifications.resolve(connector(client), [
                {"module": "Deals", "operation": "update", "ids": ["1"], "server_time": 1}])
    asked = deals.calls.last.request.url.params["fields"].split(",")
    assert "Deal_Name" in asked and not {"Currency", "Exchange_Rate"} & set(asked)
    [record] = dict(changes)["deals"].records
    assert (record.currency, record.amount, record.amount_home) == (
        "GBP", Decimal("1250.5"), Decimal("1250.5"))


async def test_resolve_reads_at_most_100_ids_per_call():
    ids = [str(i) for i in range(1, 251)]
    with respx.mock() as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": []})
        mock.get(f"{API}/crm/v8/settings/layouts").respond(200, json={"layouts": []})
        mock.get(f"{API}/crm/v8/org/currencies").respond(200, json={"currencies": []})
        mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{}]})
        route = mock.get(f"{API}/crm/v8/Accounts").respond(204)
        async with build_client() as client:
            changes = await notifications.resolve(
                connector(client), [{"module": "Accounts", "operation": "update", "ids": ids}])
    assert route.call_count == 3
    assert all(len(c.request.url.params["ids"].split(",")) <= 100 for c in route.calls)
    assert dict(changes)["accounts"].records == []


# ---- the renew_channels job (SQLite) ---------------------------------------------------------


def job_context(sqlite_engine, sqlite_url, public_url: str | None) -> JobContext:
    key = Fernet.generate_key().decode()
    return JobContext(settings=Settings(database_url=sqlite_url, secret_key=key,
                                        public_url=public_url),
                      engine=sqlite_engine, secrets=SecretBox(key), retry=FAST)


def add_zoho(ctx: JobContext) -> int:
    with session_scope(ctx.engine) as session:
        row = Connection(provider="zoho", name="z", config={"dc": "eu"},
                         secrets_encrypted=ctx.secrets.seal(
                             {"client_id": "c", "client_secret": "s", "refresh_token": "r"}))
        session.add(row)
        session.flush()
        return int(row.id or 0)


def channels(ctx: JobContext) -> list[NotificationChannel]:
    with session_scope(ctx.engine) as session:
        return list(session.scalars(select(NotificationChannel)))


async def test_renew_channels_subscribes_then_renews_before_expiry(sqlite_engine, sqlite_url):
    ctx = job_context(sqlite_engine, sqlite_url, PUBLIC + "/")
    connection_id = add_zoho(ctx)
    with respx.mock() as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        post = mock.post(f"{API}/crm/v8/actions/watch").mock(side_effect=watch_ok)
        patch = mock.patch(f"{API}/crm/v8/actions/watch").mock(side_effect=watch_ok)
        delete = mock.delete(f"{API}/crm/v8/actions/watch").respond(200, json={"watch": []})

        assert await renew_channels(ctx) == {"subscribed": 1, "renewed": 0, "unchanged": 0,
                                             "failed": 0}
        [channel] = channels(ctx)
        sent = json.loads(post.calls.last.request.content)["watch"][0]
        assert channel.channel_id == sent["channel_id"]
        assert channel.notify_url == f"{PUBLIC}/api/v1/webhooks/zoho/{connection_id}"
        assert sent["token"] not in channel.token_encrypted  # stored sealed
        assert ctx.secrets.open(channel.token_encrypted)["token"] == sent["token"]
        left = channel.expires_at - datetime.now(UTC)
        assert timedelta(days=6) < left <= timedelta(days=7)

        assert (await renew_channels(ctx))["unchanged"] == 1  # far from expiry: no call
        assert patch.call_count == 0

        with session_scope(ctx.engine) as session:  # a day left: renewed, same channel
            row = session.get(NotificationChannel, channel.id)
            assert row is not None
            row.expires_at = datetime.now(UTC) + timedelta(days=1)
        assert (await renew_channels(ctx))["renewed"] == 1
        renewed = json.loads(patch.calls.last.request.content)["watch"][0]
        assert renewed["channel_id"] == channel.channel_id and renewed["token"] == sent["token"]
        [after] = channels(ctx)
        assert after.expires_at - datetime.now(UTC) > timedelta(days=6)

        patch.mock(return_value=httpx.Response(400, json={  # the CRM forgot it
            "code": "INVALID_DATA", "details": {}, "message": "bad channel", "status": "error"}))
        with session_scope(ctx.engine) as session:
            row = session.get(NotificationChannel, channel.id)
            assert row is not None
            row.expires_at = datetime.now(UTC) + timedelta(hours=1)
        assert (await renew_channels(ctx))["subscribed"] == 1
        [fresh] = channels(ctx)
        assert fresh.channel_id != channel.channel_id
        assert delete.calls.last.request.url.params["channel_ids"] == channel.channel_id


async def test_renew_channels_does_nothing_without_a_public_url(sqlite_engine, sqlite_url):
    ctx = job_context(sqlite_engine, sqlite_url, None)
    add_zoho(ctx)
    with respx.mock(assert_all_mocked=True):  # any call would fail
        assert await renew_channels(ctx) == {"subscribed": 0, "renewed": 0, "unchanged": 0,
                                             "failed": 0}
    assert channels(ctx) == []


async def test_batches_of_one_org_reuse_its_metadata():
    payload = {"module": "Deals", "operation": "update", "ids": ["1"], "server_time": 1}
    with respx.mock() as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        fields = mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": []})
        mock.get(f"{API}/crm/v8/settings/layouts").respond(200, json={"layouts": []})
        mock.get(f"{API}/crm/v8/org/currencies").respond(200, json={"currencies": []})
        mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{}]})
        deals = mock.get(f"{API}/crm/v8/Deals").respond(204)
        limits = LocalLimits()  # the process's, held by its job context
        for _ in range(3):  # three jobs, each with its own connector
            async with build_client() as client:
                await notifications.resolve(connector(client, limits), [payload])
    assert deals.call_count == 3
    assert fields.call_count == 2  # Deals and Accounts, once


async def test_a_deal_in_a_stage_added_since_the_stages_were_read_reads_them_again():
    """A batch that reuses an org's metadata (META_TTL) reads the stages again when a deal
    carries one it does not know (added in Zoho since), instead of storing the deal as
    open without its stage's id; a stage still unknown then (the pipelines do not list it)
    makes no later batch read them again."""
    payload = {"module": "Deals", "operation": "update", "ids": ["1"], "server_time": 1}
    maps = [{"display_value": "Qualification", "sequence_number": 1, "id": "S1",
             "forecast_type": "Open"}]
    stage = {"now": "Qualification"}

    def pipelines(request: httpx.Request) -> httpx.Response:  # docs/vendors/zoho.md §4
        return httpx.Response(200, json={"pipeline": [
            {"display_value": "Standard (Standard)", "id": "P1", "maps": list(maps)}]})

    def deals(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{
            "id": "1", "Deal_Name": "D", "Stage": stage["now"], "Amount": 10,
            "Modified_Time": "2025-05-20T09:00:00+00:00"}]})

    with respx.mock() as mock:
        mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(side_effect=token_ok)
        mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": [
            {"api_name": n} for n in ("Deal_Name", "Stage", "Amount", "Modified_Time")]})
        mock.get(f"{API}/crm/v8/settings/layouts").respond(
            200, json={"layouts": [{"id": "9", "name": "Standard"}]})
        mock.get(f"{API}/crm/v8/org/currencies").respond(200, json={"currencies": []})
        mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{"currency": "USD"}]})
        read_stages = mock.get(f"{API}/crm/v8/settings/pipeline").mock(side_effect=pipelines)
        mock.get(f"{API}/crm/v8/Deals").mock(side_effect=deals)
        limits = LocalLimits()

        async def batch() -> Any:
            async with build_client() as client:
                changes = await notifications.resolve(connector(client, limits), [payload])
            return changes[0][1].records[0]

        first = await batch()
        assert (first.stage, first.status, read_stages.call_count) == ("Qualification", "open", 1)
        maps.append({"display_value": "Signed", "sequence_number": 2, "id": "S2",
                     "forecast_type": "Closed Won"})
        stage["now"] = "Signed"
        signed = await batch()
        assert (signed.status, signed.stage_remote_id) == ("won", "P1:S2")  # pipeline:stage
        assert read_stages.call_count == 2
        assert (await batch()).status == "won" and read_stages.call_count == 2  # reused
        stage["now"] = "Not in any pipeline"
        for reads in (3, 3):  # read again once, then known to be unknown
            odd = await batch()
            assert (odd.status, odd.stage_remote_id) == ("open", None)
            assert read_stages.call_count == reads
