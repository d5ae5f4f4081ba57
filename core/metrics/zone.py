"""Changing the store's time zone (CRMSYNC_TIMEZONE): every stored created_date and
activity_date is recomputed in the new zone and the rollups built in the old one are
dropped (core.metrics.localdates explains the design)."""

from collections.abc import Callable
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, select, update
from sqlmodel import Session

from core.metrics import rollups
from core.metrics.localdates import ZONE_KEY, activity_date, local_date, stored_zone
from core.models import Account, Activity, Deal, StoreMeta, table_of

BATCH = 5000



def ensure_zone(session: Session, zone_name: str) -> bool:
    """Recompute every created_date and activity_date when the store's zone is not `zone_name`.

    Returns True when it recomputed. The caller owns (and commits) the transaction.
    """
    if stored_zone(session) == zone_name:
        return False
    if stored_zone(session, lock="update") == zone_name:  # another process just did it
        return False
    zone = ZoneInfo(zone_name)
    for model in (Deal, Account):
        _recompute(session, table_of(model), "created_date", ("remote_created_at",),
                   lambda created: local_date(created, zone))
    _recompute(session, table_of(Activity), "activity_date", ("type", "occurred_at"),
               lambda kind, at: activity_date(kind, at, zone))
    rollups.invalidate(session)  # their sales-cycle days and account months moved
    meta = session.get(StoreMeta, ZONE_KEY)
    if meta is None:
        session.add(StoreMeta(key=ZONE_KEY, value=zone_name))
    else:
        meta.value = zone_name
    session.flush()
    return True


def _recompute(session: Session, table: Table, target: str, sources: tuple[str, ...],
               compute: Callable[..., date | None]) -> None:
    """Set `target` to compute(*sources) on every row whose last source is set."""
    rows = session.execute(select(table.c.id, *(table.c[c] for c in sources))
                           .where(table.c[sources[-1]].is_not(None))).all()
    stmt = (update(table).where(table.c.id == bindparam("row_id"))
            .values({target: bindparam("new_date")}))
    for i in range(0, len(rows), BATCH):
        session.connection().execute(stmt, [
            {"row_id": row_id, "new_date": compute(*values)}
            for row_id, *values in rows[i:i + BATCH]
        ])


__all__ = ["ensure_zone"]
