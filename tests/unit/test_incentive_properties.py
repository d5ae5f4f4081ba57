"""core.incentives.engine against a plain-Python reading of docs/incentives.md, written
here independently: the commission of a deal is C(measure after it) - C(measure before it),
where C(m) is what the tiers pay on a measure m from zero, rounded half-up per line.

Hypothesis is imported by the test, not the module: every test process imports every test
module, and only the one running this test needs it (docs/testing.md)."""

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from core.incentives.engine import CreditedDeal, Draw, Spiff, Terms, Tier, compute


def half_up(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def tiers_paid(tiers: list[tuple[Decimal | None, Decimal]], quota: Decimal, m: Decimal) -> Decimal:
    """C(m): the tiers' pay on measure m, counted from zero."""
    total, start = Decimal(0), Decimal(0)
    for to, rate in tiers:
        end = None if to is None else to * quota
        covered = m - start if end is None else min(m, end) - start
        total += max(covered, Decimal(0)) * rate
        if end is not None:
            start = end
    return total


def reference(tiers, quota, deals, spiff, cap, draw, balance):  # type: ignore[no-untyped-def]
    """(per-deal commissions in credit order, earned, payout, balance after)."""
    ordered = sorted(deals, key=lambda d: (d[1], d[2] is None, d[2] or 0, d[0]))
    has_quota = quota is not None and quota > 0
    measure, lines = Decimal(0), []
    for _id, _close, _created, amount in ordered:
        if has_quota:
            pay = tiers_paid(tiers, quota, measure + amount) - tiers_paid(tiers, quota, measure)
        else:
            pay = amount * tiers[0][1] if len(tiers) == 1 else Decimal(0)
        measure += amount
        lines.append(half_up(pay))
    spiffs = [half_up(spiff[1]) for d in ordered if spiff is not None and d[3] >= spiff[0]]
    earned = sum(lines, Decimal(0)) + sum(spiffs, Decimal(0))
    if cap is not None:
        earned = min(earned, cap)
    payout = earned
    if draw is not None:
        amount, recoverable = draw
        if not recoverable:
            payout = max(earned, amount)
        elif earned < amount:
            payout, balance = amount, balance + amount - earned
        else:
            back = min(balance, earned - amount)
            payout, balance = earned - back, balance - back
    return lines, earned, payout, balance


def test_the_engine_matches_the_reference() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    cents = st.decimals(min_value=0, max_value=500000, places=2)
    rates = st.decimals(min_value=0, max_value=Decimal("0.2"), places=4)

    @st.composite
    def plans(draw):  # type: ignore[no-untyped-def]
        bounds = sorted(set(draw(st.lists(st.decimals(min_value=Decimal("0.05"), max_value=3,
                                                      places=2), max_size=3))))
        tier_rates = draw(st.lists(rates, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
        return [*zip(bounds, tier_rates, strict=False), (None, tier_rates[-1])]

    deal_rows = st.lists(st.tuples(st.integers(0, 89), st.one_of(st.none(), st.integers(0, 5)),
                                   cents), max_size=12)

    @settings(max_examples=300, deadline=None)
    @given(tiers=plans(), quota=st.one_of(st.none(), st.just(Decimal(0)), cents),
           rows=deal_rows, spiff=st.one_of(st.none(), st.tuples(cents, cents)),
           cap=st.one_of(st.none(), cents),
           draw=st.one_of(st.none(), st.tuples(cents, st.booleans())),
           balance=cents)
    def engine_matches_the_reference(tiers, quota, rows, spiff, cap, draw, balance):  # type: ignore[no-untyped-def]
        compare_with_reference(tiers, quota, rows, spiff, cap, draw, balance)

    engine_matches_the_reference()


def compare_with_reference(tiers, quota, rows, spiff, cap, draw, balance):  # type: ignore[no-untyped-def]
    """The engine's commissions, earnings, payout and draw balance equal the reference's."""
    deals = [(i + 1, close, created, amount) for i, (close, created, amount) in enumerate(rows)]
    terms = Terms(tuple(Tier(rate, to) for to, rate in tiers), cap=cap,
                  spiffs=() if spiff is None else (Spiff("s", spiff[1],
                                                         {"min_amount": spiff[0]}),),
                  draw=None if draw is None else Draw(*draw))
    if draw is None or not draw[1]:
        balance = Decimal(0)
    start = date(2027, 1, 1)
    credited = [CreditedDeal(i, f"d{i}", amount, start + timedelta(days=close),
                             None if created is None else
                             datetime(2026, 1, 1 + created))
                for i, close, created, amount in deals]
    result = compute(terms, quota, credited, draw_balance=balance)
    lines, earned, payout, after = reference(tiers, quota, deals, spiff, cap, draw, balance)
    assert [line.commission for line in result.lines if line.kind == "deal"] == lines
    assert (result.earned, result.payout, result.draw_balance) == (earned, payout, after)
    assert result.payout == sum((line.commission for line in result.lines), Decimal(0))
