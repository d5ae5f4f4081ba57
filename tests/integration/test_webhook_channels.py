"""renew_channels against the Zoho sandbox over real HTTP (docs/vendors/zoho.md §5), on SQLite and
PostgreSQL: subscribe, expiry at most a week, renewal before expiry, re-subscribe when the
CRM forgot the channel."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core.config import Settings
from core.db import session_scope
from core.models import NotificationChannel
from core.security import SecretBox
from tests.integration.zoho_helpers import FAST_RETRY, add_connection
from workers.context import JobContext
from workers.jobs import renew_channels

PUBLIC = "https://crmsync.example.com"


def job_context(engine, db_url: str) -> JobContext:
    key = Fernet.generate_key().decode()
    return JobContext(settings=Settings(database_url=db_url, secret_key=key, public_url=PUBLIC),
                      engine=engine, secrets=SecretBox(key), retry=FAST_RETRY)


def channel_row(ctx: JobContext) -> NotificationChannel:
    with session_scope(ctx.engine) as session:
        [row] = session.scalars(select(NotificationChannel)).all()
        return row


def expire_soon(ctx: JobContext, hours: float) -> None:
    with session_scope(ctx.engine) as session:
        [row] = session.scalars(select(NotificationChannel)).all()
        row.expires_at = datetime.now(UTC) + timedelta(hours=hours)


async def test_subscribe_and_renew_against_the_sandbox(engine, db_url):
    app = create_app(generate_company(seed=2, deals=50, accounts=10))
    watch = app.state.zoho_watch
    ctx = job_context(engine, db_url)
    with BackgroundServer(app) as sandbox:
        connection_id = add_connection(ctx, sandbox.url)
        assert (await renew_channels(ctx))["subscribed"] == 1
        row = channel_row(ctx)
        [remote] = watch.live()
        assert remote.channel_id == row.channel_id
        assert remote.notify_url == f"{PUBLIC}/api/v1/webhooks/zoho/{connection_id}"
        assert remote.token == ctx.secrets.open(row.token_encrypted)["token"]
        assert remote.token is not None and len(remote.token) <= 50
        assert sorted(remote.events) == ["Accounts.all", "Deals.all"]
        now = datetime.now(UTC).timestamp()
        assert 6 * 86_400 < remote.expires_at - now <= 7 * 86_400  # §5: at most a week
        assert abs(row.expires_at.timestamp() - remote.expires_at) < 1  # what Zoho granted

        assert (await renew_channels(ctx))["unchanged"] == 1
        remote.expires_at = now + 3600  # the CRM's side is about to expire too
        expire_soon(ctx, 1)
        assert (await renew_channels(ctx))["renewed"] == 1
        [renewed] = watch.live()
        assert renewed.channel_id == row.channel_id
        assert renewed.expires_at - now > 6 * 86_400
        assert channel_row(ctx).expires_at.timestamp() == pytest.approx(renewed.expires_at, abs=1)

        watch.channels.clear()  # the CRM dropped the channel (expired on its side)
        expire_soon(ctx, 1)
        assert (await renew_channels(ctx))["subscribed"] == 1
        [fresh] = watch.live()
        assert fresh.channel_id != row.channel_id == renewed.channel_id
        assert channel_row(ctx).channel_id == fresh.channel_id

        ctx.settings = ctx.settings.model_copy(update={"public_url": "https://moved.example"})
        assert (await renew_channels(ctx))["subscribed"] == 1  # the old URL is unsubscribed
        [moved] = watch.live()
        assert moved.notify_url == f"https://moved.example/api/v1/webhooks/zoho/{connection_id}"
        assert channel_row(ctx).channel_id == moved.channel_id != fresh.channel_id


async def test_two_renewals_at_once_leave_one_channel(engine, db_url):
    """The hourly renewal and the one a new connection queues can run at once (two workers,
    or the in-process schedule's first tick): both find no channel and subscribe. The
    second to save finds the first's channel, keeps it and takes its own back from the CRM,
    so the CRM does not call twice for every change."""
    app = create_app(generate_company(seed=2, deals=20, accounts=5))
    watch = app.state.zoho_watch
    ctx = job_context(engine, db_url)
    with BackgroundServer(app) as sandbox:
        connection_id = add_connection(ctx, sandbox.url)
        results = await asyncio.gather(renew_channels(ctx), renew_channels(ctx, connection_id))
        assert sorted(r["subscribed"] for r in results) == [0, 1]
        assert sorted(r["unchanged"] for r in results) == [0, 1]
        [remote] = watch.live()  # the CRM calls once
        assert channel_row(ctx).channel_id == remote.channel_id
        assert (await renew_channels(ctx))["unchanged"] == 1
