"""Digest channels (the chat robots digests go to) and their deliveries.

A channel's webhook URL and signing secret are sealed with the SecretBox, like a
connection's secrets, and never leave this module unsealed except to the sender
(`webhook`). `public` is what the API, CLI and dashboard show: the URL's host only.

Scheduled sending is exactly once per channel and period: `claim_due` inserts the
period's delivery row (unique per channel and period: a second worker, or the same one
after a restart, finds it there) and leases pending rows to one caller at a time; the
caller reports each attempt with `finish`. Callers own the transaction.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col

from core.config import Settings
from core.digests.content import LANGUAGES, SECTIONS, build_digest
from core.digests.platforms import platform
from core.digests.render import Body, Outcome
from core.digests.schedule import Moment, Schedule, due_moment, latest_moment
from core.models import DigestChannel, DigestDelivery, table_of
from core.security import SecretBox
from core.types import utcnow

LEASE = timedelta(minutes=5)
"""A claimed delivery whose worker went silent this long is attempted again."""
MAX_ATTEMPTS = 5
FIRST_BACKOFF = timedelta(seconds=30)  # doubles per attempt when the platform names no wait
FIELDS = ("name", "platform", "language", "cadence", "day", "hour", "team", "sections",
          "enabled")


class ChannelError(ValueError):
    """A channel that cannot be saved as given (nothing was changed)."""


class ChannelNotFound(LookupError):
    pass


@dataclass(frozen=True)
class Webhook:
    url: str
    secret: str | None


def create_channel(session: Session, box: SecretBox, *, url: str, secret: str | None = None,
                   **fields: Any) -> DigestChannel:
    channel = DigestChannel(**{**{"sections": list(SECTIONS)}, **fields})
    _check(session, channel)
    _seal(box, channel, url, secret)
    session.add(channel)
    session.flush()
    return channel


def update_channel(session: Session, box: SecretBox, channel_id: int, *,
                   url: str | None = None, secret: str | None = None,
                   **changes: Any) -> DigestChannel:
    """Change the given fields; a new `url` (or `secret`) replaces the sealed ones."""
    channel = get_channel(session, channel_id)
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ChannelError(f"unknown fields: {', '.join(sorted(unknown))}")
    for name, value in changes.items():
        setattr(channel, name, value)
    _check(session, channel)
    if url is not None or secret is not None:
        old = webhook(box, channel)
        _seal(box, channel, url or old.url, secret if secret is not None else old.secret)
    channel.updated_at = utcnow()
    session.add(channel)
    session.flush()
    return channel


def delete_channel(session: Session, channel_id: int) -> None:
    session.delete(get_channel(session, channel_id))
    session.flush()


def get_channel(session: Session, channel_id: int) -> DigestChannel:
    channel = session.get(DigestChannel, channel_id)
    if channel is None:
        raise ChannelNotFound(f"digest channel {channel_id} not found")
    return channel


def find_channel(session: Session, ref: str) -> DigestChannel:
    """A channel by id or by name."""
    if ref.isdigit():
        return get_channel(session, int(ref))
    found = session.scalars(select(DigestChannel).where(col(DigestChannel.name) == ref)).first()
    if found is None:
        raise ChannelNotFound(f"digest channel {ref!r} not found")
    return found


def channels(session: Session) -> list[DigestChannel]:
    return list(session.scalars(select(DigestChannel).order_by(col(DigestChannel.id))))


def webhook(box: SecretBox, channel: DigestChannel) -> Webhook:
    sealed = box.open(channel.webhook_encrypted, f"digest channel {channel.name}")
    return Webhook(str(sealed.get("url", "")), sealed.get("secret") or None)


def public(box: SecretBox, channel: DigestChannel) -> dict[str, Any]:
    """The channel as shown anywhere: no URL path or query (the key is in them), no secret."""
    hook = webhook(box, channel)
    return {"id": channel.id, **{name: getattr(channel, name) for name in FIELDS},
            "host": urlsplit(hook.url).hostname, "signed": hook.secret is not None,
            "created_at": channel.created_at, "updated_at": channel.updated_at,
            "last_sent_at": channel.last_sent_at, "last_error": channel.last_error}


def schedule_of(channel: DigestChannel) -> Schedule:
    return Schedule(channel.cadence, channel.day, channel.hour)


def _check(session: Session, channel: DigestChannel) -> None:
    name = (channel.name or "").strip()
    if not 1 <= len(name) <= 200:
        raise ChannelError("name must be 1 to 200 characters")
    channel.name = name
    try:
        platform(channel.platform)
        schedule_of(channel)
    except ValueError as exc:
        raise ChannelError(str(exc)) from None
    if channel.language not in LANGUAGES:
        raise ChannelError(f"language must be one of {', '.join(LANGUAGES)}")
    if not channel.sections or set(channel.sections) - set(SECTIONS):
        raise ChannelError(f"sections must be some of {', '.join(SECTIONS)}")
    channel.sections = [s for s in SECTIONS if s in channel.sections]
    if channel.team is not None and not channel.team.strip():
        channel.team = None
    same = select(col(DigestChannel.id)).where(col(DigestChannel.name) == name)
    if channel.id is not None:
        same = same.where(col(DigestChannel.id) != channel.id)
    if session.scalars(same).first() is not None:
        raise ChannelError(f"a digest channel named {name!r} exists already")


def _seal(box: SecretBox, channel: DigestChannel, url: str, secret: str | None) -> None:
    chosen = platform(channel.platform)
    url = url.strip()
    try:
        chosen.check_url(url)
    except ValueError as exc:
        raise ChannelError(str(exc)) from None
    if secret and not chosen.SIGNED:
        raise ChannelError(f"{channel.platform} robots have no signing secret: the URL "
                           "is the credential")
    channel.webhook_encrypted = box.seal({"url": url, "secret": secret or None})


# -- scheduled deliveries -----------------------------------------------------------------


def claim_due(session: Session, now: datetime, zone: str) -> list[int]:
    """Record the delivery of every enabled channel whose scheduled moment has come (once
    per period), then lease the pending deliveries whose time has come to this caller;
    returns their ids. Commit before sending, so the lease is seen by other workers."""
    table = table_of(DigestDelivery)
    dialect = session.get_bind().dialect.name
    insert = pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)
    for channel in session.scalars(select(DigestChannel)
                                   .where(col(DigestChannel.enabled).is_(True))):
        moment = due_moment(schedule_of(channel), now, zone, channel.created_at)
        if moment is not None:
            session.execute(insert.values(
                channel_id=channel.id, period=moment.period, status="pending", attempts=0,
                next_attempt_at=now, created_at=now,
            ).on_conflict_do_nothing(index_elements=["channel_id", "period"]))
    claimable = and_(table.c.status == "pending", table.c.next_attempt_at <= now,
                     or_(table.c.claimed_at.is_(None), table.c.claimed_at < now - LEASE))
    ids = list(session.scalars(select(table.c.id).where(claimable).order_by(table.c.id)))
    claimed = []
    for delivery_id in ids:  # one UPDATE each: a concurrent claimer gets 0 rows
        result = session.execute(update(table).where(table.c.id == delivery_id, claimable)
                                 .values(claimed_at=now))
        if getattr(result, "rowcount", 0) == 1:
            claimed.append(delivery_id)
    return claimed


def delivery(session: Session, delivery_id: int) -> DigestDelivery:
    found = session.get(DigestDelivery, delivery_id)
    if found is None:
        raise LookupError(f"digest delivery {delivery_id} not found")
    return found


def finish(session: Session, delivery_id: int, outcome: Outcome, now: datetime) -> None:
    """Record an attempt: sent; pending again later (a transient failure, up to
    MAX_ATTEMPTS); or failed. The channel's last_sent_at / last_error follow."""
    row = delivery(session, delivery_id)
    row.attempts += 1
    row.claimed_at = None
    row.error = outcome.error
    if outcome.ok:
        row.status, row.sent_at = "sent", now
    elif outcome.retry and row.attempts < MAX_ATTEMPTS:
        wait = timedelta(seconds=outcome.wait) if outcome.wait is not None \
            else FIRST_BACKOFF * 2 ** (row.attempts - 1)
        row.next_attempt_at = now + wait
    else:
        row.status = "failed"
    session.add(row)
    record_attempt(session, get_channel(session, row.channel_id), outcome, now)


def record_attempt(session: Session, channel: DigestChannel, outcome: Outcome,
                   now: datetime) -> None:
    """The channel's last_sent_at / last_error after a send (scheduled, test or manual)."""
    if outcome.ok:
        channel.last_sent_at, channel.last_error = now, None
    else:
        channel.last_error = outcome.error
    session.add(channel)
    session.flush()


def deliveries(session: Session, channel_id: int) -> Sequence[DigestDelivery]:
    return list(session.scalars(select(DigestDelivery)
                                .where(col(DigestDelivery.channel_id) == channel_id)
                                .order_by(col(DigestDelivery.id))))


# -- what a channel's digest says ---------------------------------------------------------


def moment_of(channel: DigestChannel, period: str, zone: str) -> Moment:
    """The scheduled moment a delivery's period names (its days covered)."""
    at = datetime.combine(date.fromisoformat(period), time(channel.hour), tzinfo=ZoneInfo(zone))
    return latest_moment(schedule_of(channel), at, zone)


def message(session: Session, settings: Settings, channel: DigestChannel, moment: Moment,
            *, test: bool = False) -> Body:
    """The platform's message body (unsigned) of the channel's digest for `moment`."""
    digest = build_digest(session, settings, language=channel.language,
                          cadence=channel.cadence, start=moment.start, end=moment.end,
                          team=channel.team, sections=tuple(channel.sections), test=test)
    return platform(channel.platform).message(digest)
