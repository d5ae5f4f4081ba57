"""Closing periods end to end on SQLite and PostgreSQL (core.incentives.periods): a locked
statement never changes; an edit, won -> lost, a deletion and a late sync become adjustment
lines in the first open period (decreases only inside the clawback window); a recoverable
draw lent in January is repaid over February and March. And the same through the API."""

from datetime import date
from decimal import Decimal as D

import pytest
from sqlalchemy import select

from core.db import session_scope
from core.incentives import periods
from core.incentives.calendar import parse_period
from core.incentives.statements import statements
from core.metrics.currency import set_rate
from core.models import CommissionAdjustment, Person
from core.types import DealStatus
from tests.api_support import running_api
from tests.incentive_support import (
    SETTINGS,
    apply,
    commissions,
    company,
    deal,
    delete_deal,
    set_deal,
    upsert,
)

PLAN = """\
key: flat
members: {team: East}
effective: {from: 2027-01-01}
period: month
currency: USD
tiers: [{rate: 0.1}]
draw: {amount: 1000, recoverable: true}
clawback_days: 60
"""


def ann(engine, label, *, today):  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        if not periods.is_locked(session, label):
            periods.record_adjustments(session, SETTINGS, today=today)
        found = statements(session, SETTINGS, parse_period(label), person_id=person(engine))
    assert len(found) == 1
    return found[0]


def person(engine) -> int:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return int(session.execute(select(Person.id).where(
            Person.email == "ann@example.com")).scalar_one())  # type: ignore[arg-type]


def lock(engine, label, *, today):  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return periods.lock(session, SETTINGS, label, today=today)


def test_locked_periods_never_change_and_adjustments_explain_the_difference(engine) -> None:  # type: ignore[no-untyped-def]
    c = company(engine)
    apply(engine, PLAN)
    upsert(engine, c.crm_a, "deals", [deal("a1", "4000", date(2027, 1, 10)),
                                      deal("a2", "3000", date(2027, 1, 20))])
    january = ann(engine, "2027-01", today=date(2027, 2, 1))
    # earned 700 < draw 1,000: paid 1,000, 300 lent
    assert (january["earned"], january["payout"], january["draw_balance"]) == (
        D(700), D(1000), D(300))
    done = lock(engine, "2027-01", today=date(2027, 2, 1))
    assert (done.statements, done.adjustments) == (2, 0)  # Ann and Bob
    with pytest.raises(periods.PeriodLocked):
        lock(engine, "2027-01", today=date(2027, 2, 1))

    # after the lock: an edit, won -> lost (16 days after closing), a deal synced late
    upsert(engine, c.crm_a, "deals", [deal("a1", "5000", date(2027, 1, 10)),
                                      deal("a2", "3000", date(2027, 1, 20), status="lost"),
                                      deal("a4", "2000", date(2027, 1, 28)),
                                      deal("b1", "12000", date(2027, 2, 10))])
    locked = ann(engine, "2027-01", today=date(2027, 2, 5))
    assert locked["locked"] is True and locked["payout"] == D(1000)
    assert commissions(locked)[:2] == [("deal", "a1", D("400.00")), ("deal", "a2", D("300.00"))]
    february = ann(engine, "2027-02", today=date(2027, 2, 5))
    assert commissions(february) == [
        ("deal", "b1", D("1200.00")),
        ("adjustment", "a1", D("100.00")),   # 4,000 -> 5,000
        ("adjustment", "a2", D("-300.00")),  # won -> lost, inside 60 days
        ("adjustment", "a4", D("200.00")),   # synced after the lock
        ("draw", "draw", D("-200.00")),      # 1,200 earned: 200 of the 300 lent come back
    ]
    reasons = [line["reason"] for line in february["lines"] if line["kind"] == "adjustment"]
    assert reasons[0].startswith("amount changed") and reasons[1] == "won -> lost"
    assert reasons[2].startswith("deal won or synced after")
    assert all(line["period"] == "2027-01" for line in february["lines"]
               if line["kind"] == "adjustment")
    assert (february["earned"], february["payout"], february["draw_balance"]) == (
        D(1200), D(1000), D(100))
    # seen again: nothing is recorded twice
    assert ann(engine, "2027-02", today=date(2027, 2, 6))["lines"] == february["lines"]

    lock(engine, "2027-02", today=date(2027, 3, 1))
    # b1 deleted 80 days after it closed: outside the window, recorded but not reversed
    delete_deal(engine, c.crm_a, "b1")
    upsert(engine, c.crm_a, "deals", [deal("c1", "15000", date(2027, 3, 5))])
    march = ann(engine, "2027-03", today=date(2027, 5, 1))
    assert commissions(march) == [
        ("deal", "c1", D("1500.00")),
        ("adjustment", "b1", D("0.00")),
        ("draw", "draw", D("-100.00")),  # the last 100 lent come back
    ]
    out = next(line for line in march["lines"] if line["kind"] == "adjustment")
    assert out["difference"] == D("-1200.00") and "outside the 60-day clawback" in out["reason"]
    assert (march["payout"], march["draw_balance"]) == (D(1400), D(0))
    assert ann(engine, "2027-02", today=date(2027, 5, 1))["payout"] == D(1000)  # locked


def test_periods_lock_in_order(engine) -> None:  # type: ignore[no-untyped-def]
    company(engine)
    apply(engine, PLAN)
    lock(engine, "2027-03", today=date(2027, 4, 1))
    with pytest.raises(periods.PeriodLocked, match="2027-03 is locked already"):
        lock(engine, "2027-02", today=date(2027, 4, 1))


def test_a_late_change_goes_to_the_first_open_period(engine) -> None:  # type: ignore[no-untyped-def]
    c = company(engine)
    apply(engine, PLAN)
    upsert(engine, c.crm_a, "deals", [deal("a1", "4000", date(2027, 1, 10))])
    lock(engine, "2027-01", today=date(2027, 2, 1))
    lock(engine, "2027-02", today=date(2027, 3, 1))
    set_deal(engine, "a1", status=DealStatus.LOST)
    with session_scope(engine) as session:
        periods.record_adjustments(session, SETTINGS, today=date(2027, 3, 2))
        rows = session.query(CommissionAdjustment).all()
        assert [(r.period, r.target_period, r.amount) for r in rows] == [
            ("2027-01", "2027-03", D("-400.00"))]


async def test_the_api_locks_and_adjusts(engine) -> None:  # type: ignore[no-untyped-def]
    c = company(engine)
    upsert(engine, c.crm_a, "deals", [deal("a1", "4000", date(2027, 1, 10))])
    async with running_api(engine) as api:
        put = await api.client.put("/api/v1/plans/flat", content=PLAN,
                                   headers={"Content-Type": "application/yaml"})
        assert put.status_code == 201, put.text
        locked = await api.client.post("/api/v1/periods/2027-01/lock")
        assert locked.status_code == 200 and locked.json()["statements"] == 2
        set_deal(engine, "a1", amount_home=D(6000))
        january = (await api.client.get("/api/v1/statements", params={
            "period": "2027-01", "person": "ann@example.com"})).json()["data"][0]
        assert (january["locked"], january["payout"]) == (True, 1000)
        february = (await api.client.get("/api/v1/statements", params={
            "period": "2027-02", "email": "ann@example.com"})).json()["data"][0]
        adjustment = [line for line in february["lines"] if line["kind"] == "adjustment"]
        assert [(a["deal_remote_id"], a["commission"]) for a in adjustment] == [("a1", 200)]


def test_an_fx_change_after_the_lock_is_not_a_difference(engine) -> None:  # type: ignore[no-untyped-def]
    c = company(engine)
    apply(engine, PLAN)
    upsert(engine, c.crm_b, "deals", [deal("e1", "10000", date(2027, 1, 10))])  # EUR
    january = ann(engine, "2027-01", today=date(2027, 2, 1))
    assert january["lines"][0]["commission"] == D("1100.00")  # 11,000 USD x 10 %
    lock(engine, "2027-01", today=date(2027, 2, 1))
    with session_scope(engine) as session:
        set_rate(session, "EUR", D("1.2"))
    upsert(engine, c.crm_b, "deals", [deal("e1", "12000", date(2027, 1, 10))])
    february = ann(engine, "2027-02", today=date(2027, 2, 5))
    # only the edit is a difference, at January's rate: 2,000 EUR x 1.1 x 10 %
    assert [(line["deal_remote_id"], line["commission"]) for line in february["lines"]
            if line["kind"] == "adjustment"] == [("e1", D("220.00"))]
