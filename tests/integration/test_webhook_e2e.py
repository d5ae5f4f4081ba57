"""Zoho notifications end to end, over real HTTP: the sandbox fires them when its data changes,
the API (under uvicorn) takes them in, and the jobs bring the store to the sandbox's state.

Twice: PostgreSQL + Redis with an arq worker, and the embedded default (SQLite, in-process).
"""

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from arq.connections import RedisSettings
from arq.worker import Worker
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from api.app import create_app as create_api
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from connectors.zoho.sandbox import create_app as create_sandbox
from core.config import Settings
from core.db import session_scope
from core.models import NotificationChannel, SyncRun, WebhookEvent
from core.security import SecretBox
from tests.integration.zoho_helpers import (
    FAST_RETRY,
    add_connection,
    assert_store_equals_sandbox,
    sync,
)
from workers.context import JobContext
from workers.jobs import renew_channels
from workers.settings import LANES, worker_lanes


@pytest.fixture(params=["embedded", "arq"])
def setup(request: pytest.FixtureRequest) -> tuple[str, Engine, str, str | None]:
    if request.param == "embedded":
        return ("embedded", request.getfixturevalue("sqlite_engine"),
                request.getfixturevalue("sqlite_url"), None)
    return ("arq", request.getfixturevalue("pg_engine"), request.getfixturevalue("pg_url"),
            request.getfixturevalue("redis_url"))


@asynccontextmanager
async def arq_worker(ctx: JobContext, redis_url: str | None,
                     lanes: Sequence[str] = LANES) -> AsyncIterator[None]:
    """A worker processing concurrently (arq mode), as `crmsync worker [--lanes]` would."""
    if redis_url is None:
        yield
        return

    workers = worker_lanes(ctx, RedisSettings.from_dsn(redis_url), lanes, poll_delay=0.05)
    tasks = [asyncio.create_task(lane.main()) for lane in workers]
    try:
        yield
    finally:  # let queued (deferred) jobs finish, then stop
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and await busy(workers):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for lane in workers:
            await lane.close()


async def busy(lanes: list[Worker]) -> bool:
    """Whether a lane runs a job or has one queued."""
    for lane in lanes:
        if lane.pool is not None and (lane.tasks or await lane.pool.zcard(lane.queue_name)):
            return True
    return False


def counts(engine: Engine) -> dict[str, int]:
    with session_scope(engine) as session:
        rows = session.execute(select(WebhookEvent.status, func.count())  # type: ignore[call-overload]
                               .group_by(WebhookEvent.status)).all()
    return dict(rows)


async def change_the_crm(client: httpx.AsyncClient, company: Any) -> None:
    """About 1,000 changes through the control API: edits (many deals twice), new deals,
    deletions of deals that were just edited, account edits and account deletions."""
    rng = random.Random(5)
    deals = sorted(company.deals)
    stages = [s.name for s in company.stages if s.pipeline == company.stages[0].pipeline]

    async def call(method: str, url: str, **kwargs: Any) -> None:
        response = await client.request(method, url, **kwargs)
        assert response.status_code < 300, response.text

    for i in range(560):
        deal_id = deals[i % 280]
        change = ({"stage": rng.choice(stages)} if i % 2 else
                  {"amount": round(rng.uniform(100, 90_000), 2)})
        await call("PATCH", f"/_sandbox/deals/{deal_id}", json=change)
    for i in range(150):
        await call("POST", "/_sandbox/deals", json={"name": f"Hook deal {i}", "amount": 100 + i})
    for deal_id in deals[:120]:  # edited just before: their edit events find nothing
        await call("DELETE", f"/_sandbox/deals/{deal_id}")
    accounts = sorted(company.accounts)
    for account_id in accounts[:100]:
        await call("PATCH", f"/_sandbox/accounts/{account_id}", json={"industry": "Retail"})
    for account_id in accounts[-3:]:  # deletes the account and the deals under it
        await call("DELETE", f"/_sandbox/accounts/{account_id}")
    await call("POST", "/_sandbox/mutate", json={"fraction": 0.1, "seed": 2})


async def test_1000_notifications_processed_exactly_once_store_equals_sandbox(setup):
    _, engine, db_url, redis_url = setup
    company = generate_company(seed=11, deals=450, accounts=120)
    sandbox_app = create_sandbox(company)
    watch = sandbox_app.state.zoho_watch
    watch.duplicate_rate = 0.1  # a vendor redelivering some notifications
    api_port = free_port()
    key = Fernet.generate_key().decode()
    settings = Settings(database_url=db_url, secret_key=key, redis_url=redis_url,
                        public_url=f"http://127.0.0.1:{api_port}")
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(key), retry=FAST_RETRY)
    with BackgroundServer(sandbox_app) as sandbox:
        connection_id = add_connection(ctx, sandbox.url)
        await sync(ctx, connection_id, "full")
        assert_store_equals_sandbox(engine, connection_id, company)
        assert (await renew_channels(ctx))["subscribed"] == 1
        with session_scope(engine) as session:
            [channel] = session.scalars(select(NotificationChannel)).all()
        assert channel.channel_id in watch.channels

        with BackgroundServer(create_api(settings, ctx=ctx), port=api_port):
            async with arq_worker(ctx, redis_url), httpx.AsyncClient(
                    base_url=sandbox.url, timeout=30) as client:
                await change_the_crm(client, company)
                unique = await settle(engine, watch)

    assert watch.failed == 0 and watch.sent >= 1000, watch.stats()
    assert watch.sent > unique  # duplicates were delivered
    with session_scope(engine) as session:
        stored = session.scalars(select(WebhookEvent)).all()
        runs = session.scalars(select(SyncRun).where(SyncRun.mode == "webhook")).all()
    assert len(stored) == unique
    assert {(e.status, e.attempts, e.error) for e in stored} == {("processed", 1, None)}
    assert runs and all(r.status == "succeeded" for r in runs)
    assert sum(r.counts["events"] for r in runs if r.counts) == unique
    assert sum(r.api_calls for r in runs) >= len(runs)
    assert_store_equals_sandbox(engine, connection_id, company)


async def settle(engine: Engine, watch: Any, timeout: float = 180) -> int:
    """Wait until every notification was answered and every stored event processed;
    returns how many distinct notifications were sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        unique = len({(b["channel_id"], b["module"], b["operation"], tuple(sorted(b["ids"])),
                       b["server_time"]) for b in list(watch.log)})
        state = counts(engine)
        if watch.pending() == 0 and state.get("processed", 0) == unique \
                and sum(state.values()) == unique:
            return unique
        await asyncio.sleep(0.2)
    raise AssertionError(f"not settled: {watch.stats()} {counts(engine)}")
