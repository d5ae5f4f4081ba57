"""Operations with the real Redis and a real sync: /health's worker heartbeat, JSON logs."""

import json
import logging
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from redis.asyncio import Redis

from api.app import create_app
from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from connectors.zoho.sandbox import create_app as zoho_sandbox
from core.config import Settings
from core.logs import configure_logging
from core.types import utcnow
from tests.integration.zoho_helpers import SANDBOX_SECRETS, add_connection, make_context, sync
from workers import heartbeat
from workers.queue import ArqRunner


async def test_health_reports_redis_and_the_worker_heartbeat(pg_engine, pg_url, redis_url):
    ctx = make_context(pg_engine, pg_url)
    settings = Settings(database_url=pg_url, redis_url=redis_url,
                        secret_key=ctx.settings.secret_key)
    ctx.settings = settings
    app = create_app(settings, ctx=ctx)
    redis = Redis.from_url(redis_url)
    async with (app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                  base_url="http://test") as client):
            missing = await client.get("/health")
            assert missing.status_code == 200
            assert missing.json()["status"] == "degraded"
            assert missing.json()["redis"] == "ok"
            assert missing.json()["worker"]["status"] == "missing"

            await heartbeat.beat(redis)
            body = (await client.get("/health")).json()
            assert body["status"] == "ok", body
            assert body["worker"]["status"] == "ok" and body["worker"]["age_seconds"] < 5
            assert body["worker"]["worker"] == heartbeat.worker_name()

            await heartbeat.beat(redis, now=utcnow() - timedelta(minutes=5))
            body = (await client.get("/health")).json()
            assert body["status"] == "degraded"
            assert body["worker"]["status"] == "stale" and body["worker"]["age_seconds"] >= 299

            live = app.state.jobs
            app.state.jobs = ArqRunner(ctx, ArqRedis(host="127.0.0.1", port=free_port(),
                                                     password="redis-pass-77"))
            try:
                down = await client.get("/health")
            finally:
                await app.state.jobs.close()
                app.state.jobs = live
            assert down.status_code == 200
            assert down.json()["status"] == "degraded"
            assert down.json()["redis"].startswith("error: ")
            assert down.json()["worker"] == {"status": "unknown"}
            assert "redis-pass-77" not in down.text
    await redis.aclose()


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


async def test_a_syncs_logs_are_json_lines_with_ids_and_no_secret(
        engine, db_url, capfd, restore_logging):
    company = generate_company(seed=2, deals=300, accounts=40)
    configure_logging(Settings(log_level="DEBUG", log_format="json"))
    with BackgroundServer(zoho_sandbox(company)) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        run_id = await sync(ctx, connection_id, "full")
        logging.getLogger("crmsync.test").info(
            "a careless line: %s", f"{server.url}/oauth/v2/token?refresh_token="
            f"{SANDBOX_SECRETS['refresh_token']}&client_secret={SANDBOX_SECRETS['client_secret']}")
    err = capfd.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]
    ours = [line for line in lines if line["logger"] == "crmsync.jobs"]
    assert [line["message"] for line in ours] == ["sync started", "sync finished"]
    assert all(line["connection_id"] == connection_id and line["run_id"] == run_id
               for line in ours)
    assert ours[1]["api_calls"] > 0
    assert {"ts", "level", "logger", "message"} <= set(lines[0])
    for secret in (*SANDBOX_SECRETS.values(), str(ctx.settings.secret_key)):
        assert secret not in err
    assert any("refresh_token=***" in line["message"] for line in lines)


def test_serve_logs_json_lines(tmp_path):
    port = free_port()
    env = {**os.environ, "CRMSYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'crmsync.db'}",
           "CRMSYNC_LOG_FORMAT": "json"}
    env.pop("CRMSYNC_REDIS_URL", None)
    crmsync = str(Path(sys.executable).with_name("crmsync"))
    process = subprocess.Popen([crmsync, "serve", "--port", str(port)], env=env, cwd=tmp_path,
                               stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90  # the harness's patience, not a claim: a process
        while True:  # importing crmsync on a loaded machine took over 30 s
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health")
                break
            except httpx.TransportError:
                assert process.poll() is None, "crmsync serve exited"
                assert time.monotonic() < deadline, "crmsync serve did not answer in 90 s"
                time.sleep(0.1)
        assert health.json()["worker"] == {"status": "in-process"}
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    lines = [json.loads(line) for line in err.decode().splitlines() if line.strip()]
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
