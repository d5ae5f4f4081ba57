"""A small company for the commission tests: Ann in two CRMs (one in USD, one in EUR),
Bob and Cat; plans applied through core.incentives (docs/incentives.md)."""

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select, update

from core import store
from core.config import Settings
from core.db import session_scope
from core.goals.targets import GoalInput, create_goal
from core.incentives import statements
from core.incentives.calendar import parse_period
from core.metrics.currency import set_rate
from core.models import Connection, Deal, Person
from core.records import DealRecord, Deletion, StageRecord, UserRecord

SETTINGS = Settings(database_url="sqlite://", reporting_currency="USD")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
STAGES = [StageRecord("won", "Closed Won", "won", sort_order=2),
          StageRecord("lost", "Closed Lost", "lost", sort_order=3),
          StageRecord("open", "Negotiation", "open", sort_order=1)]
AE_PLAN = """\
key: ae-2027
name: Account executives 2027
members: {team: East}
effective: {from: 2027-01-01, to: null}
period: quarter
currency: USD
measure: bookings
quota: goal
tiers:
  - {to: 0.5, rate: 0.02}
  - {to: 1.0, rate: 0.05}
  - {rate: 0.08}
spiffs:
  - {name: new logo, when: {type: New Business}, amount: 500}
clawback_days: 90
"""


@dataclass
class Company:
    engine: Engine
    crm_a: int  # home currency USD
    crm_b: int  # home currency EUR
    people: dict[str, int]


def deal(remote_id: str, amount: str, close: date, *, owner: str = "ann@example.com",
         status: str = "won", created: datetime = T0, **raw: Any) -> DealRecord:
    value = Decimal(amount)
    return DealRecord(remote_id, f"Deal {remote_id}", amount=value, amount_home=value,
                      stage=status.title(), stage_remote_id=status, status=status,
                      close_date=close, remote_created_at=created, owner_email=owner,
                      owner_name=owner.split("@")[0].title(), raw={"id": remote_id, **raw})


def connection(engine: Engine, name: str, currency: str) -> int:
    with session_scope(engine) as session:
        row = Connection(provider="zoho", name=name, config={}, home_currency=currency)
        session.add(row)
        session.flush()
        return int(row.id or 0)


def upsert(engine: Engine, connection_id: int, stream: str, records: list[Any]) -> None:
    with session_scope(engine) as session:
        store.upsert_records(session, stream=stream, connection_id=connection_id,
                             records=records)


def delete_deal(engine: Engine, connection_id: int, remote_id: str) -> None:
    with session_scope(engine) as session:
        store.apply_deletions(session, connection_id=connection_id,
                              deletions=[Deletion("deals", remote_id, T0)])


def set_deal(engine: Engine, remote_id: str, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(update(Deal).where(Deal.remote_id == remote_id).values(**values))  # type: ignore[arg-type]


def company(engine: Engine) -> Company:
    """Ann (team East) is a user of CRM A (USD) and of CRM B (EUR, 1 EUR = 1.1 USD), Bob
    (East) and Cat (West) of CRM A; no deals yet."""
    crm_a, crm_b = connection(engine, "crm-a", "USD"), connection(engine, "crm-b", "EUR")
    upsert(engine, crm_a, "users", [UserRecord("ua", "Ann", "ann@example.com", team="East"),
                                    UserRecord("ub", "Bob", "bob@example.com", team="East"),
                                    UserRecord("uc", "Cat", "cat@example.com", team="West")])
    upsert(engine, crm_b, "users", [UserRecord("b-ann", "Ann", "ANN@example.com",
                                               team="East")])
    for crm in (crm_a, crm_b):
        upsert(engine, crm, "stages", STAGES)
    with session_scope(engine) as session:
        set_rate(session, "EUR", Decimal("1.1"))
        people = {str(email).split("@")[0]: int(pid) for pid, email in session.execute(
            select(Person.id, Person.email))}  # type: ignore[call-overload]
    return Company(engine, crm_a, crm_b, people)


def goal(engine: Engine, email: str, start: date, end: date, target: str) -> None:
    with session_scope(engine) as session:
        create_goal(session, GoalInput(email, "bookings", start, end, Decimal(target)),
                    SETTINGS)


def apply(engine: Engine, text: str) -> statements.StoredPlan:
    with session_scope(engine) as session:
        stored, _ = statements.save_plan(session, text)
        return stored


def statements_of(engine: Engine, label: str, **kwargs: Any) -> list[dict[str, Any]]:
    with session_scope(engine) as session:
        return statements.statements(session, SETTINGS, parse_period(label), **kwargs)


def one(engine: Engine, label: str, person_id: int) -> dict[str, Any]:
    found = statements_of(engine, label, person_id=person_id)
    assert len(found) == 1, found
    return found[0]


def commissions(item: dict[str, Any]) -> list[tuple[str, str | None, Decimal]]:
    """(kind, deal remote id or line name, commission) of each line."""
    return [(line["kind"], line["deal_remote_id"] or line["name"], Decimal(str(
        line["commission"]))) for line in item["lines"]]


def q1_company(engine: Engine) -> Company:
    """company() with Q1 2027 under the East plan (AE_PLAN): Ann's d1 40,000 and d5 18,000
    (New Business) in CRM A and e1 20,000 EUR in CRM B, her 100,000 goal; Bob's b1 5,000
    (no goal); Cat's c1 9,000 (team West)."""
    c = company(engine)
    upsert(engine, c.crm_a, "deals", [
        deal("d1", "40000", date(2027, 1, 10)),
        deal("d5", "18000", date(2027, 3, 20), Type="New Business"),
        deal("b1", "5000", date(2027, 2, 2), owner="bob@example.com"),
        deal("c1", "9000", date(2027, 2, 2), owner="cat@example.com")])
    upsert(engine, c.crm_b, "deals", [deal("e1", "20000", date(2027, 2, 1))])
    goal(engine, "ann@example.com", date(2027, 1, 1), date(2027, 3, 31), "100000")
    apply(engine, AE_PLAN)
    return c
