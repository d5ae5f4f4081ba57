"""Many connections on one deployment (issue 19, item 4): scheduled incremental syncs of
hundreds of connections of several CRMs, webhooks flowing, and one big full sync started
in the middle, on two `crmsync worker` processes.

Run: python -m tests.bench.fleet_bench [--connections 300] [--deals 2000] [--big 100000]
                                       [--duration 180] [--interval 1] [--webhook-rate 50]
     python -m tests.bench.fleet_bench --quick      (30 x 500 deals, big 20,000, 150 s)
     --split-lanes: each worker as two processes, `crmsync worker --lanes sync,cron` and
     `crmsync worker --lanes webhook`; --sync-nice N runs the sync,cron ones at a lower CPU
     priority (`nice -n N`), so the API and the webhook lanes come first on busy cores

Starts, each in its own process: a Redis server of its own (an isolated queue), sandboxes
of Zoho, HubSpot and Pipedrive (`--orgs` processes per CRM; a sandbox process is one CRM
org, so the connections of a CRM are spread over its orgs and those sharing an org share
its API budget, as connections of one real account would: the budgets are raised to the
vendors' highest plans so the bench measures crmsync), the API under uvicorn taking the
webhooks and two `crmsync worker` processes (four with --split-lanes), all on one fresh
PostgreSQL database.

1. Initial load: a full sync of every connection is queued at once (`--connections` x
   `--deals` deals): time and deals/s.
2. Steady state, `--duration` seconds, from the end of the initial load (the schedule
   waits for it: a day's interval until then): every connection has `sync_interval_minutes
   = --interval` and the workers' schedule (the minute cron) queues its incremental syncs;
   every 5 s about 0.5% of each org's deals change; Zoho notifications for the Zoho
   connections arrive at `--webhook-rate` events/s (POSTed to the API as Zoho would, open
   loop: each at its time however long the API takes to answer, see Sender);
   after a quarter of it a new Zoho connection of `--big` deals gets its first full sync.
   It runs until the duration is over and the big sync finished.

The stage history backfill a first full sync queues (a one-off per connection, reading each
deal's history) is marked done beforehand: against orgs shared by many connections it
would spend one org's API budget many times over, which no real fleet does.

Prints: per connection the time between a sync falling due and its start (the minute tick
and the queue; max and p95), whether every connection synced within its interval (start to
start at most interval + one tick), webhook received -> processed latency of the other
connections while the big full sync ran and overall (p50/p95/max), throughput (deals/s,
syncs/s, events/s), each worker's RSS (peak, and every 30 s), PostgreSQL (backends, size,
deadlocks, rollbacks) and Redis (memory, queue lengths) health, CPU seconds per process
and the load average; the CPU seconds of the initial load and of the steady state apart.
Never run by the test suite.
"""

import argparse
import asyncio
import itertools
import math
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text

from connectors.sandbox.server import free_port
from tests.bench import common, webhook_bench

PROVIDERS = ("zoho", "hubspot", "pipedrive")
# the highest plans' budgets (the sandboxes' and the connectors' own limits): hubspot
# burst per 10 s, pipedrive burst per 2 s
PROVIDER_OPTIONS = {"hubspot": ("--burst-limit", "1000"), "pipedrive": ("--burst-limit", "1000")}
PROVIDER_CONFIG: dict[str, dict[str, Any]] = {"hubspot": {"burst_limit": 1000},
                                              "pipedrive": {"burst_limit": 1000}}
TICK = 60.0  # the schedule's tick (workers.schedule.TICK_SECONDS)
MUTATE_EVERY = 5.0
CUT = (OSError, EOFError, ValueError, IndexError)  # a request refused, reset or cut short
DB_POLL = 0.5  # seconds between polls of the backends' CPU (long-lived: pools of 70 or so)
SENDER_CAP = 500  # webhook requests in flight at most (the sender is open-loop: steady)


@dataclass
class Org:
    provider: str
    seed: int
    url: str
    proc: subprocess.Popen[bytes]
    deal_ids: list[str]
    connections: list[int] = field(default_factory=list)


def start_orgs(providers: tuple[str, ...], orgs: int, deals: int,
               started: list[subprocess.Popen[bytes]]) -> list[Org]:
    """`orgs` sandbox processes per provider, started side by side; each process joins
    `started` as soon as it runs, so a bench stopped meanwhile stops it too."""
    from connectors.sandbox import generate_company

    def start(provider: str, seed: int) -> Org:
        proc, url = common.start_sandbox(provider, deals, *PROVIDER_OPTIONS.get(provider, ()),
                                         seed=seed, started=started)
        return Org(provider, seed, url, proc, sorted(generate_company(seed=seed,
                                                                      deals=deals).deals))

    seeds = [(provider, 100 * i + j + 1) for i, provider in enumerate(providers)
             for j in range(orgs)]
    with ThreadPoolExecutor(len(seeds)) as pool:
        return list(pool.map(lambda ps: start(*ps), seeds))


def set_interval(ctx: Any, ids: list[int], interval: int) -> None:
    """`sync_interval_minutes` of these connections (the schedule reads it every tick)."""
    from core.db import session_scope
    from core.models import Connection

    with session_scope(ctx.engine) as session:
        for cid in ids:
            connection = session.get(Connection, cid)
            assert connection is not None
            connection.config = {**connection.config, "sync_interval_minutes": interval}


def add_connections(ctx: Any, orgs: list[Org], count: int, interval: int) -> None:
    """`count` connections spread over the orgs in turn; Zoho ones get a notification
    channel with webhook_bench's token (the bench POSTs Zoho's notifications)."""
    from connectors.registry import sandboxes
    from core import history, store
    from core.db import session_scope

    for n in range(count):
        org = orgs[n % len(orgs)]
        sandbox = sandboxes()[org.provider]
        config = {**sandbox.config(org.url), **PROVIDER_CONFIG.get(org.provider, {}),
                  "sync_interval_minutes": interval}
        cid = common.add_connection(ctx, org.provider, config, sandbox.secrets,
                                    name=f"{org.provider} {org.url} #{n}")
        org.connections.append(cid)
        with session_scope(ctx.engine) as session:  # no stage history backfill (see above)
            store.set_state(session, connection_id=cid, stream=history.BACKFILL_STREAM,
                            state={"finished": True})
        if org.provider == "zoho":
            add_channel(ctx, cid)


def add_channel(ctx: Any, cid: int) -> None:
    """A Zoho notification channel with webhook_bench's token (the bench POSTs Zoho's
    notifications)."""
    from core import webhooks
    from core.db import session_scope
    from core.types import utcnow

    with session_scope(ctx.engine) as session:
        webhooks.save_channel(session, ctx.secrets, connection_id=cid,
                              channel_id=webhook_bench.CHANNEL, token=webhook_bench.TOKEN,
                              events=["Deals.all"], notify_url="http://bench",
                              expires_at=utcnow() + timedelta(days=7))


class Sampler:
    """Every second: each worker's RSS, the queues' lengths, the database's backends."""

    def __init__(self, workers: list[subprocess.Popen[bytes]], redis_url: str,
                 db_url: str) -> None:
        import redis

        from core.db import make_engine

        self.workers, self.redis = workers, redis.Redis.from_url(redis_url)
        self.engine, self.db = make_engine(common.PG_URL), db_url.rsplit("/", 1)[1]
        self.rows: list[dict[str, Any]] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from workers.queue import WEBHOOK_QUEUE

        started = time.monotonic()
        with self.engine.connect() as conn:
            while not self.done.wait(1.0):
                backends, waiting = conn.execute(text(
                    "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock') "
                    "FROM pg_stat_activity WHERE datname = :d"), {"d": self.db}).one()
                conn.rollback()
                self.rows.append({
                    "t": time.monotonic() - started,
                    "rss": [rss_mb(w.pid) for w in self.workers],
                    "sync_queue": self.redis.zcard("arq:queue"),
                    "webhook_queue": self.redis.zcard(WEBHOOK_QUEUE),
                    "backends": backends, "lock_waits": waiting,
                    "load": os.getloadavg()[0]})
        self.engine.dispose()

    def stop(self) -> list[dict[str, Any]]:
        self.done.set()
        self.thread.join()
        return self.rows


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def rows(db_url: str, sql: str, **params: Any) -> list[Any]:
    from core.db import make_engine

    engine = make_engine(db_url)
    with engine.connect() as conn:
        found = list(conn.execute(text(sql), params))
    engine.dispose()
    return found


async def enqueue(ctx: Any, redis_url: str, ids: list[int], mode: str) -> list[int]:
    from workers.queue import ArqRunner

    runner = await ArqRunner.connect(ctx, redis_url)
    try:
        return [await runner.enqueue_sync(cid, mode) for cid in ids]
    finally:
        await runner.close()


def wait_runs(db_url: str, ids: list[int], mode: str, timeout: float) -> None:
    """Until every connection in `ids` has a finished run of `mode`; raise on failures."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = rows(db_url, "SELECT status, count(*) FROM sync_run WHERE mode = :m "
                    "AND connection_id = ANY(:ids) AND status IN ('succeeded', 'failed') "
                    "GROUP BY status", m=mode, ids=ids)
        counts = dict(done)
        if counts.get("failed"):
            errors = rows(db_url, "SELECT connection_id, error FROM sync_run WHERE "
                          "status = 'failed' LIMIT 3")
            raise RuntimeError(f"{counts['failed']} {mode} syncs failed: {errors}")
        if counts.get("succeeded", 0) >= len(ids):
            return
        time.sleep(1)
    raise RuntimeError(f"{mode} syncs not finished after {timeout:.0f} s")


class Sender:
    """Zoho notifications POSTed to the API as Zoho would, open loop: event n is sent at
    `started + n / rate` however long the API takes to answer the ones before (at most
    SENDER_CAP in flight; an event due while all are taken is not sent, and counted)."""

    def __init__(self, api_url: str, zoho: list[Org], payloads: dict[str, list[bytes]],
                 rate: float, started: float) -> None:
        self.api_url, self.zoho, self.payloads = api_url, zoho, payloads
        self.rate, self.started, self.rng = rate, started, random.Random(3)
        self.slots, self.pending = asyncio.Semaphore(SENDER_CAP), set[asyncio.Task[None]]()
        self.idle: list[common.KeepAlive] = []  # keep-alive connections to the API, free
        self.counts = {"due": 0, "accepted": 0, "refused": 0, "failed": 0, "over_cap": 0}
        self.answer_s: list[float] = []  # from the event's due time to the API's answer

    async def fire(self) -> None:
        if not self.zoho or self.rate <= 0:
            return
        while True:
            n = self.counts["due"]
            due = self.started + n / self.rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            org = self.zoho[n % len(self.zoho)]
            cid = self.rng.choice(org.connections)
            body = self.payloads[org.url][n % len(self.payloads[org.url])]
            self.counts["due"] += 1
            if self.slots.locked():
                self.counts["over_cap"] += 1
                continue
            await self.slots.acquire()
            self.pending.add(task := asyncio.create_task(self.post(
                due, f"/api/v1/webhooks/zoho/{cid}", body)))
            task.add_done_callback(self.pending.discard)

    async def post(self, due: float, path: str, body: bytes) -> None:
        """POST on an idle keep-alive connection, or a new one (at most SENDER_CAP: one a
        request in flight): common.KeepAlive, as httpx cost this process about 1.5 ms of
        CPU a request, the cores the API and the workers are measured on."""
        try:
            status = await self._send(path, body)
            self.counts["accepted" if status == 200 else "refused"] += 1
        except CUT:
            self.counts["failed"] += 1
        finally:
            self.answer_s.append(time.monotonic() - due)
            self.slots.release()

    async def _send(self, path: str, body: bytes) -> int:
        """The answer's status, on the most recently used idle connection (one the API
        closed meanwhile, after its keep-alive timeout, is dropped for the next), else on
        a new one."""
        while True:
            fresh = not self.idle
            client = self.idle.pop() if self.idle else await common.KeepAlive.open(self.api_url)
            try:
                status, _ = await client.post(path, body)
            except CUT:
                client.close()
                if fresh:
                    raise
                continue
            self.idle.append(client)
            return status

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def report(self, seconds: float) -> str:
        c, answers = self.counts, self.answer_s
        return (f"webhook sender (open loop, {self.rate:g} events/s): {c['due']:,} due, "
                f"{c['accepted']:,} accepted ({c['accepted'] / seconds:.1f}/s), "
                f"{c['refused']} refused, {c['failed']} failed, {c['over_cap']} not sent "
                f"({SENDER_CAP} in flight at most); the API's answer from the event's due "
                f"time: p50 {pct(answers, 50) * 1000:.0f} ms, p95 {pct(answers, 95) * 1000:.0f}"
                f" ms, max {max(answers, default=0) * 1000:.0f} ms")


async def steady(ctx: Any, redis_url: str, api_url: str, orgs: list[Org], big: Org | None,
                 duration: float, rate: float, db_url: str) -> dict[str, Any]:
    """Mutations and webhooks for `duration` s; the big full sync queued after a quarter.
    Goes on (webhooks too) until the big sync finished."""
    zoho = [org for org in orgs if org.provider == "zoho" and org.connections]
    payloads = {org.url: webhook_bench.bodies(max(100, int(rate * duration * 2)), org.deal_ids)
                for org in zoho}
    out: dict[str, Any] = {"big_run": None}
    started = time.monotonic()
    sender = Sender(api_url, zoho, payloads, rate, started)

    async def mutate(client: httpx.AsyncClient) -> None:
        n = 0
        while True:
            n += 1
            for org in orgs:
                await client.post(f"{org.url}/_sandbox/mutate",
                                  json={"fraction": 0.005, "seed": 1000 + n})
            await asyncio.sleep(MUTATE_EVERY)

    limits = httpx.Limits(max_connections=len(orgs))  # the sandboxes' control API
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        tasks = [asyncio.create_task(mutate(client)), asyncio.create_task(sender.fire())]
        try:
            if big is not None:
                await asyncio.sleep(duration / 4)
                out["big_queued"] = time.monotonic() - started
                # created now: the schedule would queue a new connection's first sync itself
                await asyncio.to_thread(add_connections, ctx, [big], 1, 1440)
                [out["big_run"]] = await enqueue(ctx, redis_url, big.connections, "full")
            while True:
                await asyncio.sleep(1)
                over = time.monotonic() - started >= duration
                if out["big_run"] is None and over:
                    break
                if out["big_run"] is not None:
                    [(status,)] = await asyncio.to_thread(  # the sender's loop goes on
                        rows, db_url, "SELECT status FROM sync_run WHERE id = :r",
                        r=out["big_run"])
                    if status == "failed":
                        raise RuntimeError("the big full sync failed")
                    if over and status == "succeeded":
                        break
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.gather(*sender.pending, return_exceptions=True)  # the last answers
            sender.close()
    out["seconds"], out["sender"] = time.monotonic() - started, sender
    return out


def schedule_report(db_url: str, ids: list[int], interval: float, since: datetime,
                    until: datetime) -> dict[str, Any]:
    """Due -> started of the scheduled syncs queued in [since, until], and whether every
    connection started a sync at least every interval + one tick."""
    runs = rows(db_url, "SELECT connection_id, created_at, started_at FROM sync_run WHERE "
                "connection_id = ANY(:ids) AND mode IN ('full', 'incremental') "
                "ORDER BY connection_id, created_at", ids=ids)
    by: dict[int, list[tuple[datetime, datetime | None]]] = defaultdict(list)
    for cid, created, started in runs:
        by[cid].append((created, started))
    lag, tick_wait, queue_wait, worst_gap, late = [], [], [], [], 0
    per_connection_max = []
    for cid in ids:
        mine, worst, gaps = by[cid], 0.0, [0.0]
        for (prev_created, prev_started), (created, started) in itertools.pairwise(mine):
            if created < since or created > until:
                continue
            # the interval is switched on at `since` (the end of the initial load)
            fell_due = max(prev_created.timestamp() + interval, since.timestamp())
            begun = started.timestamp() if started else until.timestamp()
            lag.append(begun - fell_due)
            tick_wait.append(created.timestamp() - fell_due)
            queue_wait.append(begun - created.timestamp())
            worst = max(worst, begun - fell_due)
            if prev_started is not None:
                gaps.append(begun - max(prev_started.timestamp(), since.timestamp()))
        last = max((s.timestamp() for _, s in mine if s is not None), default=0.0)
        gaps.append(until.timestamp() - max(last, since.timestamp()))  # at the end
        per_connection_max.append(worst)
        worst_gap.append(max(gaps))
        late += max(gaps) > interval + TICK
    return {"scheduled_syncs": len(lag),
            "due_to_start_s": {"p50": pct(lag, 50), "p95": pct(lag, 95), "max": max(lag)}
            if lag else None,
            "of_which_tick_s_max": max(tick_wait, default=0.0),
            "of_which_queue_s": {"p95": pct(queue_wait, 95), "max": max(queue_wait)}
            if queue_wait else None,
            "per_connection_max_due_to_start_s": {"p95": pct(per_connection_max, 95),
                                                  "max": max(per_connection_max)},
            "start_to_start_max_s": max(worst_gap),
            "connections_within_interval": f"{len(ids) - late} of {len(ids)} "
                                           f"(start to start <= {interval + TICK:.0f} s)"}


def drain_webhooks(db_url: str, since: datetime, until: datetime, timeout: float) -> None:
    """Wait (at most `timeout` s) for the webhook events received in the steady state to be
    processed: the last second's are still queued when it ends, and are not lost."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and rows(
            db_url, "SELECT count(*) FROM webhook_event WHERE status <> 'processed' AND "
            "received_at BETWEEN :s AND :u", s=since, u=until)[0][0]:
        time.sleep(1)


def webhook_report(db_url: str, exclude: list[int], window: tuple[Any, Any] | None,
                   since: datetime, until: datetime) -> dict[str, Any]:
    """Received -> processed of the events received in the steady state, before the big
    full sync started (the same fleet without it) and during it (`window`): the difference
    is the delay the big sync adds. Not processed: those still waiting after drain_webhooks."""
    out = {}
    spans = {"all": (since, until)}
    if window is not None:
        spans["before_big_full_sync"] = (since, window[0])
        spans["during_big_full_sync"] = window
    for name, (start, end) in spans.items():
        found = rows(db_url, "SELECT extract(epoch FROM processed_at - received_at) FROM "
                     "webhook_event WHERE NOT connection_id = ANY(:ex) AND received_at "
                     "BETWEEN :s AND :e AND status = 'processed'", ex=exclude or [0], s=start,
                     e=end)
        left = rows(db_url, "SELECT count(*) FROM webhook_event WHERE status <> 'processed' "
                    "AND received_at BETWEEN :s AND :e", s=start, e=end)[0][0]
        values = [float(v) for (v,) in found]
        out[name] = ({"events": len(values), "p50_s": pct(values, 50), "p95_s": pct(values, 95),
                      "max_s": max(values), "not_processed": left} if values else
                     {"events": 0, "not_processed": left})
    return out


def health(db_url: str, redis_url: str) -> dict[str, Any]:
    import redis

    name = db_url.rsplit("/", 1)[1]
    [(backends, deadlocks, rollbacks, commits, size)] = rows(
        common.PG_URL, "SELECT numbackends, deadlocks, xact_rollback, xact_commit, "
        "pg_size_pretty(pg_database_size(datname)) FROM pg_stat_database WHERE datname = :d",
        d=name)
    info = redis.Redis.from_url(redis_url).info()
    return {"postgresql": {"backends_now": backends, "deadlocks": deadlocks,
                           "rollbacks": rollbacks, "commits": commits, "size": size},
            "redis": {"used_memory_peak": info["used_memory_peak_human"],
                      "connected_clients": info["connected_clients"],
                      "rejected_connections": info["rejected_connections"]}}


def vendor_limits(orgs: list[Org]) -> dict[str, int]:
    """The 429s each provider's orgs answered so far (their control API's /stats): a fleet
    whose connections share an org also share its limits (start_orgs)."""
    out: dict[str, int] = {}
    for org in orgs:
        stats = httpx.get(f"{org.url}/_sandbox/stats", timeout=30.0).json()
        out[org.provider] = out.get(org.provider, 0) + int(stats.get("served", {}).get("429", 0))
    return out


def run(connections: int, deals: int, big_deals: int, duration: float, interval: int,
        rate: float, orgs_per_crm: int, statements: int = 0, split_lanes: bool = False,
        sync_nice: int = 0) -> None:
    from core.types import utcnow

    load0 = os.getloadavg()
    print(f"machine: {os.cpu_count()} cores; load average {load0[0]:.1f} {load0[1]:.1f} "
          f"{load0[2]:.1f} at the start (a shared machine: other work runs beside the bench)")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        redis_proc, redis_url = common.start_redis()
        procs.append(redis_proc)
        db_url = common.fresh_database("postgresql", "crmsync_fleet_bench")
        ctx = common.bench_context(db_url)
        with ThreadPoolExecutor(1) as pool:  # the big org beside the others
            big = pool.submit(start_orgs, ("zoho",), 1, big_deals, procs) if big_deals else None
            orgs = start_orgs(PROVIDERS, orgs_per_crm, deals, procs)
            big_org = big.result()[0] if big is not None else None
        # the schedule waits for the initial load (a day's interval): the steady state is
        # measured on its own, from the first tick after the load
        add_connections(ctx, orgs, connections, 1440)
        ids = [cid for org in orgs for cid in org.connections]
        env = {**os.environ, "CRMSYNC_DATABASE_URL": db_url, "CRMSYNC_REDIS_URL": redis_url,
               "CRMSYNC_SECRET_KEY": str(ctx.settings.secret_key),
               "CRMSYNC_LOG_LEVEL": "INFO" if "CRMSYNC_BENCH_WORKER_LOG" in os.environ
               else "WARNING", "CRMSYNC_WEBHOOK_RATE_PER_SECOND": "1000000",
               "CRMSYNC_NIGHTLY_SYNC_HOUR": "", "CRMSYNC_ALLOW_ENDPOINTS": "127.0.0.1",
               "CRMSYNC_WORKER_WEBHOOK_PROCESS": "0"}  # --split-lanes or one process each
        api_port = free_port()
        api = subprocess.Popen([sys.executable, "-m", "tests.bench.webhook_bench",
                                "--serve-api", str(api_port)], env=env)
        log = open(os.environ.get("CRMSYNC_BENCH_WORKER_LOG", os.devnull), "ab")  # noqa: SIM115
        kinds = [["sync,cron"], ["webhook"]] if split_lanes else [[]]
        roles_of = {}
        workers = []
        for n, kind in itertools.product((1, 2), kinds):
            lanes = ["--lanes", *kind] if kind else []
            nice = sync_nice if kind and kind[0] != "webhook" else 0
            workers.append(subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", *lanes], env=env, stdout=log,
                stderr=log, preexec_fn=(lambda n=nice: os.nice(n)) if nice else None))
            roles_of[workers[-1].pid] = f"worker {n}" + (f" {kind[0]}" if kind else "")
        procs.extend([api, *workers])
        api_url = f"http://127.0.0.1:{api_port}"
        webhook_bench.wait_for(f"{api_url}/health", api)
        sampler = Sampler(workers, redis_url, db_url)
        database = common.DatabaseCpu(db_url, every=DB_POLL)
        cpu0 = {p.pid: common.process_cpu(p.pid) for p in procs}

        # 1. initial load
        started, load = time.perf_counter(), os.getloadavg()[0]
        asyncio.run(enqueue(ctx, redis_url, ids, "full"))
        wait_runs(db_url, ids, "full", timeout=1800)
        took = time.perf_counter() - started
        total = connections * deals
        print(f"initial load: {connections} full syncs of {deals:,} deals queued at once: "
              f"{took:.1f} s, {total / took:,.0f} deals/s (load {load:.1f} -> "
              f"{os.getloadavg()[0]:.1f})")
        cpu1 = {p.pid: common.process_cpu(p.pid) for p in procs}
        db_cpu1 = database.so_far()
        roles = {**roles_of, api.pid: "api", redis_proc.pid: "redis"}
        print_cpu("initial load", roles, {pid: cpu1[pid] - cpu0[pid] for pid in cpu1},
                  db_cpu1)

        # 2. steady state
        set_interval(ctx, ids, interval)
        statements_reset(db_url, statements)
        since, load, steady_from = utcnow(), os.getloadavg()[0], len(sampler.rows)
        own0 = time.process_time()  # this process: the webhook sender, changes, sampling
        out = asyncio.run(steady(ctx, redis_url, api_url, orgs, big_org, duration, rate,
                                 db_url))
        until = utcnow()
        own = time.process_time() - own0
        samples = sampler.stop()
        db_cpu = database.stop()
        cpu = {p.pid: common.process_cpu(p.pid) - cpu1[p.pid] for p in procs
               if p.poll() is None}
        drain_webhooks(db_url, since, until, timeout=30.0)
        window = None
        big_runs = rows(db_url, "SELECT started_at, finished_at, counts FROM sync_run "
                        "WHERE id = :r", r=out["big_run"] or 0)
        loads = [s["load"] for s in samples[steady_from:]] or [load]
        print(f"steady state: {out['seconds']:.0f} s, interval {interval} min; load {load:.1f} "
              f"-> {os.getloadavg()[0]:.1f} (mean {statistics.mean(loads):.1f}, max "
              f"{max(loads):.1f})")
        print(f"  {out['sender'].report(out['seconds'])}")
        if big_runs:
            begun, ended, counts = big_runs[0]
            window = (begun, ended)
            secs = (ended - begun).total_seconds()
            print(f"  big full sync: {big_deals:,} deals in {secs:.1f} s "
                  f"({big_deals / secs:,.0f} deals/s) while the rest went on; queued at "
                  f"{out['big_queued']:.0f} s, counts {counts.get('deals') if counts else ''}")
        sched = schedule_report(db_url, ids, interval * 60.0, since, until)
        for name, value in sched.items():
            print(f"  schedule {name:34} {value}")
        for provider in PROVIDERS:
            mine = [cid for org in orgs if org.provider == provider for cid in org.connections]
            if mine:
                of = schedule_report(db_url, mine, interval * 60.0, since, until)
                print(f"  schedule {provider:34} {of['connections_within_interval']}; due -> "
                      f"started {of['due_to_start_s']}")
        exclude = big_org.connections if big_org else []
        for name, value in webhook_report(db_url, exclude, window, since, until).items():
            print(f"  webhooks {name:34} {value}")
        [(incs, fetched)] = rows(db_url, "SELECT count(*), coalesce(sum(CAST(counts->'deals'"
                                 "->>'fetched' AS integer)), 0) FROM sync_run WHERE mode = "
                                 "'incremental' AND created_at >= :s AND status = 'succeeded'",
                                 s=since)
        [(events,)] = rows(db_url, "SELECT count(*) FROM webhook_event WHERE "
                           "received_at >= :s AND status = 'processed'", s=since)
        took: dict[str, list[float]] = {}
        for provider, secs in rows(
                db_url, "SELECT c.provider, EXTRACT(EPOCH FROM r.finished_at - r.started_at) "
                "FROM sync_run r JOIN connection c ON c.id = r.connection_id WHERE r.mode = "
                "'incremental' AND r.created_at >= :s AND r.status = 'succeeded'", s=since):
            took.setdefault(provider, []).append(float(secs))
        for provider, secs in sorted(took.items()):
            secs.sort()
            print(f"  incremental sync start to finish, {provider}: p50 "
                  f"{secs[len(secs) // 2]:.1f} s, p95 {secs[int(len(secs) * 0.95)]:.1f} s, "
                  f"max {secs[-1]:.1f} s ({len(secs)} syncs)")
        print(f"  the sandboxes' limit answers (429, by provider): {vendor_limits(orgs)}")
        print(f"  throughput: {incs / out['seconds']:.2f} incremental syncs/s "
              f"({incs} syncs, {fetched:,} changed deals read), {events / out['seconds']:.1f} "
              f"webhook events/s processed")
        peaks = [max(s["rss"][i] for s in samples) for i in range(len(workers))]
        print(f"  worker RSS peak: {', '.join(f'{p:.0f} MB' for p in peaks)}; every 30 s: "
              + " | ".join("/".join(f"{r:.0f}" for r in s["rss"]) for s in samples[::30]))
        print(f"  queues: sync lane longest {max(s['sync_queue'] for s in samples)}, "
              f"webhook lane longest {max(s['webhook_queue'] for s in samples)}; "
              f"database backends at most {max(s['backends'] for s in samples)}, waiting "
              f"for a lock at most {max(s['lock_waits'] for s in samples)} (mean "
              f"{statistics.mean(s['lock_waits'] for s in samples):.1f})")
        for name, value in health(db_url, redis_url).items():
            print(f"  {name:10} {value}")
        print_cpu("steady state", roles, cpu, db_cpu - db_cpu1)
        print(f"  CPU seconds, steady state, the bench's own process (webhook sender, CRM "
              f"changes, sampling): {own:.0f}")
        workers_cpu = sum(cpu[w.pid] for w in workers)
        print(f"  scheduled syncs per worker CPU second: {incs / max(0.1, workers_cpu):.2f}; "
              f"per PostgreSQL CPU second: {incs / max(0.1, db_cpu - db_cpu1):.2f}")
        both = workers_cpu + db_cpu - db_cpu1
        print(f"  workers + PostgreSQL CPU of the steady state: {both:.0f} s, "
              f"{1000 * both / max(1, incs + events / 10):.0f} ms per (incremental sync + "
              f"10 webhook events) (every worker process)")
        print_statements(db_url, statements)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def statements_reset(db_url: str, top: int) -> None:
    """Forget the statements of the initial load (pg_stat_statements, when `top`)."""
    if top:
        rows(common.PG_URL, "SELECT 1 FROM (SELECT pg_stat_statements_reset()) r")


def print_statements(db_url: str, top: int) -> None:
    """The `top` statements of the steady state by total time (pg_stat_statements: the
    server must preload it and CRMSYNC_BENCH_PG_URL's database have the extension)."""
    if not top:
        return
    mine = ("FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = :d)")
    name = db_url.rsplit("/", 1)[1]
    found = rows(common.PG_URL, "SELECT calls, total_exec_time, rows, query " + mine
                 + " ORDER BY total_exec_time DESC LIMIT :n", n=top, d=name)
    [(calls, total)] = rows(common.PG_URL, "SELECT sum(calls), sum(total_exec_time) " + mine,
                            d=name)
    print(f"  statements of the steady state: {calls:,} calls, {total / 1000:.1f} s")
    for calls, ms, count, query in found:
        print(f"    {ms / 1000:7.1f} s {calls:7,} calls {ms / max(1, calls):7.2f} ms "
              f"{count:9,} rows  {' '.join(query.split())[:110]}")


def print_cpu(phase: str, roles: dict[int, str], cpu: dict[int, float], db: float) -> None:
    """CPU seconds (user + system) of each party in a phase: the roles', the sandboxes' (the
    other processes) and the database's backends."""
    sandboxes = sum(v for pid, v in cpu.items() if pid not in roles)
    print(f"  CPU seconds, {phase}: " + ", ".join(
        f"{roles[pid]} {v:.0f}" for pid, v in cpu.items() if pid in roles)
        + f", sandboxes {sandboxes:.0f}, PostgreSQL backends {db:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--deals", type=int, default=2_000)
    parser.add_argument("--big", type=int, default=100_000, help="0: no big full sync")
    parser.add_argument("--duration", type=float, default=180.0, help="seconds")
    parser.add_argument("--interval", type=int, default=1, help="sync_interval_minutes")
    parser.add_argument("--webhook-rate", type=float, default=50.0, help="events/s")
    parser.add_argument("--orgs", type=int, default=2, help="sandbox orgs per CRM")
    parser.add_argument("--statements", type=int, default=0,
                        help="print the N statements of the steady state that took longest "
                        "(needs pg_stat_statements on CRMSYNC_BENCH_PG_URL's server)")
    parser.add_argument("--split-lanes", action="store_true",
                        help="each worker as two processes: `crmsync worker --lanes "
                        "sync,cron` and `crmsync worker --lanes webhook`")
    parser.add_argument("--sync-nice", type=int, default=0, metavar="N",
                        help="with --split-lanes: the sync,cron processes at `nice -n N`")
    parser.add_argument("--quick", action="store_true",
                        help="30 connections of 500 deals, big 20,000, 150 s")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop every process it started
    if args.quick:
        args.connections, args.deals, args.big, args.duration = 30, 500, 20_000, 150.0
        args.orgs = 1
    run(args.connections, args.deals, args.big, args.duration, args.interval,
        args.webhook_rate, max(1, min(args.orgs, math.ceil(args.connections / 3))),
        args.statements, args.split_lanes, args.sync_nice)


if __name__ == "__main__":
    main()
