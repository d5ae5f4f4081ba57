"""HubSpot webhooks end to end, over real HTTP (docs/vendors/hubspot.md §8): the sandbox's
app posts v3-signed event batches to our API (under uvicorn) when deals change; the job
re-reads them and the store has them within seconds. Forged, unsigned and stale
deliveries get 401 and store nothing.

Twice: the embedded default (SQLite, in-process jobs) and PostgreSQL + Redis with an arq worker.
"""

import time

import httpx
import orjson
from cryptography.fernet import Fernet

from api.app import create_app as create_api
from connectors.hubspot.wire import signature_v3
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from core.config import Settings
from core.security import SecretBox
from tests.integration.test_fxiaoke_webhook_e2e import _all_processed, deal_row, events, wait_for
from tests.integration.test_hubspot_sync_e2e import (
    add_connection,
    assert_store_equals_sandbox,
    control,
    serve,
    state_of,
)
from tests.integration.test_webhook_e2e import arq_worker, setup  # noqa: F401
from tests.integration.zoho_helpers import FAST_RETRY, sync
from workers.context import JobContext


async def test_signed_batches_update_deals_within_seconds_forged_ones_are_refused(setup):  # noqa: F811
    _, engine, db_url, redis_url = setup
    company = generate_company(seed=7, deals=300, accounts=40)
    api_port = free_port()
    key = Fernet.generate_key().decode()
    settings = Settings(database_url=db_url, secret_key=key, redis_url=redis_url,
                        public_url=f"http://127.0.0.1:{api_port}")
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(key), retry=FAST_RETRY)
    with serve(company) as sandbox:
        state = state_of(sandbox)
        connection_id = add_connection(ctx, sandbox.url)
        await sync(ctx, connection_id, "full")
        hook = f"{settings.public_url}/api/v1/webhooks/hubspot/{connection_id}"
        control(sandbox, "POST", "/hubspot/webhooks", json={"url": hook})

        with BackgroundServer(create_api(settings, ctx=ctx), port=api_port):
            async with arq_worker(ctx, redis_url):
                ids = sorted(company.deals)
                control(sandbox, "PATCH", f"/deals/{ids[3]}", json={"amount": "4321.09"})
                took = await wait_for(lambda: (row := deal_row(engine, connection_id, ids[3]))
                                      is not None and str(row.amount) == "4321.09")
                assert took < 10.0
                control(sandbox, "DELETE", f"/deals/{ids[5]}")  # deal.deletion: a tombstone
                control(sandbox, "POST", "/hubspot/merge", json={  # deal.merge
                    "object": "deals", "primary": ids[6], "merged": ids[7]})
                for gone in (ids[5], ids[7]):
                    await wait_for(lambda g=gone: (row := deal_row(engine, connection_id, g))
                                   is not None and row.deleted_at is not None)

                before = events(engine)
                body = orjson.dumps([{"eventId": 999, "appId": 54321, "portalId": 62515,
                                      "occurredAt": int(time.time() * 1000),
                                      "subscriptionType": "deal.deletion",
                                      "objectId": int(ids[9])}])
                now = str(int(time.time() * 1000))
                stale = str(int(time.time() * 1000) - 6 * 60 * 1000)
                async with httpx.AsyncClient() as client:
                    for secret, stamp in (("a-guessed-secret", now),
                                          (state.client_secret, stale)):
                        refused = await client.post(hook, content=body, headers={
                            "X-HubSpot-Signature-v3": signature_v3(secret, "POST", hook, body,
                                                                   stamp),
                            "X-HubSpot-Request-Timestamp": stamp})
                        assert refused.status_code == 401, refused.text
                        assert state.client_secret not in refused.text
                    unsigned = await client.post(hook, content=body)
                    assert unsigned.status_code == 401
                assert events(engine) == before
                assert deal_row(engine, connection_id, ids[9]).deleted_at is None  # type: ignore[union-attr]

                state.outbox.wait(10)
                assert {e["status"] for e in state.outbox.log} == {"delivered"}
                await wait_for(lambda: _all_processed(engine))
    assert_store_equals_sandbox(engine, connection_id, state,
                                {ids[7]: company.deals[ids[6]].modified_at})
