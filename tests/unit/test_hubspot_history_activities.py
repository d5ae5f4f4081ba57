"""HubSpot's stage history (dealstage's property history, docs/vendors/hubspot.md §11),
record links (§12) and activities (§13) against respx-faked HubSpot answers."""

from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import respx

from connectors import registry
from connectors.hubspot.wire import HISTORY_LIMIT_MESSAGE
from core.records import StageChangeRecord
from core.types import ActivityType
from tests.unit.test_hubspot_connector import API, T0, FakeSearch, connector, iso, mount_metadata

CALL_PROPS = {"hs_call_title": "Discovery", "hs_call_duration": "95000",
              "hs_call_status": "COMPLETED", "hs_call_direction": "OUTBOUND"}


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def history(deal_id: str, pipeline: str, *moves: tuple[str, int]) -> dict[str, Any]:
    """A batch-read result with the dealstage history (§11), newest first."""
    return {"id": deal_id, "properties": {"pipeline": pipeline, "dealstage": moves[-1][0]},
            "propertiesWithHistory": {"dealstage": [
                {"value": stage, "timestamp": iso(ms), "sourceType": "CRM_UI",
                 "sourceId": "userId:91", "updatedByUserId": 91}
                for stage, ms in reversed(moves)]}}


@respx.mock
async def test_stage_history_reads_50_deals_a_call_and_names_the_stages() -> None:
    mount_metadata(respx)
    bodies: list[dict[str, Any]] = []

    def batch_read(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        bodies.append(body)
        if len(body["inputs"]) > 50:  # §11
            return httpx.Response(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                             "message": HISTORY_LIMIT_MESSAGE})
        results = [history(i["id"], "default", ("appt", T0), ("appt", T0 + 5),
                           ("closedwon", T0 + 60_000)) for i in body["inputs"]
                   if i["id"] != "999"]  # a deal HubSpot no longer has
        return httpx.Response(207 if len(results) < len(body["inputs"]) else 200,
                              json={"status": "COMPLETE", "results": results})

    respx.post(f"{API}/crm/v3/objects/deals/batch/read").mock(side_effect=batch_read)
    source = connector()
    assert source.stage_history_batch == 50
    ids = [str(i) for i in range(1, 120)] + ["999"]
    changes = await source.read_stage_history(ids)
    assert [len(b["inputs"]) for b in bodies] == [50, 50, 20]
    assert all(b["propertiesWithHistory"] == ["dealstage"] for b in bodies)
    assert {c.deal_remote_id for c in changes} == set(ids) - {"999"}
    # a row repeating its stage is no move; stage ids become the labels deals carry
    assert [c for c in changes if c.deal_remote_id == "7"] == [
        StageChangeRecord("7", None, "Appointment", at(T0)),
        StageChangeRecord("7", "Appointment", "Signed!", at(T0 + 60_000))]


def test_deal_links_need_the_portal_id_and_follow_the_app_host() -> None:
    assert registry.deal_url("hubspot", {"portal_id": 62515}, "512") == \
        "https://app.hubspot.com/contacts/62515/record/0-3/512"
    assert registry.deal_url("hubspot", {"portal_id": 62515,
                                         "app_url": "https://app-eu1.hubspot.com"}, "512") == \
        "https://app-eu1.hubspot.com/contacts/62515/record/0-3/512"
    assert registry.deal_url("hubspot", {}, "512") is None  # no portal id: no link
    assert registry.deal_url("hubspot", {"base_url": "http://127.0.0.1:8430",
                                         "portal_id": 1}, "5/1") == \
        "http://127.0.0.1:8430/contacts/1/record/0-3/5%2F1"


def activity(object_id: str, modified_ms: int, **props: Any) -> dict[str, Any]:
    return {"id": object_id, "properties": {
        "hs_timestamp": iso(T0), "hubspot_owner_id": "910901", "hs_createdate": iso(T0 - 9),
        "hs_lastmodifieddate": iso(modified_ms), "hs_object_id": object_id, **props},
        "createdAt": iso(T0 - 9), "updatedAt": iso(modified_ms), "archived": False,
        "modified_ms": modified_ms}


def listing(rows_by_type: dict[str, list[dict[str, Any]]]) -> Any:
    def answer(request: httpx.Request) -> httpx.Response:
        object_type = request.url.path.rsplit("/", 1)[-1]
        if request.url.params.get("archived") == "true":
            gone = [{"id": "77", "archived": True, "archivedAt": iso(T0 + 5)}] \
                if object_type == "tasks" else []
            return httpx.Response(200, json={"results": gone})
        assert request.url.params["associations"] == "deals,companies"
        return httpx.Response(200, json={"results": rows_by_type.get(object_type, [])})
    return answer


@respx.mock
async def test_a_full_read_maps_calls_meetings_tasks_and_notes_with_their_associations(
        ) -> None:
    mount_metadata(respx)
    linked = {"associations": {"deals": {"results": [{"id": "512", "type": "call_to_deal"}]},
                               "companies": {"results": [{"id": "201",
                                                          "type": "call_to_company"}]}}}
    rows = {
        "calls": [{**activity("1", T0 + 1, **CALL_PROPS), **linked},
                  activity("2", T0 + 2, hs_call_title="Missed", hs_call_status="NO_ANSWER")],
        "meetings": [activity("3", T0 + 3, hs_meeting_title="Demo",
                              hs_meeting_start_time=iso(T0),
                              hs_meeting_end_time=iso(T0 + 1_800_000),
                              hs_meeting_outcome="NO_SHOW")],
        "tasks": [activity("4", T0 + 4, hs_task_subject="Send quote",
                           hs_task_status="COMPLETED", hs_task_type="EMAIL",
                           hs_task_completion_date=iso(T0 + 7))],
        "notes": [activity("5", T0 + 5,
                           hs_note_body="<p>Budget <b>approved</b> &amp; signed</p>")],
    }
    route = respx.get(url__regex=rf"{API}/crm/v3/objects/(calls|meetings|tasks|notes)").mock(
        side_effect=listing(rows))
    pages = [p async for p in connector().read("activities", None)]
    found = {r.remote_id: r for p in pages for r in p.records}
    call, missed, meeting, task, note = (found[i] for i in "12345")
    assert (call.type, call.subject, call.kind, call.done, call.duration_seconds) == (
        ActivityType.CALL, "Discovery", "OUTBOUND", True, 95)  # hs_call_duration in ms
    assert (call.deal_remote_id, call.account_remote_id) == ("512", "201")
    assert (call.owner_email, call.occurred_at) == ("j.smith@example.com", at(T0))
    assert (missed.done, missed.deal_remote_id) == (False, None)
    assert (meeting.type, meeting.done, meeting.duration_seconds) == (
        ActivityType.MEETING, False, 1800)
    assert (task.type, task.kind, task.done, task.completed_at) == (
        ActivityType.TASK, "EMAIL", True, at(T0 + 7))
    assert (note.type, note.subject, note.done) == (
        ActivityType.NOTE, "Budget approved & signed", None)
    deletions = [d for p in pages for d in p.deletions]
    assert [(d.entity, d.remote_id) for d in deletions] == [("activities", "77")]
    cursor = pages[-1].cursor or {}
    assert set(cursor) == {"calls", "meetings", "tasks", "notes", "archived"}
    assert cursor["calls"] == {"since": T0 + 2} and cursor["archived"]["tasks"] == T0 + 5
    assert {c.request.url.path.rsplit("/", 1)[-1] for c in route.calls} == {
        "calls", "meetings", "tasks", "notes"}


@respx.mock
async def test_an_incremental_read_searches_each_object_and_reads_its_associations(
        ) -> None:
    mount_metadata(respx)
    searches = {t: FakeSearch(rows) for t, rows in {
        "calls": [activity("1", T0 + 10, **CALL_PROPS)],
        "meetings": [], "tasks": [activity("4", T0 + 20, hs_task_subject="Quote",
                                           hs_task_status="NOT_STARTED")], "notes": []}.items()}
    for object_type, fake in searches.items():
        respx.post(f"{API}/crm/v3/objects/{object_type}/search").mock(side_effect=fake)
    asked: list[str] = []

    def associations(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        ids = [i["id"] for i in orjson.loads(request.content)["inputs"]]
        to = 512 if request.url.path.endswith("/deals/batch/read") else 201
        return httpx.Response(200, json={"status": "COMPLETE", "results": [
            {"from": {"id": i}, "to": [{"toObjectId": to, "associationTypes": []}]}
            for i in ids if i == "1"]})

    respx.post(url__regex=rf"{API}/crm/v4/associations/\w+/\w+/batch/read").mock(
        side_effect=associations)
    respx.get(url__regex=rf"{API}/crm/v3/objects/\w+").mock(
        return_value=httpx.Response(200, json={"results": []}))
    cursor = {t: {"since": T0} for t in searches} | {"archived": dict.fromkeys(searches, T0)}
    pages = [p async for p in connector().read("activities", cursor)]
    found = {r.remote_id: r for p in pages for r in p.records}
    assert (found["1"].deal_remote_id, found["1"].account_remote_id) == ("512", "201")
    assert (found["4"].deal_remote_id, found["4"].done, found["4"].completed_at) == (
        None, False, None)
    assert all(f.bodies and f.bodies[0]["filterGroups"][0]["filters"][0]["value"] ==
               str(T0 - 1000) for f in searches.values())  # each from its cursor, overlapped
    assert "/crm/v4/associations/calls/deals/batch/read" in asked
    assert "/crm/v4/associations/tasks/companies/batch/read" in asked
