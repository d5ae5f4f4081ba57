"""Timestamps as text, cheaply: the sandboxes write every record's times on every read.

`wall_text(seconds)` is `datetime(1970, 1, 1) + timedelta(seconds=seconds)` as
`isoformat(sep)` writes it (`YYYY-MM-DDTHH:MM:SS`), put together from the date's text
(cached per day) and tables of minutes and seconds instead of formatted digit by digit;
`utc_text(moment)` is the same of an instant in UTC. A vendor's format adds its own
suffix (`Z`, `-04:00`, milliseconds).
"""

from datetime import UTC, datetime, timedelta
from functools import lru_cache

_EPOCH = datetime(1970, 1, 1)
_MINUTES = tuple(f"{h:02d}:{m:02d}:" for h in range(24) for m in range(60))
_SECONDS = tuple(f"{s:02d}" for s in range(60))


@lru_cache(maxsize=1 << 15)
def _date_text(day: int, sep: str) -> str:
    """`YYYY-MM-DD` of a day counted from 1970-01-01, then `sep`."""
    return (_EPOCH + timedelta(days=day)).date().isoformat() + sep


def wall_text(seconds: int, sep: str = "T") -> str:
    """`YYYY-MM-DD{sep}HH:MM:SS` of whole seconds since 1970-01-01 00:00 (no zone)."""
    day, second = divmod(seconds, 86_400)
    minute, second = divmod(second, 60)
    return _date_text(day, sep) + _MINUTES[minute] + _SECONDS[second]


def utc_text(moment: datetime, sep: str = "T") -> str:
    """`moment.astimezone(UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")`: the UTC time, any
    fraction of a second dropped."""
    seconds = int(moment.timestamp())
    if seconds < 0:  # int() rounds toward zero: before 1970, the plain way
        return moment.astimezone(UTC).strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    return wall_text(seconds, sep)
