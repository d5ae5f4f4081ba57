"""Salesforce sync benchmark: full and incremental syncs from the Salesforce sandbox.

Run: python -m tests.bench.salesforce_bench [--deals 20000] [--db sqlite,postgresql]
                                            [--window-days 30]

For each database it starts `crmsync sandbox salesforce` in its own process (zero
latency, a multi-currency org, N deals and N/10 accounts), runs a full sync (JWT bearer
sign-in, SOQL windows of --window-days, 2,000-record query batches), then changes 1% of
the deals through the control API (edits, additions, deletions) and runs an incremental
sync, printing wall time, deals/s and API calls of each.
"""

import argparse
import asyncio
import os
from typing import Any

import httpx

from connectors.salesforce.sandbox import SANDBOX
from tests.bench import common
from tests.bench.common import fresh_database


async def bench(db: str, deals: int, window_days: int) -> dict[str, Any]:
    proc, sandbox = common.start_sandbox("salesforce", deals, seed=7)
    try:
        ctx = common.bench_context(fresh_database(db, "sfbench"))
        connection_id = common.add_connection(
            ctx, "salesforce", {**SANDBOX.config(sandbox), "window_days": window_days},
            SANDBOX.secrets)
        out: dict[str, Any] = {}
        for mode in ("full", "incremental"):
            if mode == "incremental":
                async with httpx.AsyncClient(timeout=60) as http:
                    changed = await http.post(f"{sandbox}/_sandbox/mutate",
                                              json={"fraction": 0.01, "seed": 1})
                    changed.raise_for_status()
            elapsed, run = await common.timed_sync(ctx, connection_id, mode)
            out[mode] = (elapsed, run.api_calls)
        ctx.engine.dispose()
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--window-days", type=int, default=30)
    args = parser.parse_args()
    os.environ.setdefault("CRMSYNC_ALLOW_ENDPOINTS", "127.0.0.1")
    for db in args.db.split(","):
        result = asyncio.run(bench(db, args.deals, args.window_days))
        full, incremental = result["full"], result["incremental"]
        print(f"{db}: full sync of {args.deals} deals + {args.deals // 10} accounts: "
              f"{full[0]:.1f} s, {args.deals / full[0]:,.0f} deals/s, {full[1]} API calls; "
              f"incremental after 1% changed: {incremental[0]:.2f} s, "
              f"{incremental[1]} API calls")


if __name__ == "__main__":
    main()
