"""Fxiaoke callbacks end to end, over real HTTP (docs/vendors/fxiaoke.md §5): the sandbox
fires a signed, encrypted callback to our API (under uvicorn) when a deal changes; the job
re-reads the deal with /data/get and the store has it within seconds. A forged callback
gets 401, stores nothing.

Twice: the embedded default (SQLite, in-process jobs) and PostgreSQL + Redis with an arq worker.
"""

import asyncio
import base64
import time
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func, select

from api.app import create_app as create_api
from connectors.fxiaoke import callbacks
from connectors.fxiaoke.sandbox.wire import hex_id
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from core.config import Settings
from core.db import session_scope
from core.models import Deal as StoredDeal
from core.models import SyncRun, WebhookEvent
from core.security import SecretBox
from tests.integration.test_fxiaoke_sync_e2e import (
    add_connection,
    assert_store_equals_sandbox,
    control,
    expected,
    serve,
    state_of,
)
from tests.integration.test_fxiaoke_sync_e2e import fast_budget as fast_budget
from tests.integration.test_webhook_e2e import arq_worker, setup  # noqa: F401
from tests.integration.zoho_helpers import FAST_RETRY, sync
from workers.context import JobContext

ATTACKER_KEY = base64.b64encode(b"fake-key-of-an-attacker-32-bytes").decode()


def deal_row(engine: Engine, connection_id: int, remote_id: str) -> StoredDeal | None:
    with session_scope(engine) as session:
        row = session.scalars(select(StoredDeal).where(
            StoredDeal.connection_id == connection_id,  # type: ignore[arg-type]
            StoredDeal.remote_id == remote_id)).first()  # type: ignore[arg-type]
        if row is not None:
            session.expunge(row)
        return row


def events(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


async def wait_for(check: Any, timeout: float = 60.0) -> float:
    """Seconds until check() holds (AssertionError after `timeout`: the harness's
    patience; a test asserts its claim, "within seconds", on what this returns)."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_a_signed_callback_updates_a_deal_within_seconds_a_forged_one_is_refused(setup):  # noqa: F811
    _, engine, db_url, redis_url = setup
    company = generate_company(seed=7, deals=200, accounts=30)
    api_port = free_port()
    key = Fernet.generate_key().decode()
    settings = Settings(database_url=db_url, secret_key=key, redis_url=redis_url,
                        public_url=f"http://127.0.0.1:{api_port}")
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(key), retry=FAST_RETRY)
    with serve(company) as sandbox:
        state = state_of(sandbox)
        connection_id = add_connection(ctx, sandbox.url)
        run = await sync(ctx, connection_id, "full")
        with session_scope(engine) as session:
            assert (session.get(SyncRun, run) or SyncRun()).status == "succeeded"
        hook = f"{settings.public_url}/api/v1/webhooks/fxiaoke/{connection_id}"
        control(sandbox, "PATCH", "/fxiaoke", json={"callback_url": hook})

        with BackgroundServer(create_api(settings, ctx=ctx), port=api_port):
            async with arq_worker(ctx, redis_url):
                deal_id = sorted(company.deals)[3]
                remote = hex_id(deal_id)
                control(sandbox, "PATCH", f"/deals/{deal_id}", json={"amount": "4321.09"})
                want = expected(state)[0][remote]["amount"]
                took = await wait_for(lambda: (row := deal_row(engine, connection_id, remote))
                                      is not None and row.amount == want)
                assert took < 10.0

                gone = sorted(company.deals)[5]  # voided through the UI: a tombstone
                control(sandbox, "DELETE", f"/deals/{gone}")
                await wait_for(lambda: (row := deal_row(engine, connection_id, hex_id(gone)))
                               is not None and row.deleted_at is not None)

                before = events(engine)
                forged = callbacks.build_callback(
                    {"eventType": "update", "apiName": "NewOpportunityObj", "dataId": remote,
                     "messageId": "FORGED0001"}, ATTACKER_KEY,
                    enterprise_account=state.enterprise_account, message_id="FORGED0001")
                async with httpx.AsyncClient() as client:
                    refused = await client.post(hook, json=forged)
                    assert refused.status_code == 401, refused.text
                    assert state.aes_key not in refused.text
                assert events(engine) == before

                state.wait_for_callbacks()
                assert [e["status"] for e in state.callback_log] == ["delivered"] * len(
                    state.callback_log)
                assert all(e["attempts"] == 1 for e in state.callback_log)
                await wait_for(lambda: _all_processed(engine))
    assert_store_equals_sandbox(engine, connection_id, state)


def _all_processed(engine: Engine) -> bool:
    with session_scope(engine) as session:
        statuses = set(session.scalars(select(WebhookEvent.status)))  # type: ignore[call-overload]
    return statuses == {"processed"}
