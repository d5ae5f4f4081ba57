"""Zoho activities (docs/vendors/zoho.md §14) against respx-faked Calls, Events and Tasks:
types, held and completed, links through What_Id / $se_module, dates, paging and cursors."""

from datetime import UTC, datetime
from typing import Any

import httpx
import respx

from connectors.zoho.client import ACTIVITY_FIELDS
from tests.unit.test_zoho_connector import API, FakeZoho, collect, mount_metadata

OWNER = {"name": "Jean Lafleur", "id": "77", "email": "Jean.Lafleur@Example.com"}
DEAL = {"What_Id": {"name": "King – Pilot", "id": "1001"}, "$se_module": "Deals"}
ACCOUNT = {"What_Id": {"name": "King", "id": "55"}, "$se_module": "Accounts"}


def row(i: int, modified: str, **fields: Any) -> dict[str, Any]:
    return {"id": str(i), "Owner": OWNER, "Created_Time": "2025-05-01T10:00:00+08:00",
            "Modified_Time": modified, "What_Id": None, **fields}


CALLS = [
    row(1, "2025-05-20T09:00:00+08:00", Subject="Discovery", Call_Type="Outbound",
        Call_Start_Time="2025-05-20T08:30:00+08:00", Call_Duration_in_seconds=300,
        Outgoing_Call_Status="Completed", **DEAL),
    row(2, "2025-05-20T09:00:01+08:00", Subject="Callback", Call_Type="Outbound",
        Call_Start_Time="2025-05-28T10:00:00+08:00", Outgoing_Call_Status="Scheduled",
        Call_Duration_in_seconds=None, **ACCOUNT),
    row(3, "2025-05-20T09:00:02+08:00", Subject="Missed", Call_Type="Missed",
        Call_Start_Time="2025-05-20T07:00:00+08:00", Call_Duration_in_seconds=0),
    row(4, "2025-05-20T09:00:03+08:00", Subject="Inbound", Call_Type="Inbound",
        Call_Start_Time="2025-05-20T06:00:00+08:00", Call_Duration_in_seconds=61,
        Outgoing_Call_Status=None, What_Id={"name": "Ann", "id": "9"},
        **{"$se_module": "Contacts"}),
]
EVENTS = [row(11, "2025-05-21T09:00:00+08:00", Event_Title="Demo",
              Start_DateTime="2025-05-22T14:00:00+08:00",
              End_DateTime="2025-05-22T15:30:00+08:00", All_day=False, **DEAL)]
TASKS = [
    row(21, "2025-05-22T09:00:00+08:00", Subject="Send proposal", Status="Completed",
        Due_Date="2025-05-23", Closed_Time="2025-05-22T18:00:00+08:00", **DEAL),
    row(22, "2025-05-22T09:00:01+08:00", Subject="Update forecast", Status="Not Started",
        Due_Date=None, Closed_Time=None),
]


def mount_fields(router: respx.MockRouter) -> None:
    """Each activity module's field list (before mount_metadata's, which serves Deals')."""
    for module, fields in ACTIVITY_FIELDS.items():
        router.get(f"{API}/crm/v8/settings/fields", params={"module": module}).mock(
            return_value=httpx.Response(200, json={"fields": [{"api_name": f}
                                                              for f in fields]}))
    mount_metadata(router)


def mount(router: respx.MockRouter) -> dict[str, FakeZoho]:
    mount_fields(router)
    fakes = {"Calls": FakeZoho(CALLS), "Events": FakeZoho(EVENTS), "Tasks": FakeZoho(TASKS)}
    for module, fake in fakes.items():
        router.get(f"{API}/crm/v8/{module}").mock(side_effect=fake.list)
    return fakes


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_calls_events_and_tasks_map_to_typed_activities(respx_mock):
    fakes = mount(respx_mock)
    pages, _ = await collect("activities")
    found = {r.remote_id: r for p in pages for r in p.records}
    assert {i: (r.type, r.done) for i, r in found.items()} == {
        "1": ("call", True), "2": ("call", False), "3": ("call", False), "4": ("call", True),
        "11": ("meeting", None), "21": ("task", True), "22": ("task", False)}
    held = found["1"]
    assert held.occurred_at == datetime(2025, 5, 20, 0, 30, tzinfo=UTC)
    assert (held.deal_remote_id, held.account_remote_id) == ("1001", None)
    assert held.duration_seconds == 300 and held.kind == "Outbound"
    assert held.owner_email == "jean.lafleur@example.com" and held.owner_remote_id == "77"
    assert (found["2"].deal_remote_id, found["2"].account_remote_id) == (None, "55")
    assert (found["4"].deal_remote_id, found["4"].account_remote_id) == (None, None)
    assert found["11"].duration_seconds == 5400 and found["11"].subject == "Demo"
    done = found["21"]
    assert done.occurred_at == datetime(2025, 5, 23, tzinfo=UTC)  # a due date, 00:00 UTC
    assert done.completed_at == datetime(2025, 5, 22, 10, 0, tzinfo=UTC)
    assert found["22"].occurred_at == datetime(2025, 5, 1, 2, 0, tzinfo=UTC)  # no due date
    assert found["22"].completed_at is None
    for module, fake in fakes.items():  # §2: Modified_Time order; only the §14 fields
        params = fake.requests[0].url.params
        assert (params["sort_by"], params["sort_order"]) == ("Modified_Time", "asc")
        assert "What_Id" in params["fields"].split(","), module
    assert pages[-1].cursor == {"Calls": "2025-05-20T09:00:03+08:00",
                                "Events": "2025-05-21T09:00:00+08:00",
                                "Tasks": "2025-05-22T09:00:01+08:00"}


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_each_module_resumes_from_its_own_cursor_with_an_overlap(respx_mock):
    fakes = mount(respx_mock)
    cursor = {"Calls": "2025-05-20T09:00:03+08:00", "Events": None,
              "Tasks": "2025-05-22T09:00:01+08:00"}
    pages, _ = await collect("activities", cursor)
    found = sorted(r.remote_id for p in pages for r in p.records)
    assert found == ["11", "21", "22", "3", "4"]  # a second of overlap, nothing older
    sent = {m: f.requests[0].headers.get("If-Modified-Since") for m, f in fakes.items()}
    assert sent == {"Calls": "2025-05-20T09:00:02+08:00", "Events": None,
                    "Tasks": "2025-05-22T09:00:00+08:00"}
    assert pages[-1].cursor == cursor | {"Events": "2025-05-21T09:00:00+08:00"}


@respx.mock(assert_all_mocked=True, assert_all_called=False)
async def test_a_module_past_one_page_is_walked_with_page_tokens(respx_mock):
    mount_fields(respx_mock)
    calls = [row(1000 + i, f"2025-05-20T09:{i // 60:02d}:{i % 60:02d}+00:00", Subject="c",
                 Call_Type="Outbound", Call_Start_Time="2025-05-20T08:00:00+00:00")
             for i in range(450)]
    fake = FakeZoho(calls)
    respx_mock.get(f"{API}/crm/v8/Calls").mock(side_effect=fake.list)
    for module in ("Events", "Tasks"):
        respx_mock.get(f"{API}/crm/v8/{module}").mock(return_value=httpx.Response(204))
    pages, _ = await collect("activities")
    assert len({r.remote_id for p in pages for r in p.records}) == 450
    assert [r.url.params.get("page_token") for r in fake.requests] == [None, "200", "400"]
    assert pages[-1].cursor == {"Calls": "2025-05-20T09:07:29+00:00"}
