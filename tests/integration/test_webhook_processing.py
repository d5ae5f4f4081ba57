"""core/webhooks.py and the process_webhook_event job, on SQLite and PostgreSQL
(the CRM faked with respx): claims, retries, ordering, sync_run rows."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from cryptography.fernet import Fernet
from sqlalchemy import select, text

from connectors.http import RetryPolicy
from connectors.registry import capabilities, providers, sandbox_of
from core import webhooks
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.errors import ConfigError
from core.metrics.localdates import ZONE_KEY, stored_zone
from core.models import Connection, Deal, DealStageChange, StoreMeta, SyncRun, WebhookEvent
from core.records import DealRecord, Deletion, Page
from core.security import SecretBox
from workers.context import JobContext
from workers.jobs import process_pending_webhooks, process_webhook_event

T0 = datetime(2025, 5, 1, tzinfo=UTC)
ACCOUNTS = "https://accounts.zoho.eu"
API = "https://www.zohoapis.eu"
DELETED_MS = int((T0 + timedelta(days=1)).timestamp() * 1000)


@pytest.fixture
def ctx(engine, db_url) -> JobContext:
    key = Fernet.generate_key().decode()
    return JobContext(settings=Settings(database_url=db_url, secret_key=key), engine=engine,
                      secrets=SecretBox(key),
                      retry=RetryPolicy(attempts=2, initial_wait=0.001, max_wait=0.01))


@pytest.fixture
def connection_id(ctx) -> int:
    with session_scope(ctx.engine) as session:
        row = Connection(provider="zoho", name="z", config={"dc": "eu"},
                         secrets_encrypted=ctx.secrets.seal(
                             {"client_id": "c", "client_secret": "s", "refresh_token": "r"}))
        session.add(row)
        session.flush()
        return int(row.id or 0)


def add_events(engine, connection_id: int, *payloads: dict[str, Any]) -> int:
    with session_scope(engine) as session:
        return webhooks.store_events(session, connection_id=connection_id, provider="zoho",
                                     events=[(f"k{i}-{p}", p) for i, p in enumerate(payloads)])


def events(engine) -> list[WebhookEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))  # type: ignore[arg-type]


def deal(remote_id: str, modified: datetime, stage: str, amount: str = "10") -> DealRecord:
    return DealRecord(remote_id, f"Deal {remote_id}", amount=Decimal(amount), currency="USD",
                      exchange_rate=Decimal(1), amount_home=Decimal(amount), stage=stage,
                      remote_modified_at=modified)


def stored_deal(engine, remote_id: str) -> Deal:
    with session_scope(engine) as session:
        return session.scalars(select(Deal).where(Deal.remote_id == remote_id)).one()


# ---- core ------------------------------------------------------------------------------------


def test_a_batch_of_several_connections_is_stored_per_connection(engine, ctx, connection_id):
    """The API's intake writes many connections' callbacks in one statement (store_batch):
    keys are per connection, a key given twice keeps its last payload, known keys are
    skipped."""
    with session_scope(engine) as session:
        other = Connection(provider="zoho", name="y", config={"dc": "eu"},
                           secrets_encrypted=ctx.secrets.seal({"refresh_token": "r"}))
        session.add(other)
        session.flush()
        second = int(other.id or 0)
    with session_scope(engine) as session:
        assert webhooks.store_batch(session, [
            (connection_id, "zoho", [("a", {"n": 1})]),
            (second, "zoho", [("a", {"n": 2}), ("b", {})]),
            (connection_id, "zoho", [("a", {"n": 3}), ("c", {})]),
        ]) == 4
    with session_scope(engine) as session:
        assert webhooks.store_batch(session, [(connection_id, "zoho", [("a", {"n": 4})]),
                                              (second, "zoho", [("z", {})])]) == 1
        assert webhooks.store_batch(session, []) == 0
    stored = {(e.connection_id, e.dedupe_key): e.payload for e in events(engine)}
    assert stored == {(connection_id, "a"): {"n": 3}, (connection_id, "c"): {},
                      (second, "a"): {"n": 2}, (second, "b"): {}, (second, "z"): {}}


def test_duplicates_are_stored_once_and_claims_do_not_overlap(engine, connection_id):
    with session_scope(engine) as session:
        assert webhooks.store_events(session, connection_id=connection_id, provider="zoho",
                                     events=[("a", {"n": 1}), ("a", {"n": 1}), ("b", {})]) == 2
    with session_scope(engine) as session:
        assert webhooks.store_events(session, connection_id=connection_id, provider="zoho",
                                     events=[("a", {"n": 1})]) == 0
    with session_scope(engine) as session:
        first = webhooks.claim(session, connection_id=connection_id, limit=1)
    with session_scope(engine) as session:
        second = webhooks.claim(session, connection_id=connection_id)
        third = webhooks.claim(session, connection_id=connection_id)
    assert [len(first), len(second), len(third)] == [1, 1, 0]
    assert first[0].payload == {"n": 1}
    later = datetime.now(UTC) + webhooks.LEASE + timedelta(seconds=1)
    with session_scope(engine) as session:  # a dead worker's claim runs out
        assert webhooks.pending_connections(session, now=later) == [connection_id]
        retaken = webhooks.claim(session, connection_id=connection_id, now=later)
    assert sorted(c.id for c in retaken) == sorted([first[0].id, second[0].id])
    assert [e.attempts for e in events(engine)] == [2, 2]


def test_failed_attempts_retry_until_the_limit(engine, connection_id):
    add_events(engine, connection_id, {"x": 1})
    for attempt in range(1, webhooks.MAX_ATTEMPTS + 1):
        with session_scope(engine) as session:
            [claimed] = webhooks.claim(session, connection_id=connection_id)
            webhooks.release(session, [claimed.id], f"boom {attempt}")
        [event] = events(engine)
        assert event.attempts == attempt and event.error == f"boom {attempt}"
        assert event.status == ("failed" if attempt == webhooks.MAX_ATTEMPTS else "received")
    with session_scope(engine) as session:
        assert webhooks.claim(session, connection_id=connection_id) == []


def test_an_older_read_never_rolls_a_record_back(engine, connection_id):
    newer = deal("1", T0 + timedelta(hours=2), "Negotiation", "20")
    older = deal("1", T0 + timedelta(hours=1), "Qualification", "10")
    with session_scope(engine) as session:
        counts = webhooks.apply_changes(session, connection_id=connection_id,
                                        changes=[("deals", Page(records=[newer]))])
    assert counts["deals"] == {"fetched": 1, "upserted": 1, "deleted": 0}
    with session_scope(engine) as session:
        counts = webhooks.apply_changes(session, connection_id=connection_id,
                                        changes=[("deals", Page(records=[older]))])
    assert counts["deals"]["fetched"] == 1  # seen, but the stored version is newer
    row = stored_deal(engine, "1")
    assert (row.stage, row.amount) == ("Negotiation", Decimal("20"))
    with session_scope(engine) as session:  # the same version again: harmless
        webhooks.apply_changes(session, connection_id=connection_id,
                               changes=[("deals", Page(records=[newer]))])
    with session_scope(engine) as session:  # an old deletion does not bury a newer edit
        gone = webhooks.apply_changes(session, connection_id=connection_id, changes=[
            ("deletions", Page(deletions=[Deletion("deals", "1", T0)]))])
    assert gone["deletions"]["deleted"] == 0 and stored_deal(engine, "1").deleted_at is None
    with session_scope(engine) as session:
        webhooks.apply_changes(session, connection_id=connection_id, changes=[
            ("deletions", Page(deletions=[Deletion("deals", "1", T0 + timedelta(days=1))]))])
    assert stored_deal(engine, "1").deleted_at == T0 + timedelta(days=1)


def test_webhooks_that_fill_an_empty_store_give_it_statistics(empty_pg_url):
    """PostgreSQL: deals that arrive by webhook into tables never analyzed get statistics
    as a sync's pages do (core.store.refresh_statistics), and a batch much smaller than the
    table changes nothing. Without them the planner took deal_version for a one-row table
    and closed each batch's versions by scanning every version once per deal: a merge
    took 1.4 s after 15,000 events (docs/benchmarks.md). On a database of its own: nothing
    else writes there, and no earlier statistics."""
    engine = make_engine(empty_pg_url)

    def reltuples() -> dict[str, float]:
        with session_scope(engine) as session:
            return {name: float(n) for name, n in session.execute(text(
                "SELECT relname, reltuples FROM pg_class "
                "WHERE relname IN ('deal', 'deal_version')"))}

    try:
        upgrade(engine)
        with session_scope(engine) as session:
            row = Connection(provider="zoho", name="z", config={})
            session.add(row)
            session.flush()
            cid = int(row.id or 0)
        assert reltuples() == {"deal": -1, "deal_version": -1}  # never analyzed
        first = [deal(str(i), T0, "Qualification") for i in range(40)]
        with session_scope(engine) as session:
            webhooks.apply_changes(session, connection_id=cid, changes=[("deals", Page(first))])
        assert reltuples() == {"deal": 40, "deal_version": 40}
        later = [deal(str(i), T0 + timedelta(hours=1), "Negotiation") for i in range(5)]
        with session_scope(engine) as session:
            webhooks.apply_changes(session, connection_id=cid, changes=[("deals", Page(later))])
        assert reltuples() == {"deal": 40, "deal_version": 40}  # 5 of 40: left to autovacuum
    finally:
        engine.dispose()


# ---- the job (respx) -------------------------------------------------------------------------


def zoho_deal(record_id: str, modified: str, stage: str) -> dict[str, Any]:
    return {"id": record_id, "Deal_Name": f"Deal {record_id}", "Amount": 100, "Stage": stage,
            "Closing_Date": "2025-06-30", "Created_Time": "2025-01-01T00:00:00+00:00",
            "Modified_Time": modified, "Owner": {"id": "u1", "name": "U", "email": "u@x.com"}}


def fake_zoho(mock: respx.MockRouter, deals: list[dict[str, Any]]) -> respx.Route:
    mock.post(f"{ACCOUNTS}/oauth/v2/token").respond(200, json={
        "access_token": "tok", "api_domain": API, "token_type": "Bearer", "expires_in": 3600})
    mock.get(f"{API}/crm/v8/settings/fields").respond(200, json={"fields": []})
    mock.get(f"{API}/crm/v8/settings/layouts").respond(200, json={"layouts": []})
    mock.get(f"{API}/crm/v8/org/currencies").respond(200, json={"currencies": [
        {"iso_code": "USD", "is_base": True}]})
    mock.get(f"{API}/crm/v8/org").respond(200, json={"org": [{"company_name": "X"}]})

    def by_ids(request: httpx.Request) -> httpx.Response:
        wanted = set(request.url.params["ids"].split(","))
        found = [d for d in deals if d["id"] in wanted]
        return httpx.Response(200, json={"data": found}) if found else httpx.Response(204)

    return mock.get(f"{API}/crm/v8/Deals").mock(side_effect=by_ids)


async def test_the_job_processes_pending_events_once_and_records_a_webhook_run(ctx,
                                                                               connection_id):
    add_events(ctx.engine, connection_id,
               {"module": "Deals", "operation": "insert", "ids": ["1"], "server_time": 1},
               {"module": "Deals", "operation": "update", "ids": ["1", "2"], "server_time": 2},
               {"module": "Deals", "operation": "delete", "ids": ["3"], "server_time": DELETED_MS})
    with session_scope(ctx.engine) as session:
        webhooks.apply_changes(session, connection_id=connection_id, changes=[
            ("deals", Page(records=[deal("1", T0, "Qualification"), deal("3", T0, "Open")]))])
    with respx.mock() as mock:
        reads = fake_zoho(mock, [zoho_deal("1", "2025-05-02T00:00:00+00:00", "Closed Won"),
                                 zoho_deal("2", "2025-05-02T00:00:00+00:00", "Qualification")])
        assert await process_webhook_event(ctx, connection_id=connection_id) == 3
        assert await process_webhook_event(ctx, connection_id=connection_id) == 0  # idempotent
    assert reads.call_count == 1
    assert {(e.status, e.attempts) for e in events(ctx.engine)} == {("processed", 1)}
    assert stored_deal(ctx.engine, "1").stage == "Closed Won"
    assert stored_deal(ctx.engine, "2").deleted_at is None
    assert stored_deal(ctx.engine, "3").deleted_at == T0 + timedelta(days=1)
    with session_scope(ctx.engine) as session:
        [run] = session.scalars(select(SyncRun)).all()
        [change] = session.scalars(select(DealStageChange)).all()
    assert (run.mode, run.status, run.error) == ("webhook", "succeeded", None)
    assert run.api_calls >= 2 and run.counts is not None
    assert run.counts["events"] == 3 and run.counts["deals"]["upserted"] == 2
    assert run.counts["deletions"]["deleted"] == 1
    assert (change.deal_remote_id, change.from_stage, change.to_stage) == (
        "1", "Qualification", "Closed Won")


async def test_the_job_takes_batch_after_batch_while_they_come_full(ctx, connection_id,
                                                                  monkeypatch):
    monkeypatch.setattr(webhooks, "BATCH", 2)
    add_events(ctx.engine, connection_id, *(
        {"module": "Deals", "operation": "update", "ids": [str(i)], "server_time": i}
        for i in range(1, 6)))
    with respx.mock() as mock:
        reads = fake_zoho(mock, [zoho_deal(str(i), "2025-05-02T00:00:00+00:00", "Open")
                                 for i in range(1, 6)])
        assert await process_webhook_event(ctx, connection_id=connection_id) == 5
    assert reads.call_count == 3  # 2 + 2 + 1, one connector for the three
    assert {(e.status, e.attempts) for e in events(ctx.engine)} == {("processed", 1)}
    with session_scope(ctx.engine) as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()  # type: ignore[arg-type]
    assert [r.counts["events"] for r in runs if r.counts] == [2, 2, 1]


async def test_a_job_with_nothing_pending_calls_no_crm_and_records_no_run(ctx, connection_id):
    with respx.mock() as mock:  # any CRM call would fail: nothing is routed
        assert await process_webhook_event(ctx, connection_id=connection_id) == 0
        assert not mock.calls
    with session_scope(ctx.engine) as session:
        assert session.scalars(select(SyncRun)).all() == []


async def test_a_job_of_a_provider_without_webhooks_claims_nothing(ctx):
    [provider, *_] = [p for p in providers() if "webhooks" not in capabilities(p)]
    sandbox = sandbox_of(provider)
    assert sandbox is not None
    with session_scope(ctx.engine) as session:
        row = Connection(provider=provider, name="no webhooks",
                         config=sandbox.config("http://127.0.0.1:9"),
                         secrets_encrypted=ctx.secrets.seal(dict(sandbox.secrets)))
        session.add(row)
        session.flush()
        other = int(row.id or 0)
    add_events(ctx.engine, other, {"anything": 1})
    with pytest.raises(ConfigError, match="does not take webhooks"):
        await process_webhook_event(ctx, connection_id=other)
    [event] = events(ctx.engine)
    assert (event.status, event.attempts, event.claimed_at) == ("received", 0, None)


async def test_jobs_put_the_store_in_the_zone_once_per_process(ctx, connection_id):
    """A process checks the store's time zone at its first webhook job (workers.jobs.
    apply_zone), not at every job; a changed CRMSYNC_TIMEZONE is applied at the next."""
    assert ctx.zone_ensured is None
    await process_webhook_event(ctx, connection_id=connection_id)
    assert ctx.zone_ensured == ctx.settings.timezone
    with session_scope(ctx.engine) as session:
        assert stored_zone(session) == ctx.settings.timezone
        session.merge(StoreMeta(key=ZONE_KEY, value="Pacific/Fiji"))  # behind its back
    await process_webhook_event(ctx, connection_id=connection_id)
    with session_scope(ctx.engine) as session:
        assert stored_zone(session) == "Pacific/Fiji"
    ctx.settings = ctx.settings.model_copy(update={"timezone": "Asia/Tokyo"})
    await process_webhook_event(ctx, connection_id=connection_id)
    with session_scope(ctx.engine) as session:
        assert stored_zone(session) == "Asia/Tokyo"
    assert ctx.zone_ensured == "Asia/Tokyo"


async def test_a_crm_failure_leaves_events_pending_with_the_error(ctx, connection_id):
    add_events(ctx.engine, connection_id,
               {"module": "Deals", "operation": "update", "ids": ["1"], "server_time": 1})
    with respx.mock(assert_all_called=False) as mock:
        fake_zoho(mock, []).mock(side_effect=None, return_value=httpx.Response(
            500, json={"code": "INTERNAL_ERROR"}))
        with pytest.raises(Exception, match="500"):
            await process_webhook_event(ctx, connection_id=connection_id)
    [event] = events(ctx.engine)
    assert (event.status, event.attempts, event.claimed_at) == ("received", 1, None)
    assert event.error and "500" in event.error
    with session_scope(ctx.engine) as session:
        [run] = session.scalars(select(SyncRun)).all()
    assert (run.mode, run.status) == ("webhook", "failed")
    with respx.mock(assert_all_called=False) as mock:  # the next job gets it through
        fake_zoho(mock, [zoho_deal("1", "2025-05-02T00:00:00+00:00", "Qualification")])
        assert await process_webhook_event(ctx, connection_id=connection_id) == 1
    [event] = events(ctx.engine)
    assert (event.status, event.attempts) == ("processed", 2)


async def test_the_sweep_takes_events_whose_job_was_lost(ctx, connection_id):
    add_events(ctx.engine, connection_id,
               {"module": "Deals", "operation": "update", "ids": ["1"], "server_time": 1},
               {"module": "Deals", "operation": "update", "ids": ["2"], "server_time": 2})
    with session_scope(ctx.engine) as session:  # a worker claimed one, then died
        webhooks.claim(session, connection_id=connection_id, limit=1,
                       now=datetime.now(UTC) - webhooks.LEASE - timedelta(seconds=1))
    with respx.mock(assert_all_called=False) as mock:
        fake_zoho(mock, [zoho_deal("1", "2025-05-02T00:00:00+00:00", "Qualification"),
                         zoho_deal("2", "2025-05-02T00:00:00+00:00", "Qualification")])
        assert await process_pending_webhooks(ctx) == 2
        assert await process_pending_webhooks(ctx) == 0
    assert [(e.status, e.attempts) for e in events(ctx.engine)] == [("processed", 2),
                                                                   ("processed", 1)]
