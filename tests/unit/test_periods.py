"""Named periods (core.metrics.periods): calendar and fiscal quarters and years."""

from datetime import date

import pytest

from core.config import Settings
from core.metrics.periods import Preset, adjacent, preset_range, today

D = date


@pytest.mark.parametrize("preset, day, fiscal, expected", [
    ("this-month", D(2025, 2, 14), 1, (D(2025, 2, 1), D(2025, 2, 28))),
    ("this-month", D(2024, 2, 29), 1, (D(2024, 2, 1), D(2024, 2, 29))),
    ("last-month", D(2025, 1, 31), 1, (D(2024, 12, 1), D(2024, 12, 31))),
    ("this-quarter", D(2025, 5, 5), 1, (D(2025, 4, 1), D(2025, 6, 30))),
    ("this-quarter", D(2025, 12, 31), 1, (D(2025, 10, 1), D(2025, 12, 31))),
    ("last-quarter", D(2025, 2, 1), 1, (D(2024, 10, 1), D(2024, 12, 31))),
    ("this-year", D(2025, 7, 9), 1, (D(2025, 1, 1), D(2025, 12, 31))),
    ("last-year", D(2025, 7, 9), 1, (D(2024, 1, 1), D(2024, 12, 31))),
    # fiscal years starting in April: Q1 is April to June
    ("this-quarter", D(2025, 5, 5), 4, (D(2025, 4, 1), D(2025, 6, 30))),
    ("this-quarter", D(2025, 2, 5), 4, (D(2025, 1, 1), D(2025, 3, 31))),
    ("this-year", D(2025, 2, 5), 4, (D(2024, 4, 1), D(2025, 3, 31))),
    ("this-year", D(2025, 4, 1), 4, (D(2025, 4, 1), D(2026, 3, 31))),
    ("last-year", D(2025, 4, 1), 4, (D(2024, 4, 1), D(2025, 3, 31))),
    # starting in February: quarters run Feb-Apr, May-Jul, Aug-Oct, Nov-Jan
    ("this-quarter", D(2025, 1, 15), 2, (D(2024, 11, 1), D(2025, 1, 31))),
    ("last-quarter", D(2025, 1, 15), 2, (D(2024, 8, 1), D(2024, 10, 31))),
    ("this-month", D(2025, 1, 15), 2, (D(2025, 1, 1), D(2025, 1, 31))),
])
def test_presets(preset, day, fiscal, expected):
    assert preset_range(Preset(preset), day, fiscal) == expected


def test_today_is_in_the_configured_zone():
    east, west = Settings(timezone="Pacific/Kiritimati"), Settings(timezone="Etc/GMT+12")
    assert (today(east) - today(west)).days in (1, 2)  # 26 hours apart


@pytest.mark.parametrize("start, end, before, after", [
    # whole months move by their number of months: a month, a (fiscal) quarter, a year
    (D(2025, 3, 1), D(2025, 3, 31), (D(2025, 2, 1), D(2025, 2, 28)),
     (D(2025, 4, 1), D(2025, 4, 30))),
    (D(2025, 1, 1), D(2025, 3, 31), (D(2024, 10, 1), D(2024, 12, 31)),
     (D(2025, 4, 1), D(2025, 6, 30))),
    (D(2024, 11, 1), D(2025, 1, 31), (D(2024, 8, 1), D(2024, 10, 31)),
     (D(2025, 2, 1), D(2025, 4, 30))),
    (D(2024, 4, 1), D(2025, 3, 31), (D(2023, 4, 1), D(2024, 3, 31)),
     (D(2025, 4, 1), D(2026, 3, 31))),
    # other ranges by their number of days
    (D(2025, 2, 20), D(2025, 3, 1), (D(2025, 2, 10), D(2025, 2, 19)),
     (D(2025, 3, 2), D(2025, 3, 11))),
    (D(2025, 1, 15), D(2025, 2, 14), (D(2024, 12, 15), D(2025, 1, 14)),
     (D(2025, 2, 15), D(2025, 3, 17))),
])
def test_the_periods_before_and_after(start, end, before, after):
    assert adjacent(start, end, -1) == before
    assert adjacent(start, end, 1) == after


@pytest.mark.parametrize("start, end, offset", [
    (D(1, 1, 1), D(1, 1, 31), -1), (D(9999, 12, 1), D(9999, 12, 31), 1),
    (D(1, 1, 5), D(1, 1, 9), -1), (D(9999, 12, 20), D(9999, 12, 30), 1)])
def test_a_neighbour_outside_the_calendar_is_refused(start, end, offset):
    with pytest.raises(ValueError, match="outside the calendar"):
        adjacent(start, end, offset)
