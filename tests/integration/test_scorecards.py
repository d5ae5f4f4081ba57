"""Scorecards (core.metrics.scorecard, docs/evaluation.md "Scorecards") from hand-built
deals and goals on SQLite and PostgreSQL. Every expected number is worked out by hand
in the comments.

The period is Q1 2025; the previous one Q4 2024 and the next Q2 2025. Deals are played
through core.store as syncs would observe them (each event upserts the whole record,
modified at the event's time), so their versions give the pipeline as of a day.
"""

from datetime import UTC, date, datetime
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import select

from core import store
from core.config import Settings
from core.db import session_scope
from core.goals.targets import GoalInput, create_goal
from core.metrics.scorecard import FIGURES, NoOneToShow, scorecards
from core.models import Connection, Person
from core.records import ActivityRecord, DealRecord, UserRecord
from core.types import ActivityType
from tests.api_support import add_connection

SETTINGS = Settings(timezone="UTC", reporting_currency="USD")
Q1 = {"start": date(2025, 1, 1), "end": date(2025, 3, 31)}
ANN, BOB, CAT, DAN = "ann@x.com", "bob@x.com", "cat@x.com", "dan@x.com"


def at(day: str) -> datetime:
    return datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC)


# deal: owner, created, amount, first status, first close date, later events (day, changes)
DEALS: dict[str, tuple[str, str, str, str, str, list[tuple[str, dict[str, Any]]]]] = {
    # Q4 2024: Ann won 500 (cycle 10), Bob won 2000 (cycle 30), Cat lost 300
    "A0": (ANN, "2024-11-05", "500", "won", "2024-11-15", []),
    "B0": (BOB, "2024-11-01", "2000", "won", "2024-12-01", []),
    "C0": (CAT, "2024-10-01", "300", "lost", "2024-10-10", []),
    # Q1 2025. A1 was open on Dec 31 closing in Q1, won Feb 10 (cycle Dec 20 -> Feb 10: 52)
    "A1": (ANN, "2024-12-20", "1000", "open", "2025-03-01", [
        ("2025-02-10", {"status": "won", "close_date": "2025-02-10"})]),
    # B2 open on Dec 31 closing in Q1, lost Mar 5
    "B1": (BOB, "2025-02-19", "1000", "won", "2025-03-01", []),  # cycle 10
    "B2": (BOB, "2024-12-01", "500", "open", "2025-03-05", [
        ("2025-03-05", {"status": "lost"})]),
    "C1": (CAT, "2025-01-10", "400", "won", "2025-01-20", []),  # cycle 10
    "D1": (DAN, "2025-01-02", "600", "won", "2025-02-01", []),  # cycle 30
    # E closed in Q1 on Dec 31 (open), moved to July on Jan 20: in Ann's pipeline then only
    "E": (ANN, "2024-12-01", "2000", "open", "2025-03-15", [
        ("2025-01-20", {"close_date": "2025-07-01"})]),
    # Q2 2025, as of Mar 31: Ann 3000 + 1000 (A3, won Apr 10 since), Dan 1200; B3 is
    # created Apr 2, after Q1: not in the pipeline as of Mar 31
    "A2": (ANN, "2025-01-15", "3000", "open", "2025-05-01", []),
    "A3": (ANN, "2025-02-01", "1000", "open", "2025-05-20", [
        ("2025-04-10", {"status": "won", "close_date": "2025-04-10"})]),
    "D2": (DAN, "2025-03-01", "1200", "open", "2025-06-01", []),
    "B3": (BOB, "2025-04-02", "800", "open", "2025-04-15", []),
}
# activities (owner, day, type, done): Q1 Ann 2 calls and a meeting (a call not held does
# not count), Bob a completed task (an open one does not count), Dan a note; Q4 Ann a
# call, Bob 2 calls
ACTIVITIES = [
    (ANN, "2025-01-10", "call", True), (ANN, "2025-02-03", "call", None),
    (ANN, "2025-03-01", "meeting", None), (ANN, "2025-02-10", "call", False),
    (BOB, "2025-02-05", "task", True), (BOB, "2025-03-02", "task", False),
    (DAN, "2025-03-10", "note", None),
    (ANN, "2024-11-01", "call", True), (BOB, "2024-10-05", "call", True),
    (BOB, "2024-12-20", "call", True),
]
# hygiene on April 20, 2025, of the deals open then (none has an account): Ann's E and A2
# (stale: untouched since January), Bob's B3 (past its close date, April 15), Dan's D2
# (stale since March 1)
TODAY = date(2025, 4, 20)
GOALS = [  # (owner, quarter start, quarter end, target)
    (ANN, "2025-01-01", "2025-03-31", "2000"), (BOB, "2025-01-01", "2025-03-31", "1000"),
    (CAT, "2025-01-01", "2025-03-31", "1000"), (DAN, "2025-01-01", "2025-03-31", "500"),
    (ANN, "2024-10-01", "2024-12-31", "1000"), (BOB, "2024-10-01", "2024-12-31", "1500"),
    (ANN, "2025-04-01", "2025-06-30", "2000"), (BOB, "2025-04-01", "2025-06-30", "1000"),
    (DAN, "2025-04-01", "2025-06-30", "1000"),
]


def record(rid: str, state: dict[str, Any], modified: datetime) -> DealRecord:
    return DealRecord(rid, f"Deal {rid}", amount=D(state["amount"]),
                      amount_home=D(state["amount"]), currency="USD", stage=state["status"],
                      status=state["status"], close_date=date.fromisoformat(state["close"]),
                      remote_created_at=at(state["created"]), remote_modified_at=modified,
                      owner_email=state["owner"], owner_name=state["owner"][:3].title())


@pytest.fixture
def cid(engine: Any) -> int:
    cid = add_connection(engine)
    with session_scope(engine) as session:
        session.get(Connection, cid).home_currency = "USD"  # type: ignore[union-attr]
        store.upsert_records(session, stream="users", connection_id=cid, records=[
            UserRecord(f"u-{email}", email[:3].title(), email, team=team)
            for email, team in ((ANN, "North"), (BOB, "North"), (CAT, "North"),
                                (DAN, "South"))])
    timeline = []
    for rid, (owner, created, amount, status, close, events) in DEALS.items():
        timeline.append((at(created), rid, {"owner": owner, "created": created,
                                            "amount": amount, "status": status,
                                            "close": close}))
        timeline += [(at(day), rid, {k.replace("close_date", "close"): v
                                     for k, v in changes.items()})
                     for day, changes in events]
    states: dict[str, dict[str, Any]] = {}
    for moment, rid, changes in sorted(timeline, key=lambda e: (e[0], e[1])):
        states[rid] = {**states.get(rid, {}), **changes}
        with session_scope(engine) as session:
            store.upsert_records(session, stream="deals", connection_id=cid,
                                 records=[record(rid, states[rid], moment)])
    with session_scope(engine) as session:
        store.upsert_records(session, stream="activities", connection_id=cid, records=[
            ActivityRecord(f"act-{i}", ActivityType(kind), occurred_at=at(day), done=done,
                           owner_email=owner)
            for i, (owner, day, kind, done) in enumerate(ACTIVITIES)])
        for owner, first, last, target in GOALS:
            create_goal(session, GoalInput(owner, "bookings", date.fromisoformat(first),
                                           date.fromisoformat(last), D(target)), SETTINGS)
    return cid


def person(engine: Any, email: str) -> int:
    with session_scope(engine) as session:
        return int(session.execute(select(Person.id).where(Person.email == email)).scalar_one())


def figures(row: dict[str, Any], *names: str) -> dict[str, tuple[Any, Any, Any]]:
    return {name: (row[name]["value"], row[name]["previous"], row[name]["change"])
            for name in names}


def test_scorecards_of_q1_against_q4_with_coverage_of_q2(engine, cid):
    with session_scope(engine) as session:
        result = scorecards(session, **Q1, settings=SETTINGS, today=TODAY)
    assert (result["previous_start"], result["previous_end"]) == (date(2024, 10, 1),
                                                                  date(2024, 12, 31))
    assert (result["next_start"], result["next_end"]) == (date(2025, 4, 1), date(2025, 6, 30))
    assert result["currency"] == "USD"
    # North by Q1 bookings: Ann 1000 and Bob 1000 share rank 1, Cat (400) is 3rd; in Q4
    # Bob (2000) led, Ann (500) second, Cat (0) third. South: Dan alone.
    assert [(r["owner_email"], r["team"], r["rank"], r["previous_rank"])
            for r in result["data"]] == [
        (ANN, "North", 1, 2), (BOB, "North", 1, 1), (CAT, "North", 3, 3),
        (DAN, "South", 1, 1)]
    ann, bob, cat, dan = result["data"]
    assert figures(ann, *FIGURES) == {
        "bookings": (D("1000.00"), D("500.00"), D("500.00")),
        "goal": (D("2000.00"), D("1000.00"), D("1000.00")),
        "attainment": (D("0.5000"), D("0.5000"), D("0.0000")),
        "win_rate": (D("1.0000"), D("1.0000"), D("0.0000")),
        "sales_cycle_days": (D("52.00"), D("10.00"), D("42.00")),
        "avg_deal_size": (D("1000.00"), D("500.00"), D("500.00")),
        # as of Mar 31 closing in Q2: A2 3000 + A3 1000; as of Dec 31 closing in Q1: A1
        # 1000 + E 2000 (moved to July since), against Q1's goal 2000
        "next_open_pipeline": (D("4000.00"), D("3000.00"), D("1000.00")),
        "next_goal": (D("2000.00"), D("2000.00"), D("0.00")),
        "pipeline_coverage": (D("2.0000"), D("1.5000"), D("0.5000")),
        "activities": (3, 1, 2), "hygiene": (2, None, None)}
    assert (ann["activity_types"], ann["hygiene_rules"]) == (
        {"call": 2, "meeting": 1}, {"no_account": 2, "stale": 2})
    assert [(r["activities"]["value"], r["activities"]["previous"], r["activities"]["change"],
             r["activity_types"], r["hygiene"]["value"], r["hygiene_rules"])
            for r in (bob, cat, dan)] == [
        (1, 2, -1, {"task": 1}, 1, {"no_account": 1, "past_close": 1}),
        (0, 0, 0, {}, 0, {}),
        (1, 0, 1, {"note": 1}, 1, {"no_account": 1, "stale": 1})]
    assert figures(bob, *FIGURES[:9]) == {
        "bookings": (D("1000.00"), D("2000.00"), D("-1000.00")),
        "goal": (D("1000.00"), D("1500.00"), D("-500.00")),
        "attainment": (D("1.0000"), D("1.3333"), D("-0.3333")),
        "win_rate": (D("0.5000"), D("1.0000"), D("-0.5000")),  # B1 won, B2 lost
        "sales_cycle_days": (D("10.00"), D("30.00"), D("-20.00")),
        "avg_deal_size": (D("1000.00"), D("2000.00"), D("-1000.00")),
        # B3 was created after Mar 31; on Dec 31 B2 (500) was open closing in Q1
        "next_open_pipeline": (D("0.00"), D("500.00"), D("-500.00")),
        "next_goal": (D("1000.00"), D("1000.00"), D("0.00")),
        "pipeline_coverage": (D("0.0000"), D("0.5000"), D("-0.5000"))}
    assert figures(cat, "bookings", "win_rate", "goal", "attainment", "pipeline_coverage",
                   "next_goal") == {
        "bookings": (D("400.00"), D("0.00"), D("400.00")),
        "win_rate": (D("1.0000"), D("0.0000"), D("1.0000")),  # Q4: C0 lost
        "goal": (D("1000.00"), None, None), "attainment": (D("0.4000"), None, None),
        "pipeline_coverage": (None, D("0.0000"), None),  # no Q2 goal; 0 / 1000 before
        "next_goal": (None, D("1000.00"), None)}
    # Dan is an active rep: a Q4 row of zeros
    assert figures(dan, "bookings", "win_rate", "pipeline_coverage", "next_open_pipeline") == {
        "bookings": (D("600.00"), D("0.00"), D("600.00")),
        "win_rate": (D("1.0000"), None, None),
        "pipeline_coverage": (D("1.2000"), D("0.0000"), D("1.2000")),  # 1200 / 1000; 0 / 500
        "next_open_pipeline": (D("1200.00"), D("0.00"), D("1200.00"))}

    # team roll-ups from the team's ingredients, not from its reps' ratios
    north, south = result["teams"]
    assert (north["team"], north["reps"], south["team"], south["reps"]) == (
        "North", 3, "South", 1)
    assert figures(north, *FIGURES[:9]) == {
        "bookings": (D("2400.00"), D("2500.00"), D("-100.00")),
        "goal": (D("4000.00"), D("2500.00"), D("1500.00")),
        "attainment": (D("0.6000"), D("1.0000"), D("-0.4000")),
        # Q1: 3 won, 1 lost (the mean of the reps' rates would be 0.8333); Q4: 2 won, 1 lost
        "win_rate": (D("0.7500"), D("0.6667"), D("0.0833")),
        "sales_cycle_days": (D("24.00"), D("20.00"), D("4.00")),  # (52+10+10)/3; (10+30)/2
        "avg_deal_size": (D("800.00"), D("1250.00"), D("-450.00")),
        # 4000 / (Ann 2000 + Bob 1000); before: 3500 / (2000 + 1000 + 1000)
        "next_open_pipeline": (D("4000.00"), D("3500.00"), D("500.00")),
        "next_goal": (D("3000.00"), D("4000.00"), D("-1000.00")),
        "pipeline_coverage": (D("1.3333"), D("0.8750"), D("0.4583"))}
    assert figures(north, "activities", "hygiene") == {"activities": (4, 3, 1),
                                                       "hygiene": (3, None, None)}
    assert north["hygiene_rules"] == {"no_account": 3, "past_close": 1, "stale": 2}
    assert figures(result["total"], "activities", "hygiene") == {
        "activities": (5, 3, 2), "hygiene": (4, None, None)}
    assert result["total"]["activity_types"] == {"call": 2, "meeting": 1, "note": 1, "task": 1}
    assert figures(result["total"], "bookings", "goal", "attainment", "next_open_pipeline",
                   "next_goal", "pipeline_coverage") == {
        "bookings": (D("3000.00"), D("2500.00"), D("500.00")),
        "goal": (D("4500.00"), D("2500.00"), D("2000.00")),
        "attainment": (D("0.6667"), D("1.0000"), D("-0.3333")),
        "next_open_pipeline": (D("5200.00"), D("3500.00"), D("1700.00")),
        "next_goal": (D("4000.00"), D("4500.00"), D("-500.00")),
        "pipeline_coverage": (D("1.3000"), D("0.7778"), D("0.5222"))}


def test_scorecards_of_some_people_and_of_a_custom_period(engine, cid):
    north = {person(engine, e) for e in (ANN, BOB, CAT)}
    with session_scope(engine) as session:
        result = scorecards(session, **Q1, settings=SETTINGS, people=north)
        # ten days: the ten before and after, by days
        days = scorecards(session, start=date(2025, 2, 20), end=date(2025, 3, 1),
                          settings=SETTINGS, people={person(engine, BOB)})
    assert [r["owner_email"] for r in result["data"]] == [ANN, BOB, CAT]
    assert [t["team"] for t in result["teams"]] == ["North"]
    assert result["total"]["bookings"]["value"] == D("2400.00")
    assert result["total"]["goal"]["value"] == D("4000.00")  # only these people's goals
    assert (days["previous_start"], days["previous_end"], days["next_start"],
            days["next_end"]) == (date(2025, 2, 10), date(2025, 2, 19), date(2025, 3, 2),
                                  date(2025, 3, 11))
    [bob] = days["data"]
    assert figures(bob, "bookings", "next_open_pipeline") == {
        "bookings": (D("1000.00"), D("0.00"), D("1000.00")),  # B1 won Mar 1
        # as of Mar 1, B2 (500) closes Mar 5; as of Feb 19 nothing open closed Feb 20-Mar 1
        "next_open_pipeline": (D("500.00"), D("0.00"), D("500.00"))}


def test_one_reps_card_is_ranked_in_their_team(engine, cid):
    ann, cat, dan = (person(engine, e) for e in (ANN, CAT, DAN))
    with session_scope(engine) as session:
        everyone = scorecards(session, **Q1, settings=SETTINGS)
        one = scorecards(session, **Q1, settings=SETTINGS, person_id=cat)
        # a scope of Ann and Cat: ranked among them (Cat is second now, and in Q4)
        scoped = scorecards(session, **Q1, settings=SETTINGS, people={ann, cat},
                            person_id=cat)
        south = scorecards(session, **Q1, settings=SETTINGS, team="South")
        with pytest.raises(NoOneToShow):
            scorecards(session, **Q1, settings=SETTINGS, people={ann}, person_id=cat)
        with pytest.raises(NoOneToShow):
            scorecards(session, **Q1, settings=SETTINGS, people={ann}, team="South")
        with pytest.raises(NoOneToShow):
            scorecards(session, **Q1, settings=SETTINGS, person_id=dan, team="North")
    assert one["data"] == [everyone["data"][2]]  # rank 3 of North's three
    assert one["teams"] == [everyone["teams"][0]]  # North
    assert [(r["rank"], r["previous_rank"]) for r in scoped["data"]] == [(2, 2)]
    assert scoped["teams"][0]["reps"] == 2
    assert [r["person_id"] for r in south["data"]] == [dan]
    assert south["total"]["bookings"]["value"] == D("600.00")


def test_bad_periods_change_nothing(engine, cid):
    with session_scope(engine) as session:
        with pytest.raises(ValueError, match="start must not be after end"):
            scorecards(session, start=date(2025, 2, 1), end=date(2025, 1, 1),
                       settings=SETTINGS)
        with pytest.raises(ValueError, match="outside the calendar"):
            scorecards(session, start=date(1, 1, 1), end=date(1, 3, 31), settings=SETTINGS)
