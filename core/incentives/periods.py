"""Closing commission periods (docs/incentives.md, "Closing a period").

Locking a period snapshots every statement of it (each plan of its kind in effect, each
member); a locked statement never changes. Later differences in its deals (an amount
edited, won -> lost, a deletion, a deal synced late, a deal moved across tiers by another)
are found by computing the locked period again with the snapshot's plan version and quota
and comparing it with the snapshot deal by deal (and the cap). Each difference not yet
recorded becomes a commission_adjustment in the first open period after the locked one,
with the reason and the deal: increases always, decreases only while the deal's close_date
is less than the plan's clawback_days old on the day the difference is found (without
clawback_days a locked payout is never reversed); a decrease outside the window is
recorded with amount 0, so every difference is explained once.

Differences are looked for when a period is locked and whenever statements of an open
period are read (record_adjustments). Every function takes the caller's session and never
commits.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.config import Settings
from core.incentives import engine, statements
from core.incentives.calendar import Period, following, parse_period
from core.incentives.plans import parse_document
from core.incentives.statements import StoredPlan
from core.metrics.currency import Converter, converter
from core.models import (
    CommissionAdjustment,
    Deal,
    IncentivePlan,
    LockedStatement,
    PeriodLock,
    PlanVersion,
    table_of,
)
from core.types import DealStatus, utcnow

LOCK, LOCKED, ADJUSTMENT, PLAN, VERSION = map(table_of, (
    PeriodLock, LockedStatement, CommissionAdjustment, IncentivePlan, PlanVersion))


class PeriodLocked(ValueError):
    """The period is locked already, or a later one is (a 409)."""


@dataclass(frozen=True)
class LockResult:
    period: Period
    locked_at: Any
    statements: int
    adjustments: int


def is_locked(session: Session, label: str) -> bool:
    return session.get(PeriodLock, label) is not None


def first_open(session: Session, period: Period, fiscal_start: int) -> Period:
    """The first period after `period` (same kind) that is not locked."""
    current = following(period, fiscal_start)
    while is_locked(session, current.label):
        current = following(current, fiscal_start)
    return current


def lock(session: Session, settings: Settings, label: str, *, today: date) -> LockResult:
    """Lock the period: record the differences of earlier locked periods (some land in
    this one), then snapshot each of its statements. PeriodLocked when it or a later
    period of its kind is locked already."""
    period = parse_period(label, settings.fiscal_year_start_month)
    if is_locked(session, period.label):
        raise PeriodLocked(f"period {period.label} is locked already")
    later = session.execute(select(LOCK.c.period).where(
        LOCK.c.kind == period.kind, LOCK.c.period_start > period.start)).first()
    if later is not None:
        raise PeriodLocked(f"period {later[0]} is locked already: periods are locked in "
                           "order, and a period before a locked one stays open")
    found = record_adjustments(session, settings, today=today)
    done = statements.statements(session, settings, period)
    conv = converter(session, settings)
    now = utcnow()
    session.add(PeriodLock(period=period.label, kind=period.kind, period_start=period.start,
                           period_end=period.end, locked_at=now))
    for item in done:
        item = {**item, "locked": True, "locked_at": now}
        session.add(LockedStatement(period=period.label, plan_key=item["plan_key"],
                                    plan_version=item["plan_version"],
                                    person_id=item["person_id"],
                                    statement=statements.to_json(item),
                                    fx=statements.fx_rates(session, conv, item["currency"]),
                                    locked_at=now))
    try:
        session.flush()
    except IntegrityError:  # another request locked it meanwhile (the caller rolls back)
        raise PeriodLocked(f"period {period.label} is locked already") from None
    return LockResult(period, now, len(done), found)


def record_adjustments(session: Session, settings: Settings, *, today: date) -> int:
    """Record every difference of every locked statement not recorded yet; returns how
    many adjustments were added."""
    conv = converter(session, settings)
    added = 0
    # FOR UPDATE (PostgreSQL): two readers at once do not record the same difference twice
    for snapshot in session.execute(select(LockedStatement).order_by(LOCKED.c.id)
                                    .with_for_update()).scalars():
        added += _adjust(session, settings, conv, snapshot, today)
    session.flush()
    return added


def _plan_version(session: Session, key: str, version: int) -> StoredPlan | None:
    document = session.execute(select(VERSION.c.document).join(
        PLAN, PLAN.c.id == VERSION.c.plan_id).where(
        PLAN.c.key == key, VERSION.c.version == version)).scalar_one_or_none()
    return None if document is None else StoredPlan(key, version, parse_document(document))


def _adjust(session: Session, settings: Settings, conv: Converter,
            snapshot: LockedStatement, today: date) -> int:
    stored = _plan_version(session, snapshot.plan_key, snapshot.plan_version)
    if stored is None:  # the plan was deleted
        return 0
    fiscal = settings.fiscal_year_start_month
    period = parse_period(snapshot.period, fiscal)
    saved = snapshot.statement
    quota = None if saved.get("quota") is None else Decimal(str(saved["quota"]))
    fx = statements.pinned(conv, stored.plan.currency, snapshot.fx or {})
    now = statements.compute(session, fx, stored.plan, snapshot.person_id, period,
                             quota).deal_commissions()
    then: dict[int | None, Decimal] = {}
    lines = {}
    for line in saved["lines"]:
        if line["kind"] in ("deal", "spiff", "cap"):
            then[line["deal_id"]] = then.get(line["deal_id"], engine.ZERO) + \
                Decimal(str(line["commission"]))
            if line["kind"] == "deal":
                lines[line["deal_id"]] = line
    recorded: dict[int | None, Any] = dict(session.execute(  # type: ignore[arg-type]
        select(ADJUSTMENT.c.deal_id, func.sum(ADJUSTMENT.c.difference))
        .where(ADJUSTMENT.c.locked_statement_id == snapshot.id)
        .group_by(ADJUSTMENT.c.deal_id)).all())
    target = first_open(session, period, fiscal)
    added = 0
    for deal_id in sorted(set(now) | set(then), key=lambda d: (d is not None, d or 0)):
        change = now.get(deal_id, engine.ZERO) - then.get(deal_id, engine.ZERO) - \
            Decimal(recorded.get(deal_id) or 0)
        if not change:
            continue
        deal = session.get(Deal, deal_id) if deal_id is not None else None
        closed = deal.close_date if deal is not None and deal.close_date else period.end
        if deal_id in lines and lines[deal_id].get("close_date"):
            closed = date.fromisoformat(str(lines[deal_id]["close_date"]))
        days = stored.plan.terms.clawback_days
        within = days is not None and (today - closed).days < days
        paid = change if change > 0 or within else engine.ZERO
        reason = _reason(deal, lines.get(deal_id), period) if deal_id is not None else "cap"
        if paid != change:
            reason += f"; a decrease outside the {days or 0}-day clawback window: not reversed"
        assert snapshot.id is not None
        session.add(CommissionAdjustment(
            locked_statement_id=snapshot.id, plan_key=snapshot.plan_key,
            person_id=snapshot.person_id, period=snapshot.period, target_period=target.label,
            deal_id=deal_id, deal_remote_id=deal.remote_id if deal is not None else
            (lines.get(deal_id) or {}).get("deal_remote_id"),
            reason=reason, difference=change, amount=paid, observed_on=today))
        added += 1
    return added


def _reason(deal: Deal | None, line: dict[str, Any] | None, period: Period) -> str:
    """Why a deal's commission in a locked period differs from its snapshot."""
    if deal is None or deal.deleted_at is not None:
        return "deal deleted"
    if deal.status != DealStatus.WON:
        return f"won -> {deal.status}"
    if deal.close_date is None or not period.start <= deal.close_date <= period.end:
        return f"close date moved to {deal.close_date}"
    if line is None:
        return "deal won or synced after the period was locked"
    if Decimal(str(line["amount"])) != engine.cents(deal.amount_home or engine.ZERO) and \
            line.get("source_amount") is not None and \
            Decimal(str(line["source_amount"])) != (deal.amount_home or engine.ZERO):
        return f"amount changed from {line['source_amount']} to {deal.amount_home}"
    return "commission moved between tiers (another deal of the period changed)"


__all__ = ["LockResult", "PeriodLocked", "first_open", "is_locked", "lock",
           "record_adjustments"]
