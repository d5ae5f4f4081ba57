"""Commission periods by label (docs/incentives.md): `2027-01` (a month),
`2027-Q1` (a quarter), `2027` (a year). Quarters and years are fiscal when
CRMSYNC_FISCAL_YEAR_START_MONTH is not 1, labelled by the year the fiscal year ends in
(with 4, `2027` runs from 2026-04-01 to 2027-03-31 and `2027-Q1` is April to June 2026).
Months are calendar months whatever the fiscal year."""

import re
from dataclasses import dataclass
from datetime import date, timedelta

LABEL = re.compile(r"(?P<year>\d{4})(?:-(?:Q(?P<quarter>[1-4])|(?P<month>0[1-9]|1[0-2])))?")
LENGTH = {"month": 1, "quarter": 3, "year": 12}


class PeriodInvalid(ValueError):
    pass


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # inclusive
    kind: str
    label: str


def _month_start(month: int) -> date:
    return date(month // 12, month % 12 + 1, 1)


def _fiscal_year_start(year: int, fiscal_start: int) -> int:
    """The first month (months since year 0) of fiscal year `year`."""
    return year * 12 + fiscal_start - 1 - (12 if fiscal_start != 1 else 0)


def _make(kind: str, first: int, label: str) -> Period:
    end = _month_start(first + LENGTH[kind]) - timedelta(days=1)
    return Period(_month_start(first), end, kind, label)


def parse_period(label: str, fiscal_start: int = 1) -> Period:
    """The period a label names; PeriodInvalid for anything else."""
    match = LABEL.fullmatch(label.strip())
    if match is None or not 1900 <= int(match["year"]) <= 9998:
        raise PeriodInvalid(f"period {label!r} is not a period label: 2027-01 (a month), "
                            "2027-Q1 (a quarter) or 2027 (a year)")
    year = int(match["year"])
    if match["month"]:
        return _make("month", year * 12 + int(match["month"]) - 1, label.strip())
    first = _fiscal_year_start(year, fiscal_start)
    if match["quarter"]:
        return _make("quarter", first + 3 * (int(match["quarter"]) - 1), label.strip())
    return _make("year", first, label.strip())


def period_of(kind: str, day: date, fiscal_start: int = 1) -> Period:
    """The period of `kind` that holds `day`."""
    month = day.year * 12 + day.month - 1
    if kind == "month":
        return _make("month", month, f"{day.year:04}-{day.month:02}")
    year = day.year + (1 if fiscal_start != 1 and day.month >= fiscal_start else 0)
    first = _fiscal_year_start(year, fiscal_start)
    if kind == "year":
        return _make("year", first, f"{year:04}")
    quarter = (month - first) // 3
    return _make("quarter", first + 3 * quarter, f"{year:04}-Q{quarter + 1}")


def following(period: Period, fiscal_start: int = 1) -> Period:
    return period_of(period.kind, period.end + timedelta(days=1), fiscal_start)


def preceding(period: Period, fiscal_start: int = 1) -> Period:
    return period_of(period.kind, period.start - timedelta(days=1), fiscal_start)


__all__ = ["Period", "PeriodInvalid", "following", "parse_period", "period_of", "preceding"]
