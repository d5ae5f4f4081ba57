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


def adjacent(start: date, end: date, offset: int) -> tuple[date, date]:
    """The period `offset` periods after [start, end] (-1: the one before it), of the same
    kind: whole months (start on a 1st, end on a month's last day) move by their number of
    months, so a month's neighbour is a month and a quarter's a quarter (fiscal ones too:
    they are whole months); any other range moves by its number of days.
    Raises ValueError when the period would fall outside the calendar."""
    first = start.year * 12 + start.month - 1
    try:
        after = end + timedelta(days=1)
        if start.day == 1 and after.day == 1:
            months = after.year * 12 + after.month - 1 - first
            shift = first + offset * months
            return _month_start(shift), _month_start(shift + months) - timedelta(days=1)
        days = timedelta(days=((end - start).days + 1) * offset)
        return start + days, end + days
    except (ValueError, OverflowError):
        raise ValueError("the period next to this one falls outside the calendar") from None


def _month_start(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


__all__ = ["PRESETS", "Preset", "adjacent", "preset_range", "today"]
