"""A new connection is subscribed to CRM notifications at once (issue F1 item 3), under
both runners: with CRMSYNC_PUBLIC_URL set, POST /connections queues the subscription, a
live channel exists within seconds, and an edit in the CRM reaches the store within
seconds. Before, the hourly renewal was the only thing that subscribed.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine, select

from api.app import create_app as create_api
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from connectors.zoho.sandbox import create_app as create_sandbox
from core.config import Settings
from core.db import session_scope
from core.models import Deal, NotificationChannel, SyncRun
from core.security import SecretBox
from tests.api_support import make_key
from tests.integration.test_webhook_e2e import arq_worker, setup  # noqa: F401 (fixture)
from tests.integration.zoho_helpers import FAST_RETRY, SANDBOX_SECRETS
from workers.context import JobContext


async def eventually(check: Callable[[], Any], seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {seconds}s: {what}")


@asynccontextmanager
async def live_api(engine: Engine, db_url: str, redis_url: str | None, sandbox_app: Any
                   ) -> AsyncIterator[tuple[BackgroundServer, httpx.AsyncClient, int]]:
    """The sandbox and the API on real ports, CRMSYNC_PUBLIC_URL naming the API, a worker
    in arq mode, and a client with an admin key: (sandbox, client, API port)."""
    api_port = free_port()
    key = Fernet.generate_key().decode()
    settings = Settings(database_url=db_url, secret_key=key, redis_url=redis_url,
                        public_url=f"http://127.0.0.1:{api_port}")
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(key), retry=FAST_RETRY)
    admin = make_key(engine, "admin")
    with BackgroundServer(sandbox_app) as sandbox, \
            BackgroundServer(create_api(settings, ctx=ctx), port=api_port) as api:
        async with arq_worker(ctx, redis_url), httpx.AsyncClient(
                base_url=api.url, timeout=30,
                headers={"Authorization": f"Bearer {admin}"}) as client:
            yield sandbox, client, api_port


def run_finished(engine: Engine, run_id: int) -> bool:
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        return run is not None and run.status in ("succeeded", "failed")


def channels(engine: Engine) -> list[NotificationChannel]:
    with session_scope(engine) as session:
        return list(session.scalars(select(NotificationChannel)).all())


async def test_new_connection_is_subscribed_and_edits_flow_within_seconds(setup):  # noqa: F811
    _, engine, db_url, redis_url = setup
    company = generate_company(seed=3, deals=60, accounts=20)
    sandbox_app = create_sandbox(company)
    watch = sandbox_app.state.zoho_watch
    async with live_api(engine, db_url, redis_url, sandbox_app) as (sandbox, client, api_port):
        response = await client.post("/api/v1/connections", json={
            "provider": "zoho", "name": "just added",
            "config": {"accounts_url": sandbox.url}, "secrets": SANDBOX_SECRETS})
        assert response.status_code == 201, response.text
        connection_id = response.json()["id"]

        [channel] = await eventually(lambda: channels(engine), 10, "a stored channel")
        assert channel.connection_id == connection_id
        assert channel.notify_url == (f"http://127.0.0.1:{api_port}/api/v1/webhooks/"
                                      f"zoho/{connection_id}")
        assert channel.channel_id in watch.channels  # live on the CRM's side too

        response = await client.post(f"/api/v1/connections/{connection_id}/sync",
                                     json={"mode": "full"})
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]

        await eventually(lambda: run_finished(engine, run_id), 90, "the first sync")
        deal_id = sorted(company.deals)[0]
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as crm:
            edit = await crm.patch(f"/_sandbox/deals/{deal_id}", json={"amount": 4242.5})
            assert edit.status_code < 300, edit.text

        def amount() -> Any:
            with session_scope(engine) as session:
                deal = session.scalars(select(Deal).where(
                    Deal.remote_id == deal_id)).one()  # type: ignore[arg-type]
                return deal.amount == 4242.5

        await eventually(amount, 10, "the edit in the store")
    assert watch.failed == 0, watch.stats()
    assert len(channels(engine)) == 1  # subscribed once, not once per request
