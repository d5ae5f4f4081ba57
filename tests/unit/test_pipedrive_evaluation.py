"""Pipedrive's teams, stage history, activities, deal links and the day's budgets against
respx-faked Pipedrive answers (docs/vendors/pipedrive.md §6, §10-§13 shapes)."""

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.pipedrive import PipedriveConfig, PipedriveConnector, PipedriveSecrets
from connectors.pipedrive.client import BudgetExhausted
from connectors.pipedrive.mapping import due_at, duration_seconds
from core.records import StageChangeRecord
from core.types import ActivityType
from tests.unit.test_pipedrive_connector import API, FAST, KNOWN, hook, metadata, ok, read


def connector(limits: LocalLimits | None = None, secrets: dict[str, str] | None = None,
              **config: Any) -> PipedriveConnector:
    api = ApiClient(build_client(), max_in_flight=4, retry=FAST,
                    limits=limits or LocalLimits())
    return PipedriveConnector(
        PipedriveConfig.model_validate({"company_domain": "acme", **config}),
        PipedriveSecrets.model_validate(secrets or {"api_token": "tok-123"}), api)


def users(router: respx.MockRouter) -> None:
    router.get(f"{API}/api/v1/users").mock(return_value=ok(
        [{"id": 11, "name": "Jane Roe", "email": "jane@acme.test"},
         {"id": 12, "name": "Sam Poe", "email": "sam@acme.test"},
         {"id": 13, "name": "Ann Loe", "email": "ann@acme.test"}],
        pagination={"more_items_in_collection": False}))


@respx.mock
async def test_users_carry_their_team_and_a_plan_without_teams_syncs_without():
    users(respx)
    route = respx.get(f"{API}/api/v1/legacyTeams").mock(return_value=ok([
        {"id": 2, "name": "West", "active_flag": 1, "deleted_flag": 0, "users": [12, 11]},
        {"id": 1, "name": "East", "active_flag": 1, "deleted_flag": 0, "users": [11]},
        {"id": 3, "name": "Old", "active_flag": 0, "deleted_flag": 0, "users": [13]}]))
    pages = await read(connector(), "users")
    teams = {u.remote_id: u.team for p in pages for u in p.records}
    assert teams == {"11": "East", "12": "West", "13": None}  # lowest active team first
    route.mock(return_value=httpx.Response(403, json={
        "success": False, "error": "Teams feature is not available in your plan",
        "errorCode": 403}))
    pages = await read(connector(), "users")
    assert [u.team for p in pages for u in p.records] == [None, None, None]


def flow_row(i: int, key: str, old: Any, new: Any, at: str) -> dict[str, Any]:
    return {"object": "dealChange", "timestamp": at, "data": {
        "id": i, "item_id": 746, "user_id": 11, "field_key": key, "old_value": old,
        "new_value": new, "log_time": at, "change_source": "app"}}


@respx.mock
async def test_stage_history_follows_the_flow_pages_and_names_the_stages():
    metadata(respx)
    respx.get(f"{API}/api/v2/stages").mock(return_value=ok(
        [{"id": 3, "name": "Qualified", "pipeline_id": 1, "order_nr": 1},
         {"id": 4, "name": "Proposal", "pipeline_id": 1, "order_nr": 2}], next_cursor=None))
    first = [flow_row(9, "status", "open", "won", "2026-03-27 13:21:10"),
             flow_row(8, "stage_id", "3", "4", "2026-03-20 09:00:00")]
    second = [flow_row(7, "add_time", None, "2026-03-01 08:00:00", "2026-03-01 08:00:00")]
    route = respx.get(f"{API}/api/v1/deals/746/flow").mock(side_effect=[
        ok(first, pagination={"more_items_in_collection": True, "next_start": 2}),
        ok(second, pagination={"more_items_in_collection": False})])
    respx.get(f"{API}/api/v1/deals/747/flow").mock(return_value=httpx.Response(
        404, json={"success": False, "error": "Deal not found"}))
    respx.get(f"{API}/api/v1/deals/748/flow").mock(return_value=httpx.Response(200, json={
        "success": True, "data": [flow_row(1, "add_time", None, "x", "2026-02-01 10:00:00")],
        "related_objects": {"deal": {"748": {"id": 748, "stage_id": 4}}},
        "additional_data": {"pagination": {"more_items_in_collection": False}}}))
    changes = await connector().read_stage_history(["746", "747", "748"])
    at = lambda s: datetime.fromisoformat(s).replace(tzinfo=UTC)  # noqa: E731
    assert changes == [
        StageChangeRecord("746", None, "Qualified", at("2026-03-01 08:00:00")),
        StageChangeRecord("746", "Qualified", "Proposal", at("2026-03-20 09:00:00")),
        StageChangeRecord("748", None, "Proposal", at("2026-02-01 10:00:00"))]
    assert route.calls[1].request.url.params["start"] == "2"
    assert route.calls[0].request.url.params["items"] == "dealChange"


@respx.mock
async def test_stage_history_names_a_stage_added_since_the_metadata_was_kept():
    """A backfill job that reuses the company's metadata (META_TTL) reads it again when a
    flow moves to a stage it does not know, so the move carries the stage's name, not its
    id; the next job reuses that."""
    metadata(respx)
    stages = [{"id": 3, "name": "Qualified", "pipeline_id": 1, "order_nr": 1}]
    read_stages = respx.get(f"{API}/api/v2/stages").mock(
        side_effect=lambda _: ok(list(stages), next_cursor=None))
    respx.get(f"{API}/api/v1/deals/746/flow").mock(return_value=ok(
        [flow_row(8, "stage_id", "3", "5", "2026-03-20 09:00:00")],
        pagination={"more_items_in_collection": False}))
    limits = LocalLimits()  # the worker process's: the metadata is kept between jobs
    await connector(limits).read_stage_history([])  # an earlier job read the metadata
    assert read_stages.call_count == 1
    stages.append({"id": 5, "name": "Negotiation", "pipeline_id": 1, "order_nr": 2})
    [move] = await connector(limits).read_stage_history(["746"])
    assert (move.from_stage, move.to_stage) == ("Qualified", "Negotiation")
    assert read_stages.call_count == 2
    [again] = await connector(limits).read_stage_history(["746"])
    assert again.to_stage == "Negotiation" and read_stages.call_count == 2


def activity(i: int, kind: str, **extra: Any) -> dict[str, Any]:
    return {"id": 900 + i, "subject": f"A{i}", "type": kind, "owner_id": 11, "deal_id": 746,
            "org_id": 42, "due_date": "2026-03-02", "due_time": "14:30",
            "duration": "01:15", "done": True,
            "marked_as_done_time": "2026-03-02T16:00:00Z", "is_deleted": False,
            "add_time": "2026-03-01T08:00:00Z", "update_time": f"2026-03-0{i}T09:00:00Z",
            "note": "<p>private</p>", **extra}


@respx.mock
async def test_activities_map_types_times_links_and_deletions():
    metadata(respx)
    respx.get(f"{API}/api/v1/activityTypes").mock(return_value=ok([
        {"id": 1, "key_string": "call", "is_custom_flag": False},
        {"id": 9, "key_string": "product_demo", "is_custom_flag": True}]))
    route = respx.get(f"{API}/api/v2/activities").mock(side_effect=[
        ok([activity(1, "call"), activity(2, "product_demo"),
            activity(3, "task", due_time=None, duration=None, done=False,
                     marked_as_done_time=None)], next_cursor="c2"),
        ok([activity(4, "lunch"), activity(5, "call", is_deleted=True)], next_cursor=None)])
    pages = await read(connector(), "activities", {"updated_since": "2026-03-01T00:00:00Z"})
    records = [r for p in pages for r in p.records]
    assert [(r.remote_id, r.type, r.kind) for r in records] == [
        ("901", ActivityType.CALL, "call"), ("902", ActivityType.OTHER, "product_demo"),
        ("903", ActivityType.TASK, "task"), ("904", ActivityType.MEETING, "lunch")]
    call, task = records[0], records[2]
    assert call.occurred_at == datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
    assert (call.duration_seconds, call.done, call.deal_remote_id, call.account_remote_id) \
        == (4500, True, "746", "42")
    assert call.completed_at == datetime(2026, 3, 2, 16, tzinfo=UTC)
    assert (call.owner_email, call.owner_name) == ("jane@acme.test", "Jane Roe")
    assert "note" not in (call.raw or {})  # the activity's note text is not kept
    assert task.occurred_at == datetime(2026, 3, 2, tzinfo=UTC) and task.done is False
    deletions = [d for p in pages for d in p.deletions]
    assert [(d.entity, d.remote_id) for d in deletions] == [("activities", "905")]
    assert pages[-1].cursor == {"updated_since": "2026-03-05T09:00:00Z"}
    params = route.calls[0].request.url.params
    assert (params["sort_by"], params["updated_since"]) == ("update_time",
                                                          "2026-03-01T00:00:00Z")
    assert route.calls[1].request.url.params["cursor"] == "c2"


def test_due_times_and_durations_parse_and_bad_ones_are_refused():
    assert due_at(None, "10:00") is None
    assert due_at("2026-01-05", "07:05:09") == datetime(2026, 1, 5, 7, 5, 9, tzinfo=UTC)
    assert (duration_seconds(""), duration_seconds("00:30")) == (None, 1800)
    with pytest.raises(ValueError):
        due_at("2026-13-40", None)


def test_deal_links_use_the_company_domain_or_api_url():
    config = PipedriveConfig.model_validate
    assert PipedriveConnector.deal_url(config({"company_domain": "acme"}), "746") == \
        "https://acme.pipedrive.com/deal/746"
    assert PipedriveConnector.deal_url(config({"api_url": "http://127.0.0.1:8430/"}),
                                       "7") == "http://127.0.0.1:8430/deal/7"
    assert PipedriveConnector.deal_url(config({}), "746") is None  # OAuth, no domain given
    assert PipedriveConnector.deal_url(config({"company_domain": "acme"}), "7/../x") is None


def answer(daily: str | None = None, writes: str | None = None, status: int = 200,
           **extra: str) -> httpx.Response:
    headers = {"x-ratelimit-remaining": "10", **extra}
    if daily is not None:
        headers["x-daily-ratelimit-token-remaining"] = daily
    if writes is not None:
        headers["x-daily-requests-left"] = writes
    body: dict[str, Any] = {"success": status == 200, "data": {"id": 1}}
    return httpx.Response(status, json=body, headers=headers)


@respx.mock
async def test_an_exhausted_daily_budget_stops_every_connector_sharing_the_limits():
    limits = LocalLimits()  # as two processes share RedisLimits (tests/integration)
    route = respx.get(f"{API}/api/v1/users/me").mock(return_value=answer(
        daily="0", status=429, **{"Retry-After": "3600"}))
    with pytest.raises(BudgetExhausted, match="daily API token budget"):
        await connector(limits).check()
    other = connector(limits)
    with pytest.raises(BudgetExhausted, match="daily API token budget"):
        await other.check()
    assert route.call_count == 1  # the second one did not call at all
    fresh = connector(LocalLimits())  # another company's state is its own
    route.mock(return_value=answer(daily="500"))
    await fresh.check()


@respx.mock
async def test_the_reserve_is_left_for_the_companys_other_integrations():
    limits = LocalLimits()
    route = respx.get(f"{API}/api/v1/users/me").mock(side_effect=[
        answer(daily="1200"), answer(daily="950")])
    source = connector(limits, daily_reserve=1000)
    await source.check()
    await source.check()  # this answer is used; it leaves less than the reserve
    with pytest.raises(BudgetExhausted, match="reserve of 1000 tokens"):
        await connector(limits, daily_reserve=1000).check()
    assert route.call_count == 2


@respx.mock
async def test_no_post_or_put_once_the_fair_use_allowance_is_used_up():
    limits = LocalLimits()
    respx.get(f"{API}/api/v1/webhooks").mock(return_value=answer(writes="0"))
    created = respx.post(f"{API}/api/v1/webhooks").mock(return_value=answer(writes="0"))
    source = connector(limits)
    await source.get("/api/v1/webhooks")
    with pytest.raises(BudgetExhausted, match="POST/PUT"):
        await connector(limits).call("POST", "/api/v1/webhooks", json={})
    assert created.call_count == 0
    await connector(limits).get("/api/v1/webhooks")  # reads go on


@respx.mock
async def test_activity_webhooks_re_read_the_activity_or_tombstone_a_deleted_one():
    metadata(respx)
    respx.get(f"{API}/api/v1/activityTypes").mock(return_value=ok([]))
    respx.get(f"{API}/api/v2/activities/901").mock(return_value=ok(activity(1, "call")))
    source = connector()
    intake = PipedriveConnector.parse_webhook(
        hook(entity="activity", entity_id="901", id="ev-7"), KNOWN)
    assert [key for key, _ in intake.events] == ["pipedrive:ev-7"]
    gone = {"action": "delete", "entity": "activities", "entity_id": "902",
            "timestamp": "1747332000"}  # the "10 character timestamp" of §5's table
    changes = dict(await source.resolve_webhook_events([intake.events[0][1], gone]))
    assert [r.remote_id for r in changes["activities"].records] == ["901"]
    [tombstone] = changes["deletions"].deletions
    assert (tombstone.entity, tombstone.remote_id) == ("activities", "902")
    assert tombstone.deleted_at == datetime(2025, 5, 15, 18, 0, tzinfo=UTC)


@respx.mock
async def test_a_burst_429_waits_its_retry_after_then_the_call_succeeds():
    answers = iter([httpx.Response(429, json={"success": False, "error": "Request over limit"},
                                   headers={"Retry-After": "1", "x-ratelimit-remaining": "0",
                                            "x-ratelimit-reset": "1"}),
                    ok({"id": 1, "default_currency": "EUR"})])
    route = respx.get(f"{API}/api/v1/users/me").mock(side_effect=lambda _: next(answers))
    api = ApiClient(build_client(), max_in_flight=4, limits=LocalLimits(),
                    retry=RetryPolicy(attempts=3, initial_wait=0.001, max_wait=5.0))
    source = PipedriveConnector(PipedriveConfig(company_domain="acme"),
                                PipedriveSecrets.model_validate({"api_token": "t"}), api)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await source.check()).home_currency == "EUR"
    assert route.call_count == 2 and 0.9 <= loop.time() - started < 3.0
