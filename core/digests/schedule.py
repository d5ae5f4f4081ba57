"""When a channel's digest is due and which days it covers (docs/digests.md, Schedule).

A weekly channel sends on weekday `day` (Monday 0 ... Sunday 6) at `hour`:00, a monthly one
on day `day` (1-28) of each month at `hour`:00, both in CRMSYNC_TIMEZONE. The digest sent at
a moment covers the finished period before it: the seven days ending the day before
(weekly), the previous calendar month (monthly). A moment is due once it has passed, if
the channel existed then; its local date names the period (one delivery per channel and
period, core.digests.channels.claim_due).
"""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

CADENCES = ("weekly", "monthly")


@dataclass(frozen=True)
class Schedule:
    cadence: str
    day: int
    hour: int

    def __post_init__(self) -> None:
        if self.cadence not in CADENCES:
            raise ValueError("schedule must be weekly or monthly")
        if not 0 <= self.hour <= 23:
            raise ValueError("hour must be 0..23")
        if self.cadence == "weekly" and not 0 <= self.day <= 6:
            raise ValueError("a weekly digest's day is a weekday, 0 (Monday) to 6 (Sunday)")
        if self.cadence == "monthly" and not 1 <= self.day <= 28:
            raise ValueError("a monthly digest's day is 1..28 (every month has it)")


@dataclass(frozen=True)
class Moment:
    """A scheduled sending: when (aware), its period key and the days it covers."""

    at: datetime
    period: str
    start: date
    end: date


def latest_moment(schedule: Schedule, now: datetime, zone: str) -> Moment:
    """The schedule's latest moment at or before `now` (aware)."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    if schedule.cadence == "weekly":
        day = local.date() - timedelta(days=(local.weekday() - schedule.day) % 7)
        at = datetime.combine(day, time(schedule.hour), tzinfo=tz)
        if at > local:
            day -= timedelta(days=7)
            at = datetime.combine(day, time(schedule.hour), tzinfo=tz)
        return Moment(at, day.isoformat(), day - timedelta(days=7), day - timedelta(days=1))
    day = local.date().replace(day=schedule.day)
    at = datetime.combine(day, time(schedule.hour), tzinfo=tz)
    if at > local:
        day = _previous_month(day).replace(day=schedule.day)
        at = datetime.combine(day, time(schedule.hour), tzinfo=tz)
    first = day.replace(day=1)
    return Moment(at, day.isoformat(), _previous_month(first), first - timedelta(days=1))


def due_moment(schedule: Schedule, now: datetime, zone: str,
               created_at: datetime) -> Moment | None:
    """The moment to send now, or None: the latest one, if the channel existed then."""
    moment = latest_moment(schedule, now, zone)
    return moment if moment.at >= created_at else None


def _previous_month(day: date) -> date:
    return (day.replace(day=1) - timedelta(days=1)).replace(day=1)
