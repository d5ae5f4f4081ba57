"""Sales activities in the store (calls, meetings, tasks, emails, notes; docs/evaluation.md,
Activities): counts per rep for the summary, the leaderboard, scorecards and digests.

What counts: a live (not tombstoned) activity whose activity_date (its local date in the
store's zone, core.metrics.localdates) is within the period and that happened: a task when
it is completed (done is true); any other type unless the CRM says it did not happen
(done is false: a call or meeting planned but not held). An activity whose CRM does not
say (done is null) counts. The counts are keyed by the owner's person (core.people); None
collects activities whose owner maps to no person.
"""

from collections.abc import Collection
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlmodel import Session

from core.metrics.localdates import activity_day
from core.models import Activity, table_of
from core.types import ActivityType

ACTIVITY = table_of(Activity)
TOTAL = "total"
COUNT_KEYS = (*(t.value for t in ActivityType), TOTAL)


def counted() -> ColumnElement[bool]:
    """The activities that count (the module's rule), as a condition on the activity table."""
    return and_(ACTIVITY.c.deleted_at.is_(None),
                or_(ACTIVITY.c.done.is_(True),
                    and_(ACTIVITY.c.done.is_(None),
                         ACTIVITY.c.type != ActivityType.TASK.value)))


def empty_counts() -> dict[str, int]:
    return dict.fromkeys(COUNT_KEYS, 0)


def activity_counts(session: Session, *, start: date, end: date,
                    people: Collection[int] | None = None,
                    connection_id: int | None = None) -> dict[int | None, dict[str, int]]:
    """Owner person id -> {"call": n, "meeting": n, "task": n, "email": n, "note": n,
    "other": n, "total": n}: the activities that count (module docstring) with
    activity_date in [start, end]. `people` limits it to those persons (and leaves out the
    activities of no person); `connection_id` to one connection. Persons without any such
    activity are absent (empty_counts() is their row)."""
    return _counts(session, ACTIVITY.c.owner_person_id, start=start, end=end, people=people,
                   connection_id=connection_id)


def counts_by_connection(session: Session, *, start: date, end: date,
                         people: Collection[int] | None = None,
                         connection_id: int | None = None) -> dict[int, dict[str, int]]:
    """activity_counts() keyed by connection instead of person."""
    found = _counts(session, ACTIVITY.c.connection_id, start=start, end=end, people=people,
                    connection_id=connection_id)
    return {int(k): v for k, v in found.items() if k is not None}


def _counts(session: Session, key: ColumnElement[Any], *, start: date, end: date,
            people: Collection[int] | None,
            connection_id: int | None) -> dict[int | None, dict[str, int]]:
    if end < start:
        raise ValueError("end must not be before start")
    day = activity_day(session, ACTIVITY)
    conditions: list[Any] = [counted(), day >= start, day <= end]
    if people is not None:
        conditions.append(ACTIVITY.c.owner_person_id.in_(sorted(people)))
    if connection_id is not None:
        conditions.append(ACTIVITY.c.connection_id == connection_id)
    rows = session.execute(
        select(key, ACTIVITY.c.type, func.count()).where(*conditions)
        .group_by(key, ACTIVITY.c.type))
    out: dict[int | None, dict[str, int]] = {}
    for group, kind, count in rows:
        counts = out.setdefault(None if group is None else int(group), empty_counts())
        counts[str(kind)] += int(count)
        counts[TOTAL] += int(count)
    return out


__all__ = ["COUNT_KEYS", "TOTAL", "activity_counts", "counted", "counts_by_connection",
           "empty_counts"]
