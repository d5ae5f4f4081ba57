"""Salesforce's stage history (OpportunityHistory, docs/vendors/salesforce.md §11), record
links (§10) and activities (Task and Event, §12) against respx-faked Salesforce answers."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import respx

from connectors import registry
from connectors.salesforce.wire import format_datetime
from core.records import StageChangeRecord
from core.types import ActivityType
from tests.unit.test_salesforce_connector import (
    DATA,
    NOW,
    USER_ID,
    answer,
    make,
    metadata,
    read,
    soql,
    tables,
)

OPP = "006Dn00000ABCDEIA1"


def move(opportunity: str, stage: str, at: datetime) -> dict[str, Any]:
    return {"attributes": {"type": "OpportunityHistory"}, "OpportunityId": opportunity,
            "StageName": stage, "CreatedDate": format_datetime(at)}


async def test_stage_history_is_one_query_a_batch_paged_by_next_records_url():
    t0 = NOW - timedelta(days=30)
    asked: list[str] = []

    def history(query: str) -> httpx.Response:
        asked.append(query)
        return answer([move(OPP, "Prospecting", t0),
                       move(OPP, "Prospecting", t0 + timedelta(days=1))],  # an amount edit
                      done=False, following="/services/data/v62.0/query/01gH0000-2000")
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), history))
        more = mock.get(f"{DATA}/query/01gH0000-2000").mock(return_value=answer(
            [move(OPP, "Closed Won", t0 + timedelta(days=9)),
             move("006Dn00000ZZZZZIA1", "Prospecting", t0)]))
        source = make()
        assert source.stage_history_batch == 200
        changes = await source.read_stage_history([OPP, "006Dn00000ZZZZZIA1", "it's"])
        assert await source.read_stage_history([]) == []
    [query] = [q for q in asked if "OpportunityHistory" in q]
    assert query == ("SELECT OpportunityId, StageName, CreatedDate FROM OpportunityHistory "
                     f"WHERE OpportunityId IN ('{OPP}', '006Dn00000ZZZZZIA1', 'it\\'s') "
                     "ORDER BY OpportunityId, CreatedDate")
    assert more.called
    # the stage names deals carry (labels: Closed Won is labelled Signed); repeats are no move
    assert sorted(changes, key=lambda c: (c.deal_remote_id, c.changed_at)) == [
        StageChangeRecord(OPP, None, "Prospecting", t0),
        StageChangeRecord(OPP, "Prospecting", "Signed", t0 + timedelta(days=9)),
        StageChangeRecord("006Dn00000ZZZZZIA1", None, "Prospecting", t0)]


def test_deal_links_open_lightning_on_the_orgs_own_host():
    url = "https://acme.my.salesforce.com/lightning/r/Opportunity/006A/view"
    assert registry.deal_url("salesforce", {"instance_url": "https://acme.my.salesforce.com"},
                             "006A") == url
    assert registry.deal_url("salesforce", {"login_url": "https://acme.my.salesforce.com/"},
                             "006A") == url  # a My Domain login URL is the org's
    assert registry.deal_url("salesforce", {}, "006A") is None  # login.salesforce.com
    assert registry.deal_url("salesforce", {"login_url": "https://test.salesforce.com"},
                             "006A") is None


def task(i: int, stamp: datetime, **extra: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Task"}, "Id": f"00T{i:015d}", "Subject": f"Task {i}",
            "OwnerId": USER_ID, "WhatId": None, "AccountId": None,
            "ActivityDate": "2026-03-02", "Status": "Not Started", "IsClosed": False,
            "CompletedDateTime": None, "TaskSubtype": "Task", "CallDurationInSeconds": None,
            "CreatedDate": format_datetime(stamp), "SystemModstamp": format_datetime(stamp),
            **extra}


async def test_tasks_and_events_map_to_calls_emails_tasks_and_meetings():
    stamp = NOW - timedelta(hours=3)
    done = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    tasks = [task(1, stamp, TaskSubtype="Call", CallDurationInSeconds=310.0, IsClosed=True,
                  Status="Completed", CompletedDateTime=format_datetime(done), WhatId=OPP,
                  AccountId="001Dn00000AAAAAIA1"),
             task(2, stamp, TaskSubtype="Email", WhatId="001Dn00000BBBBBIA1",
                  AccountId="001Dn00000BBBBBIA1"),
             task(3, stamp, AccountId="001Dn00000CCCCCIA1", ActivityDate=None)]
    event = {"attributes": {"type": "Event"}, "Id": "00U000000000000004", "Subject": "Demo",
             "OwnerId": USER_ID, "WhatId": OPP, "AccountId": None, "ActivityDate": "2026-03-04",
             "StartDateTime": "2026-03-04T15:00:00.000+0000",
             "EndDateTime": "2026-03-04T16:30:00.000+0000", "DurationInMinutes": 90,
             "EventSubtype": "Event", "CreatedDate": format_datetime(stamp),
             "SystemModstamp": format_datetime(stamp)}

    def rows(request: httpx.Request) -> httpx.Response:
        query = soql(request)
        if "LIMIT 1" in query:
            return answer([{"SystemModstamp": format_datetime(stamp)}])
        if "IsDeleted = true" in query:
            return answer([{"Id": "00T000000000000009", "SystemModstamp": format_datetime(
                stamp)}] if "FROM Task" in query else [])
        return answer(tasks if "FROM Task" in query else [event])
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), lambda q: answer([])))
        query_all = mock.get(f"{DATA}/queryAll").mock(side_effect=rows)
        pages = await read(make(), "activities")
    found = {r.remote_id: r for p in pages for r in p.records}
    call, email, todo = (found[t["Id"]] for t in tasks)
    meeting = found["00U000000000000004"]
    assert (call.type, call.kind, call.done, call.duration_seconds, call.completed_at) == (
        ActivityType.CALL, "Call", True, 310, done)  # TaskSubtype Call
    assert (call.deal_remote_id, call.account_remote_id) == (OPP, "001Dn00000AAAAAIA1")
    assert call.occurred_at == datetime(2026, 3, 2, tzinfo=UTC)  # a date: 00:00 UTC
    assert (call.owner_email, call.subject) == ("ana@acme.com", "Task 1")
    assert (email.type, email.deal_remote_id, email.account_remote_id) == (
        ActivityType.EMAIL, None, "001Dn00000BBBBBIA1")  # WhatId 001: an account
    assert (todo.type, todo.done, todo.occurred_at, todo.account_remote_id) == (
        ActivityType.TASK, False, None, "001Dn00000CCCCCIA1")
    assert (meeting.type, meeting.done, meeting.duration_seconds, meeting.occurred_at) == (
        ActivityType.MEETING, None, 5400, datetime(2026, 3, 4, 15, tzinfo=UTC))
    assert meeting.deal_remote_id == OPP
    deletions = [d for p in pages for d in p.deletions]
    assert [(d.entity, d.remote_id) for d in deletions] == [("activities", "00T000000000000009")]
    queries = [soql(c.request) for c in query_all.calls]
    reads = [q for q in queries if "IsDeleted = false AND SystemModstamp >=" in q]
    assert [q.split(" FROM ")[1].split()[0] for q in reads] == ["Task", "Event"]
    assert all("ORDER BY SystemModstamp, Id" in q for q in reads)
    cursor = pages[-1].cursor or {}
    assert cursor["Task"] == {"modstamp": format_datetime(stamp)}
    assert cursor["deleted"] == {"Task": format_datetime(stamp)}


async def test_an_incremental_read_starts_each_object_at_its_cursor_less_the_overlap():
    since = NOW - timedelta(hours=1)
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), lambda q: answer([])))
        query_all = mock.get(f"{DATA}/queryAll").mock(return_value=answer([]))
        stamp = format_datetime(since)
        await read(make(), "activities", {"Task": {"modstamp": stamp},
                                          "Event": {"modstamp": stamp},
                                          "deleted": {"Task": stamp, "Event": stamp}})
    queries = [soql(c.request) for c in query_all.calls]
    start = f"{since - timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}Z"
    assert len(queries) == 4 and all(f"SystemModstamp >= {start}" in q for q in queries)
    assert not any("LIMIT 1" in q for q in queries)  # no search for the oldest record
