"""Webhook intake benchmark (issue M5): Zoho notifications into the API under uvicorn.

Run: python -m tests.bench.webhook_bench [--events 10000] [--concurrency 32]
                                         [--api-processes 2] [--http h11] [--loop asyncio]
                                         [--connections 100] [--rate 50]

Starts, each in its own process: the Zoho sandbox, the API under uvicorn (PostgreSQL,
jobs queued on Redis) and an arq worker (`crmsync worker`) that processes the events
while they arrive. This process then POSTs `--events` documented notification bodies
(5% of them redelivered twice) from `--concurrency` connections and prints events
accepted and persisted per second, latency percentiles, and how long the worker needed
to process them all. With --api-processes N, N API processes on N ports share the
connections (as behind a load balancer). With --connections N the events are spread over
N crmsync connections of the org (each with its notification channel), as a deployment
serving many companies receives them. With --rate R the events are sent at R a second in
all (not as fast as the API answers): events trickle in as they do for a deployment of many
small companies, each job finding one or two events, and the figures to read are the
worker's and PostgreSQL's CPU per event and how long an event waited to be processed.
--http and --loop are uvicorn's (default auto:
httptools and uvloop when installed, as `crmsync serve` picks them). The per-process rate limit
(CRMSYNC_WEBHOOK_RATE_PER_SECOND) is raised out of the way: this measures capacity.
Target: at least 2,000 events/s with p99 under 50 ms, with one API process
and with two.
"""

import argparse
import asyncio
import importlib.util
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.fernet import Fernet
from sqlalchemy import func, select, text

from tests.bench.common import DatabaseCpu, KeepAlive, fresh_database, process_cpu, start_redis

TOKEN = "bench-token-" + "x" * 30
CHANNEL = "1000000099001"


def wait_for(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not start")


def serve_api(port: int, http: str, loop: str) -> None:
    """Child process: the API under uvicorn, settings from the environment."""
    import uvicorn

    from api.app import create_app
    from core.config import get_settings

    uvicorn.run(create_app(get_settings()), host="127.0.0.1", port=port, log_level="warning",
                access_log=False, http=http, loop=loop)  # type: ignore[arg-type]


def resolved(http: str, loop: str) -> str:
    """uvicorn's choice for "auto": httptools and uvloop when they are installed."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"http={http} loop={loop}"


def prepare(db_url: str, sandbox_url: str, key: str, count: int = 1) -> list[int]:
    """`count` Zoho connections of the sandbox's org, the n-th with channel CHANNEL + n."""
    from core import webhooks
    from core.db import make_engine, session_scope
    from core.models import Connection, SyncRun
    from core.security import SecretBox
    from core.types import RunStatus, SyncMode
    from tests.integration.zoho_helpers import SANDBOX_SECRETS

    box, engine = SecretBox(key), make_engine(db_url)
    ids = []
    with session_scope(engine) as session:
        for n in range(count):
            now = datetime.now(UTC)
            connection = Connection(
                provider="zoho", name=f"bench {n}", last_synced_at=now,
                config={"accounts_url": sandbox_url, "sync_interval_minutes": 1440},
                secrets_encrypted=box.seal(SANDBOX_SECRETS))
            session.add(connection)
            session.flush()
            ids.append(int(connection.id or 0))
            # a full sync done just now (the schedule reads the runs): none during the bench,
            # whose worker runs the minute crons (before 2026-12-06 08:00 the schedule synced
            # every connection in full from the first tick on, beside the webhook jobs)
            session.add(SyncRun(connection_id=ids[-1], mode=SyncMode.FULL,
                                status=RunStatus.SUCCEEDED, created_at=now, started_at=now,
                                finished_at=now, counts={}))
            webhooks.save_channel(session, box, connection_id=ids[-1],
                                  channel_id=str(int(CHANNEL) + n), token=TOKEN,
                                  events=["Deals.all"], notify_url="http://bench",
                                  expires_at=datetime.now(UTC) + timedelta(days=7))
    engine.dispose()
    return ids


def bodies(n: int, deal_ids: list[str]) -> list[bytes]:
    """`n` notification bodies of channel CHANNEL (and 5% of them again: redeliveries)."""
    return [body for _, body in notifications(n, deal_ids)]


def notifications(n: int, deal_ids: list[str], connections: int = 1
                  ) -> list[tuple[int, bytes]]:
    """(the connection's index, body) of `n` notifications spread over `connections` (the
    n-th with channel CHANNEL + n, as prepare makes them), 5% of them redelivered."""
    import orjson

    rng = random.Random(1)
    base = int(time.time() * 1000)
    out = []
    for i in range(n):
        ids = rng.sample(deal_ids, rng.choice((1, 1, 1, 2, 5)))
        operation = "delete" if i % 50 == 0 else "update"
        which = rng.randrange(connections) if connections > 1 else 0
        out.append((which, orjson.dumps({
            "server_time": base + i, "query_params": {}, "module": "Deals",
            "resource_uri": "https://www.zohoapis.com/crm/v2/Deals", "ids": ids,
            "affected_fields": [], "operation": operation,
            "channel_id": str(int(CHANNEL) + which), "token": TOKEN})))
    dupes = [out[i] for i in rng.sample(range(n), n // 20)]  # redeliveries
    return out + dupes


async def fire(urls: list[str], payloads: list[tuple[int, bytes]], concurrency: int,
               connection_ids: list[int], rate: float | None = None
               ) -> tuple[float, list[float]]:
    """POST every payload (to its connection's webhook URL) over `concurrency` keep-alive
    connections, spread over the API processes at `urls` in turn, `rate` a second in all
    when given (else as fast as answered); (wall s, latencies).

    A minimal HTTP/1.1 client (common.KeepAlive): httpx costs the load generator more CPU
    per request than the API spends, on the same two cores."""
    latencies: list[float] = []
    todo = list(reversed(list(enumerate(payloads))))

    async def connection(url: str) -> None:
        client = await KeepAlive.open(url)
        paths = [f"/api/v1/webhooks/zoho/{cid}" for cid in connection_ids]
        while todo:
            i, (which, body) = todo.pop()
            if rate and (wait := begun + i / rate - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            started = time.perf_counter()
            status, answer = await client.post(paths[which], body)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {answer.decode()}")
        client.close()

    started = begun = time.perf_counter()
    await asyncio.gather(*(connection(urls[i % len(urls)]) for i in range(concurrency)))
    return time.perf_counter() - started, latencies


def settled(pid: int) -> float:
    """The CPU seconds of process `pid` once it idles (its start-up done), within 60 s."""
    before = process_cpu(pid)
    for _ in range(120):
        time.sleep(0.5)
        if (now := process_cpu(pid)) - before < 0.02:
            return now
        before = now
    return before


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] * 1000


def run(events: int, concurrency: int, deals: int, api_processes: int = 1,
        http: str = "auto", loop: str = "auto", connections: int = 1,
        rate: float | None = None) -> dict[str, Any]:
    from connectors.sandbox import generate_company
    from connectors.sandbox.server import free_port
    from core.db import make_engine
    from core.models import WebhookEvent

    db_url = fresh_database("postgresql", "crmsync_webhook_bench")
    key = Fernet.generate_key().decode()
    sandbox_port, api_ports = free_port(), [free_port() for _ in range(api_processes)]
    redis_proc, redis_url = start_redis()  # its own: no job left from an earlier run
    env = {**os.environ, "CRMSYNC_DATABASE_URL": db_url, "CRMSYNC_REDIS_URL": redis_url,
           "CRMSYNC_SECRET_KEY": key, "CRMSYNC_LOG_LEVEL": "WARNING",
           "CRMSYNC_WEBHOOK_RATE_PER_SECOND": "1000000",
           "CRMSYNC_ALLOW_ENDPOINTS": "127.0.0.1"}  # the local sandbox
    procs = [subprocess.Popen([sys.executable, "-m", "cli", "sandbox", "zoho", "--port",
                               str(sandbox_port), "--deals", str(deals), "--seed", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), redis_proc]
    try:
        sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        wait_for(f"{sandbox_url}/_sandbox/stats", procs[0])
        connection_ids = prepare(db_url, sandbox_url, key, connections)
        apis = [subprocess.Popen([sys.executable, "-m", "tests.bench.webhook_bench",
                                  "--serve-api", str(port), "--http", http, "--loop", loop],
                                 env=env) for port in api_ports]
        procs.extend(apis)
        log = open(os.environ.get("CRMSYNC_BENCH_WORKER_LOG", os.devnull), "wb")  # noqa: SIM115
        worker = subprocess.Popen([sys.executable, "-m", "cli", "worker"], env=env,
                                  stdout=log, stderr=log)
        procs.append(worker)
        for port, api in zip(api_ports, apis, strict=True):
            wait_for(f"http://127.0.0.1:{port}/health", api)
        deal_ids = sorted(generate_company(seed=1, deals=deals).deals)
        payloads = notifications(events, deal_ids, connections)
        urls = [f"http://127.0.0.1:{port}" for port in api_ports]
        worker_cpu = settled(worker.pid)  # started: its start-up CPU not counted
        load = os.getloadavg()[0]
        database = DatabaseCpu(db_url)
        api_cpu, own_cpu = sum(process_cpu(a.pid) for a in apis), time.process_time()
        sandbox_cpu = process_cpu(procs[0].pid)
        wall, latencies = asyncio.run(fire(urls, payloads, concurrency, connection_ids, rate))
        api_cpu = sum(process_cpu(a.pid) for a in apis) - api_cpu
        own_cpu = time.process_time() - own_cpu
        engine = make_engine(db_url)
        with engine.connect() as conn:
            stored = conn.scalar(select(func.count()).select_from(WebhookEvent))
        drain_started = time.perf_counter()
        while True:
            with engine.connect() as conn:
                left = conn.scalar(text("SELECT count(*) FROM webhook_event "
                                        "WHERE status = 'received'"))
            if not left or time.perf_counter() - drain_started > 300:
                break
            time.sleep(0.2)
        drain = time.perf_counter() - drain_started
        worker_cpu = process_cpu(worker.pid) - worker_cpu
        database_cpu = database.stop()
        sandbox_cpu = process_cpu(procs[0].pid) - sandbox_cpu
        with engine.connect() as conn:
            processed = conn.scalar(text("SELECT count(*) FROM webhook_event "
                                         "WHERE status = 'processed'"))
            waited = [float(s) for s in conn.scalars(text(
                "SELECT extract(epoch FROM processed_at - received_at) FROM webhook_event "
                "WHERE status = 'processed'"))]
            runs, calls = conn.execute(text("SELECT count(*), coalesce(sum(api_calls), 0) "
                                            "FROM sync_run WHERE mode = 'webhook'")).one()
        engine.dispose()
        return {"api_processes": api_processes, "connections": connections,
                "rate_per_s": rate or "as fast as answered",
                "server": resolved(http, loop),
                "requests": len(payloads), "unique": events,
                "stored": stored,
                "processed": processed, "wall_s": wall, "accepted_per_s": len(payloads) / wall,
                "p50_ms": pct(latencies, 50), "p99_ms": pct(latencies, 99),
                "max_ms": max(latencies) * 1000, "drain_after_intake_s": drain,
                "webhook_runs": runs, "events_per_run": events / max(1, runs),
                "api_calls": calls,
                "processed_after_p50_s": statistics.median(waited),
                "processed_after_p95_s": statistics.quantiles(waited, n=20)[-1],
                "api_cpu_ms_per_request": api_cpu * 1000 / len(payloads),
                "worker_cpu_ms_per_event": worker_cpu * 1000 / events,
                "postgresql_cpu_ms_per_event": database_cpu * 1000 / events,
                "sandbox_cpu_ms_per_event": sandbox_cpu * 1000 / events,
                "load_generator_cpu_ms_per_request": own_cpu * 1000 / len(payloads),
                "load_average_1m_before": load, "load_average_1m_after": os.getloadavg()[0]}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deals", type=int, default=5_000)
    parser.add_argument("--api-processes", type=int, default=1)
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--connections", type=int, default=1,
                        help="crmsync connections the events are spread over")
    parser.add_argument("--rate", type=float,
                        help="events a second in all (default: as fast as the API answers)")
    parser.add_argument("--serve-api", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_api:
        serve_api(args.serve_api, args.http, args.loop)
        return
    result = run(args.events, args.concurrency, args.deals, args.api_processes, args.http,
                 args.loop, args.connections, args.rate)
    print(f"webhook intake, PostgreSQL + Redis (arq worker running), {os.cpu_count()} cores")
    for name, value in result.items():
        print(f"  {name:34} {value:,.2f}" if "cpu" in name else
              f"  {name:34} {value:,.1f}" if isinstance(value, float) else
              f"  {name:34} {value:,}" if isinstance(value, int) else f"  {name:34} {value}")


if __name__ == "__main__":
    main()
