"""Sending digests (core/digests/, docs/digests.md): the scheduled ones, under both runners
(workers/schedule.py in-process, a cron in workers/settings.py under arq), and one now
(`crmsync digest send`, the dashboard's test button, the API's test-send).

Each robot gets at most its platform's rate (core.digests.platforms, RATE) through the
process's shared limits, keyed by a hash of its URL (shared by every process with Redis).
A scheduled delivery is one attempt per claim: a transient failure (network, 5xx, the
platforms' rate-limit codes) is attempted again later with back-off, a permanent one
(bad key, signature, keyword) fails at once with its reason on the channel's last_error.
"""

import asyncio
import hashlib
import logging
from datetime import datetime
from typing import Any

import httpx

from connectors.http import build_client
from core.db import session_scope
from core.digests import channels
from core.digests.platforms import platform
from core.digests.render import Body, Outcome, encoded
from core.digests.schedule import latest_moment
from core.errors import ConfigError
from core.models import DigestChannel
from core.types import utcnow
from workers.context import JobContext

log = logging.getLogger("crmsync.digests")
NOW_TRIES = 3
NOW_MAX_WAIT = 10.0  # seconds a send-now waits before trying again; longer waits fail it
RATE_MARGIN = 1.1
"""Each platform counts arrivals, which network jitter brings closer: windows a tenth longer."""


async def post(ctx: JobContext, channel: DigestChannel, body: Body,
               idempotency: str) -> Outcome:
    """Sign and send one message to the channel's robot; what the platform answered."""
    chosen = platform(channel.platform)
    hook = channels.webhook(ctx.secrets, channel)
    host = httpx.URL(hook.url).host
    try:
        await ctx.endpoints.acheck(hook.url, chosen.HOSTS)
    except ConfigError as exc:
        return Outcome(ok=False, error=str(exc))
    robot = hashlib.sha256(hook.url.encode()).hexdigest()[:16]
    limit, window = chosen.RATE
    await ctx.limits.take(f"digest:{robot}", limit, window * RATE_MARGIN)
    url, signed = chosen.request(hook.url, hook.secret, body, utcnow(), idempotency)
    try:
        async with build_client(transport=ctx.transport, timeout=ctx.http_timeout) as client:
            response = await client.post(url, content=encoded(signed),
                                         headers={"Content-Type": "application/json"})
    except httpx.TransportError as exc:  # never the URL: it holds the key
        return Outcome(ok=False, retry=True, error=f"{type(exc).__name__} calling {host}")
    return chosen.outcome(response.status_code, response.headers, response.text)


async def send_due_digests(ctx: JobContext, now: datetime | None = None) -> dict[str, int]:
    """Send every scheduled digest whose moment has come (once per channel and period),
    and the retries whose time has come. For a schedule tick (every minute)."""
    now = now or utcnow()
    zone = ctx.settings.timezone

    def claim() -> list[int]:
        with session_scope(ctx.engine) as session:
            return channels.claim_due(session, now, zone)

    counts = {"sent": 0, "retrying": 0, "failed": 0}
    for delivery_id in await asyncio.to_thread(claim):
        outcome = await _attempt(ctx, delivery_id)
        try:
            with session_scope(ctx.engine) as session:
                channels.finish(session, delivery_id, outcome, now)  # the tick's time
                status = channels.delivery(session, delivery_id).status
        except LookupError:  # the channel was deleted meanwhile (its deliveries with it)
            continue
        counts[{"sent": "sent", "failed": "failed"}.get(status, "retrying")] += 1
        log.info("digest delivery %s: %s (%s)", delivery_id, status, outcome.error,
                 extra={"delivery_id": delivery_id, "error": outcome.error})
    return counts


async def _attempt(ctx: JobContext, delivery_id: int) -> Outcome:
    def compose() -> tuple[DigestChannel, Body, str]:
        with session_scope(ctx.engine) as session:
            row = channels.delivery(session, delivery_id)
            channel = channels.get_channel(session, row.channel_id)
            moment = channels.moment_of(channel, row.period, ctx.settings.timezone)
            body = channels.message(session, ctx.settings, channel, moment)
            return channel, body, f"crmsync-digest-{channel.id}-{row.period}"

    try:
        channel, body, key = await asyncio.to_thread(compose)
        return await post(ctx, channel, body, key)
    except ValueError as exc:  # no rate for a currency, secrets no key opens: the admin's
        return Outcome(ok=False, error=f"cannot build the digest: {exc}"[:300])
    except Exception as exc:  # the store busy...: try again later
        return Outcome(ok=False, retry=True, error=f"{type(exc).__name__}: {exc}"[:300])


async def send_now(ctx: JobContext, ref: str, *, test: bool = False) -> Outcome:
    """Send the channel's digest of its latest scheduled period now (`test`: titled as a
    test), retrying transient failures a few times; recorded on the channel."""
    now = utcnow()

    def compose() -> tuple[DigestChannel, Body, str]:
        with session_scope(ctx.engine) as session:
            channel = channels.find_channel(session, ref)
            moment = latest_moment(channels.schedule_of(channel), now, ctx.settings.timezone)
            body = channels.message(session, ctx.settings, channel, moment, test=test)
            return channel, body, f"crmsync-digest-{channel.id}-now-{now.timestamp():.0f}"

    channel, body, key = await asyncio.to_thread(compose)
    outcome = Outcome(ok=False)
    for attempt in range(1, NOW_TRIES + 1):
        outcome = await post(ctx, channel, body, key)
        wait = outcome.wait if outcome.wait is not None else float(2 ** attempt)
        if outcome.ok or not outcome.retry or attempt == NOW_TRIES or wait > NOW_MAX_WAIT:
            break
        await asyncio.sleep(wait)
    with session_scope(ctx.engine) as session:
        channels.record_attempt(session, channels.get_channel(session, int(channel.id or 0)),
                                outcome, utcnow())
    return outcome


def preview(ctx: JobContext, ref: str) -> dict[str, Any]:
    """The exact message body the channel's robot would get now (unsigned; no sending)."""
    with session_scope(ctx.engine) as session:
        channel = channels.find_channel(session, ref)
        moment = latest_moment(channels.schedule_of(channel), utcnow(), ctx.settings.timezone)
        return channels.message(session, ctx.settings, channel, moment)
