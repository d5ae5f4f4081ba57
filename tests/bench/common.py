"""What the benchmarks share: a fresh, migrated database of their own, and a sandbox in a
process of its own."""

import os
import subprocess
import sys
import tempfile
import time

import httpx
from sqlalchemy import text

from connectors.sandbox.server import free_port
from core.db import make_engine, upgrade

PG_URL = os.environ.get("CRMSYNC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, prefix: str) -> str:
    """A migrated SQLite file, or a PostgreSQL database named `{prefix}_{pid}`."""
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
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def start_sandbox(provider: str, deals: int, *options: str,
                  seed: int = 1) -> tuple[subprocess.Popen[bytes], str]:
    """`crmsync sandbox <provider>` with `deals` deals of `seed` on a free port: (process, URL)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "sandbox", provider, "--port", str(port),
         "--deals", str(deals), "--seed", str(seed), *options],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
