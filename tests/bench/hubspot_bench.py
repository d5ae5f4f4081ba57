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

import httpx

from tests.bench.common import add_connection, bench_context, fresh_database, timed_sync
from tests.bench.sync_bench import start_sandbox

# owners (active, archived), pipelines, company currency, exchange rates, archived deals
# and companies (one page each at these sizes)
METADATA_CALLS = 7


def bench(kind: str, deals: int, burst: int) -> None:
    proc, sandbox = start_sandbox(deals, 0.0, "hubspot", "--burst-limit", str(burst))
    try:
        ctx = bench_context(fresh_database(kind, "hubspot_bench"))
        connection_id = add_connection(
            ctx, "hubspot", {"base_url": sandbox, "burst_limit": burst},
            {"access_token": "pat-na1-sandbox-private-app-token"})
        stats = httpx.get(f"{sandbox}/_sandbox/stats").json()
        took, full = asyncio.run(timed_sync(ctx, connection_id, "full"))
        minimum = math.ceil(stats["deals"] / 100) + math.ceil(stats["accounts"] / 100)
        print(f"{kind}, burst limit {burst} per 10 s: full sync of {stats['deals']:,} deals + "
              f"{stats['accounts']:,} companies: {took:.1f} s, "
              f"{stats['deals'] / took:,.0f} deals/s, api_calls "
              f"{full.api_calls} (minimum {minimum} list pages + {METADATA_CALLS} metadata = "
              f"{minimum + METADATA_CALLS})")
        httpx.post(f"{sandbox}/_sandbox/mutate", json={"fraction": 0.01, "seed": 1})
        took, inc = asyncio.run(timed_sync(ctx, connection_id, "incremental"))
        print(f"{kind}: incremental after 1% changed: {took:.2f} s, {inc.api_calls} API calls")
        ctx.engine.dispose()
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
