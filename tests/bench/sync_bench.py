"""Sync benchmark (issue M1): full and incremental Zoho syncs from the sandbox.

Run: python -m tests.bench.sync_bench [--deals 100000] [--db sqlite,postgresql]
                                      [--latency-deals 20000]

For each database it starts the Zoho sandbox in its own process (zero latency),
runs a full sync of N deals and N/10 accounts in a fresh child process, and
prints deals/s, API calls against the minimum and the child's peak memory
(measured at N/5 and N, to show memory does not grow with N). Then 1% of the
deals change and an incremental sync prints its API calls. Last, with 200 ms
of latency per call, it compares the full sync's wall time with the time the
deals stream alone needs (ceil(N/200) calls x 200 ms).

With --airbyte PYTHON (the python of a virtual environment where airbyte-source-zoho-crm
is installed, never the project's), Airbyte's Zoho source reads the deals of the same
sandbox right after the full sync (tests/bench/airbyte_zoho.py): records/s and CPU per
record side by side. It lists pages by number, so Zoho stops it after 2,000 records
(docs/vendors/zoho.md §11); its rate is over what it read. Airbyte's run reads the Deals
module alone, so crmsync also syncs the deals stream alone into a fresh database of its
own first (the same job, `streams=(deals,)`), and both ratios are printed: the same stream
on both sides, and crmsync's whole sync (deals, accounts, activities) against Airbyte's
deals.
"""

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import queue
import resource
import subprocess
import sys
import time
from typing import Any

import httpx
import orjson

from tests.bench import common
from tests.bench.common import fresh_database

# token, org currencies, org, fields of Deals and Accounts, layouts, pipeline, users,
# deleted Deals and deleted Accounts
METADATA_CALLS = 10
ACTIVITY_METADATA_CALLS = 6  # the fields and the deleted records of Calls, Events and Tasks


def start_sandbox(deals: int, latency: float, provider: str = "zoho",
                  *options: str) -> tuple[subprocess.Popen[bytes], str]:
    return common.start_sandbox(provider, deals, "--latency", str(latency), *options)


def child_sync(url: str, sandbox: str, mode: str, connection_id: int | None,
               out: "mp.Queue[dict[str, Any]]", streams: tuple[str, ...] | None = None) -> None:
    """One sync in a fresh process, so its peak memory is its own (`streams`: some of them)."""
    from connectors.registry import load_connectors
    from core import collector, store
    from core.config import Settings
    from core.db import make_engine, session_scope
    from core.models import Connection, SyncRun
    from core.security import SecretBox
    from core.types import Stream
    from workers.context import JobContext
    from workers.jobs import sync_connection

    key = os.environ["BENCH_KEY"]  # set by main(), inherited by every child
    engine = make_engine(url)
    zone = os.environ.get("BENCH_TZ", "UTC")  # CRMSYNC_TIMEZONE of the syncing process
    ctx = JobContext(settings=Settings(database_url=url, secret_key=key, timezone=zone,
                                       allow_endpoints="127.0.0.1"),  # the local sandbox
                     engine=engine, secrets=SecretBox(key))
    with session_scope(engine) as session:
        if connection_id is None:
            connection = Connection(provider="zoho", name="bench",
                                    config={"accounts_url": sandbox},
                                    secrets_encrypted=ctx.secrets.seal({
                                        "client_id": "sandbox-client-id",
                                        "client_secret": "sandbox-client-secret",
                                        "refresh_token": "sandbox-refresh-token"}))
            session.add(connection)
            session.flush()
            connection_id = int(connection.id or 0)
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    load_connectors()  # as a worker does once at its start, not for each sync
    collector.tune(collector.WORKER_YOUNG)  # and this, once its context is built (workers.settings)
    database = common.DatabaseCpu(url)
    cpu, started = time.process_time(), time.perf_counter()
    chosen = None if streams is None else tuple(Stream(s) for s in streams)
    summary = asyncio.run(sync_connection(ctx, connection_id=connection_id, run_id=run_id,
                                          mode=mode, streams=chosen))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        api_calls = run.api_calls if run else -1
    out.put({"connection_id": connection_id, "seconds": elapsed, "summary": summary,
             "api_calls": api_calls, "cpu": cpu, "database_cpu": database.stop(),
             "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def run_child(url: str, sandbox: str, mode: str, connection_id: int | None,
              streams: tuple[str, ...] | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    out: mp.Queue[dict[str, Any]] = ctx.Queue()
    proc = ctx.Process(target=child_sync, args=(url, sandbox, mode, connection_id, out, streams))
    proc.start()
    while True:
        try:
            return out.get(timeout=1)
        except queue.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"the sync child failed (exit code {proc.exitcode})") from None


def airbyte_side_by_side(python: str, sandbox: str, proc: int) -> float | None:
    """Airbyte's Zoho source reads the sandbox's deals: prints its run, returns its deals/s
    (None: it failed to run)."""
    sandbox_cpu = common.process_cpu(proc)
    done = subprocess.run([python, os.path.join(os.path.dirname(__file__), "airbyte_zoho.py"),
                           sandbox, "Deals"], capture_output=True, text=True, timeout=3600)
    sandbox_cpu = common.process_cpu(proc) - sandbox_cpu
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        print(f"{'':<10} airbyte failed to run: {done.stderr[-500:]}")
        return None
    airbyte = orjson.loads(lines[-1])
    records = max(1, airbyte["records"])
    rate: float = records / airbyte["seconds"]
    print(f"{'':<10} airbyte-source-zoho-crm, same sandbox: {airbyte['records']:,} deals in "
          f"{airbyte['seconds']:.1f} s, {rate:,.0f} deals/s (source only, to /dev/null), "
          f"{airbyte['requests']} requests, CPU {1e6 * airbyte['cpu'] / records:.0f} us per "
          f"deal + sandbox {1e6 * sandbox_cpu / records:.0f} us; stopped by: "
          f"{airbyte['error']}")
    return rate


def deals_alone(kind: str, deals: int, sandbox: str, proc: int) -> float:
    """crmsync's full sync of the deals stream alone (what Airbyte's run reads), into a fresh
    database of its own from the same sandbox: prints it, returns its deals/s."""
    url = fresh_database(kind, "crmsync_bench_deals")
    sandbox_cpu = common.process_cpu(proc)
    run = run_child(url, sandbox, "full", None, ("deals",))
    sandbox_cpu = common.process_cpu(proc) - sandbox_cpu
    cpu = run["cpu"] + run["database_cpu"] + sandbox_cpu
    print(f"{kind:<10} full  {deals:>7,} deals, the deals stream alone: {run['seconds']:7.1f} s "
          f"{deals / run['seconds']:8,.0f} deals/s  api_calls {run['api_calls']}  CPU seconds: "
          f"sync process {run['cpu']:.2f}, database {run['database_cpu']:.2f}, sandbox "
          f"{sandbox_cpu:.2f}: {1e6 * cpu / deals:.0f} us per deal")
    return deals / run["seconds"]


def full_and_incremental(kind: str, deals: int, airbyte: str | None = None) -> None:
    accounts = max(20, deals // 10)
    proc, sandbox = start_sandbox(deals, 0.0)
    try:
        url = fresh_database(kind, "crmsync_bench")
        sandbox_cpu, load = common.process_cpu(proc.pid), os.getloadavg()[0]
        full = run_child(url, sandbox, "full", None)
        sandbox_cpu = common.process_cpu(proc.pid) - sandbox_cpu
        activities = full["summary"].get("activities", {}).get("fetched", 0)
        minimum = sum(math.ceil(n / 200) for n in (deals, accounts, activities))  # 200 a page
        metadata = METADATA_CALLS + (ACTIVITY_METADATA_CALLS if activities else 0)
        print(f"{kind:<10} full  {deals:>7,} deals + {accounts:>6,} accounts: "
              f"{full['seconds']:7.1f} s  {deals / full['seconds']:8,.0f} deals/s  "
              f"api_calls {full['api_calls']} (minimum: {minimum} record pages of deals, "
              f"accounts and {activities:,} activities + {metadata} metadata = "
              f"{minimum + metadata}; "
              f"{100 * (full['api_calls'] / minimum - 1):+.1f}% over the record pages)  "
              f"peak RSS {full['peak_rss_mb']:.0f} MB")
        cpu = full["cpu"] + full["database_cpu"] + sandbox_cpu
        print(f"{'':<10} CPU seconds: sync process {full['cpu']:.2f}, database "
              f"{full['database_cpu']:.2f}, sandbox {sandbox_cpu:.2f}: "
              f"{1e6 * cpu / deals:.0f} us per deal (2 cores: at most {2 * deals / cpu:,.0f} "
              f"deals/s); load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
        if airbyte:
            alone = deals_alone(kind, deals, sandbox, proc.pid)
            rate = airbyte_side_by_side(airbyte, sandbox, proc.pid)
            if rate:
                print(f"{'':<10} crmsync against Airbyte's rate: the deals stream alone on both "
                      f"sides {alone / rate:.1f}x; crmsync's whole sync (deals, accounts, "
                      f"activities) against Airbyte's deals {deals / full['seconds'] / rate:.1f}x")
        httpx.post(f"{sandbox}/_sandbox/mutate", json={"fraction": 0.01, "seed": 2},
                   timeout=60).raise_for_status()
        inc = run_child(url, sandbox, "incremental", full["connection_id"])
        changed = inc["summary"]["deals"]["fetched"]
        print(f"{kind:<10} incremental after 1% changed: {inc['seconds']:6.2f} s  "
              f"api_calls {inc['api_calls']}  deal records read {changed:,}  "
              f"tombstones {inc['summary']['deletions']['deleted']}")
    finally:
        proc.kill()


def latency_case(kind: str, deals: int, latency: float) -> None:
    proc, sandbox = start_sandbox(deals, latency)
    try:
        url = fresh_database(kind, "crmsync_bench")
        full = run_child(url, sandbox, "full", None)
        alone = math.ceil(deals / 200) * latency
        print(f"{kind:<10} full with {latency * 1000:.0f} ms latency, {deals:,} deals: "
              f"{full['seconds']:.1f} s wall; deals stream alone {alone:.1f} s "
              f"({full['seconds'] / alone:.2f}x)")
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=100_000)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--latency-deals", type=int, default=20_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--airbyte", metavar="PYTHON",
                        help="python of a venv with airbyte-source-zoho-crm: side by side")
    args = parser.parse_args()
    from cryptography.fernet import Fernet

    os.environ.setdefault("BENCH_KEY", Fernet.generate_key().decode())
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    for kind in args.db.split(","):
        for n in sorted({max(1000, args.deals // 5), args.deals}):
            full_and_incremental(kind, n, args.airbyte if n == args.deals else None)
        if args.latency_deals:
            latency_case(kind, args.latency_deals, args.latency)


if __name__ == "__main__":
    main()
