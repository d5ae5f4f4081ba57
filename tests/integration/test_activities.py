"""Activities in the store (core.activities; docs/evaluation.md, Activities): merge, owner
persons, local dates and a zone change, deletions, full-sync tombstones, activity_counts."""

from datetime import UTC, date, datetime

import pytest
from sqlmodel import select

from core import people, store
from core.activities import activity_counts, empty_counts
from core.db import session_scope
from core.metrics.localdates import read_zone
from core.metrics.zone import ensure_zone
from core.models import Activity, Connection, Person
from core.records import ActivityRecord, Deletion, UserRecord
from core.types import ActivityType

CALL, MEETING, TASK = ActivityType.CALL, ActivityType.MEETING, ActivityType.TASK
EMAIL, NOTE, OTHER = ActivityType.EMAIL, ActivityType.NOTE, ActivityType.OTHER


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def act(rid: str, kind: ActivityType, at: str, owner: str | None = "u1", *,
        done: bool | None = True, email: str | None = None, modified: str | None = None,
        deal: str | None = None) -> ActivityRecord:
    return ActivityRecord(rid, kind, occurred_at=ts(at), done=done, owner_remote_id=owner,
                          owner_email=email, subject=f"{kind} {rid}", deal_remote_id=deal,
                          remote_modified_at=ts(modified or at))


ACTIVITIES = [
    act("c1", CALL, "2025-03-01T10:00:00"),
    act("c2", CALL, "2025-03-02T10:00:00", done=None),  # the CRM does not say: counts
    act("c3", CALL, "2025-03-03T10:00:00", done=False),  # planned, not held: no
    act("m1", MEETING, "2025-03-04T15:00:00", deal="D1"),
    act("m2", MEETING, "2025-03-31T23:30:00"),  # Mar 31 in UTC, Mar 31 19:30 in New York
    act("t1", TASK, "2025-03-05T00:00:00"),  # due on a date: completed, counts
    act("t2", TASK, "2025-03-06T00:00:00", done=None),  # a task must be completed: no
    act("t3", TASK, "2025-03-07T00:00:00", done=False),  # open: no
    act("e1", EMAIL, "2025-03-08T08:00:00", done=None),
    act("n1", NOTE, "2025-03-09T09:00:00", owner="u2"),
    act("o1", OTHER, "2025-03-10T09:00:00", owner="u2", done=None),
    act("x1", CALL, "2025-04-01T02:00:00", owner="u2"),  # Apr 1 UTC, Mar 31 in New York
    act("g1", CALL, "2025-03-11T09:00:00", owner=None, email="ghost@x.com"),  # new person
    act("z1", CALL, "2025-03-12T09:00:00", owner=None, email=None),  # no owner at all
    act("d1", CALL, "2025-03-13T09:00:00"),  # deleted below
]


@pytest.fixture
def data(engine):
    with session_scope(engine) as session:
        ensure_zone(session, "UTC")
        conn = Connection(provider="zoho", name="c")
        session.add(conn)
        session.flush()
        cid = int(conn.id or 0)
        store.upsert_records(session, stream="users", connection_id=cid, records=[
            UserRecord("u1", "Ann", "ann@x.com"), UserRecord("u2", "Bob", "bob@x.com")])
        store.upsert_records(session, stream="activities", connection_id=cid,
                             records=ACTIVITIES)
        store.apply_deletions(session, connection_id=cid, deletions=[
            Deletion("activities", "d1", ts("2025-03-20T00:00:00"))])
    return engine, cid


def persons(engine) -> dict[str, int]:
    with session_scope(engine) as session:
        return {str(p.email): int(p.id or 0) for p in session.exec(select(Person))}


def test_activities_are_merged_with_owner_persons_and_local_dates(data):
    engine, _ = data
    ids = persons(engine)
    with session_scope(engine) as session:
        rows = {a.remote_id: a for a in session.exec(select(Activity))}
    assert len(rows) == len(ACTIVITIES)
    assert rows["c1"].owner_person_id == ids["ann@x.com"]
    assert rows["n1"].owner_person_id == ids["bob@x.com"]
    assert rows["g1"].owner_person_id == ids["ghost@x.com"]  # a person made for the email
    assert rows["z1"].owner_person_id is None
    assert rows["m1"].deal_remote_id == "D1" and rows["m1"].type is MEETING
    assert rows["x1"].activity_date == date(2025, 4, 1)
    assert rows["t1"].activity_date == date(2025, 3, 5)
    assert rows["d1"].deleted_at == ts("2025-03-20T00:00:00")
    assert rows["c1"].deleted_at is None


def test_activity_counts_follow_the_definition(data):
    engine, _ = data
    ids = persons(engine)
    ann, bob, ghost = ids["ann@x.com"], ids["bob@x.com"], ids["ghost@x.com"]
    with session_scope(engine) as session:
        counts = activity_counts(session, start=date(2025, 3, 1), end=date(2025, 3, 31))
    assert counts[ann] == {**empty_counts(), "call": 2, "meeting": 2, "task": 1, "email": 1,
                           "total": 6}
    assert counts[bob] == {**empty_counts(), "note": 1, "other": 1, "total": 2}
    assert counts[ghost] == {**empty_counts(), "call": 1, "total": 1}
    assert counts[None] == {**empty_counts(), "call": 1, "total": 1}
    with session_scope(engine) as session:
        only = activity_counts(session, start=date(2025, 3, 1), end=date(2025, 3, 4),
                               people=[ann, bob])
        assert only == {ann: {**empty_counts(), "call": 2, "meeting": 1, "total": 3}}
        assert activity_counts(session, start=date(2025, 3, 1), end=date(2025, 3, 31),
                               connection_id=-1) == {}
        with pytest.raises(ValueError):
            activity_counts(session, start=date(2025, 3, 2), end=date(2025, 3, 1))


def test_a_zone_change_recomputes_activity_dates(data):
    engine, _ = data
    ids = persons(engine)
    ann, bob = ids["ann@x.com"], ids["bob@x.com"]
    march = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}
    with session_scope(engine) as session:  # a read while the new zone is pending computes
        read_zone(session, "America/New_York")
        pending = activity_counts(session, **march)
    with session_scope(engine) as session:
        assert ensure_zone(session, "America/New_York") is True
    with session_scope(engine) as session:
        rows = {a.remote_id: a for a in session.exec(select(Activity))}
        counts = activity_counts(session, **march)
    assert rows["x1"].activity_date == date(2025, 3, 31)  # 22:00 on Mar 31 in New York
    assert rows["m2"].activity_date == date(2025, 3, 31)
    assert rows["c1"].activity_date == date(2025, 3, 1)
    assert rows["t1"].activity_date == date(2025, 3, 5)  # a due date stays that date
    assert counts == pending
    assert counts[bob]["call"] == 1 and counts[bob]["total"] == 3
    assert counts[ann]["total"] == 6


def test_an_older_copy_does_not_replace_an_activity_and_full_syncs_tombstone(data):
    engine, cid = data
    with session_scope(engine) as session:
        store.upsert_records(session, stream="activities", connection_id=cid, records=[
            act("c1", CALL, "2025-03-01T10:00:00", done=False, modified="2025-02-01T00:00:00"),
            act("c2", CALL, "2025-03-02T10:00:00", done=False, modified="2025-04-01T00:00:00"),
        ])
    since = datetime.now(UTC)
    with session_scope(engine) as session:
        store.upsert_records(session, stream="activities", connection_id=cid, records=[
            act("c1", CALL, "2025-03-01T10:00:00")])
        gone = store.tombstone_unseen(session, stream="activities", connection_id=cid,
                                      since=since, now=since)
        rows = {a.remote_id: a for a in session.exec(select(Activity))}
    assert gone == len(ACTIVITIES) - 2  # all but c1 and the deleted d1
    assert rows["c1"].done is True and rows["c1"].deleted_at is None
    assert rows["c2"].done is False and rows["c2"].deleted_at == since


def test_activities_follow_their_owner_when_a_user_is_mapped_to_another_person(data):
    engine, cid = data
    ids = persons(engine)
    with session_scope(engine) as session:
        people.map_user(session, ids["ann@x.com"], connection_id=cid, remote_id="u2")
    with session_scope(engine) as session:
        owners = {a.remote_id: a.owner_person_id for a in session.exec(select(Activity))}
        counts = activity_counts(session, start=date(2025, 3, 1), end=date(2025, 3, 31))
    assert owners["n1"] == owners["o1"] == owners["c1"] == ids["ann@x.com"]  # Bob's moved
    assert counts[ids["ann@x.com"]]["total"] == 8 and ids["bob@x.com"] not in counts
