"""Named periods (core.metrics.periods): calendar and fiscal quarters and years."""

from datetime import date

import pytest

from core.config import Settings
from core.metrics.periods import Preset, preset_range, today

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
