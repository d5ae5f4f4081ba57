"""The Zoho sandbox's /crm/v8/actions/watch against docs/vendors/zoho.md §5, and the calls it
makes."""

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import generate_company
from connectors.zoho.sandbox import create_app

CREDENTIALS = {"grant_type": "refresh_token", "client_id": "sandbox-client-id",
               "client_secret": "sandbox-client-secret",
               "refresh_token": "sandbox-refresh-token"}
WATCH = "/crm/v8/actions/watch"
NOTIFY = "https://crmsync.example.com/api/v1/webhooks/zoho/1?tenant=42"


@pytest.fixture
async def sandbox():
    app = create_app(generate_company(seed=3, deals=120, accounts=20))
    received: list[dict[str, Any]] = []

    def notified(request: httpx.Request) -> httpx.Response:
        received.append(json.loads(request.content))
        return httpx.Response(200)

    app.state.zoho_watch.transport = httpx.MockTransport(notified)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="https://sandbox") as client:
        token = (await client.post("/oauth/v2/token", data=CREDENTIALS)).json()["access_token"]
        client.headers["Authorization"] = f"Zoho-oauthtoken {token}"
        yield app, client, received


def watch(**item: Any) -> dict[str, Any]:
    return {"watch": [{"channel_id": "1000000068002", "events": ["Deals.all"],
                       "token": "TOKEN_FOR_VERIFICATION", "notify_url": NOTIFY, **item}]}


def expiry_of(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["watch"][0]["details"]["events"][0]["channel_expiry"])


async def settle(app: Any) -> None:
    for _ in range(200):
        if app.state.zoho_watch.pending() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("notifications not delivered")


async def test_subscribe_answers_as_documented_and_caps_expiry(sandbox):
    _, client, _ = sandbox
    in_three_days = datetime.now(UTC) + timedelta(days=3)
    response = await client.post(WATCH, json=watch(channel_expiry=in_three_days.isoformat()))
    assert response.status_code == 201, response.text  # crm-oas createNotifications
    body = response.json()
    item = body["watch"][0]
    assert (item["code"], item["status"]) == ("SUCCESS", "success")
    event = item["details"]["events"][0]
    assert event["channel_id"] == "1000000068002" and event["resource_name"] == "Deals"
    assert abs((expiry_of(body) - in_three_days).total_seconds()) < 1
    for expiry in (None, (datetime.now(UTC) + timedelta(days=8)).isoformat()):
        item = {} if expiry is None else {"channel_expiry": expiry}
        body = (await client.post(WATCH, json=watch(**item))).json()
        left = expiry_of(body) - datetime.now(UTC)  # §5: omitted or > a week -> 1 hour
        assert timedelta(minutes=59) < left <= timedelta(hours=1)


@pytest.mark.parametrize("item", [
    {"token": "x" * 51},  # §5: at most 50 characters
    {"events": ["Deals.explode"]},
    {"events": []},
    {"channel_id": "abc"},
    {"notify_url": "ftp://example.com"},
    {"channel_expiry": "2001-01-01T00:00:00+00:00"},
])
async def test_subscribe_rejects_bad_channels(sandbox, item):
    _, client, _ = sandbox
    response = await client.post(WATCH, json=watch(**item))
    assert response.status_code == 400
    (element,) = response.json()["watch"]  # one error element per channel
    assert element["status"] == "error" and element["details"]["json_path"] == "$.watch[0]"
    assert (await client.get(WATCH)).status_code == 204  # nothing subscribed


async def test_subscribe_with_some_bad_channels_is_a_207_read_per_channel(sandbox):
    _, client, _ = sandbox
    good = watch()["watch"][0]
    response = await client.post(WATCH, json={"watch": [good, {**good, "channel_id": "abc"}]})
    assert response.status_code == 207
    assert [e["status"] for e in response.json()["watch"]] == ["success", "error"]
    assert [c["channel_id"] for c in (await client.get(WATCH)).json()["watch"]] == [
        "1000000068002"]


async def test_watch_needs_a_token(sandbox):
    _, client, _ = sandbox
    response = await client.post(WATCH, json=watch(), headers={"Authorization": ""})
    assert response.status_code == 401


async def test_list_renew_disable_and_delete(sandbox):
    _, client, _ = sandbox
    await client.post(WATCH, json=watch(events=["Deals.all", "Accounts.edit"]))
    listed = (await client.get(WATCH)).json()["watch"]
    assert [c["channel_id"] for c in listed] == ["1000000068002"]
    later = datetime.now(UTC) + timedelta(days=6)
    renewed = await client.patch(WATCH, json={"watch": [{
        "channel_id": "1000000068002", "channel_expiry": later.isoformat()}]})
    assert renewed.status_code == 200
    assert abs((expiry_of(renewed.json()) - later).total_seconds()) < 1
    assert (await client.get(WATCH)).json()["watch"][0]["events"] == ["Deals.all",
                                                                      "Accounts.edit"]
    await client.patch(WATCH, json={"watch": [{"channel_id": "1000000068002",
                                               "events": ["Accounts.edit"],
                                               "_delete_events": True}]})
    assert (await client.get(WATCH)).json()["watch"][0]["events"] == ["Deals.all"]
    unknown = await client.patch(WATCH, json={"watch": [{"channel_id": "999"}]})
    assert unknown.status_code == 400
    deleted = await client.delete(WATCH, params={"channel_ids": "1000000068002"})
    assert deleted.status_code == 200
    assert deleted.json()["watch"] == [{  # crm-oas disableNotifications response-200-sample
        "code": "SUCCESS", "details": {
            "resource_uri": "https://www.zohoapis.com/crm/v8/Deals",
            "resource_id": "4970762000000000131", "channel_id": "1000000068002"},
        "message": "Successfully un-subscribed from actions-watch", "status": "success"}]
    assert (await client.get(WATCH)).status_code == 204


async def test_control_api_changes_fire_the_documented_body(sandbox):
    app, client, received = sandbox
    await client.post(WATCH, json=watch())
    company = app.state.zoho.company
    deal_id = sorted(company.deals)[0]
    await client.patch(f"/_sandbox/deals/{deal_id}", json={"amount": 1234.5})
    await client.delete(f"/_sandbox/deals/{deal_id}")
    added = (await client.post("/_sandbox/deals", json={"name": "N", "amount": 5})).json()
    await client.patch(f"/_sandbox/accounts/{sorted(company.accounts)[0]}", json={"name": "A"})
    await settle(app)
    ops = sorted((b["operation"], tuple(b["ids"])) for b in received)
    assert ops == sorted([("update", (deal_id,)), ("delete", (deal_id,)),
                          ("insert", (added["id"],))])  # no Accounts event subscribed
    body = received[0]
    assert set(body) >= {"server_time", "query_params", "module", "resource_uri", "ids",
                         "affected_fields", "operation", "channel_id", "token"}
    assert body["token"] == "TOKEN_FOR_VERIFICATION" and body["channel_id"] == "1000000068002"
    assert body["module"] == "Deals" and body["query_params"] == {"tenant": "42"}
    assert isinstance(body["server_time"], int)


async def test_bulk_changes_are_split_into_100_ids_and_expired_channels_stay_silent(sandbox):
    app, client, received = sandbox
    await client.post(WATCH, json=watch())
    result = (await client.post("/_sandbox/mutate", json={"fraction": 1.0, "seed": 1})).json()
    await settle(app)
    assert all(len(b["ids"]) <= 100 for b in received)
    updated = {i for b in received if b["operation"] == "update" for i in b["ids"]}
    assert updated == set(result["edited"])
    received.clear()
    app.state.zoho_watch.channels["1000000068002"].expires_at = 0
    await client.post("/_sandbox/deals", json={"name": "N", "amount": 5})
    await settle(app)
    assert received == []


async def test_reset_keeps_notifications_firing(sandbox):
    app, client, received = sandbox
    await client.post(WATCH, json=watch())
    await client.post("/_sandbox/reset")
    await client.post("/_sandbox/deals", json={"name": "N", "amount": 5})
    await settle(app)
    assert [b["operation"] for b in received] == ["insert"]


@pytest.mark.parametrize("related", [True, False, None])
async def test_related_actions_notify_only_channels_that_ask(sandbox, related):
    """A deal change is a related action of its account: an Accounts channel hears of it
    unless it subscribed with notify_on_related_action false (true when not sent)."""
    app, client, received = sandbox
    item = {"events": ["Accounts.all"]}
    if related is not None:
        item["notify_on_related_action"] = related
    assert (await client.post(WATCH, json=watch(**item))).status_code == 201
    listed = (await client.get(WATCH)).json()["watch"][0]
    assert listed["notify_on_related_action"] is (related is not False)
    company = app.state.zoho.company
    deal = company.deals[sorted(company.deals)[0]]
    await client.patch(f"/_sandbox/deals/{deal.id}", json={"amount": 99})
    await settle(app)
    expected = [] if related is False else [("Accounts", "update", [deal.account_id])]
    assert [(b["module"], b["operation"], b["ids"]) for b in received] == expected
