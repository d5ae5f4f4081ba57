"""Webhook events and CRM notification channels in the store (docs/webhooks.md).

Intake stores each verified event once per (connection, dedupe key), before the HTTP
answer. A job claims pending events (a lease, so two workers never take the same
event), applies what they stand for and marks them processed in one transaction.
Functions take the caller's session and never commit.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from core import store
from core.config import Settings
from core.models import (
    Connection,
    NotificationChannel,
    SyncRun,
    WebhookEvent,
    WebhookRejection,
    table_of,
)
from core.records import UNRESOLVED, Page, Unresolved
from core.security import SecretBox
from core.types import RunStatus, SyncMode, WebhookStatus, utcnow

MAX_BODY = 1024 * 1024  # 1 MB: larger callbacks are refused with 413
LEASE = timedelta(minutes=5)  # a claimed event is taken again after this (its worker died)
MAX_ATTEMPTS = 5  # then the event is marked failed and left for a person to look at
BATCH = 500
_LOCK_SPACE = 0x5EB0 << 32  # pg_advisory_xact_lock keys of webhook batches



def store_events(
    session: Session, *, connection_id: int, provider: str,
    events: Sequence[tuple[str, dict[str, Any]]], now: datetime | None = None,
) -> int:
    """Insert events, skipping dedupe keys the connection already has; returns how many are new."""
    return store_batch(session, [(connection_id, provider, events)], now=now)


EventBatch = Sequence[tuple[int, str, Sequence[tuple[str, dict[str, Any]]]]]
"""(connection id, provider, its events as (dedupe key, payload)), for store_batch."""


def store_batch(session: Session, batch: EventBatch, now: datetime | None = None) -> int:
    """store_events of several connections in one statement (the API's intake writes the
    callbacks of many connections at once: one round trip, not one per connection); a key
    given twice for a connection keeps its last payload. Returns how many are new."""
    now = now or utcnow()
    rows = [{"connection_id": connection_id, "provider": provider, "dedupe_key": key,
             "payload": payload, "status": WebhookStatus.RECEIVED, "attempts": 0,
             "received_at": now}
            for connection_id, provider, events in _by_connection(batch)
            for key, payload in events.items()]
    if not rows:
        return 0
    table = table_of(WebhookEvent)
    dialect = session.get_bind().dialect.name
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    stmt = insert.on_conflict_do_nothing(
        index_elements=["connection_id", "dedupe_key"]).returning(table.c.id)
    # rows as parameters, not in the statement: compiled once and cached, sent as one
    # multi-row INSERT (SQLAlchemy's insertmanyvalues)
    return len(session.execute(stmt, rows).all())


def _by_connection(batch: EventBatch) -> list[tuple[int, str, dict[str, dict[str, Any]]]]:
    """Each connection's events of a batch once, in order, the last payload of a key kept."""
    merged: dict[tuple[int, str], dict[str, dict[str, Any]]] = {}
    for connection_id, provider, events in batch:
        merged.setdefault((connection_id, provider), {}).update(events)
    return [(connection_id, provider, events)
            for (connection_id, provider), events in merged.items()]


DELIVERIES = "_deliveries"  # payload key: fingerprints of the deliveries of an event
MAX_DELIVERIES = 50  # kept per event (a vendor retries a few times)


def store_delivery(
    session: Session, *, connection_id: int, provider: str,
    events: Sequence[tuple[str, dict[str, Any]]], delivery: str, now: datetime | None = None,
) -> bool:
    """Store the events of one fingerprinted delivery (a vendor that retries with a fresh
    signature). False, storing nothing, when this delivery was stored before (a replay);
    a new delivery of a stored event only adds its fingerprint to that event."""
    table = table_of(WebhookEvent)
    keys = [key for key, _ in events]
    stmt = (select(table.c.id, table.c.dedupe_key, table.c.payload)
            .where(table.c.connection_id == connection_id, table.c.dedupe_key.in_(keys))
            .order_by(table.c.id).with_for_update())
    stored = list(session.execute(stmt))
    if any(delivery in (row.payload or {}).get(DELIVERIES, []) for row in stored):
        return False
    for row in stored:
        seen = [*(row.payload or {}).get(DELIVERIES, []), delivery][-MAX_DELIVERIES:]
        session.execute(update(table).where(table.c.id == row.id).values(
            payload={**(row.payload or {}), DELIVERIES: seen}))
    known = {row.dedupe_key for row in stored}
    store_events(session, connection_id=connection_id, provider=provider, now=now,
                 events=[(key, {**payload, DELIVERIES: [delivery]})
                         for key, payload in events if key not in known])
    return True


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    payload: dict[str, Any]


def claim(session: Session, *, connection_id: int, limit: int | None = None,
          now: datetime | None = None) -> list[Claimed]:
    """Take up to `limit` (BATCH) pending events of a connection, oldest first (attempts + 1).

    PostgreSQL skips rows another transaction is claiming (FOR UPDATE SKIP LOCKED);
    SQLite serializes writers anyway."""
    now = now or utcnow()
    rows = sorted(session.execute(_CLAIM, {"of": connection_id, "claim_at": now,
                                           "stale": now - LEASE, "limit": limit or BATCH}).all())
    return [Claimed(int(row.id), dict(row.payload or {})) for row in rows]


def _claim_statement() -> Any:
    table = table_of(WebhookEvent)
    now = bindparam("claim_at", type_=table.c.claimed_at.type)  # not a column's name
    pending = (
        select(table.c.id)
        .where(table.c.connection_id == bindparam("of"),
               table.c.status == WebhookStatus.RECEIVED,
               or_(table.c.claimed_at.is_(None),
                   table.c.claimed_at < bindparam("stale", type_=table.c.claimed_at.type)))
        .order_by(table.c.id).limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
    )
    return (update(table).where(table.c.id.in_(pending.scalar_subquery()))
            .values(claimed_at=now, attempts=table.c.attempts + 1)
            .returning(table.c.id, table.c.payload))


_CLAIM = _claim_statement()
"""claim's statement, built once (each webhook job claims; building it, and mark_processed's,
took about a tenth of a job's CPU when events trickle in one or two a job)."""


def pending_connections(session: Session, *, now: datetime | None = None) -> list[int]:
    """Connections with events waiting (not claimed, or their lease ran out)."""
    now = now or utcnow()
    table = table_of(WebhookEvent)
    stmt = select(table.c.connection_id).distinct().where(
        table.c.status == WebhookStatus.RECEIVED,
        or_(table.c.claimed_at.is_(None), table.c.claimed_at < now - LEASE))
    return sorted(int(c) for c in session.scalars(stmt))


def apply_changes(session: Session, *, connection_id: int, changes: Sequence[tuple[str, Page]],
                  settings: Settings | None = None) -> dict[str, dict[str, int]]:
    """Write re-read records and tombstones. A late, stale copy never rolls a record back:
    core.store only replaces a row with a version at least as new as its own.
    Events the connector could not resolve (UNRESOLVED) are released with their error, so
    mark_processed leaves them pending (or failed after MAX_ATTEMPTS)."""
    if session.get_bind().dialect.name == "postgresql":  # one batch per connection at a time
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": _LOCK_SPACE + connection_id})
    counts: dict[str, dict[str, int]] = {}
    for stream, page in changes:
        if stream == UNRESOLVED:
            counts[UNRESOLVED] = {"events": _keep_pending(session, connection_id, page.unresolved)}
            continue
        entry = counts.setdefault(stream, {"fetched": 0, "upserted": 0, "deleted": 0})
        entry["fetched"] += len(page.records) + len(page.deletions)
        upserted = store.upsert_records(
            session, stream=stream, connection_id=connection_id, records=page.records,
            source="webhook", settings=settings)
        if upserted:  # a store filled by webhooks alone gets statistics as a sync's does
            store.refresh_statistics(session, stream=stream, written=upserted)
        entry["upserted"] += upserted
        entry["deleted"] += store.apply_deletions(
            session, connection_id=connection_id, deletions=page.deletions)
    return counts


def _keep_pending(session: Session, connection_id: int,
                  unresolved: Sequence[Unresolved]) -> int:
    """Release the claimed events whose payload the connector reported unresolved."""
    table = table_of(WebhookEvent)
    claimed = session.execute(select(table.c.id, table.c.payload).where(
        table.c.connection_id == connection_id, table.c.status == WebhookStatus.RECEIVED,
        table.c.claimed_at.is_not(None))).all()
    kept = 0
    for payload, error in unresolved:
        ids = [row.id for row in claimed if row.payload == dict(payload)]
        release(session, ids, error)
        kept += len(ids)
    return kept


def mark_processed(session: Session, ids: Sequence[int], *, now: datetime | None = None) -> None:
    """Events of a batch done (not those released in the meantime: see apply_changes)."""
    session.execute(_MARK_PROCESSED, {"ids": list(ids), "done_at": now or utcnow()})


def _mark_statement() -> Any:
    table = table_of(WebhookEvent)
    return update(table).where(
        table.c.id.in_(bindparam("ids", expanding=True)), table.c.claimed_at.is_not(None)
    ).values(status=WebhookStatus.PROCESSED,
             processed_at=bindparam("done_at", type_=table.c.processed_at.type),
             error=None, claimed_at=None)


_MARK_PROCESSED = _mark_statement()


def release(session: Session, ids: Sequence[int], error: str) -> None:
    """After a failed attempt: pending again, or failed for good after MAX_ATTEMPTS."""
    table = table_of(WebhookEvent)
    base = update(table).where(table.c.id.in_(ids))
    session.execute(base.where(table.c.attempts >= MAX_ATTEMPTS).values(
        status=WebhookStatus.FAILED, error=error, claimed_at=None))
    session.execute(base.where(table.c.attempts < MAX_ATTEMPTS).values(
        error=error, claimed_at=None))


def record_run(session: Session, *, connection_id: int, started_at: datetime,
               counts: dict[str, Any], api_calls: int, error: str | None = None) -> int:
    """A finished sync_run of mode webhook for one processed batch."""
    now = utcnow()
    return int(session.execute(_RUN_INSERT, {
        "connection_id": connection_id, "mode": SyncMode.WEBHOOK,
        "status": RunStatus.FAILED if error else RunStatus.SUCCEEDED, "created_at": now,
        "started_at": started_at, "finished_at": now, "counts": counts,
        "api_calls": api_calls, "error": error}).scalar_one())


_RUN_INSERT = insert(table_of(SyncRun)).returning(table_of(SyncRun).c.id)
"""record_run's statement, built once (an ORM insert and flush cost every webhook job
about a millisecond of CPU)."""


# ---- refused callbacks and health ----------------------------------------------------------

HEALTH_WINDOW = timedelta(hours=24)
MAX_REASON = 500


def record_rejection(session: Session, *, connection_id: int, status: int, reason: str,
                     count: int = 1, now: datetime | None = None) -> None:
    """Count `count` refused callbacks of a connection (not verified, replays) in the
    current UTC hour, the last with `status` and `reason`."""
    now = now or utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    table = table_of(WebhookRejection)
    dialect = session.get_bind().dialect.name
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    values = {"last_status": status, "last_reason": reason[:MAX_REASON], "last_at": now}
    stmt = insert.values(connection_id=connection_id, hour=hour, count=count, **values)
    session.execute(stmt.on_conflict_do_update(
        index_elements=["connection_id", "hour"],
        set_={"count": table.c.count + count, **values}))


@dataclass(frozen=True)
class WebhookHealth:
    """A connection's callbacks: the newest stored, and in the last HEALTH_WINDOW the
    accepted (stored), rejected (refused; counted by the hour) and failed (processing gave
    up) ones; its notification channels' first expiry."""

    connection_id: int
    last_received_at: datetime | None = None
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    last_rejected_at: datetime | None = None
    last_rejection: str | None = None
    channels: int = 0
    channel_expires_at: datetime | None = None


def webhook_health(session: Session, connection_ids: Sequence[int], *,
                   now: datetime | None = None) -> dict[int, WebhookHealth]:
    """WebhookHealth of each connection, four grouped queries."""
    now = now or utcnow()
    since = now - HEALTH_WINDOW
    found: dict[int, dict[str, Any]] = {cid: {} for cid in connection_ids}
    events = table_of(WebhookEvent)
    recent = events.c.received_at >= since
    stmt = (select(events.c.connection_id, func.max(events.c.received_at),
                   func.count().filter(recent),
                   func.count().filter(recent, events.c.status == WebhookStatus.FAILED))
            .where(events.c.connection_id.in_(list(connection_ids)))
            .group_by(events.c.connection_id))
    for cid, last, accepted, failed in session.execute(stmt):
        found[cid].update(last_received_at=last, accepted=int(accepted), failed=int(failed))
    refused = table_of(WebhookRejection)
    stmt = (select(refused.c.connection_id, func.sum(refused.c.count))
            .where(refused.c.connection_id.in_(list(connection_ids)),
                   refused.c.hour >= since.replace(minute=0, second=0, microsecond=0))
            .group_by(refused.c.connection_id))
    for cid, count in session.execute(stmt):
        found[cid]["rejected"] = int(count or 0)
    newest = (select(refused.c.connection_id, refused.c.last_at, refused.c.last_status,
                     refused.c.last_reason)
              .where(refused.c.connection_id.in_(list(connection_ids)))
              .order_by(refused.c.connection_id, refused.c.hour.desc()))
    for cid, at, status, reason in session.execute(newest):
        if "last_rejected_at" not in found[cid]:
            found[cid].update(last_rejected_at=at, last_rejection=f"{status}: {reason}")
    channels = table_of(NotificationChannel)
    stmt = (select(channels.c.connection_id, func.count(), func.min(channels.c.expires_at))
            .where(channels.c.connection_id.in_(list(connection_ids)))
            .group_by(channels.c.connection_id))
    for cid, count, expires in session.execute(stmt):
        found[cid].update(channels=int(count), channel_expires_at=expires)
    return {cid: WebhookHealth(cid, **values) for cid, values in found.items()}


# ---- notification channels --------------------------------------------------------------------


def verification_secrets(session: Session, box: SecretBox, *, connection_id: int
                         ) -> tuple[str, dict[str, Any], dict[str, str]] | None:
    """What a connection's callbacks are verified against, in one round trip: (provider,
    its secrets, channel_id -> token of its channels), decrypted; None: no such connection."""
    rows = session.execute(_VERIFICATION, {"of": connection_id}).all()
    if not rows:
        return None
    return (str(rows[0].provider), box.open(rows[0].secrets_encrypted),
            _tokens(box, [row for row in rows if row.channel_id is not None]))


def _verification_statement() -> Any:
    connection, channel = table_of(Connection), table_of(NotificationChannel)
    return select(connection.c.provider, connection.c.secrets_encrypted, channel.c.channel_id,
                  channel.c.token_encrypted).select_from(connection.outerjoin(
                      channel, channel.c.connection_id == connection.c.id)).where(
                          connection.c.id == bindparam("of"))


_VERIFICATION = _verification_statement()
"""verification_secrets' statement, built once (the intake reloads a connection's secrets
every few seconds)."""


def channel_tokens(session: Session, box: SecretBox, *, connection_id: int) -> dict[str, str]:
    """channel_id -> token of a connection's channels (decrypted), for verifying callbacks."""
    table = table_of(NotificationChannel)
    return _tokens(box, session.execute(select(table.c.channel_id, table.c.token_encrypted)
                                        .where(table.c.connection_id == connection_id)))


def _tokens(box: SecretBox, rows: Iterable[Any]) -> dict[str, str]:
    """channel_id -> decrypted token of rows of (channel_id, token_encrypted)."""
    return {row.channel_id: str(box.open(row.token_encrypted).get("token", "")) for row in rows}


def channels_of(session: Session, *, connection_id: int) -> list[NotificationChannel]:
    table = table_of(NotificationChannel)
    stmt = select(NotificationChannel).where(table.c.connection_id == connection_id)
    return list(session.scalars(stmt))


def channel_saved_since(session: Session, *, connection_id: int,
                        known: Sequence[NotificationChannel],
                        url: str) -> NotificationChannel | None:
    """A live channel to `url` of the connection that is not among the `known` ones (read
    before): another job subscribed it meanwhile. Locks the connection's row until the
    transaction ends (PostgreSQL; SQLite serializes writers), so of two jobs that subscribed
    at once, the second to get here finds the first's channel."""
    table = table_of(Connection)
    session.execute(select(table.c.id).where(table.c.id == connection_id).with_for_update())
    seen, now = {c.channel_id for c in known}, utcnow()
    return next((c for c in channels_of(session, connection_id=connection_id)
                 if c.channel_id not in seen and c.notify_url == url
                 and c.expires_at > now), None)


def save_channel(
    session: Session, box: SecretBox, *, connection_id: int, channel_id: str, token: str,
    events: Sequence[str], notify_url: str, expires_at: datetime,
) -> NotificationChannel:
    """Add or update a channel; the token is sealed with the SecretBox."""
    table = table_of(NotificationChannel)
    channel = session.scalars(select(NotificationChannel).where(
        table.c.connection_id == connection_id, table.c.channel_id == channel_id)).first()
    now = utcnow()
    if channel is None:
        channel = NotificationChannel(connection_id=connection_id, channel_id=channel_id,
                                      token_encrypted="", notify_url=notify_url,
                                      expires_at=expires_at, created_at=now)
    channel.token_encrypted = box.seal({"token": token})
    channel.events, channel.notify_url = list(events), notify_url
    channel.expires_at, channel.renewed_at = expires_at, now
    session.add(channel)
    session.flush()
    return channel


def delete_channel(session: Session, *, connection_id: int, channel_id: str) -> None:
    table = table_of(NotificationChannel)
    session.execute(table.delete().where(table.c.connection_id == connection_id,
                                         table.c.channel_id == channel_id))


__all__ = [
    "BATCH",
    "LEASE",
    "MAX_ATTEMPTS",
    "MAX_BODY",
    "Claimed",
    "EventBatch",
    "WebhookHealth",
    "apply_changes",
    "channel_tokens",
    "channels_of",
    "claim",
    "delete_channel",
    "mark_processed",
    "pending_connections",
    "record_rejection",
    "record_run",
    "release",
    "save_channel",
    "store_batch",
    "store_delivery",
    "store_events",
    "verification_secrets",
    "webhook_health",
]
