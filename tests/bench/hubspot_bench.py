"""HubSpot sync benchmark: full and incremental syncs from the HubSpot sandbox.

Run: python -m tests.bench.hubspot_bench [--deals 20000] [--db sqlite,postgresql]

For each database it starts the HubSpot sandbox in its own process (zero latency,
`crmsync sandbox hubspot`), runs a full sync of N deals (the sandbox's default company:
N/10 companies, some archived) at each burst limit (§7: 190 per 10 s for
Professional; 1,000 to see crmsync's own speed) and prints deals/s and the API calls
against the minimum (one list page per 100 deals and companies,
docs/vendors/hubspot.md §2). Then 1% of the
deals change (one mass update: edits, additions, deletions in one second) and an
incremental sync (search, §3) prints its time and calls.
"""

import argparse
import asyncio
import math
import os
import time

import httpx
from cryptography.fernet import Fernet

from core import store
from core.config import Settings
from core.db import make_engine, session_scope
from core.models import Connection, SyncRun
from core.security import SecretBox
from tests.bench.common import fresh_database
from tests.bench.sync_bench import start_sandbox
from workers.context import JobContext
from workers.jobs import sync_connection

# owners (active, archived), pipelines, company currency, exchange rates, archived deals
# and companies (one page each at these sizes)
METADATA_CALLS = 7


async def run(ctx: JobContext, connection_id: int, mode: str) -> tuple[float, SyncRun]:
    with session_scope(ctx.engine) as session:
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    started = time.perf_counter()
    await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode=mode)
    took = time.perf_counter() - started
    with session_scope(ctx.engine) as session:
        row = session.get(SyncRun, run_id)
        assert row is not None and row.status == "succeeded", row and row.error
        session.expunge(row)
    return took, row


def bench(kind: str, deals: int, burst: int) -> None:
    proc, sandbox = start_sandbox(deals, 0.0, "hubspot", "--burst-limit", str(burst))
    try:
        url = fresh_database(kind, "hubspot_bench")
        key = Fernet.generate_key().decode()
        engine = make_engine(url)
        ctx = JobContext(settings=Settings(database_url=url, secret_key=key,
                                           allow_endpoints="127.0.0.1"),
                         engine=engine, secrets=SecretBox(key))
        with session_scope(engine) as session:
            connection = Connection(provider="hubspot", name="bench", config={
                "base_url": sandbox, "burst_limit": burst}, secrets_encrypted=ctx.secrets.seal(
                {"access_token": "pat-na1-sandbox-private-app-token"}))
            session.add(connection)
            session.flush()
            connection_id = int(connection.id or 0)
        stats = httpx.get(f"{sandbox}/_sandbox/stats").json()
        took, full = asyncio.run(run(ctx, connection_id, "full"))
        minimum = math.ceil(stats["deals"] / 100) + math.ceil(stats["accounts"] / 100)
        print(f"{kind}, burst limit {burst} per 10 s: full sync of {stats['deals']:,} deals + "
              f"{stats['accounts']:,} companies: {took:.1f} s, "
              f"{stats['deals'] / took:,.0f} deals/s, api_calls "
              f"{full.api_calls} (minimum {minimum} list pages + {METADATA_CALLS} metadata = "
              f"{minimum + METADATA_CALLS})")
        httpx.post(f"{sandbox}/_sandbox/mutate", json={"fraction": 0.01, "seed": 1})
        took, inc = asyncio.run(run(ctx, connection_id, "incremental"))
        print(f"{kind}: incremental after 1% changed: {took:.2f} s, {inc.api_calls} API calls")
        engine.dispose()
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--burst-limit", default="190,1000",
                        help="the account's requests per 10 s (§7), one run each")
    args = parser.parse_args()
    os.environ.setdefault("CRMSYNC_ALLOW_ENDPOINTS", "127.0.0.1")
    for burst in (int(b) for b in args.burst_limit.split(",")):
        for kind in args.db.split(","):
            bench(kind, args.deals, burst)


if __name__ == "__main__":
    main()
