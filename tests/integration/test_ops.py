"""Operations: /ops/prometheus (derived from the database), /health, /sync-runs, log redaction."""

import re
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core import store
from core.db import session_scope
from core.logs import redact
from core.models import Connection
from tests.api_support import make_key, running_api

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{LABEL}(,{LABEL})*\}})? "
                    r"(-?[0-9.e+-]+|\+Inf|NaN)$")


def add_run(engine, cid, *, mode="incremental", status="succeeded", seconds=None, wait=2.0,
            api_calls=0, counts=None):
    with session_scope(engine) as session:
        run = store.create_run(session, connection_id=cid, mode=mode)
        values = {"status": status, "api_calls": api_calls, "counts": counts or {},
                  "created_at": T0, "started_at": T0 + timedelta(seconds=wait)}
        if seconds is not None:
            values["finished_at"] = values["started_at"] + timedelta(seconds=seconds)
        store.update_run(session, int(run.id or 0), **values)


def add_connection(engine, name, status="active", last_synced_at=None):
    with session_scope(engine) as session:
        c = Connection(provider="zoho", name=name, config={}, status=status,
                       last_synced_at=last_synced_at)
        session.add(c)
        session.flush()
        return int(c.id or 0)


def check_format(body: str) -> None:
    """The text format, strictly: HELP then TYPE before a family's samples, well-formed samples."""
    declared: dict[str, str] = {}
    helped: set[str] = set()
    for line in body.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name in helped, line
            assert kind in ("counter", "gauge", "histogram"), line
            declared[name] = kind
        else:
            match = SAMPLE.match(line)
            assert match, f"not a sample line: {line!r}"
            name = match.group(1)
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            assert name in declared or declared.get(base) == "histogram", line
    assert body.endswith("\n")


async def test_prometheus_metrics_come_from_the_database(engine):
    a = add_connection(engine, "a", last_synced_at=T0)
    b = add_connection(engine, "b", status="needs_reauth")
    deals = {"fetched": 120, "upserted": 110, "deleted": 3}
    add_run(engine, a, mode="full", seconds=0.5, api_calls=40,
            counts={"deals": deals, "users": {"fetched": 5, "upserted": 5, "deleted": 0}})
    add_run(engine, a, seconds=30, api_calls=4, counts={"deals": deals})
    add_run(engine, a, status="failed", seconds=7200, api_calls=1)
    add_run(engine, b, status="running", wait=0.05)
    with engine.begin() as conn:
        for i, status in enumerate(("received", "processed", "processed", "failed")):
            conn.execute(text("INSERT INTO webhook_event (connection_id, provider, dedupe_key, "
                              "status, attempts, received_at) VALUES (:c, 'zoho', :k, :s, 0, "
                              ":t)"), {"c": a, "k": f"k{i}", "s": status, "t": T0})
    async with running_api(engine) as api:
        anonymous = await api.client.get("/ops/prometheus", headers={"Authorization": ""})
        assert anonymous.status_code == 401
        response = await api.get("/ops/prometheus", headers={
            "Authorization": f"Bearer {make_key(engine, 'read')}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    check_format(response.text)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for f in text_string_to_metric_families(response.text) for s in f.samples}

    def value(name, **labels):
        return got[(name, tuple(sorted((k, str(v)) for k, v in labels.items())))]

    assert value("crmsync_connections", status="active") == 1
    assert value("crmsync_connections", status="needs_reauth") == 1
    assert value("crmsync_connection_last_success_timestamp_seconds",
                 connection_id=a) == T0.timestamp()
    assert value("crmsync_sync_runs_total", connection_id=a, mode="incremental",
                 status="succeeded") == 1
    assert value("crmsync_sync_runs_total", connection_id=a, mode="incremental",
                 status="failed") == 1
    assert value("crmsync_sync_runs_in_progress", connection_id=b, mode="incremental",
                 status="running") == 1
    assert value("crmsync_api_calls_total", connection_id=a) == 45
    assert value("crmsync_api_calls_total", connection_id=b) == 0
    assert value("crmsync_sync_records_total", connection_id=a, stream="deals",
                 kind="fetched") == 240
    assert value("crmsync_sync_records_total", connection_id=a, stream="deals",
                 kind="deleted") == 6
    assert value("crmsync_sync_records_total", connection_id=a, stream="users",
                 kind="upserted") == 5
    # histogram of durations (incremental: 30 s and 7200 s), cumulative, +Inf = count
    h = "crmsync_sync_duration_seconds"
    assert value(f"{h}_bucket", mode="incremental", le="15") == 0
    assert value(f"{h}_bucket", mode="incremental", le="60") == 1
    assert value(f"{h}_bucket", mode="incremental", le="14400") == 2
    assert value(f"{h}_bucket", mode="incremental", le="+Inf") == 2
    assert value(f"{h}_count", mode="incremental") == 2
    assert abs(value(f"{h}_sum", mode="incremental") - 7230) < 0.01
    assert value(f"{h}_bucket", mode="full", le="1") == 1
    latency = "crmsync_job_latency_seconds"
    assert value(f"{latency}_count", mode="incremental") == 3  # the running one has started
    assert value(f"{latency}_bucket", mode="incremental", le="0.1") == 1
    assert value("crmsync_webhook_events_total", connection_id=a) == 4
    assert value("crmsync_webhook_events", connection_id=a, status="processed") == 2


async def test_prometheus_on_an_empty_store_is_still_valid(engine):
    async with running_api(engine) as api:
        response = await api.get("/ops/prometheus")
    check_format(response.text)
    names = {f.name for f in text_string_to_metric_families(response.text)}
    assert {"crmsync_sync_runs", "crmsync_api_calls", "crmsync_sync_duration_seconds"} <= names


async def test_health_without_redis_reports_in_process_jobs(engine):
    async with running_api(engine) as api:
        body = (await api.client.get("/health", headers={"Authorization": ""})).json()
    assert body == {"status": "ok", "database": "ok", "redis": "not configured",
                    "worker": {"status": "in-process"}}


async def test_sync_runs_list_filters_and_pages(engine):
    a = add_connection(engine, "a")
    b = add_connection(engine, "b")
    for _ in range(3):
        add_run(engine, a, status="failed", seconds=1)
    add_run(engine, a, seconds=1)
    add_run(engine, b, seconds=1)
    async with running_api(engine) as api:
        failed = await api.all_pages("/api/v1/sync-runs", status="failed", connection_id=a,
                                     limit=2)
        assert len(failed) == 3 and {r["status"] for r in failed} == {"failed"}
        assert [r["id"] for r in failed] == sorted((r["id"] for r in failed), reverse=True)
        of_b = (await api.get("/api/v1/sync-runs", params={"connection_id": b})).json()
        assert [r["connection_id"] for r in of_b["data"]] == [b]
        assert set(of_b["data"][0]) >= {"counts", "api_calls", "error", "started_at"}
        bad = await api.get("/api/v1/sync-runs", params={"status": "exploded"})
        assert 400 <= bad.status_code < 500 and "error" in bad.json()


def test_redaction_masks_credentials_wherever_they_appear():
    line = ("POST https://accounts.zoho.com/oauth/v2/token?refresh_token=1000.abc&client_id=1000.X"
            "&client_secret=s3cr3t&grant_type=refresh_token Authorization: Zoho-oauthtoken 1000.tok"
            ' postgresql://crmsync:hunter2@db/crmsync {"app_secret": "zz"}')
    masked = redact(line)
    for secret in ("1000.abc", "s3cr3t", "1000.tok", "hunter2", '"zz"'):
        assert secret not in masked
    assert "grant_type=refresh_token" in masked and "client_id=1000.X" in masked
