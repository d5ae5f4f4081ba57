"""Vendor budgets shared through the machine's real Redis (workers.limits.RedisLimits).

The end-to-end tests run two separate processes (two "workers") syncing one connection
at once, each built the way `crmsync worker` builds its jobs (build_context with
CRMSYNC_REDIS_URL), against a sandbox that answers 429 / 14001 when they exceed the
vendor's budget together, and counts token calls.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet
from redis.asyncio import Redis

from connectors.fxiaoke import sandbox as fx_sandbox
from connectors.fxiaoke.sandbox.state import (
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_PERMANENT_CODE,
)
from connectors.fxiaoke.wire import QUERY_PATH, TOKEN_PATH
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho import sandbox as zoho_sandbox
from core.security import SecretBox
from workers.limits import PREFIX, RedisLimits

ROOT = Path(__file__).resolve().parents[2]

def box() -> SecretBox:
    return SecretBox(Fernet.generate_key())


# -- the primitives, between two instances (as two processes would hold them) ---------------


async def test_the_in_flight_cap_holds_across_processes(redis_url):
    a, b = RedisLimits(redis_url, box()), RedisLimits(redis_url, box())
    inside, most = [0], [0]

    async def call(limits: RedisLimits) -> None:
        async with limits.slot("inflight:connection:1", 3):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            await asyncio.sleep(0.02)
            inside[0] -= 1

    await asyncio.gather(*(call(a if i % 2 else b) for i in range(20)))
    assert most[0] == 3
    assert await a.redis.zcard(PREFIX + "inflight:connection:1") == 0  # all released
    await a.aclose()
    await b.aclose()


async def test_a_killed_process_holds_its_slot_only_until_the_lease_ends(redis_url):
    dead, alive = RedisLimits(redis_url, box(), lease=0.5), RedisLimits(redis_url, box())
    held = dead.slot("inflight:c", 1)  # (kept referenced: never released, as if killed)
    await held.__aenter__()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with alive.slot("inflight:c", 1):
        waited = loop.time() - start
    assert 0.4 <= waited < 2.0
    await dead.aclose()
    await alive.aclose()


async def test_the_call_budget_holds_across_processes(redis_url):
    a, b = RedisLimits(redis_url, box()), RedisLimits(redis_url, box())
    loop = asyncio.get_running_loop()
    start = loop.time()
    times: list[float] = []

    async def call(limits: RedisLimits) -> None:
        await limits.take("fxiaoke:abc|/cgi/crm/v2/data/query", 5, 0.5)
        times.append(loop.time() - start)

    await asyncio.gather(*(call(a if i % 2 else b) for i in range(12)))
    times.sort()
    assert times[4] < 0.25 and times[5] >= 0.45 and times[10] >= 0.95
    # no 6 calls within one window (seen from here, so give or take a scheduling delay)
    assert all(later - earlier >= 0.4 for earlier, later in zip(times, times[5:], strict=False))
    await a.aclose()
    await b.aclose()


async def test_places_dated_when_their_calls_ended_hold_across_processes(redis_url):
    a, b = RedisLimits(redis_url, box()), RedisLimits(redis_url, box())
    loop = asyncio.get_running_loop()
    start = loop.time()
    places = [await a.take("hubspot:abc:search", 2, 0.3) for _ in range(2)]
    await asyncio.sleep(0.2)  # the calls take 0.2 s
    await a.restamp("hubspot:abc:search", 0.3, places)
    await b.take("hubspot:abc:search", 2, 0.3)  # another process waits for the new dates
    assert loop.time() - start >= 0.45
    late = await a.take("hubspot:abc:late", 1, 0.1)
    await asyncio.sleep(0.2)  # longer than the window: the place had left it
    await a.restamp("hubspot:abc:late", 0.1, [late])
    before = loop.time()
    await b.take("hubspot:abc:late", 1, 0.1)
    assert loop.time() - before >= 0.08
    await a.aclose()
    await b.aclose()


async def test_one_lock_holder_at_a_time_and_a_dead_holder_expires(redis_url):
    # the holders take turns with the default lock_ttl: with 0.4 s, a pause of the process
    # that long (a full garbage collection on a loaded machine) let a second one in
    a, b = RedisLimits(redis_url, box()), RedisLimits(redis_url, box())
    inside, most = [0], [0]

    async def work(limits: RedisLimits) -> None:
        async with limits.lock("zoho:abc"):
            inside[0] += 1
            most[0] = max(most[0], inside[0])
            await asyncio.sleep(0.01)
            inside[0] -= 1

    await asyncio.gather(*(work(a if i % 2 else b) for i in range(6)))
    assert most[0] == 1
    dying = RedisLimits(redis_url, box(), lock_ttl=0.4)
    held = dying.lock("zoho:dead")  # the holder dies (kept referenced: never released)
    await held.__aenter__()
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with a.lock("zoho:dead"):
        assert 0.3 <= loop.time() - start < 2.0
    for limits in (a, b, dying):
        await limits.aclose()


async def test_tokens_are_encrypted_expire_and_are_shared(redis_url):
    key = Fernet.generate_key()
    a, b = RedisLimits(redis_url, SecretBox(key)), RedisLimits(redis_url, SecretBox(key))
    value = {"access_token": "1000.secret-access-token", "api_domain": "https://x"}
    await a.put_token("zoho:abc", value, 30)
    assert await b.get_token("zoho:abc") == value
    raw = await a.redis.get(PREFIX + "token:zoho:abc")
    assert raw is not None and b"secret-access-token" not in raw
    assert 0 < await a.redis.pttl(PREFIX + "token:zoho:abc") <= 30_000
    other = RedisLimits(redis_url, box())  # another CRMSYNC_SECRET_KEY cannot read it
    assert await other.get_token("zoho:abc") is None
    await b.drop_token("zoho:abc", {"access_token": "an older one", "api_domain": "https://x"})
    assert await a.get_token("zoho:abc", fresh=True) == value  # replaced meanwhile: kept
    await b.drop_token("zoho:abc", value)
    assert await a.get_token("zoho:abc", fresh=True) is None
    assert await b.get_token("zoho:abc") is None  # its own copy went with it
    await a.put_token("zoho:abc", value, 0.05)
    await asyncio.sleep(0.1)
    assert await b.get_token("zoho:abc") is None
    for limits in (a, b, other):
        await limits.aclose()


# -- two worker processes on one connection -----------------------------------------------------


async def _child(provider: str, url: str, redis_url: str, database_url: str, key: str,
                 budget: str) -> dict[str, Any]:
    """One worker process: build_context as `crmsync worker` does, then sync connection 1."""
    from connectors.fxiaoke import client as fx_client
    from connectors.http import RetryPolicy
    from core import store
    from core.config import Settings
    from core.db import session_scope
    from core.models import Connection, SyncRun
    from workers.context import build_context
    from workers.jobs import sync_connection

    calls, window = budget.split("/")
    fx_client.RATE = fx_client.RateBudget(int(calls), float(window))
    ctx = build_context(Settings(database_url=database_url, redis_url=redis_url,
                                 secret_key=key))
    ctx.retry = RetryPolicy(attempts=8, initial_wait=0.05, max_wait=0.5)
    if provider == "zoho":
        config: dict[str, Any] = {"accounts_url": url}
        secrets = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
                   "refresh_token": "sandbox-refresh-token"}
    else:
        config = {"base_url": url, "admin_mobile": "13800130000"}
        secrets = {"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET,
                   "permanent_code": SANDBOX_PERMANENT_CODE}
    with session_scope(ctx.engine) as session:
        connection = Connection(provider=provider, name="shared", config=config,
                                secrets_encrypted=ctx.secrets.seal(secrets))
        session.add(connection)
        session.flush()
        connection_id = int(connection.id or 0)
        run_id = int(store.create_run(session, connection_id=connection_id, mode="full").id or 0)
    redis = Redis.from_url(redis_url)
    await redis.incr("test:ready")
    for _ in range(6000):  # start together with the other one
        if int(await redis.get("test:ready") or 0) >= 2:
            break
        await asyncio.sleep(0.005)
    await redis.aclose()
    await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode="full")
    await ctx.limits.aclose()
    with session_scope(ctx.engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return {"connection_id": connection_id, "status": run.status, "error": run.error,
                "api_calls": run.api_calls}


def _run_two_workers(tmp_path: Path, template: Path, provider: str, url: str, redis_url: str,
                     budget: str = "100/20") -> list[dict[str, Any]]:
    key = Fernet.generate_key().decode()
    env = {**os.environ, "CRMSYNC_LOG_LEVEL": "WARNING"}
    stores = []  # each worker's own store, migrated: a copy of the session's (sqlite_template)
    for i in range(2):  # (not tests.conftest's helper: the workers would import the conftest)
        shutil.copyfile(template, tmp_path / f"worker{i}.db")
        stores.append(f"sqlite:///{tmp_path / f'worker{i}.db'}")
    children = [subprocess.Popen(
        [sys.executable, "-m", "tests.integration.test_shared_limits", provider, url, redis_url,
         store, key, budget],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for store in stores]
    results = []
    for child in children:
        out, err = child.communicate(timeout=240)
        assert child.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


async def _keys_all_expire(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    keys = await redis.keys(PREFIX + "*")
    assert keys  # the workers did share their budgets here
    assert all([await redis.pttl(k) > 0 for k in keys]), keys
    assert not any(b"sandbox" in k or b"secret" in k or b"perm" in k for k in keys), keys
    await redis.aclose()


async def test_two_workers_on_one_zoho_connection_share_its_cap_and_token(
        redis_url, tmp_path, sqlite_template):
    cap = 5  # ZohoConnector.max_in_flight; 429 above it (docs/vendors/zoho.md §7)
    # latency: the two workers' requests overlap up to the cap even on a busy machine
    # (with 0.03 s they fell short there)
    app = zoho_sandbox.create_app(generate_company(seed=5, deals=1200, accounts=150),
                                  latency=0.1, concurrency_limit=cap)
    state = app.state.zoho
    with BackgroundServer(app) as server:
        results = await asyncio.to_thread(_run_two_workers, tmp_path, sqlite_template, "zoho",
                                          server.url, redis_url)
    assert [r["status"] for r in results] == ["succeeded", "succeeded"], results
    assert state.harness.served["429"] == 0
    assert state.harness.max_in_flight == cap  # both used the cap, never more together
    assert state.token_grants == 1  # one refresh for both (docs/vendors/zoho.md §1)
    await _keys_all_expire(redis_url)


async def test_two_workers_on_one_fxiaoke_connection_share_its_budget_and_token(
        redis_url, tmp_path, sqlite_template):
    # docs/vendors/fxiaoke.md §6: 100 calls per 20 s per interface, scaled down to 6 per second
    # (the workers keep 6 per 1.5 s: under a loaded CI machine a request can reach the
    # sandbox a few hundred milliseconds after its slot was taken).
    app = fx_sandbox.create_app(generate_company(seed=5, deals=500, accounts=150),
                                calls_per_window=6, window=1.0)
    state = app.state.fxiaoke
    start = time.monotonic()
    with BackgroundServer(app) as server:
        results = await asyncio.to_thread(_run_two_workers, tmp_path, sqlite_template,
                                          "fxiaoke", server.url, redis_url, "6/1.5")
    assert [r["status"] for r in results] == ["succeeded", "succeeded"], results
    queries = state.harness.calls[QUERY_PATH]
    assert queries > 6  # more than one window's worth together
    assert state.harness.served["14001"] == 0
    assert state.harness.calls[TOKEN_PATH] == 1  # one token for both processes
    assert time.monotonic() - start >= (queries // 6 - 1) * 1.5  # they waited for each other
    await _keys_all_expire(redis_url)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_child(*sys.argv[1:7]))))
