"""What a worker process keeps between the jobs of a connection (workers.connect, the job
context's ClientPool, workers.limits' token copies), on PostgreSQL and Redis against the
Zoho sandbox over HTTP: reused while nothing changed, replaced when the connection's
settings change or the CRM refuses a token (one refresh), never shared between two
"processes" (job contexts) but through Redis."""

import time

from sqlalchemy import func, select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app as create_sandbox
from core import webhooks
from core.db import session_scope
from core.models import Connection, WebhookEvent
from core.types import WebhookStatus
from tests.integration.zoho_helpers import SANDBOX_SECRETS, add_connection, make_context
from workers.connect import load_connection, open_connector
from workers.context import JobContext
from workers.jobs import process_webhook_event
from workers.limits import PREFIX, RedisLimits

_events = iter(range(1_000_000))


async def webhook_job(ctx: JobContext, connection_id: int, deal_ids: list[str]) -> None:
    """One job of two Deals notifications; every event of it processed."""
    with session_scope(ctx.engine) as session:
        webhooks.store_events(session, connection_id=connection_id, provider="zoho", events=[
            (f"e{next(_events)}", {"module": "Deals", "ids": deal_ids[:2], "operation": "update",
                                   "server_time": int(time.time() * 1000)})])
    assert await process_webhook_event(ctx, connection_id=connection_id) == 1
    with session_scope(ctx.engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.status != WebhookStatus.PROCESSED)) == 0


def second_process(ctx: JobContext, redis_url: str) -> JobContext:
    """Another worker process of the same deployment: same store and key, own memory."""
    other = JobContext(settings=ctx.settings, engine=ctx.engine, secrets=ctx.secrets,
                       retry=ctx.retry)
    other.limits = RedisLimits(redis_url, ctx.secrets)
    return other


async def test_a_connection_s_jobs_reuse_client_settings_and_token(pg_engine, pg_url, redis_url):
    company = generate_company(seed=5, deals=30)
    sandbox_app = create_sandbox(company)
    state = sandbox_app.state.zoho
    deal_ids = sorted(company.deals)
    a = make_context(pg_engine, pg_url)
    a.limits = RedisLimits(redis_url, a.secrets)
    b = second_process(a, redis_url)
    with BackgroundServer(sandbox_app) as sandbox:
        cid = add_connection(a, sandbox.url)
        await webhook_job(a, cid, deal_ids)
        loaded = load_connection(a, cid)
        assert load_connection(a, cid) is loaded  # the row did not change: not decrypted again
        assert a.clients.idle((cid, loaded.version)) == 1
        assert state.token_grants == 1

        # the next job: the same client, and the process's copy of the token (Redis's is gone)
        await a.limits.redis.delete(*await a.limits.redis.keys(PREFIX + "token:*"))
        async with open_connector(a, cid) as source:
            assert a.clients.idle((cid, loaded.version)) == 0  # leased to this job
            assert "secret" not in repr(loaded) and "sandbox-refresh" not in repr(loaded)
            del source
        await webhook_job(a, cid, deal_ids)
        assert state.token_grants == 1 and a.clients.idle((cid, loaded.version)) == 1

        # the CRM refuses every token: one refresh, shared through Redis with process b
        state.expire_tokens()
        await webhook_job(a, cid, deal_ids)
        assert state.token_grants == 2
        await webhook_job(b, cid, deal_ids)
        assert state.token_grants == 2  # b read the token a got

        # b refreshes after the next refusal; a's copy is then refused too, and a takes b's
        # token from Redis instead of asking the CRM for one more (10 per 10 minutes,
        # docs/vendors/zoho.md §1)
        state.expire_tokens()
        await webhook_job(b, cid, deal_ids)
        assert state.token_grants == 3
        await webhook_job(a, cid, deal_ids)
        assert state.token_grants == 3

        # new secrets: the next job decrypts them, on a client of the new version
        with session_scope(a.engine) as session:
            row = session.get(Connection, cid)
            assert row is not None
            row.secrets_encrypted = a.secrets.seal(
                {**SANDBOX_SECRETS, "client_secret": "a-new-secret"})
        changed = load_connection(a, cid)
        assert changed is not loaded and changed.version != loaded.version
        assert changed.secrets.client_secret.get_secret_value() == "a-new-secret"  # type: ignore[attr-defined]
        assert a.clients.idle((cid, changed.version)) == 0
        await a.aclose()
        await b.aclose()
        assert a.clients.idle((cid, loaded.version)) == 0  # closed at shutdown
