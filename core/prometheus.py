"""Operational metrics in the Prometheus text format, derived from the database at scrape time.

API replicas and workers are separate processes (and scale out), so counters kept
in an API process would miss the workers' work. Every figure here is computed in
SQL from the rows the work leaves behind (sync_run, connection, webhook_event), so
any replica answers the same, and nothing is lost when a process restarts.
Counters fall only when rows go away (a deleted connection); Prometheus reads that
as a counter reset.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import JSON as SA_JSON
from sqlalchemy import Float, Integer, case, cast, column, func, inspect, select, table, type_coerce
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col

from core.models import Connection, SyncRun
from core.records import STREAMS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
DURATION_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0)
LATENCY_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
COUNT_KINDS = ("fetched", "upserted", "deleted")


class Exposition:
    """Builds the text format: # HELP, # TYPE, then the family's samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {_escape(help_text, quote=False)}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, labels: dict[str, Any], value: float | int | None) -> None:
        pairs = ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items())
        self.lines.append(f"{name}{{{pairs}}} {_number(value)}" if pairs
                          else f"{name} {_number(value)}")

    def histogram(self, name: str, labels: dict[str, Any], buckets: Sequence[float],
                  cumulative: Sequence[int], total: float, count: int) -> None:
        for le, n in zip(buckets, cumulative, strict=True):
            self.sample(f"{name}_bucket", {**labels, "le": _number(le)}, n)
        self.sample(f"{name}_bucket", {**labels, "le": "+Inf"}, count)
        self.sample(f"{name}_sum", labels, total)
        self.sample(f"{name}_count", labels, count)

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _escape(value: str, *, quote: bool = True) -> str:
    value = value.replace("\\", r"\\").replace("\n", r"\n")
    return value.replace('"', r"\"") if quote else value


def _number(value: float | int | None) -> str:
    if value is None:
        return "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def prometheus_text(session: Session) -> str:
    """Every crmsync metric, as of now."""
    out = Exposition()
    _connections(session, out)
    _runs(session, out)
    _records(session, out)
    _histogram(session, out, "crmsync_sync_duration_seconds",
               "Duration of finished syncs (started to finished), by mode.",
               col(SyncRun.started_at), col(SyncRun.finished_at), DURATION_BUCKETS)
    _histogram(session, out, "crmsync_job_latency_seconds",
               "Time a sync job waited in the queue (queued to started), by mode.",
               col(SyncRun.created_at), col(SyncRun.started_at), LATENCY_BUCKETS)
    _webhooks(session, out)
    return out.text()


def _connections(session: Session, out: Exposition) -> None:
    out.family("crmsync_connections", "gauge", "Connections by status.")
    status_ = col(Connection.status)
    for status, n in session.execute(select(status_, func.count())
                                     .group_by(status_).order_by(status_)):
        out.sample("crmsync_connections", {"status": status}, n)
    out.family("crmsync_connection_last_success_timestamp_seconds", "gauge",
               "Unix time of each connection's last successful sync.")
    for cid, at in session.execute(select(col(Connection.id), col(Connection.last_synced_at))
                                   .where(col(Connection.last_synced_at).is_not(None))
                                   .order_by(col(Connection.id))):
        out.sample("crmsync_connection_last_success_timestamp_seconds",
                   {"connection_id": cid}, at.timestamp())


def _runs(session: Session, out: Exposition) -> None:
    by = (col(SyncRun.connection_id), col(SyncRun.mode), col(SyncRun.status))
    calls_sum = func.coalesce(func.sum(col(SyncRun.api_calls)), 0)
    rows = session.execute(select(*by, func.count(), calls_sum)
                           .group_by(*by).order_by(*by)).all()
    out.family("crmsync_sync_runs_total", "counter",
               "Finished sync runs by connection, mode and status (succeeded|failed).")
    for cid, mode, status, n, _ in rows:
        if status in ("succeeded", "failed"):
            out.sample("crmsync_sync_runs_total",
                       {"connection_id": cid, "mode": mode, "status": status}, n)
    out.family("crmsync_sync_runs_in_progress", "gauge",
               "Sync runs queued or running, by connection and status.")
    for cid, mode, status, n, _ in rows:
        if status in ("queued", "running"):
            out.sample("crmsync_sync_runs_in_progress",
                       {"connection_id": cid, "mode": mode, "status": status}, n)
    calls: dict[int, int] = {}
    for cid, _, _, _, api_calls in rows:
        calls[cid] = calls.get(cid, 0) + int(api_calls)
    out.family("crmsync_api_calls_total", "counter",
               "CRM API calls made by syncs (token calls and retries included), by connection.")
    for cid, n in sorted(calls.items()):
        out.sample("crmsync_api_calls_total", {"connection_id": cid}, n)


def _records(session: Session, out: Exposition) -> None:
    counts = type_coerce(col(SyncRun.counts), SA_JSON)
    sums = [func.coalesce(func.sum(counts[(stream, kind)].as_integer()), 0)
            for stream in STREAMS for kind in COUNT_KINDS]
    of = col(SyncRun.connection_id)
    rows = session.execute(select(of, *sums).group_by(of).order_by(of))
    out.family("crmsync_sync_records_total", "counter",
               "Records read (fetched), written (upserted) and tombstoned (deleted) by syncs.")
    pairs = [(stream, kind) for stream in STREAMS for kind in COUNT_KINDS]
    for cid, *values in rows:
        for (stream, kind), value in zip(pairs, values, strict=True):
            out.sample("crmsync_sync_records_total",
                       {"connection_id": cid, "stream": stream, "kind": kind}, int(value))


def _seconds(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.extract("epoch", end - start), Float)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


def _histogram(session: Session, out: Exposition, name: str, help_text: str, start: Any,
               end: Any, buckets: Iterable[float]) -> None:
    buckets = tuple(buckets)
    seconds = _seconds(session, start, end)
    columns = [func.sum(cast(case((seconds <= le, 1), else_=0), Integer)) for le in buckets]
    rows = session.execute(
        select(col(SyncRun.mode), func.count(), func.coalesce(func.sum(seconds), 0.0), *columns)
        .where(col(start).is_not(None), col(end).is_not(None))
        .group_by(col(SyncRun.mode)).order_by(col(SyncRun.mode)))
    out.family(name, "histogram", help_text)
    for mode, count, total, *cumulative in rows:
        out.histogram(name, {"mode": mode}, buckets, [int(n or 0) for n in cumulative],
                      max(float(total), 0.0), int(count))


def _webhooks(session: Session, out: Exposition) -> None:
    """Webhook events by status, from the webhook_event table when this schema has one."""
    if not inspect(session.get_bind()).has_table("webhook_event"):
        return
    events = table("webhook_event", column("connection_id"), column("status"))
    rows = session.execute(select(events.c.connection_id, events.c.status, func.count())
                           .group_by(events.c.connection_id, events.c.status)
                           .order_by(events.c.connection_id, events.c.status)).all()
    totals: dict[Any, int] = {}
    for cid, _, n in rows:
        totals[cid] = totals.get(cid, 0) + int(n)
    out.family("crmsync_webhook_events_total", "counter", "Webhook events received, by connection.")
    for cid, n in sorted(totals.items()):
        out.sample("crmsync_webhook_events_total", {"connection_id": cid}, n)
    out.family("crmsync_webhook_events", "gauge",
               "Webhook events by connection and status (received, processed, failed).")
    for cid, status, n in rows:
        out.sample("crmsync_webhook_events", {"connection_id": cid, "status": status}, n)
