"""GET /api/v1/activities and the summary's activity counts (docs/api.md, docs/metrics.md):
the rows, every filter, paging, bad input, and the people each caller may see."""

from datetime import UTC, datetime

import pytest

from core import store
from core.db import session_scope
from core.models import Connection
from core.queries import ROW_COLUMNS
from core.records import ActivityRecord
from core.types import ActivityType
from tests.api_support import add_connection, running_api, seed, seed_activities
from tests.unit import test_roles
from tests.unit.test_roles import Q1, V1, World, rows

world = test_roles.world  # the fixture: a signed-in rep, manager and admin


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        api.cid = add_connection(sqlite_engine, "main")
        seed(sqlite_engine, api.cid, deals=12)
        seed_activities(sqlite_engine, api.cid)  # act11 is deleted
        with session_scope(sqlite_engine) as session:
            connection = session.get(Connection, api.cid)
            assert connection is not None
            connection.home_currency = "EUR"  # the reporting currency: no rate needed
        yield api


async def test_the_rows_are_the_contract(api):
    response = await api.get(f"{V1}/activities", params={"limit": 2})
    body = response.json()
    assert response.status_code == 200 and set(body) == {"data", "next_cursor"}
    assert all(list(r) == list(ROW_COLUMNS["activities"]) for r in body["data"])
    spec = (await api.get("/openapi.json")).json()["components"]["schemas"]
    assert list(spec["ActivityRow"]["properties"]) == list(ROW_COLUMNS["activities"])
    first = body["data"][0]
    assert first == {
        "id": first["id"], "connection_id": api.cid, "remote_id": "act00", "type": "call",
        "kind": None, "subject": "Activity 0", "occurred_at": "2025-01-01T10:00:00Z",
        "activity_date": "2025-01-01", "done": True, "completed_at": None,
        "duration_seconds": None, "owner_email": "ann@example.com", "owner_name": "Ann Lee",
        "owner_person_id": first["owner_person_id"], "deal_remote_id": "d000",
        "account_remote_id": None, "remote_created_at": None,
        "remote_modified_at": "2025-01-01T12:00:00Z", "deleted": False}
    assert first["owner_person_id"] is not None


async def test_every_filter_and_keyset_paging(api):
    def ids(found):
        return [r["remote_id"] for r in found]

    every = await api.all_pages(f"{V1}/activities", limit=5)
    assert ids(every) == [f"act{i:02}" for i in range(11)]  # the deleted one left out
    assert len(await api.all_pages(f"{V1}/activities", include_deleted="true")) == 12
    assert ids(await api.all_pages(f"{V1}/activities", type="task")) == [
        "act02", "act05", "act08"]
    assert ids(await api.all_pages(f"{V1}/activities", date_from="2025-01-03",
                                   date_to="2025-01-04")) == ["act02", "act03"]
    assert ids(await api.all_pages(f"{V1}/activities", deal_remote_id="d004")) == ["act04"]
    bob = await api.all_pages(f"{V1}/activities", owner_email="BOB@example.com")
    assert ids(bob) == [f"act{i:02}" for i in range(1, 11, 2)]
    person = bob[0]["owner_person_id"]
    assert ids(await api.all_pages(f"{V1}/activities", owner_person_id=person)) == ids(bob)
    assert await api.all_pages(f"{V1}/activities", connection_id=api.cid + 1) == []
    later = await api.all_pages(f"{V1}/activities", modified_since="2025-01-10T12:00:00Z")
    assert ids(later) == ["act09", "act10"]


@pytest.mark.parametrize(("params", "field"), [
    ({"type": "dance"}, "type"), ({"date_from": "2025-02-01", "date_to": "2025-01-01"},
                                   "date_from"), ({"date_from": "soon"}, "date_from")])
async def test_bad_filters_are_422s_that_name_the_field(api, params, field):
    response = await api.get(f"{V1}/activities", params=params)
    assert response.status_code == 422, response.text
    assert field in response.text


async def test_the_summary_adds_activity_counts_when_asked(api):
    plain = (await api.get(f"{V1}/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-01-31", "group_by": "owner"})).json()
    assert "activities" not in plain["total"]
    asked = (await api.get(f"{V1}/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-01-31", "group_by": "owner",
        "activities": "true"})).json()
    by_email = {r["owner_email"]: r["activities"] for r in asked["data"]}
    # Ann: act00 call, act02 task, act04 meeting, act06 call, act08 task, act10 meeting: all
    # done (i % 4 != 3) -> 6. Bob: act01 meeting, act03 call (not held), act05 task, act07
    # meeting (not held), act09 call; act11 deleted -> 3.
    assert by_email == {"ann@example.com": 6, "bob@example.com": 3}
    assert asked["total"]["activities"] == 9
    for group_by in ("none", "team", "connection"):
        answer = (await api.get(f"{V1}/metrics/summary", params={
            "start": "2025-01-01", "end": "2025-01-31", "group_by": group_by,
            "activities": "true"})).json()
        assert "total" in answer, answer
        assert sum(r["activities"] for r in answer["data"]) == 9, group_by
        assert answer["total"]["activities"] == 9, group_by
    text = (await api.get(f"{V1}/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-01-31", "group_by": "team", "activities": "true",
        "format": "csv"})).text
    assert text.splitlines()[0].endswith(",attainment,activities")


def seed_team_activities(world: World) -> None:
    """A held call for Ann, Bob and Cat each, in January 2025."""
    records = [ActivityRecord(f"call-{n}", ActivityType.CALL, done=True, owner_remote_id=f"u-{n}",
                              occurred_at=datetime(2025, 1, 15, 9, tzinfo=UTC))
               for n in ("ann", "bob", "cat")]
    with session_scope(world.engine) as session:
        store.upsert_records(session, stream="activities",
                             connection_id=world.ids["connection"], records=records)


async def test_each_caller_sees_the_activities_of_their_people(world):
    seed_team_activities(world)
    seen = {who: {r["remote_id"] for r in await rows(world.clients[who], "/activities")}
            for who in ("rep", "manager", "admin", "key")}
    assert seen == {"rep": {"call-ann"}, "manager": {"call-ann", "call-bob"},
                    "admin": {"call-ann", "call-bob", "call-cat"},
                    "key": {"call-ann", "call-bob", "call-cat"}}
    assert await rows(world.clients["rep"], "/activities",
                      owner_person_id=world.person("cat")) == []
    summary = (await world.clients["manager"].get(f"{V1}/metrics/summary", params={
        **Q1, "group_by": "owner", "activities": "true"})).json()
    assert {r["person_id"]: r["activities"] for r in summary["data"]} == {
        world.person("ann"): 1, world.person("bob"): 1}
    assert summary["total"]["activities"] == 2
