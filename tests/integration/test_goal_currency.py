"""A goal's target goes into a CRM in the currency that CRM holds (issue F1 item 7): a
bookings goal in the reporting currency (USD) pushed to a CNY tenant is converted with the
FX table, never a USD number labelled CNY; a missing rate or an unknown home currency is a
per-goal error saying what to do; a deals_won goal is a count and is never converted.
Both databases."""

from datetime import date
from decimal import Decimal

from core import store
from core.config import Settings
from core.db import session_scope
from core.goals import targets as goals
from core.goals.push import plan_push
from core.metrics import currency
from core.models import Connection
from core.records import UserRecord

SETTINGS = Settings(database_url="sqlite://", reporting_currency="USD")


def setup(engine, home: str | None) -> int:
    with session_scope(engine) as session:
        connection = Connection(provider="fxiaoke", name="tenant", home_currency=home)
        session.add(connection)
        session.flush()
        store.upsert_records(session, stream="users", connection_id=int(connection.id or 0),
                             records=[UserRecord("u1", "Ann Lee", "ann@x.com")])
        for metric, target in (("bookings", "14000"), ("deals_won", "7")):
            goals.create_goal(session, goals.GoalInput(
                owner_email="ann@x.com", metric=metric, period_start=date(2025, 4, 1),
                period_end=date(2025, 6, 30), target=Decimal(target)), SETTINGS)
        return int(connection.id or 0)


def test_bookings_target_is_converted_into_the_crm_home_currency(engine):
    connection_id = setup(engine, "CNY")
    with session_scope(engine) as session:
        currency.set_rate(session, "CNY", Decimal("0.14"))  # 1 CNY = 0.14 USD
        plan = plan_push(session, connection_id, SETTINGS)
    by_metric = {g.metric: g for g in plan.goals}
    assert (by_metric["bookings"].target, by_metric["bookings"].currency) == (
        Decimal("100000.00"), "CNY")
    assert (by_metric["deals_won"].target, by_metric["deals_won"].currency) == (
        Decimal("7"), None)
    assert plan.decided == []


def test_rounds_half_up_to_cents(engine):
    connection_id = setup(engine, "CNY")
    with session_scope(engine) as session:
        currency.set_rate(session, "CNY", Decimal("0.3"))  # 14000 / 0.3 = 46666.666...
        [bookings] = [g for g in plan_push(session, connection_id, SETTINGS).goals
                      if g.metric == "bookings"]
    assert bookings.target == Decimal("46666.67")


def test_missing_rate_is_an_error_naming_the_fix(engine):
    connection_id = setup(engine, "CNY")
    with session_scope(engine) as session:
        plan = plan_push(session, connection_id, SETTINGS)
    [error] = plan.decided
    assert error.status == "error"
    assert "CNY" in (error.error or "") and "/api/v1/fx-rates/CNY" in (error.error or "")
    assert [g.metric for g in plan.goals] == ["deals_won"]  # counts need no rate


def test_unknown_home_currency_is_an_error(engine):
    connection_id = setup(engine, None)
    with session_scope(engine) as session:
        plan = plan_push(session, connection_id, SETTINGS)
    [error] = plan.decided
    assert "sync the connection first" in (error.error or "")


def test_same_currency_is_sent_as_it_is(engine):
    connection_id = setup(engine, "usd")
    with session_scope(engine) as session:
        [bookings] = [g for g in plan_push(session, connection_id, SETTINGS).goals
                      if g.metric == "bookings"]
    assert (bookings.target, bookings.currency) == (Decimal("14000"), "USD")


def test_a_new_rate_pushes_the_goal_again(engine):
    """The pushed content (and its hash) carries the converted target: a changed rate is
    a changed goal in the CRM."""
    connection_id = setup(engine, "CNY")
    with session_scope(engine) as session:
        currency.set_rate(session, "CNY", Decimal("0.14"))
        first = plan_push(session, connection_id, SETTINGS)
        currency.set_rate(session, "CNY", Decimal("0.125"))
        second = plan_push(session, connection_id, SETTINGS)
    [a] = [g for g in first.goals if g.metric == "bookings"]
    [b] = [g for g in second.goals if g.metric == "bookings"]
    assert b.target == Decimal("112000.00") and first.hashes[a.goal_id] != second.hashes[
        b.goal_id]
