"""What a rep earns if they close an open deal (docs/incentives.md, "If you win it"): the
statement of the period computed again with the deal won at its amount, against the
statement as it stands; the difference is the hint. Nothing is written."""

from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from core.config import Settings
from core.incentives import engine
from core.incentives.calendar import Period
from core.incentives.statements import (
    CONNECTION,
    DEAL,
    StoredPlan,
    adjustments_for,
    as_credited,
    credited_deals,
    draw_balance_before,
    quota,
)
from core.metrics.currency import converter
from core.types import DealStatus


def open_deals(session: Session, settings: Settings, stored: StoredPlan, person_id: int,
               period: Period) -> list[dict[str, Any]]:
    """The person's live open deals closing in the period (by close date), each with
    `commission` and `payout`: how much more the statement would earn and pay were it
    won at its amount (plan currency; the cap, the draw and the tiers taken into account)."""
    plan = stored.plan
    conv = converter(session, settings)
    won = credited_deals(session, person_id, period, plan, conv)
    the_quota = quota(session, person_id, period, plan, conv)
    balance = draw_balance_before(session, conv, stored, person_id, period,
                                  settings.fiscal_year_start_month)
    adjustments = adjustments_for(session, stored.key, person_id, period.label)
    now = engine.compute(plan.terms, the_quota, won, draw_balance=balance,
                         adjustments=adjustments)
    out = []
    for row in _open(session, person_id, period):
        deal = as_credited(row, plan, conv, _new_account(session, row))
        then = engine.compute(plan.terms, the_quota, [*won, deal], draw_balance=balance,
                              adjustments=adjustments)
        out.append({"deal_id": deal.deal_id, "deal_remote_id": deal.remote_id,
                    "deal_name": deal.name, "close_date": deal.close_date,
                    "amount": engine.cents(deal.amount), "probability": row.probability,
                    "commission": then.earned - now.earned,
                    "payout": then.payout - now.payout})
    return out


def _open(session: Session, person_id: int, period: Period) -> list[Any]:
    return list(session.execute(
        select(DEAL.c.id, DEAL.c.remote_id, DEAL.c.name, DEAL.c.amount_home,
               DEAL.c.close_date, DEAL.c.remote_created_at, DEAL.c.stage, DEAL.c.pipeline,
               DEAL.c.raw, DEAL.c.probability, DEAL.c.connection_id,
               DEAL.c.account_remote_id, CONNECTION.c.home_currency)
        .join(CONNECTION, CONNECTION.c.id == DEAL.c.connection_id)
        .where(DEAL.c.owner_person_id == person_id, DEAL.c.status == DealStatus.OPEN,
               DEAL.c.deleted_at.is_(None), DEAL.c.close_date >= period.start,
               DEAL.c.close_date <= period.end)
        .order_by(DEAL.c.close_date, DEAL.c.id)))


def _new_account(session: Session, row: Any) -> bool:
    """Won, the deal would be its account's first won deal (none closes on or before it)."""
    if not row.account_remote_id:
        return False
    earlier = session.execute(select(DEAL.c.id).where(
        DEAL.c.connection_id == row.connection_id,
        DEAL.c.account_remote_id == row.account_remote_id,
        DEAL.c.status == DealStatus.WON, DEAL.c.deleted_at.is_(None),
        DEAL.c.close_date <= row.close_date).limit(1)).first()
    return earlier is None


__all__ = ["open_deals"]
