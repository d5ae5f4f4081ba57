"""Commission statements read from the store (docs/incentives.md).

A statement is one person's pay under one plan for one period: the person's won deals
closing in the period (deleted deals never count; deals of every CRM the person is in,
core.people), their amount_home converted from the connection's home currency into the
plan currency with the FX table, the person's bookings goal for exactly that period as the
quota (converted likewise) unless the plan fixes one, the draw balance carried from the
period before, and the adjustments found in locked periods (core.incentives.periods).
Periods that are locked answer their snapshot instead.

Plans are kept in versions: saving a changed document adds a version; statements of open
periods use the current version, a snapshot records the one it used.

Every function takes the caller's session and never commits.
"""

import contextlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core import people
from core.config import Settings
from core.incentives import engine
from core.incentives.calendar import Period, PeriodInvalid, preceding
from core.incentives.engine import Adjustment, CreditedDeal, Result
from core.incentives.plans import Plan, parse, parse_document
from core.metrics.currency import Converter, CurrencyError, converter
from core.models import (
    CommissionAdjustment,
    Connection,
    Deal,
    Goal,
    IncentivePlan,
    LockedStatement,
    Person,
    PlanVersion,
    table_of,
)
from core.people import person_of_email
from core.types import DealStatus, GoalMetric, utcnow

DEAL, CONNECTION, GOAL, PERSON = map(table_of, (Deal, Connection, Goal, Person))
PLAN, VERSION, LOCKED, ADJUSTMENT = map(table_of, (IncentivePlan, PlanVersion, LockedStatement,
                                                  CommissionAdjustment))
TYPE_FIELD = "Type"  # the CRM record's deal type field a SPIFF's `type` reads (raw JSON)
COLUMNS = ("person_id", "email", "name", "team", "period", "plan_key", "plan_version",
           "currency", "kind", "deal_id", "deal_remote_id", "deal_name", "close_date",
           "amount", "source_amount", "source_currency", "rate", "adjusts_period",
           "name_or_reason", "commission")
"""The columns of a statement exported as CSV or xlsx: one row per line, then a total row."""


class PlanNotFound(LookupError):
    pass


@dataclass(frozen=True)
class StoredPlan:
    key: str
    version: int
    plan: Plan
    created_at: Any = None
    updated_at: Any = None


# -- plans ---------------------------------------------------------------------------------


def save_plan(session: Session, text: str | bytes, *, key: str | None = None) -> tuple[
        StoredPlan, bool]:
    """Create or change a plan from its document (PlanInvalid on bad input, nothing
    written). A document equal to the current version adds no version. Returns the plan
    and whether a version was added."""
    plan = parse(text, key=key)
    source = text.decode("utf-8-sig") if isinstance(text, bytes) else text
    row = session.execute(select(IncentivePlan).where(PLAN.c.key == plan.key)
                          ).scalar_one_or_none()
    now = utcnow()
    if row is not None:
        current = _version(session, row, row.version)
        if current.document == plan.document():
            return _stored(row, current), False
        row.version += 1
        row.name, row.updated_at = plan.name, now
    else:
        row = IncentivePlan(key=plan.key, name=plan.name, version=1, created_at=now,
                            updated_at=now)
    session.add(row)
    session.flush()
    assert row.id is not None
    version = PlanVersion(plan_id=row.id, version=row.version, document=plan.document(),
                          source=source, created_at=now)
    session.add(version)
    session.flush()
    return _stored(row, version), True


def _version(session: Session, row: IncentivePlan, number: int) -> PlanVersion:
    version: PlanVersion | None = session.execute(select(PlanVersion).where(
        VERSION.c.plan_id == row.id, VERSION.c.version == number)).scalar_one_or_none()
    if version is None:
        raise PlanNotFound(f"plan {row.key} has no version {number}")
    return version


def _stored(row: IncentivePlan, version: PlanVersion) -> StoredPlan:
    return StoredPlan(row.key, version.version, parse_document(version.document),
                      row.created_at, version.created_at)


def get_plan(session: Session, key: str, version: int | None = None) -> StoredPlan:
    row = session.execute(select(IncentivePlan).where(PLAN.c.key == key)
                          ).scalar_one_or_none()
    if row is None:
        raise PlanNotFound(f"plan {key} does not exist")
    return _stored(row, _version(session, row, version or row.version))


def list_plans(session: Session) -> list[StoredPlan]:
    rows = session.execute(select(IncentivePlan).order_by(PLAN.c.key)).scalars()
    return [_stored(row, _version(session, row, row.version)) for row in rows]


def plan_public(stored: StoredPlan) -> dict[str, Any]:
    return {"key": stored.key, "name": stored.plan.name, "version": stored.version,
            "created_at": stored.created_at, "updated_at": stored.updated_at,
            "document": stored.plan.document()}


def plans_for(session: Session, period: Period) -> list[StoredPlan]:
    """The current versions of the plans with the period's kind in effect in it."""
    return [p for p in list_plans(session)
            if p.plan.period == period.kind and p.plan.covers(period.start, period.end)]


def members(session: Session, plan: Plan) -> list[int]:
    """The ids of the plan's people: the team's, or those of the listed emails."""
    if plan.team is not None:
        rows = session.execute(select(PERSON.c.id).where(PERSON.c.team == plan.team))
        return sorted(int(pid) for pid, in rows)
    found = {person_of_email(session, email) for email in plan.people}
    return sorted(pid for pid in found if pid is not None)


# -- reading the store ---------------------------------------------------------------------


def credited_deals(session: Session, person_id: int, period: Period, plan: Plan,
                   conv: Converter) -> list[CreditedDeal]:
    """The person's live won deals closing in the period, amounts in plan currency."""
    rows = session.execute(
        select(DEAL.c.id, DEAL.c.remote_id, DEAL.c.name, DEAL.c.amount_home,
               DEAL.c.close_date, DEAL.c.remote_created_at, DEAL.c.stage, DEAL.c.pipeline,
               DEAL.c.raw, DEAL.c.connection_id, DEAL.c.account_remote_id,
               CONNECTION.c.home_currency)
        .join(CONNECTION, CONNECTION.c.id == DEAL.c.connection_id)
        .where(DEAL.c.owner_person_id == person_id, DEAL.c.status == DealStatus.WON,
               DEAL.c.deleted_at.is_(None), DEAL.c.close_date >= period.start,
               DEAL.c.close_date <= period.end)).all()
    firsts = _first_deals(session, rows) if any(
        "new_account" in s.when for s in plan.terms.spiffs) else set()
    return [as_credited(row, plan, conv, int(row.id) in firsts) for row in rows]


def as_credited(row: Any, plan: Plan, conv: Converter, new_account: bool) -> CreditedDeal:
    """A deal row (DEAL columns and the connection's home_currency) as credited, its
    amount_home in plan currency."""
    home = row.home_currency.upper() if row.home_currency else None
    source = row.amount_home or Decimal(0)
    if source and home is None:
        conv.rate(None)  # raises CurrencyError: the connection's currency is unknown
    amount = conv.exchange(source, home or plan.currency, plan.currency)
    kind = row.raw.get(TYPE_FIELD) if isinstance(row.raw, dict) else None
    return CreditedDeal(int(row.id), str(row.remote_id), amount, row.close_date,
                        row.remote_created_at, row.name or "", row.stage, row.pipeline,
                        str(kind) if kind is not None else None, new_account,
                        row.amount_home, home)


def _first_deals(session: Session, rows: Sequence[Any]) -> set[int]:
    """The ids of the deals among `rows` that are their account's first won deal (earliest
    close date; ties by deal id), in one query."""
    accounts = {(r.connection_id, r.account_remote_id) for r in rows if r.account_remote_id}
    if not accounts:
        return set()
    first: dict[tuple[int, str], int] = {}
    for connection_id, account, deal_id in session.execute(
            select(DEAL.c.connection_id, DEAL.c.account_remote_id, DEAL.c.id).where(
                DEAL.c.account_remote_id.in_(sorted({a for _, a in accounts})),
                DEAL.c.status == DealStatus.WON, DEAL.c.deleted_at.is_(None),
                DEAL.c.close_date.is_not(None))
            .order_by(DEAL.c.close_date, DEAL.c.id)):
        first.setdefault((connection_id, account), int(deal_id))
    return {deal_id for key, deal_id in first.items() if key in accounts}


def fx_rates(session: Session, conv: Converter, currency: str) -> dict[str, str]:
    """Units of `currency` per 1 unit of each connection's home currency (that has a rate
    now), as text: what a snapshot pins."""
    codes = {str(c).upper() for c, in session.execute(
        select(CONNECTION.c.home_currency).where(CONNECTION.c.home_currency.is_not(None)))}
    out = {}
    for code in sorted(codes):
        try:
            out[code] = format(conv.exchange(Decimal(1), code, currency), "f")
        except CurrencyError:
            continue
    return out


def pinned(conv: Converter, currency: str, rates: dict[str, Any]) -> Converter:
    """A converter into `currency` that uses `rates` (fx_rates) where they name the
    currency, and the current FX table (through conv) for the others."""
    known = {code: Decimal(str(rate)) for code, rate in rates.items()}
    for code in (*conv.rates, conv.reporting):
        if code and code not in known:
            with contextlib.suppress(CurrencyError):
                known[code] = conv.exchange(Decimal(1), code, currency)
    return Converter(currency, known)


def quota(session: Session, person_id: int, period: Period, plan: Plan,
          conv: Converter) -> Decimal | None:
    """The plan's fixed quota, else the person's bookings goal for exactly the period
    (converted into plan currency); None when there is none."""
    if plan.quota is not None:
        return plan.quota
    goal = session.execute(select(GOAL.c.target, GOAL.c.currency).where(
        GOAL.c.person_id == person_id, GOAL.c.metric == GoalMetric.BOOKINGS,
        GOAL.c.period_start == period.start, GOAL.c.period_end == period.end,
        GOAL.c.deleted_at.is_(None))).first()
    if goal is None:
        return None
    code = (goal.currency or conv.reporting or plan.currency).upper()
    return Decimal(goal.target) if code == plan.currency else \
        conv.exchange(Decimal(goal.target), code, plan.currency)


# -- statements ----------------------------------------------------------------------------


def compute(session: Session, conv: Converter, plan: Plan, person_id: int, period: Period,
            the_quota: Decimal | None, *, balance: Decimal = engine.ZERO,
            adjustments: Sequence[Adjustment] = ()) -> Result:
    """The arithmetic of one statement on the store's deals."""
    deals = credited_deals(session, person_id, period, plan, conv)
    return engine.compute(plan.terms, the_quota, deals, draw_balance=balance,
                          adjustments=adjustments)


def draw_balance_before(session: Session, conv: Converter, stored: StoredPlan,
                        person_id: int, period: Period, fiscal_start: int) -> Decimal:
    """The draw balance carried into `period`: from the latest locked statement before it,
    then period by period since the plan took effect (0 before)."""
    plan = stored.plan
    if plan.terms.draw is None or not plan.terms.draw.recoverable:
        return engine.ZERO
    earlier: list[Period] = []
    current = preceding(period, fiscal_start)
    balance = engine.ZERO
    while current.end >= plan.effective_from:
        snapshot = _snapshot(session, current.label, stored.key, person_id)
        if snapshot is not None:
            balance = Decimal(str(snapshot.statement["draw_balance"]))
            break
        earlier.append(current)
        current = preceding(current, fiscal_start)
    for item in reversed(earlier):
        balance = compute(session, conv, plan, person_id, item,
                          quota(session, person_id, item, plan, conv), balance=balance,
                          adjustments=adjustments_for(session, stored.key, person_id,
                                                      item.label)).draw_balance
    return balance


def _snapshot(session: Session, label: str, key: str, person_id: int) -> LockedStatement | None:
    found: LockedStatement | None = session.execute(select(LockedStatement).where(
        LOCKED.c.period == label, LOCKED.c.plan_key == key,
        LOCKED.c.person_id == person_id)).scalar_one_or_none()
    return found


def adjustments_for(session: Session, key: str, person_id: int,
                    label: str) -> list[Adjustment]:
    rows = session.execute(select(CommissionAdjustment).where(
        ADJUSTMENT.c.plan_key == key, ADJUSTMENT.c.person_id == person_id,
        ADJUSTMENT.c.target_period == label).order_by(ADJUSTMENT.c.id)
    ).scalars()
    return [Adjustment(r.period, r.reason, r.amount, r.difference, r.deal_id,
                       r.deal_remote_id) for r in rows]


def statement(session: Session, settings: Settings, stored: StoredPlan, person_id: int,
              period: Period, conv: Converter | None = None) -> dict[str, Any]:
    """The live statement of an open period (JSON-ready)."""
    conv = conv or converter(session, settings)
    fiscal = settings.fiscal_year_start_month
    balance = draw_balance_before(session, conv, stored, person_id, period, fiscal)
    result = compute(session, conv, stored.plan, person_id, period,
                     quota(session, person_id, period, stored.plan, conv), balance=balance,
                     adjustments=adjustments_for(session, stored.key, person_id, period.label))
    return public(session, stored, person_id, period, result, balance)


def public(session: Session, stored: StoredPlan, person_id: int, period: Period,
           result: Result, balance_before: Decimal) -> dict[str, Any]:
    person = session.get(Person, person_id)
    return {
        "person_id": person_id, "email": person.email if person else None,
        "name": person.name if person else "", "team": person.team if person else None,
        "period": period.label, "period_start": period.start, "period_end": period.end,
        "plan_key": stored.key, "plan_name": stored.plan.name,
        "plan_version": stored.version, "currency": stored.plan.currency,
        "measure": engine.cents(result.measure),
        "quota": None if result.quota is None else engine.cents(result.quota),
        "attainment": result.attainment,
        "lines": [line.public() for line in result.lines],
        "earned": result.earned, "payout": result.payout,
        "draw_balance_before": balance_before, "draw_balance": result.draw_balance,
        "locked": False, "locked_at": None, "note": result.note,
    }


def statements(session: Session, settings: Settings, period: Period, *,
               people: Collection[int] | None = None,
               person_id: int | None = None) -> list[dict[str, Any]]:
    """Every statement of the period (each plan in effect, each member), or of one person;
    of the people in `people` only (None: everyone). Locked periods answer their snapshots."""
    conv = converter(session, settings)
    out = []
    locked = {(s.plan_key, s.person_id): s for s in session.execute(
        select(LockedStatement).where(LOCKED.c.period == period.label)).scalars()}
    for stored in plans_for(session, period):
        for pid in members(session, stored.plan):
            if (people is not None and pid not in people) or \
                    (person_id is not None and pid != person_id):
                continue
            snapshot = locked.pop((stored.key, pid), None)
            out.append(from_json(snapshot.statement) if snapshot is not None
                       else statement(session, settings, stored, pid, period, conv))
    for snapshot in locked.values():  # a member then, not now
        if (people is None or snapshot.person_id in people) and \
                person_id in (None, snapshot.person_id):
            out.append(from_json(snapshot.statement))
    return sorted(out, key=lambda s: (s["plan_key"], s["name"] or "", s["person_id"]))


def rows(items: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Statements as export rows (COLUMNS): one per line, then a `payout` total row."""
    for item in items:
        head = {k: item[k] for k in ("person_id", "email", "name", "team", "period",
                                     "plan_key", "plan_version", "currency")}
        for line in item["lines"]:
            yield {**line, **head, "adjusts_period": line.get("period"),
                   "name_or_reason": line.get("reason") or line.get("name")}
        yield {**head, "kind": "payout", "commission": item["payout"],
               "name_or_reason": f"earned {item['earned']}"}


NUMBERS = frozenset({"measure", "quota", "attainment", "earned", "payout", "draw_balance_before",
                     "draw_balance", "amount", "source_amount", "rate", "commission",
                     "difference", "from", "to"})
DATES = frozenset({"period_start", "period_end", "close_date"})


def to_json(value: Any) -> Any:
    """A statement as stored in a snapshot (JSON): decimals, dates and times as text."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    return value


def from_json(value: Any, key: str = "") -> Any:
    """A stored snapshot as the statement it was (to_json reversed)."""
    if isinstance(value, dict):
        return {k: from_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    if value is None or not isinstance(value, str):
        return value
    if key in NUMBERS:
        return Decimal(value)
    if key in DATES:
        return date.fromisoformat(value)
    if key == "locked_at":
        return datetime.fromisoformat(value)
    return value


def preview(session: Session, settings: Settings, key: str, text: str | bytes,
            period: Period) -> dict[str, Any]:
    """Each member's payout for `period` under the current version of plan `key` (if any)
    and under the document `text` (not saved), computed live (locks ignored)."""
    new = StoredPlan(key, 0, parse(text, key=key))
    if new.plan.period != period.kind:
        raise PeriodInvalid(f"plan {key} pays per {new.plan.period}; {period.label} is a "
                            f"{period.kind}")
    try:
        old: StoredPlan | None = get_plan(session, key)
    except PlanNotFound:
        old = None
    conv = converter(session, settings)
    payouts: dict[int, dict[str, Decimal | None]] = {}
    for name, stored in (("old", old), ("new", new)):
        if stored is None or stored.plan.period != period.kind:
            continue
        for pid in members(session, stored.plan):
            item = statement(session, settings, stored, pid, period, conv)
            payouts.setdefault(pid, {"old": None, "new": None})[name] = item["payout"]
    labels = people.labels(session, payouts)
    data = [{"person_id": pid, "email": labels.get(pid, (None, ""))[0],
             "name": labels.get(pid, (None, ""))[1], "old_payout": pay["old"],
             "new_payout": pay["new"],
             "difference": (pay["new"] or engine.ZERO) - (pay["old"] or engine.ZERO)}
            for pid, pay in sorted(payouts.items())]
    return {"period": period.label, "plan_key": key, "currency": new.plan.currency,
            "old_version": old.version if old else None, "data": data}


__all__ = [
    "COLUMNS",
    "PlanNotFound",
    "StoredPlan",
    "adjustments_for",
    "compute",
    "credited_deals",
    "draw_balance_before",
    "from_json",
    "get_plan",
    "list_plans",
    "members",
    "plan_public",
    "plans_for",
    "preview",
    "public",
    "quota",
    "rows",
    "save_plan",
    "statement",
    "statements",
    "to_json",
]
