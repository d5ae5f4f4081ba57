"""The arithmetic of docs/incentives.md on hand-computed statements (core.incentives.engine).

The plan of most tests: quota 100,000; 2 % up to 50 % attainment, 5 % up to 100 %, 8 % above.
"""

from datetime import UTC, date, datetime
from decimal import Decimal as D

from core.incentives.engine import (
    NO_QUOTA,
    Adjustment,
    CreditedDeal,
    Draw,
    Spiff,
    Terms,
    Tier,
    compute,
)

TIERS = (Tier(D("0.02"), D("0.5")), Tier(D("0.05"), D("1.0")), Tier(D("0.08")))
QUOTA = D(100000)


def deal(n: int, amount: str, day: int = 1, **kw) -> CreditedDeal:  # type: ignore[no-untyped-def]
    return CreditedDeal(n, f"d{n}", D(amount), date(2027, 1, day), **kw)


def lines(result) -> list[tuple[str, str | None, D]]:  # type: ignore[no-untyped-def]
    return [(line.kind, line.name if line.kind in ("spiff", "cap", "draw")
             else line.deal_remote_id, line.commission) for line in result.lines]


def test_each_tier_boundary_and_exactly_at_quota() -> None:
    # 50,000 fills tier 1 exactly; the next 50,000 ends exactly at quota; 10,000 is above it
    result = compute(Terms(TIERS), QUOTA, [deal(1, "50000", 1), deal(2, "50000", 2),
                                           deal(3, "10000", 3)])
    assert lines(result) == [("deal", "d1", D("1000.00")),  # 50,000 x 2 %
                             ("deal", "d2", D("2500.00")),  # 50,000 x 5 %
                             ("deal", "d3", D("800.00"))]   # 10,000 x 8 %
    assert [b["tier"] for b in result.lines[1].bands or []] == [2]
    assert result.attainment == D("1.1000") and result.earned == result.payout == D("4300.00")
    at_quota = compute(Terms(TIERS), QUOTA, [deal(1, "100000")])
    assert at_quota.attainment == D("1.0000")
    assert lines(at_quota) == [("deal", "d1", D("3500.00"))]  # 50,000 x 2 % + 50,000 x 5 %


def test_a_deal_across_every_band_pays_each_part_at_its_rate() -> None:
    result = compute(Terms(TIERS), QUOTA, [deal(1, "40000", 1), deal(2, "70000", 2)])
    # d2 starts at 40,000: 10,000 x 2 % + 50,000 x 5 % + 10,000 x 8 % = 200 + 2,500 + 800
    assert lines(result) == [("deal", "d1", D("800.00")), ("deal", "d2", D("3500.00"))]
    bands = result.lines[1].bands or []
    assert [(b["tier"], b["amount"], b["rate"]) for b in bands] == [
        (1, D("10000.00"), D("0.02")), (2, D("50000.00"), D("0.05")),
        (3, D("10000.00"), D("0.08"))]
    assert result.lines[1].rate is None and result.lines[0].rate == D("0.02")


def test_deals_are_credited_by_close_date_then_creation_then_id() -> None:
    early = datetime(2026, 1, 1, tzinfo=UTC)
    late = datetime(2026, 6, 1, tzinfo=UTC)
    deals = [deal(1, "60000", 5), deal(2, "60000", 5, created=early),
             deal(3, "60000", 5, created=late), deal(4, "1000", 2)]
    order = [line.deal_remote_id for line in compute(Terms(TIERS), QUOTA, deals).lines]
    assert order == ["d4", "d2", "d3", "d1"]  # unknown creation last


def test_without_a_quota_a_single_tier_pays_everything_and_several_pay_nothing() -> None:
    flat = compute(Terms((Tier(D("0.1")),)), None, [deal(1, "1234.56")])
    assert lines(flat) == [("deal", "d1", D("123.46"))] and flat.note is None
    spiff = Spiff("any", D(50))
    tiered = compute(Terms(TIERS, spiffs=(spiff,)), D(0), [deal(1, "90000")])
    assert lines(tiered) == [("deal", "d1", D("0.00")), ("spiff", "any", D("50.00"))]
    assert tiered.note == NO_QUOTA and tiered.attainment is None and tiered.payout == D(50)


def test_lines_round_half_up_and_earned_sums_the_rounded_lines() -> None:
    # 0.125 -> 0.13 twice: earned is 0.26, not round(0.25)
    result = compute(Terms((Tier(D("0.01")),)), None, [deal(1, "12.5"), deal(2, "12.5", 2)])
    assert [line.commission for line in result.lines] == [D("0.13"), D("0.13")]
    assert result.earned == D("0.26")


def test_the_cap_limits_tiers_and_spiffs_and_shows_the_difference() -> None:
    terms = Terms(TIERS, cap=D(5000), spiffs=(Spiff("big", D(500), {"min_amount": D(60000)}),))
    result = compute(terms, QUOTA, [deal(1, "40000", 1), deal(2, "70000", 2)])
    # 800 + 3,500 + 500 = 4,800 < 5,000: no cap line
    assert result.earned == D("4800.00") and "cap" not in [line.kind for line in result.lines]
    result = compute(terms, QUOTA, [deal(1, "40000", 1), deal(2, "80000", 2)])
    # 800 + (200 + 2,500 + 1,600) + 500 = 5,600 -> 5,000
    assert lines(result)[-1] == ("cap", "cap", D("-600.00"))
    assert result.earned == result.payout == D("5000.00")


def test_spiffs_pay_per_matching_deal() -> None:
    spiffs = (Spiff("new logo", D(500), {"type": "New Business", "new_account": True}),
              Spiff("big", D(100), {"min_amount": D(1000), "max_amount": D(5000)}),
              Spiff("east", D(10), {"pipeline": "East", "stage": "Won"}))
    deals = [deal(1, "1000", 1, type="New Business", new_account=True),
             deal(2, "5000.01", 2, type="New Business", new_account=False),
             deal(3, "999.99", 3, pipeline="East", stage="Won")]
    result = compute(Terms((Tier(D(0)),), spiffs=spiffs), None, deals)
    assert [x for x in lines(result) if x[0] == "spiff"] == [
        ("spiff", "new logo", D("500.00")), ("spiff", "big", D("100.00")),
        ("spiff", "east", D("10.00"))]
    assert [line.deal_remote_id for line in result.lines if line.kind == "spiff"] == [
        "d1", "d1", "d3"]


def test_a_recoverable_draw_is_repaid_over_two_periods() -> None:
    terms = Terms((Tier(D("0.1")),), draw=Draw(D(3000), recoverable=True))
    first = compute(terms, None, [deal(1, "10000")])  # earned 1,000
    assert (first.payout, first.draw_balance) == (D("3000.00"), D("2000.00"))
    assert lines(first)[-1] == ("draw", "draw", D("2000.00"))
    second = compute(terms, None, [deal(1, "45000")], draw_balance=first.draw_balance)
    # earned 4,500: 1,500 above the draw goes back, payout 3,000, 500 still owed
    assert (second.payout, second.draw_balance) == (D("3000.00"), D("500.00"))
    assert lines(second)[-1] == ("draw", "draw", D("-1500.00"))
    third = compute(terms, None, [deal(1, "50000")], draw_balance=second.draw_balance)
    assert (third.payout, third.draw_balance) == (D("4500.00"), D("0.00"))


def test_a_non_recoverable_draw_is_a_floor() -> None:
    terms = Terms((Tier(D("0.1")),), draw=Draw(D(3000)))
    assert compute(terms, None, [deal(1, "10000")]).payout == D(3000)
    assert compute(terms, None, [deal(1, "40000")]).payout == D(4000)
    assert compute(terms, None, [deal(1, "10000")]).draw_balance == D(0)


def test_adjustments_come_after_the_cap_and_before_the_draw() -> None:
    terms = Terms((Tier(D("0.1")),), cap=D(1000), draw=Draw(D(500), recoverable=True))
    back = Adjustment("2026-Q4", "won -> lost", D("-700.00"), D("-700.00"), 9, "d9")
    result = compute(terms, None, [deal(1, "20000")], adjustments=[back])
    # 2,000 capped at 1,000, less 700 = 300 < 500: the draw tops it up and lends 200
    assert lines(result) == [("deal", "d1", D("2000.00")), ("cap", "cap", D("-1000.00")),
                             ("adjustment", "d9", D("-700.00")), ("draw", "draw", D("200.00"))]
    assert (result.earned, result.payout, result.draw_balance) == (D(300), D(500), D(200))


def test_a_negative_deal_takes_back_what_its_bands_paid() -> None:
    result = compute(Terms(TIERS), QUOTA, [deal(1, "60000", 1), deal(2, "-20000", 2)])
    # d1: 50,000 x 2 % + 10,000 x 5 % = 1,500; d2 walks back 10,000 at 5 % and 10,000 at 2 %
    assert lines(result) == [("deal", "d1", D("1500.00")), ("deal", "d2", D("-700.00"))]
    assert result.measure == D(40000)
