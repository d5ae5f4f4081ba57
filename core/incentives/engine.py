"""The arithmetic of a commission statement (docs/incentives.md): pure
functions over Decimal, no store, no clock.

For one person, one plan and one period, given the credited deals in plan currency (already
in the contract's order), the quota and the draw balance carried in:

1. deal lines: the deals fill the plan's bands (tier i covers measure from to[i-1] x quota
   to to[i] x quota) one after the other; a deal's commission is the sum over the bands it
   touches of its amount inside the band x the band's rate, rounded half-up to 2 places;
2. SPIFF lines: each SPIFF's fixed amount for every credited deal matching its filter;
3. earned = sum of the rounded lines, at most the cap (a cap line shows the difference);
   adjustment lines (differences found later in locked periods) are added after the cap;
4. the draw: non-recoverable, payout = max(earned, D); recoverable, a balance carried from
   period to period lends the shortfall and is recovered from earnings above D.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

ZERO = Decimal(0)
CENT = Decimal("0.01")
NO_QUOTA = "no quota: tiered deal lines pay nothing until the period has a quota"


def cents(value: Decimal) -> Decimal:
    """Half-up to 2 places (each line of a statement)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Tier:
    rate: Decimal
    to: Decimal | None = None  # attainment where the band ends; None: unbounded (the last)


@dataclass(frozen=True)
class Spiff:
    name: str
    amount: Decimal
    when: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Draw:
    amount: Decimal
    recoverable: bool = False


@dataclass(frozen=True)
class Terms:
    """What of a plan the arithmetic needs."""

    tiers: tuple[Tier, ...]
    cap: Decimal | None = None
    spiffs: tuple[Spiff, ...] = ()
    draw: Draw | None = None
    clawback_days: int | None = None


@dataclass(frozen=True)
class CreditedDeal:
    """A won deal credited to the person, its amount in plan currency (exact)."""

    deal_id: int
    remote_id: str
    amount: Decimal
    close_date: date
    created: datetime | None = None
    name: str = ""
    stage: str | None = None
    pipeline: str | None = None
    type: str | None = None
    new_account: bool = False
    source_amount: Decimal | None = None  # amount_home, in source_currency
    source_currency: str | None = None


@dataclass(frozen=True)
class Adjustment:
    """A difference found in a locked period, paid (or clawed back) in this one."""

    period: str  # the locked period it corrects
    reason: str
    commission: Decimal
    difference: Decimal
    deal_id: int | None = None
    remote_id: str | None = None


@dataclass
class Line:
    kind: str  # deal | spiff | cap | adjustment | draw
    commission: Decimal
    deal_id: int | None = None
    deal_remote_id: str | None = None
    deal_name: str | None = None
    close_date: date | None = None
    amount: Decimal | None = None
    source_amount: Decimal | None = None
    source_currency: str | None = None
    rate: Decimal | None = None
    bands: list[dict[str, Any]] | None = None
    name: str | None = None
    period: str | None = None
    reason: str | None = None
    difference: Decimal | None = None

    def public(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in LINE_KEYS}


LINE_KEYS = ("kind", "deal_id", "deal_remote_id", "deal_name", "close_date", "amount",
             "source_amount", "source_currency", "rate", "bands", "name", "period", "reason",
             "difference", "commission")


@dataclass
class Result:
    measure: Decimal
    quota: Decimal | None
    attainment: Decimal | None
    lines: list[Line]
    earned: Decimal
    payout: Decimal
    draw_balance: Decimal
    note: str | None = None

    def deal_commissions(self) -> dict[int | None, Decimal]:
        """Deal and SPIFF commissions per deal id, and the cap's under None."""
        out: dict[int | None, Decimal] = {}
        for line in self.lines:
            if line.kind in ("deal", "spiff", "cap"):
                out[line.deal_id] = out.get(line.deal_id, ZERO) + line.commission
        return out


def order_key(deal: CreditedDeal) -> tuple[Any, ...]:
    """The contract's order: close_date, then remote_created_at (unknown last), then id."""
    created = deal.created.timestamp() if deal.created is not None else float("inf")
    return (deal.close_date, created, deal.deal_id)


def bands(terms: Terms, quota: Decimal | None) -> list[tuple[Decimal, Decimal | None, Decimal]]:
    """(from, to, rate) of each band in plan currency; to None: unbounded. Without a quota,
    a single tier is one unbounded band and several tiers are no band at all."""
    if quota is None or quota <= 0:
        return [(ZERO, None, terms.tiers[0].rate)] if len(terms.tiers) == 1 else []
    out, low = [], ZERO
    for tier in terms.tiers:
        high = None if tier.to is None else tier.to * quota
        out.append((low, high, tier.rate))
        if high is not None:
            low = high
    return out


def _deal_line(deal: CreditedDeal, start: Decimal,
               edges: Sequence[tuple[Decimal, Decimal | None, Decimal]]) -> Line:
    """The deal's line when the measure before it is `start`. A negative amount (a credit)
    walks the bands downwards and takes back what they paid."""
    end = start + deal.amount
    low, high = min(start, end), max(start, end)
    sign = 1 if end >= start else -1
    parts: list[dict[str, Any]] = []
    exact = ZERO
    for number, (band_from, band_to, rate) in enumerate(edges, start=1):
        inside = (high if band_to is None else min(high, band_to)) - max(low, band_from)
        if inside > 0:
            exact += sign * inside * rate
            parts.append({"tier": number, "from": cents(band_from),
                          "to": None if band_to is None else cents(band_to),
                          "amount": cents(sign * inside), "rate": rate})
    return Line("deal", cents(exact), deal.deal_id, deal.remote_id, deal.name, deal.close_date,
                cents(deal.amount), deal.source_amount, deal.source_currency,
                rate=parts[0]["rate"] if len(parts) == 1 else None, bands=parts)


def spiff_matches(when: Mapping[str, Any], deal: CreditedDeal) -> bool:
    """Every condition of `when` holds for the deal (docs/incentives.md, SPIFFs)."""
    checks = {
        "stage": lambda v: deal.stage == v,
        "pipeline": lambda v: deal.pipeline == v,
        "type": lambda v: deal.type == v,
        "min_amount": lambda v: deal.amount >= v,
        "max_amount": lambda v: deal.amount <= v,
        "new_account": lambda v: deal.new_account == v,
    }
    return all(checks[key](value) for key, value in when.items())


def compute(terms: Terms, quota: Decimal | None, deals: Iterable[CreditedDeal], *,
            draw_balance: Decimal = ZERO, adjustments: Sequence[Adjustment] = ()) -> Result:
    """The statement's lines and totals (docs/incentives.md, "The arithmetic", steps 1 to 5)."""
    ordered = sorted(deals, key=order_key)
    edges = bands(terms, quota)
    measure = sum((d.amount for d in ordered), ZERO)
    lines, position = [], ZERO
    for deal in ordered:
        lines.append(_deal_line(deal, position, edges))
        position += deal.amount
    for deal in ordered:
        lines += [Line("spiff", cents(s.amount), deal.deal_id, deal.remote_id, deal.name,
                       deal.close_date, cents(deal.amount), name=s.name)
                  for s in terms.spiffs if spiff_matches(s.when, deal)]
    earned = sum((line.commission for line in lines), ZERO)
    if terms.cap is not None and earned > terms.cap:
        lines.append(Line("cap", terms.cap - earned, name="cap"))
        earned = terms.cap
    for adj in adjustments:
        lines.append(Line("adjustment", adj.commission, adj.deal_id, adj.remote_id,
                          period=adj.period, reason=adj.reason, difference=adj.difference))
        earned += adj.commission
    payout, balance = draw(terms.draw, earned, draw_balance)
    if terms.draw is not None and payout != earned:
        lines.append(Line("draw", payout - earned, name="draw"))
    has_quota = quota is not None and quota > 0
    return Result(measure=measure, quota=quota if has_quota else None,
                  attainment=(measure / quota).quantize(Decimal("0.0001"), ROUND_HALF_UP)
                  if has_quota and quota is not None else None,
                  lines=lines, earned=cents(earned), payout=cents(payout),
                  draw_balance=cents(balance),
                  note=NO_QUOTA if not edges else None)


def draw(rule: Draw | None, earned: Decimal, balance: Decimal) -> tuple[Decimal, Decimal]:
    """(payout, draw balance carried to the next period) under the draw rule (step 4)."""
    if rule is None:
        return earned, balance
    if not rule.recoverable:
        return max(earned, rule.amount), ZERO
    if earned < rule.amount:
        return rule.amount, balance + rule.amount - earned
    recovery = min(balance, earned - rule.amount)
    return earned - recovery, balance - recovery


__all__ = ["LINE_KEYS", "NO_QUOTA", "Adjustment", "CreditedDeal", "Draw", "Line", "Result",
           "Spiff", "Terms", "Tier", "bands", "cents", "compute", "draw", "order_key",
           "spiff_matches"]
