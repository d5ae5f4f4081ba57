"""Splitting a quarter's (or a year's) target into monthly targets: the Goals page's helper
(docs/goals.md, "Splitting a quarter into months").

The rule, exact in Decimal:

- **even**: every month but the last gets total / n rounded down to the unit (a cent for
  bookings, one deal for deals_won); the last month gets the rest, so the months add up to
  the total exactly. 100,000.00 over three months: 33,333.33, 33,333.33, 33,333.34.
- **last year**: month i gets total x w_i / W rounded down to the unit, where w_i is the
  person's bookings in the same month one year earlier (core.metrics.definitions
  .timeseries, the API's /metrics/timeseries) and W their sum; the last month with
  bookings gets the rest. When W is not positive (no bookings last year, or a negative
  month) the split is even.

A month whose share is zero gets no goal (None): a goal's target must be positive.
"""

from collections.abc import Collection, Sequence
from datetime import date
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from sqlmodel import Session

from core.config import Settings
from core.metrics.definitions import Interval, SeriesGroupBy, SeriesMetric, timeseries
from core.types import GoalMetric

CENT = Decimal("0.01")


class SplitRule(StrEnum):
    EVEN = "even"
    LAST_YEAR = "last-year"


def unit_of(metric: str) -> Decimal:
    """The smallest step of a target: a cent, or one deal."""
    return Decimal(1) if metric == GoalMetric.DEALS_WON else CENT


def split(total: Decimal, weights: Sequence[Decimal], unit: Decimal) -> list[Decimal | None]:
    """`total` over len(weights) months in proportion to `weights` (a sum that is not
    positive, or a negative weight: evenly), each rounded down to `unit` but the last with
    a positive weight, which takes the rest. Zero shares are None."""
    if not weights:
        raise ValueError("nothing to split into")
    whole = sum(weights, Decimal(0))
    if whole <= 0 or any(w < 0 for w in weights):
        weights, whole = [Decimal(1)] * len(weights), Decimal(len(weights))
    last = max(i for i, w in enumerate(weights) if w > 0)  # takes the rest
    shares = [(total * w / whole).quantize(unit, rounding=ROUND_DOWN) for w in weights]
    shares[last] = total - sum(shares[:last] + shares[last + 1:], Decimal(0))
    return [share if share > 0 else None for share in shares]


def last_year_bookings(session: Session, settings: Settings, *, person_ids: Collection[int],
                       months: Sequence[date], people: Collection[int] | None
                       ) -> dict[int, list[Decimal]]:
    """person id -> bookings (reporting currency) of each of `months` one year earlier,
    from the metrics API's own timeseries, limited to `people` (the viewer's scope)."""
    first = months[0].replace(year=months[0].year - 1)
    after = months[-1].replace(year=months[-1].year - 1)
    last = date(after.year + after.month // 12, after.month % 12 + 1, 1).toordinal() - 1
    series = timeseries(session, metric=SeriesMetric.BOOKINGS, interval=Interval.MONTH,
                        start=first, end=date.fromordinal(last),
                        group_by=SeriesGroupBy.OWNER, settings=settings, people=people)
    wanted = set(person_ids)
    out = {pid: [Decimal(0)] * len(months) for pid in wanted}
    index = {m.replace(year=m.year - 1): i for i, m in enumerate(months)}
    for row in series["data"]:
        pid, start = row.get("person_id"), row["period_start"]
        start = start if isinstance(start, date) else date.fromisoformat(str(start))
        if pid in wanted and start in index:
            out[pid][index[start]] += Decimal(row["value"] or 0)
    return out


__all__ = ["CENT", "SplitRule", "last_year_bookings", "split", "unit_of"]
