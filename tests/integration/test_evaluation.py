"""Evaluation metrics (docs/evaluation.md) from hand-built deal histories, on SQLite and
PostgreSQL: funnel, days in stage, entry cohorts, sales velocity, the pipeline as of a
day, forecast accuracy and slippage. Every expected number is worked out by hand in the
comments.

The histories are played through core.store like syncs would observe them: each event
upserts the deal's whole record as it then was, modified at the event's time.
"""

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select

from core import history, store
from core.config import Settings
from core.db import session_scope
from core.metrics.definitions import pipeline
from core.metrics.evaluation import EvalGroupBy, forecast_accuracy, funnel, velocity
from core.models import Connection, Deal, Person
from core.records import DealRecord, StageChangeRecord, StageRecord
from tests.api_support import add_connection

SETTINGS = Settings(timezone="UTC", reporting_currency="USD")
ANN, BOB = "ann@example.com", "bob@example.com"
# pipeline P: Lead (10 %), Demo (30 %), Proposal (60 %), then Won and Lost
STAGES = {"Lead": ("open", 1, 10), "Demo": ("open", 2, 30), "Proposal": ("open", 3, 60),
          "Won": ("won", 4, 100), "Lost": ("lost", 5, 0)}
JAN = {"start": date(2025, 1, 1), "end": date(2025, 1, 31)}


def at(day: str, hour: int = 0) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour:02d}:00:00").replace(tzinfo=UTC)


# Each deal: (owner, created, amount, close date, events); an event is (time, changes).
# Days in stage (ended stays only): Lead A 2, B 4, D 1; Demo A 4, B 2; Proposal A 3.
DEALS: dict[str, tuple[str, str, str, str, list[tuple[datetime, dict[str, Any]]]]] = {
    "A": (ANN, "2025-01-01", "1000", "2025-01-15", [
        (at("2025-01-03"), {"stage": "Demo"}),
        (at("2025-01-07"), {"stage": "Proposal"}),
        (at("2025-01-10"), {"stage": "Won", "close_date": "2025-01-10"})]),
    "B": (ANN, "2025-01-02", "800", "2025-01-20", [
        (at("2025-01-06"), {"stage": "Demo"}),
        (at("2025-01-08"), {"stage": "Lost", "close_date": "2025-01-08"})]),
    "C": (BOB, "2025-01-05", "500", "2025-01-20", []),
    "D": (BOB, "2025-01-10", "2000", "2025-01-25", [
        (at("2025-01-11"), {"stage": "Proposal"}),
        (at("2025-01-20"), {"amount": "2500"})]),
    "E": (BOB, "2025-02-03", "700", "2025-02-20", [
        (at("2025-02-13"), {"stage": "Won", "close_date": "2025-02-13"})]),
    # created before January in Proposal, closing in January; slips to February on Jan 15
    "G": (BOB, "2024-12-15", "3000", "2025-01-20", [
        (at("2024-12-16"), {"stage": "Proposal"}),
        (at("2025-01-15"), {"close_date": "2025-02-10"})]),
}


def record(rid: str, state: dict[str, Any], modified: datetime) -> DealRecord:
    category, _, probability = STAGES[state["stage"]]
    return DealRecord(
        remote_id=rid, name=f"Deal {rid}", amount=Decimal(state["amount"]),
        amount_home=Decimal(state["amount"]), currency="USD", stage=state["stage"],
        stage_remote_id=f"s-{state['stage']}", status=category,
        probability=Decimal(probability), close_date=date.fromisoformat(state["close_date"]),
        remote_created_at=state["created"], remote_modified_at=modified,
        owner_email=state["owner"], owner_name=state["owner"].split("@")[0].title(),
        pipeline="P")


def play(engine: Any, connection_id: int) -> None:
    """Every deal's creation and events, in time order, each a page of its own."""
    timeline: list[tuple[datetime, str, dict[str, Any]]] = []
    for rid, (owner, created, amount, close, events) in DEALS.items():
        start = {"stage": "Lead", "amount": amount, "close_date": close, "owner": owner,
                 "created": at(created)}
        timeline.append((at(created), rid, start))
        timeline += [(moment, rid, changes) for moment, changes in events]
    states: dict[str, dict[str, Any]] = {}
    for moment, rid, changes in sorted(timeline, key=lambda e: (e[0], e[1])):
        states[rid] = {**states.get(rid, {}), **changes}
        with session_scope(engine) as session:
            store.upsert_records(session, stream="deals", connection_id=connection_id,
                                 records=[record(rid, states[rid], moment)])


@pytest.fixture
def cid(engine: Any) -> int:
    cid = add_connection(engine)
    with session_scope(engine) as session:
        session.get(Connection, cid).home_currency = "USD"  # type: ignore[union-attr]
        store.upsert_records(session, stream="stages", connection_id=cid, records=[
            StageRecord(f"s-{name}", name, category, pipeline="P", sort_order=order,
                        probability=Decimal(probability))
            for name, (category, order, probability) in STAGES.items()])
    play(engine, cid)
    return cid


def person(engine: Any, email: str) -> int:
    with session_scope(engine) as session:
        return int(session.execute(select(Person.id).where(Person.email == email)).scalar_one())


def stages_of(row: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["stage"], s["reached"], s["conversion"], s["median_days"], s["mean_days"],
             s["stays_ended"]) for s in row["stages"]]


def test_funnel_of_the_deals_created_in_january(engine, cid):
    with session_scope(engine) as session:
        result = funnel(session, **JAN, settings=SETTINGS)
    [row] = result["data"]
    assert (row["connection_id"], row["pipeline"], row["created"]) == (cid, "P", 4)  # A-D
    D = Decimal
    assert stages_of(row) == [
        # all four were in Lead; A (won), B and D reached Demo or later (D skipped Demo)
        ("Lead", 4, D("0.75"), D("2.00"), D("2.33"), 3),  # ended: A 2, B 4, D 1 days
        ("Demo", 3, D("0.6667"), D("3.00"), D("3.00"), 2),  # A 4, B 2
        ("Proposal", 2, D("0.5"), D("3.00"), D("3.00"), 1),  # A 3; D is still there
        ("Won", 1, None, None, None, 0)]
    assert [(c["cohort"], c["created"], c["won"], c["lost"], c["open"], c["win_rate"],
             c["sales_cycle_days"]) for c in result["cohorts"]] == [
        ("2025-01", 4, 1, 1, 2, D("0.5"), D("9"))]  # A: Jan 1 -> Jan 10


def test_funnel_by_rep_and_team_and_cohorts_by_month(engine, cid):
    with session_scope(engine) as session:
        for who, team in ((ANN, "North"), (BOB, "South")):
            session.get(Person, person(engine, who)).team = team  # type: ignore[union-attr]
    with session_scope(engine) as session:
        by_rep = funnel(session, start=date(2025, 1, 1), end=date(2025, 2, 28),
                        group_by=EvalGroupBy.OWNER, settings=SETTINGS)
        by_team = funnel(session, start=date(2025, 1, 1), end=date(2025, 2, 28),
                         group_by=EvalGroupBy.TEAM, settings=SETTINGS)
    reached = [(r["owner_email"], r["created"], [s["reached"] for s in r["stages"]])
               for r in by_rep["data"]]
    assert reached == [(ANN, 2, [2, 2, 1, 1]), (BOB, 3, [3, 2, 2, 1])]  # Bob: C, D, E
    assert [(r["team"], r["created"]) for r in by_team["data"]] == [("North", 2), ("South", 3)]
    bob_lead = by_rep["data"][1]["stages"][0]  # D 1 day, E 10 days
    assert (bob_lead["median_days"], bob_lead["mean_days"]) == (Decimal("5.50"),
                                                               Decimal("5.50"))
    assert [(c["owner_email"], c["cohort"], c["created"], c["win_rate"],
             c["sales_cycle_days"]) for c in by_rep["cohorts"]] == [
        (ANN, "2025-01", 2, Decimal("0.5"), Decimal("9")),
        (BOB, "2025-01", 2, None, None),
        (BOB, "2025-02", 1, Decimal("1"), Decimal("10"))]


def test_a_crm_history_and_observed_moves_count_once(engine, cid):
    # the CRM's own history of A: created in Lead, then the same moves the syncs saw
    with session_scope(engine) as session:
        added = history.store_stage_changes(session, connection_id=cid, changes=[
            StageChangeRecord("A", None, "Lead", at("2025-01-01")),
            StageChangeRecord("A", "Lead", "Demo", at("2025-01-03", 1)),  # an hour later
            StageChangeRecord("A", "Demo", "Proposal", at("2025-01-07"))])
        assert added == 2  # Demo -> Proposal at 00:00 on Jan 7 was observed already
        again = history.store_stage_changes(session, connection_id=cid, changes=[
            StageChangeRecord("A", "Demo", "Proposal", at("2025-01-07"))])
        assert again == 0
    with session_scope(engine) as session:
        deal_id = session.execute(select(Deal.id).where(Deal.remote_id == "A")).scalar_one()
        stages = history.deal_stages(session, deal_id)
    assert stages is not None
    assert [(s["stage"], s["days"]) for s in stages["stays"]] == [
        ("Lead", 2.0), ("Demo", 4.0), ("Proposal", 3.0), ("Won", None)]
    assert [(c["to_stage"], c["source"]) for c in stages["changes"]] == [
        ("Lead", "crm"), ("Demo", "sync"), ("Demo", "crm"), ("Proposal", "sync"),
        ("Won", "sync")]  # Proposal at the same time and stage is stored once
    with session_scope(engine) as session:
        [row] = funnel(session, **JAN, settings=SETTINGS)["data"]
    assert [s["reached"] for s in row["stages"]] == [4, 3, 2, 1]


def test_sales_velocity(engine, cid):
    with session_scope(engine) as session:
        result = velocity(session, **JAN, settings=SETTINGS)
        by_rep = velocity(session, **JAN, group_by=EvalGroupBy.OWNER, settings=SETTINGS)
    # closing in January: A won (1000, 9 days), B lost; open C (Jan 20) and D (Jan 25)
    # 2 open x 1000 x 0.5 / 9 days = 111.11 a day
    assert result["total"] == {"open_deals": 2, "avg_deal_size": Decimal("1000.00"),
                               "win_rate": Decimal("0.5000"),
                               "sales_cycle_days": Decimal("9.00"),
                               "velocity": Decimal("111.11")}
    # Ann has no open deal (0 a day), Bob no win (null)
    assert [(r["owner_email"], r["open_deals"], r["velocity"]) for r in by_rep["data"]] == [
        (ANN, 0, Decimal("0.00")), (BOB, 2, None)]


def amounts(result: dict[str, Any]) -> list[tuple[str, int, Decimal]]:
    return [(r["stage"], r["count"], r["amount"]) for r in result["data"]]


def test_pipeline_as_of_a_day(engine, cid):
    D = Decimal
    with session_scope(engine) as session:
        jan4 = pipeline(session, settings=SETTINGS, as_of=date(2025, 1, 4))
        jan9 = pipeline(session, settings=SETTINGS, as_of=date(2025, 1, 9))
        jan31 = pipeline(session, settings=SETTINGS, as_of=date(2025, 1, 31))
        now = pipeline(session, settings=SETTINGS)
        dec1 = pipeline(session, settings=SETTINGS, as_of=date(2024, 12, 1))
    # Jan 4: B in Lead, A in Demo (moved Jan 3), G in Proposal; C and D not created yet
    assert amounts(jan4) == [("Lead", 1, D("800.00")), ("Demo", 1, D("1000.00")),
                             ("Proposal", 1, D("3000.00"))]
    # Jan 9: C in Lead; A and D... D is created Jan 10; B lost on Jan 8
    assert amounts(jan9) == [("Lead", 1, D("500.00")), ("Demo", 0, D("0.00")),
                             ("Proposal", 2, D("4000.00"))]  # A 1000 + G 3000
    # Jan 31: C in Lead; D (2500 since Jan 20) and G in Proposal; A won
    assert amounts(jan31) == [("Lead", 1, D("500.00")), ("Demo", 0, D("0.00")),
                              ("Proposal", 2, D("5500.00"))]
    assert amounts(now) == amounts(jan31)
    assert amounts(dec1) == [("Lead", 0, D("0.00")), ("Demo", 0, D("0.00")),
                             ("Proposal", 0, D("0.00"))]
    weighted = {r["stage"]: r["weighted_amount"] for r in jan9["data"]}
    assert weighted["Proposal"] == D("2400.00")  # 4000 x 60 %


def test_forecast_accuracy_and_slippage_per_rep(engine, cid):
    with session_scope(engine) as session:
        result = forecast_accuracy(session, **JAN, settings=SETTINGS)
        team = forecast_accuracy(session, **JAN, group_by=EvalGroupBy.NONE, settings=SETTINGS)
    rows = {r["owner_email"]: r for r in result["data"]}
    # end of Jan 1: A (Ann, Lead 10 %, 1000, closing Jan 15) weighs 100; G (Bob, Proposal
    # 60 %, 3000, closing Jan 20) weighs 1800. End of Jan 31: Ann booked A (1000), Bob none.
    ann, bob = rows[ANN], rows[BOB]
    assert (ann["forecast_at_start"], ann["bookings_at_end"], ann["forecast_accuracy"]) == (
        Decimal("100.00"), Decimal("1000.00"), Decimal("10.0000"))
    assert (bob["forecast_at_start"], bob["bookings_at_end"], bob["forecast_accuracy"]) == (
        Decimal("1800.00"), Decimal("0.00"), Decimal("0.0000"))
    # G's close date moved from Jan 20 to Feb 10 on Jan 15, while open: slipped
    assert (bob["slipped_deals"], bob["slipped_amount"]) == (1, Decimal("3000.00"))
    assert [(d["remote_id"], d["close_date"]) for d in bob["slipped"]] == [
        ("G", date(2025, 1, 20))]
    assert (ann["slipped_deals"], ann["slipped"]) == (0, [])
    assert team["total"]["forecast_accuracy"] == Decimal("0.5263")  # 1000 / 1900
    assert team["data"] == [team["total"]]
