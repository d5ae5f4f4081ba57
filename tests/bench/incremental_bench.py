"""The fixed cost of one incremental sync and of one webhook job, as a worker of a fleet pays
it (docs/benchmarks.md, many connections): the CPU of this process (the worker's side) and
of the database's backends, and the statements, per job.

Run: python -m tests.bench.incremental_bench [--deals 2000] [--changed 5] [--rounds 20]
                                             [--events 10] [--statements N]
                                             [--profile FILE [--profile-jobs sync|webhook]]

Starts a Redis server of its own (the budgets and tokens shared as in a worker with
CRMSYNC_REDIS_URL) and a Zoho, a HubSpot and a Pipedrive sandbox of `--deals` deals, each in
its own process, on a fresh PostgreSQL database (CRMSYNC_BENCH_PG_URL). Each connection gets
a full sync; then `--rounds` times: about `--changed` of each org's deals change and each
connection gets an incremental sync job (workers.jobs.sync_connection), and the Zoho
connection gets `--events` notifications processed by one webhook job
(workers.jobs.process_webhook_event). Prints per kind of job the median CPU milliseconds of
this process and of the PostgreSQL backends, and, when the server preloads
pg_stat_statements (and the database can create the extension), the statements per job and
their time. The first round is left out of the medians (the process's caches are cold).
--profile writes a cProfile of the rounds to FILE: CPU time (time.thread_time) of the event
loop's thread and the threads the jobs hand their database work to. Never run by the tests.
"""

import argparse
import asyncio
import cProfile
import pstats
import resource
import statistics
import threading
import time
from collections import defaultdict
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from connectors.registry import sandboxes
from connectors.sandbox import generate_company
from core import store, webhooks
from core.db import make_engine, session_scope
from core.models import SyncRun
from core.types import SyncMode
from tests.bench import common, fleet_bench, webhook_bench
from workers.jobs import process_webhook_event, sync_connection
from workers.limits import RedisLimits

PROVIDERS = ("zoho", "hubspot", "pipedrive")


class Profiles:
    """cProfile of the event loop's thread and of every thread the jobs hand work to
    (asyncio.to_thread: the database work), merged; on while `on`."""

    def __init__(self) -> None:
        self.main = cProfile.Profile(time.thread_time)
        self.threads: list[cProfile.Profile] = []
        self.local = threading.local()
        self.on = False
        original = asyncio.to_thread

        def to_thread(fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            return original(self._wrapped(fn), *args, **kwargs)

        asyncio.to_thread = to_thread

    def _wrapped(self, fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            if not self.on:
                return fn(*args, **kwargs)
            profile = getattr(self.local, "profile", None)
            if profile is None:
                profile = self.local.profile = cProfile.Profile(time.thread_time)
                self.threads.append(profile)
            profile.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                profile.disable()
        return run

    def enable(self) -> None:
        self.on = True
        self.main.enable()

    def disable(self) -> None:
        self.main.disable()
        self.on = False

    def dump(self, path: str) -> None:
        stats = pstats.Stats(self.main)
        for profile in self.threads:
            stats.add(profile)
        stats.dump_stats(path)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def schedstat_cpu(pid: int) -> float:
    """CPU seconds a process of this machine used so far, to the nanosecond
    (/proc/<pid>/schedstat; common.process_cpu counts clock ticks, 10 ms each: a job's
    statements take a few ms)."""
    with open(f"/proc/{pid}/schedstat") as stat:
        return int(stat.read().split()[0]) / 1e9


class Statements:
    """pg_stat_statements of the bench's database: calls and time since the last `take`."""

    def __init__(self, db_url: str) -> None:
        self.engine = make_engine(common.PG_URL)  # not a backend of the measured database
        self.name = db_url.rsplit("/", 1)[1]
        try:
            with self.engine.begin() as conn:
                conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"))
                conn.execute(text("SELECT pg_stat_statements_reset()"))
            self.on = True
        except Exception:  # not preloaded: the CPU figures only
            self.on = False

    def take(self) -> dict[str, tuple[int, float]]:
        """query -> (calls, ms) since the last take."""
        if not self.on:
            return {}
        with self.engine.begin() as conn:
            found = conn.execute(text(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements WHERE dbid = "
                "(SELECT oid FROM pg_database WHERE datname = :d) AND query NOT LIKE "
                "'%pg_stat_statements%'"), {"d": self.name}).all()
            conn.execute(text("SELECT pg_stat_statements_reset()"))
        return {str(q): (int(c), float(t)) for q, c, t in found}


async def measure(kind: str, job: Any, database: common.DatabaseCpu, statements: Statements,
                  out: dict[str, list[dict[str, Any]]]) -> None:
    statements.take()
    db0, cpu0, wall0 = database.so_far(), cpu(), time.perf_counter()
    await job
    await asyncio.sleep(0.15)  # the backends' CPU is polled every 50 ms
    taken = statements.take()
    out[kind].append({"cpu_ms": 1000 * (cpu() - cpu0),
                      "db_ms": 1000 * (database.so_far() - db0),
                      "wall_ms": 1000 * (time.perf_counter() - wall0),
                      "statements": sum(c for c, _ in taken.values()),
                      "statement_ms": sum(t for _, t in taken.values()),
                      "queries": taken})


async def rounds(ctx: Any, orgs: dict[str, tuple[str, int]], deal_ids: list[str], count: int,
                 changed: int, deals: int, events: int, database: common.DatabaseCpu,
                 statements: Statements, profile: Profiles | None, profiled: str
                 ) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    bodies = webhook_bench.bodies(count * events + 10, deal_ids)
    zoho = orgs["zoho"][1]
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(count):
            for provider, (url, cid) in orgs.items():
                await client.post(f"{url}/_sandbox/mutate",
                                  json={"fraction": changed / deals, "seed": 7000 + n})
                with session_scope(ctx.engine) as session:
                    run_id = int(store.create_run(session, connection_id=cid,
                                                  mode=SyncMode.INCREMENTAL).id or 0)
                if profile and profiled != "webhook":
                    profile.enable()
                await measure(f"incremental sync, {provider}", sync_connection(
                    ctx, connection_id=cid, run_id=run_id, mode=SyncMode.INCREMENTAL),
                    database, statements, out)
                if profile:
                    profile.disable()
                with session_scope(ctx.engine) as session:
                    run = session.get(SyncRun, run_id)
                    out[f"incremental sync, {provider}"][-1]["api_calls"] = run and run.api_calls
            with session_scope(ctx.engine) as session:
                webhooks.store_events(session, connection_id=zoho, provider="zoho", events=[
                    (f"bench-{n}-{i}", orjson.loads(body))
                    for i, body in enumerate(bodies[n * events:(n + 1) * events])])
            if profile and profiled != "sync":
                profile.enable()
            await measure(f"webhook job of {events} events, zoho",
                          process_webhook_event(ctx, connection_id=zoho), database,
                          statements, out)
            if profile:
                profile.disable()
    return out


def report(out: dict[str, list[dict[str, Any]]], top: int) -> None:
    for kind, measured in out.items():
        warm = measured[1:] or measured
        med = {k: statistics.median(m[k] for m in warm)
               for k in ("cpu_ms", "db_ms", "wall_ms", "statements", "statement_ms")}
        print(f"{kind} ({len(warm)} warm): this process {med['cpu_ms']:.1f} ms CPU, "
              f"PostgreSQL backends {med['db_ms']:.1f} ms CPU, wall {med['wall_ms']:.0f} ms; "
              f"{med['statements']:.0f} statements, {med['statement_ms']:.1f} ms"
              + (f"; {statistics.median(m['api_calls'] for m in warm):.0f} CRM calls"
                 if "api_calls" in warm[0] else ""))
        if top and warm[0]["queries"]:
            totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
            for m in warm:
                for query, (calls, ms) in m["queries"].items():
                    totals[query][0] += calls / len(warm)
                    totals[query][1] += ms / len(warm)
            for query, (calls, ms) in sorted(totals.items(), key=lambda q: -q[1][1])[:top]:
                print(f"    {ms:6.2f} ms {calls:5.1f} calls  {' '.join(query.split())[:120]}")


def run(deals: int, changed: int, count: int, events: int, top: int,
        profile_to: str | None, profiled: str = "all") -> None:
    redis_proc, redis_url = common.start_redis()
    procs = [redis_proc]
    try:
        db_url = common.fresh_database("postgresql", "crmsync_incremental_bench")
        ctx = common.bench_context(db_url)
        ctx.limits = RedisLimits(redis_url, ctx.secrets)
        orgs: dict[str, tuple[str, int]] = {}
        deal_ids: list[str] = []
        for seed, provider in enumerate(PROVIDERS, start=1):
            proc, url = common.start_sandbox(
                provider, deals, *fleet_bench.PROVIDER_OPTIONS.get(provider, ()), seed=seed)
            procs.append(proc)
            sandbox = sandboxes()[provider]
            config = {**sandbox.config(url), **fleet_bench.PROVIDER_CONFIG.get(provider, {})}
            cid = common.add_connection(ctx, provider, config, sandbox.secrets, name=provider)
            orgs[provider] = (url, cid)
            if provider == "zoho":
                deal_ids = sorted(generate_company(seed=seed, deals=deals).deals)
                fleet_bench.add_channel(ctx, cid)
        for provider, (_, cid) in orgs.items():
            took, _ = asyncio.run(common.timed_sync(ctx, cid, "full"))
            print(f"full sync, {provider}: {deals:,} deals in {took:.1f} s")
        database = common.DatabaseCpu(db_url, schedstat_cpu)
        statements = Statements(db_url)
        profile = Profiles() if profile_to else None
        out = asyncio.run(rounds(ctx, orgs, deal_ids, count, changed, deals, events,
                                 database, statements, profile, profiled))
        database.stop()
        report(out, top)
        if profile is not None and profile_to:
            profile.dump(profile_to)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deals", type=int, default=2_000)
    parser.add_argument("--changed", type=int, default=5, help="deals changed per round")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--events", type=int, default=10, help="per webhook job")
    parser.add_argument("--statements", type=int, default=0,
                        help="print each kind of job's N statements that took longest")
    parser.add_argument("--profile", help="write a cProfile of the rounds to this file")
    parser.add_argument("--profile-jobs", choices=("all", "sync", "webhook"), default="all",
                        help="the jobs --profile covers")
    args = parser.parse_args()
    run(args.deals, args.changed, args.rounds, args.events, args.statements, args.profile,
        args.profile_jobs)


if __name__ == "__main__":
    main()
