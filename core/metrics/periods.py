"""Named periods (this month, last quarter, ...) as calendar date ranges.

Quarters and years are fiscal: they start in CRMSYNC_FISCAL_YEAR_START_MONTH, as the
timeseries' quarters do (with 4, this year runs from April 1 to March 31). "Today" is the
date in CRMSYNC_TIMEZONE, the zone the metrics' dates are in.
"""

from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from core.config import Settings


class Preset(StrEnum):
    THIS_MONTH = "this-month"
    LAST_MONTH = "last-month"
    THIS_QUARTER = "this-quarter"
    LAST_QUARTER = "last-quarter"
    THIS_YEAR = "this-year"
    LAST_YEAR = "last-year"


PRESETS = tuple(Preset)
_LENGTH = {"month": 1, "quarter": 3, "year": 12}  # in months


def today(settings: Settings) -> date:
    """The date now in CRMSYNC_TIMEZONE."""
    return datetime.now(ZoneInfo(settings.timezone)).date()


def preset_range(preset: Preset, day: date, fiscal_start_month: int = 1) -> tuple[date, date]:
    """(first day, last day) of the period `preset` names, seen from `day`."""
    unit = preset.value.split("-")[1]
    length = _LENGTH[unit]
    shift = 0 if unit == "month" else fiscal_start_month - 1
    month = day.year * 12 + day.month - 1  # months since year 0
    first = (month - shift) // length * length + shift
    if preset.value.startswith("last-"):
        first -= length
    start = _month_start(first)
    end = _month_start(first + length) - timedelta(days=1)
    return start, end


def _month_start(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


__all__ = ["PRESETS", "Preset", "preset_range", "today"]
