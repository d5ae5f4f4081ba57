"""The stage history backfill as a job (docs/evaluation.md): queued by itself after a
connection's first full sync under the in-process runner (through the scheduler) and under
arq (real Redis, a real worker), resumed where it stopped, and asked for through the API
(POST /connections/{id}/stage-history/backfill: 202, 409 while one runs, 422 without the
capability) against the Zoho sandbox over real HTTP."""

import asyncio

import httpx
import pytest
from arq.connections import RedisSettings
from arq.worker import Worker
from sqlalchemy import func, select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core import history, store
from core.db import session_scope
from core.models import Connection, DealStageChange
from core.types import SyncMode
from tests.api_support import make_key, real_http, running_api
from tests.integration.zoho_helpers import add_connection, make_context
from workers.queue import ArqRunner
from workers.runner import InProcessRunner
from workers.schedule import enqueue_due_syncs
from workers.settings import WorkerSettings

V1 = "/api/v1"


@pytest.fixture
def company():
    return generate_company(seed=5, deals=60, accounts=20)


def crm_moves(engine, connection_id: int) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(DealStageChange).where(
            DealStageChange.connection_id == connection_id,
            DealStageChange.source == "crm")) or 0)


def progress(engine, connection_id: int) -> dict:
    with session_scope(engine) as session:
        return history.backfill_progress(session, connection_id=connection_id)


async def test_the_first_full_sync_queues_the_backfill_in_process(engine, db_url, company):
    live = len(company.deals)
    with BackgroundServer(create_app(company)) as sandbox:
        ctx = make_context(engine, db_url)
        cid = add_connection(ctx, sandbox.url)
        runner = InProcessRunner(ctx)
        try:
            queued = await enqueue_due_syncs(ctx, runner)  # a scheduler tick: a full sync
            assert [(c, m) for c, m, _ in queued] == [(cid, SyncMode.FULL)]
            await runner.wait_idle()
            done = progress(engine, cid)
            assert (done["deals_done"], done["deals_total"], done["finished"],
                    done["last_error"]) == (live, live, True, None)
            moves = crm_moves(engine, cid)
            assert moves >= live  # every deal has at least its creation stage
            first_run = done["started_at"]

            # finished: later full and incremental syncs queue no backfill
            for mode in (SyncMode.FULL, SyncMode.INCREMENTAL):
                await runner.enqueue_sync(cid, mode)
                await runner.wait_idle()
                assert progress(engine, cid)["started_at"] == first_run

            # a backfill that stopped half way resumes after the last deal done
            with session_scope(engine) as session:
                ids = [i for i, _ in history.backfill_batch(session, connection_id=cid,
                                                            after_id=0, limit=live)]
                store.set_state(session, connection_id=cid, stream=history.BACKFILL_STREAM,
                                state={"after_id": ids[39], "finished": False,
                                       "last_error": "boom"})
            assert progress(engine, cid)["deals_done"] == 40
            await runner.enqueue_sync(cid, SyncMode.FULL)
            await runner.wait_idle()
            again = progress(engine, cid)
            assert (again["deals_done"], again["finished"], again["last_error"]) == (
                live, True, None)
            assert again["started_at"] != first_run
            assert crm_moves(engine, cid) == moves  # read again, stored once
        finally:
            await runner.close()


async def test_a_worker_backfills_after_the_first_full_sync(pg_engine, pg_url, redis_url,
                                                            company):
    live = len(company.deals)
    with BackgroundServer(create_app(company)) as sandbox:
        ctx = make_context(pg_engine, pg_url)
        cid = add_connection(ctx, sandbox.url)
        runner = await ArqRunner.connect(ctx, redis_url)
        await runner.enqueue_sync(cid, SyncMode.FULL)

        async def startup(worker_ctx):
            worker_ctx["job"] = ctx

        async def work() -> Worker:
            worker = Worker(functions=WorkerSettings.functions, on_startup=startup,
                            redis_settings=RedisSettings.from_dsn(redis_url), burst=True,
                            poll_delay=0, handle_signals=False)
            await worker.main()
            await worker.close()
            return worker

        worker = await work()
        assert (worker.jobs_complete, worker.jobs_failed) == (2, 0)  # the sync, the backfill
        done = progress(pg_engine, cid)
        assert (done["deals_done"], done["deals_total"], done["finished"]) == (live, live, True)
        moves = crm_moves(pg_engine, cid)
        assert moves >= live

        # one backfill job per connection at a time; the id is free again once it ran
        assert not await runner.backfill_running(cid)
        assert await runner.enqueue_backfill(cid, True) is True
        assert await runner.backfill_running(cid)
        assert await runner.enqueue_backfill(cid) is False
        worker = await work()
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        assert crm_moves(pg_engine, cid) == moves
        # a full sync once the backfill finished queues nothing more
        await runner.enqueue_sync(cid, SyncMode.FULL)
        worker = await work()
        assert (worker.jobs_complete, worker.jobs_failed) == (1, 0)
        await runner.close()


class Gated(httpx.AsyncBaseTransport):
    """Real HTTP that waits while the gate is closed (a backfill held mid-way)."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.gate.set()
        self.inner = real_http()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.gate.wait()
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_api_queues_a_backfill_once_at_a_time(engine, company):
    live = len(company.deals)
    transport = Gated()
    with BackgroundServer(create_app(company)) as sandbox:
        async with running_api(engine, transport) as api:
            ctx = api.app.state.ctx
            cid = add_connection(ctx, sandbox.url)
            url = f"{V1}/connections/{cid}/stage-history"
            never = (await api.get(url)).json()
            assert never == {"connection_id": cid, "running": False, "deals_done": 0,
                             "deals_total": 0, "finished": False, "started_at": None,
                             "finished_at": None, "last_error": None}
            sync = await api.client.post(f"{V1}/connections/{cid}/sync", json={"mode": "full"})
            assert sync.status_code == 202
            await api.app.state.jobs.wait_idle()
            done = (await api.get(url)).json()
            assert (done["deals_done"], done["deals_total"], done["finished"]) == (
                live, live, True)

            transport.gate.clear()  # the next backfill holds at its first CRM call
            queued = await api.client.post(f"{url}/backfill", json={"restart": True})
            assert queued.status_code == 202, queued.text
            body = queued.json()
            assert (body["connection_id"], body["restart"], body["backfill"]["running"]) == (
                cid, True, True)
            busy = await api.client.post(f"{url}/backfill")
            assert busy.status_code == 409 and "already queued or running" in busy.text
            running = (await api.get(url)).json()
            assert running["running"] is True and running["finished"] is False
            transport.gate.set()
            await api.app.state.jobs.wait_idle()
            after = (await api.get(url)).json()
            assert (after["running"], after["finished"], after["deals_done"]) == (
                False, True, live)

            with session_scope(engine) as session:
                fx = Connection(provider="fxiaoke", name="fx",
                                config={"current_open_user_id": "FSUID_1"})
                session.add(fx)
                session.flush()
                fx_id = int(fx.id or 0)
            refused = await api.client.post(f"{V1}/connections/{fx_id}/stage-history/backfill")
            assert refused.status_code == 422 and "keeps no stage history" in refused.text
            assert (await api.get(f"{V1}/connections/{fx_id}/stage-history")).status_code == 422
            assert (await api.client.post(
                f"{V1}/connections/99999/stage-history/backfill")).status_code == 404
            reader = make_key(engine, "read")
            assert (await api.client.post(f"{url}/backfill", headers={
                "Authorization": f"Bearer {reader}"})).status_code == 403
            assert (await api.client.post(f"{url}/backfill", headers={
                "Authorization": ""})).status_code == 401
