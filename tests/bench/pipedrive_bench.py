"""Pipedrive sync benchmark (issue M6): full and incremental syncs from the Pipedrive sandbox.

Run: python -m tests.bench.pipedrive_bench [--deals 20000] [--db sqlite,postgresql]

For each database it starts `crmsync sandbox pipedrive` in its own process (zero latency,
burst limit 80 requests per 2 s), runs a full sync of N deals, N/10 organizations and the
synthetic company's activities (N/2 generated, its notes not served) with the
connection's burst_limit at 80, and prints deals/s and API calls against the minimum
(record pages of 500 + metadata); then 1% of the deals change and an incremental sync
prints its time and API calls.
"""

import argparse
import asyncio
import math
from decimal import Decimal

import httpx

from core.db import session_scope
from core.metrics.currency import set_rate
from tests.bench.common import (
    add_connection,
    bench_context,
    fresh_database,
    start_sandbox,
    timed_sync,
)

# users/me, users (twice: the users stream and the owners), legacyTeams, dealFields,
# organizationFields, pipelines, stages, deleted deals, activityTypes
METADATA_CALLS = 10
RATES = {"EUR": "0.92", "GBP": "0.79", "CNY": "7.10", "JPY": "150.25"}


async def bench(kind: str, deals: int) -> None:
    proc, url = start_sandbox("pipedrive", deals)
    try:
        ctx = bench_context(fresh_database(kind, "pipedrive_bench"))
        with session_scope(ctx.engine) as session:
            for code, per_usd in RATES.items():
                set_rate(session, code, Decimal(1) / Decimal(per_usd))
        connection_id = add_connection(
            ctx, "pipedrive", {"api_url": url, "oauth_url": url, "burst_limit": 80},
            {"api_token": "sandbox-api-token"})
        full, run = await timed_sync(ctx, connection_id, "full")
        calls = run.api_calls
        activities = int(((run.counts or {}).get("activities") or {}).get("fetched") or 0)
        pages = math.ceil(deals / 500) + math.ceil(max(20, deals // 10) / 500) + \
            max(1, math.ceil(activities / 500))
        print(f"{kind}: full sync of {deals:,} deals and {activities:,} activities: "
              f"{full:.1f} s, {deals / full:,.0f} deals/s, {calls} API calls (record pages "
              f"{pages} + metadata {METADATA_CALLS})")
        async with httpx.AsyncClient(timeout=60) as client:
            await client.post(f"{url}/_sandbox/mutate", json={"fraction": 0.01, "seed": 2})
        incremental, run = await timed_sync(ctx, connection_id, "incremental")
        calls = run.api_calls
        print(f"{kind}: incremental after 1% changed: {incremental:.2f} s, {calls} API calls")
        ctx.engine.dispose()
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    args = parser.parse_args()
    for kind in args.db.split(","):
        asyncio.run(bench(kind, args.deals))


if __name__ == "__main__":
    main()
