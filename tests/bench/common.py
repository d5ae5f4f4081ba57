"""What the benchmarks share: a fresh, migrated database of their own, a sandbox in a
process of its own, a job context with a connection, and a timed sync."""

import asyncio
import atexit
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import psycopg
import redis
from cryptography.fernet import Fernet
from sqlalchemy import make_url, text

from connectors.sandbox.server import free_port
from core import store
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.models import Connection, SyncRun
from core.security import SecretBox
from workers.context import JobContext
from workers.jobs import sync_connection

PG_URL = os.environ.get("CRMSYNC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, prefix: str, *, keep: bool = False) -> str:
    """A migrated SQLite file, or a PostgreSQL database named `{prefix}_{pid}`, dropped when
    the benchmark's process ends unless `keep` (a benchmark's --keep)."""
    if kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    else:
        admin = make_engine(PG_URL)
        name = f"{prefix}_{os.getpid()}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
        if not keep:
            atexit.register(drop_database, url)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def drop_database(url: str) -> None:
    """Drop a PostgreSQL database of fresh_database (nothing for SQLite)."""
    if url.startswith("sqlite"):
        return
    admin = make_engine(PG_URL)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)"))
    admin.dispose()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process of this machine used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DatabaseCpu:
    """CPU seconds of the PostgreSQL backends of the database at `url` (zero for SQLite),
    polled every `every` seconds (50 ms) from a thread: under a loaded machine, CPU time says
    more than wall time. A backend that ends between two polls loses its last `every`; a
    benchmark of many long-lived backends polls less often (each poll reads every backend's
    /proc entry: 70 backends every 50 ms cost fleet_bench's process more CPU than its
    webhook sender).

    The thread runs in the measured process, so its CPU counts as the process's: it polls
    on a plain psycopg connection (autocommit, a prepared statement), about 7 ms of CPU a
    second where the same polls through SQLAlchemy took 16 (docs/benchmarks.md, p2-sync7)."""

    def __init__(self, url: str, cpu: Callable[[int], float] = process_cpu,
                 every: float = 0.05) -> None:
        self.cpu = cpu  # a backend's CPU seconds by pid (process_cpu: clock ticks, 10 ms)
        self.every = every  # seconds between polls
        self.seen: dict[int, float] = {}
        self.done = threading.Event()
        self.thread: threading.Thread | None = None
        if url.startswith("postgresql"):
            self.thread = threading.Thread(target=self._poll, args=(url,), daemon=True)
            self.thread.start()

    def _poll(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        libpq = make_url(PG_URL).set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(libpq, autocommit=True) as connection:
            while not self.done.wait(self.every):
                pids = connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = %s "
                    "AND pid <> pg_backend_pid()", (name,), prepare=True).fetchall()
                for (pid,) in pids:
                    try:
                        self.seen[pid] = self.cpu(pid)
                    except OSError:  # it ended meanwhile
                        continue

    def so_far(self) -> float:
        """CPU seconds of the backends seen until now."""
        return sum(self.seen.values())

    def stop(self) -> float:
        self.done.set()
        if self.thread is not None:
            self.thread.join()
        return self.so_far()


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    """A Redis server of this run's own (no other worker takes its jobs, no job
    left from an earlier run takes this one's), stopped with the returned process."""
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def start_sandbox(provider: str, deals: int, *options: str, seed: int = 1,
                  started: list[subprocess.Popen[bytes]] | None = None,
                  ) -> tuple[subprocess.Popen[bytes], str]:
    """`crmsync sandbox <provider>` with `deals` deals of `seed` on a free port: (process, URL).
    The process joins `started` before its company is generated (up to a minute for 100,000
    deals), so a caller stopped meanwhile stops it too."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sandbox", provider, "--port", str(port),
         "--deals", str(deals), "--seed", str(seed), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if started is not None:
        started.append(proc)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_sandbox/stats", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the sandbox did not start")


def bench_context(url: str) -> JobContext:
    """A job context on the store at `url` with a fresh key; sandboxes on 127.0.0.1 allowed."""
    key = Fernet.generate_key().decode()
    return JobContext(settings=Settings(database_url=url, secret_key=key,
                                        allow_endpoints="127.0.0.1"),
                      engine=make_engine(url), secrets=SecretBox(key))


def add_connection(ctx: JobContext, provider: str, config: Mapping[str, Any],
                   secrets: Mapping[str, Any], name: str = "bench") -> int:
    """A connection named `name` with its secrets sealed: its id."""
    with session_scope(ctx.engine) as session:
        connection = Connection(provider=provider, name=name, config=dict(config),
                                secrets_encrypted=ctx.secrets.seal(dict(secrets)))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


async def timed_sync(ctx: JobContext, connection_id: int, mode: str) -> tuple[float, SyncRun]:
    """One sync job of `mode`, timed: (seconds, its succeeded run)."""
    with session_scope(ctx.engine) as session:
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    started = time.perf_counter()
    await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode=mode)
    took = time.perf_counter() - started
    with session_scope(ctx.engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None and run.status == "succeeded", run and run.error
        session.expunge(run)
    return took, run


class KeepAlive:
    """One HTTP/1.1 keep-alive connection on asyncio streams, for the benchmarks' load
    generators: httpx costs the load generator more CPU per request than the API under test
    spends on it, on the same two cores. Requests one at a time; answers with a
    Content-Length (uvicorn's)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, url: str) -> "KeepAlive":
        target = httpx.URL(url)
        reader, writer = await asyncio.open_connection(target.host, target.port)
        return cls(reader, writer, target.host)

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST a JSON `body` to `path`: (status, answer's body)."""
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
                          f"Content-Type: application/json\r\nContent-Length: {len(body)}"
                          "\r\n\r\n".encode() + body)
        status = int((await self.reader.readline()).split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()
