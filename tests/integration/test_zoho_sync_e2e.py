"""Zoho end to end: the sandbox over real HTTP, synced into SQLite and PostgreSQL.

Every sandbox-backed test runs against both kinds of org: with multi-currency (Enterprise
and above) and without it (one currency, /org/currencies answers CURRENCIES_NOT_ENABLED).
"""

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import httpx
import pytest
from sqlalchemy import func, select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core.db import session_scope
from core.models import Connection, Deal, DealStageChange, SyncRun
from tests.integration.zoho_helpers import (
    add_connection,
    assert_store_equals_sandbox,
    control,
    make_context,
    sync,
)


class Crash(BaseException):
    """Stands in for the process dying mid-sync."""


@pytest.fixture
def company(request):
    """2,300 deals: past the 2,000 records `page` reaches (docs/vendors/zoho.md), with
    batches of equal Modified_Time longer than a page; a test whose point is not the size
    asks for hundreds (`HUNDREDS`)."""
    deals, accounts = getattr(request, "param", (2300, 250))
    return generate_company(seed=7, deals=deals, accounts=accounts)


HUNDREDS = pytest.mark.parametrize("company", [(600, 80)], ids=["600 deals"], indirect=True)


@pytest.fixture(params=[True, False], ids=["multi-currency", "one-currency"])
def multi(request) -> bool:
    return bool(request.param)


@pytest.fixture
def sandbox(company, multi):
    app = create_app(company, concurrency_limit=6, multi_currency=multi)  # converts `company`
    with BackgroundServer(app) as server:
        yield server


def run_row(engine, run_id: int) -> SyncRun:
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        return run


async def test_full_then_incremental_reproduces_the_sandbox(engine, db_url, company, sandbox,
                                                            multi):
    ctx = make_context(engine, db_url)
    connection_id = add_connection(ctx, sandbox.url)

    run_id = await sync(ctx, connection_id, "full")
    assert_store_equals_sandbox(engine, connection_id, company)
    run = run_row(engine, run_id)
    assert run.status == "succeeded" and run.error is None
    assert run.counts is not None and run.counts["deals"]["upserted"] == len(company.deals)
    minimum = -(-len(company.deals) // 200) + -(-len(company.accounts) // 200)
    minimum += sum(-(-sum(a.kind == kind for a in company.activities.values()) // 200)
                   for kind in ("call", "meeting", "task"))  # Calls, Events, Tasks
    # + token, metadata, users, deletions (of five modules), activity fields
    assert minimum <= run.api_calls <= minimum + 26

    # edits, additions and deletions between syncs
    deals = sorted(company.deals)
    moved = company.deals[deals[0]]
    new_stage = next(s for s in company.stages
                     if s.id != moved.stage_id and s.pipeline == company.stage_by_id[
                         moved.stage_id].pipeline)
    company.edit_deal(moved.id, stage_id=new_stage.id)
    company.edit_deal(deals[1], amount="12345.67")
    company.add_deal(name="Fresh deal", amount="999.99", currency="EUR" if multi else None)
    company.delete_deal(deals[2])
    account_id = sorted(company.accounts)[0]
    company.delete_account(account_id)
    company.add_account(name="Brand New Ltd", industry="Retail")

    run_id = await sync(ctx, connection_id, "incremental")
    assert_store_equals_sandbox(engine, connection_id, company)
    run = run_row(engine, run_id)
    assert run.status == "succeeded"
    assert run.api_calls < 25, run.api_calls
    with session_scope(engine) as session:
        change = session.scalars(select(DealStageChange).where(
            DealStageChange.deal_remote_id == moved.id)).one()
        assert change.to_stage == new_stage.name
        deleted = session.scalars(select(Deal).where(Deal.remote_id == deals[2])).one()
        assert deleted.deleted_at is not None  # a tombstone, never a hard delete
        connection = session.get(Connection, connection_id)
        assert connection is not None and connection.home_currency == company.home_currency


async def _calls(url: str) -> int:
    async with httpx.AsyncClient() as client:
        return int((await client.get(f"{url}/_sandbox/stats")).json()["total_calls"])


@HUNDREDS
@pytest.mark.parametrize("multi", [True], ids=["multi-currency"])
async def test_a_sync_of_the_deals_alone_writes_them_and_no_other_stream(engine, db_url, company,
                                                                         sandbox, multi):
    """sync_connection(streams=...): what tests/bench/sync_bench.py compares with Airbyte's
    run of the deals; a choice the connector cannot read fails the run before any call."""
    from core import store
    from core.errors import ConfigError
    from core.models import Account
    from core.types import Stream
    from workers.jobs import sync_connection

    ctx = make_context(engine, db_url)
    connection_id = add_connection(ctx, sandbox.url)
    with session_scope(engine) as session:
        run_id = int(store.create_run(session, connection_id=connection_id, mode="full").id or 0)
    summary = await sync_connection(ctx, connection_id=connection_id, run_id=run_id,
                                    mode="full", streams=(Stream.DEALS,))
    assert set(summary) == {"deals"}
    assert summary["deals"]["upserted"] == len(company.deals)
    assert run_row(engine, run_id).status == "succeeded"
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == len(company.deals)
        assert session.scalar(select(func.count()).select_from(Account)) == 0

    for chosen in ((), ("pipelines",)):
        with session_scope(engine) as session:
            run_id = int(store.create_run(session, connection_id=connection_id,
                                          mode="full").id or 0)
        calls = await _calls(sandbox.url)
        with pytest.raises(ConfigError, match="reads some of users, stages"):
            await sync_connection(ctx, connection_id=connection_id, run_id=run_id,
                                  mode="full", streams=chosen)  # type: ignore[arg-type]
        run = run_row(engine, run_id)
        assert run.status == "failed" and run.error is not None
        assert run.error.startswith("cannot start: a sync of zoho reads some of")
        assert await _calls(sandbox.url) == calls


async def test_faults_mid_sync_converge_to_an_exact_copy(engine, db_url, company, multi):
    app = create_app(company, concurrency_limit=3, hang_seconds=3, multi_currency=multi)
    with BackgroundServer(app) as server:
        ctx = make_context(engine, db_url)
        ctx.http_timeout = 1.0
        connection_id = add_connection(ctx, server.url)
        for fault in (
            {"kind": "429", "count": 4, "path": "/crm/v8/Deals", "after": 2},
            {"kind": "500", "count": 2, "path": "/crm/v8/Accounts"},
            {"kind": "truncated", "count": 2, "path": "/crm/v8/Deals", "after": 4},
            {"kind": "expire_token", "count": 1, "after": 6},
            {"kind": "timeout", "count": 1, "path": "/crm/v8/Deals", "after": 8},
        ):
            control(server, "POST", "/faults", json=fault)
        run_id = await sync(ctx, connection_id, "full")
        assert run_row(engine, run_id).status == "succeeded"
        assert_store_equals_sandbox(engine, connection_id, company)
        stats = control(server, "GET", "/stats")
        assert stats["served"], stats  # the sandbox served the faults it was asked to


async def test_a_crash_mid_sync_resumes_without_loss_or_duplicates(engine, db_url, company,
                                                                   sandbox, monkeypatch):
    from core import store
    from workers.jobs import sync_connection

    # one page a transaction (their 2,300 deals would fit in the first few transactions)
    monkeypatch.setattr("core.sync.MERGE_RECORDS", 200)
    ctx = make_context(engine, db_url)
    connection_id = add_connection(ctx, sandbox.url)
    pages = {"deals": 0}

    def crash_after_three_deal_pages(stream, counts, done):
        if stream == "deals" and not done:
            pages["deals"] += 1
            if pages["deals"] == 3:
                raise Crash  # not an Exception: nothing on the way may swallow it

    with session_scope(engine) as session:
        run_id = int(store.create_run(session, connection_id=connection_id, mode="full").id or 0)
    with pytest.raises(Crash):
        await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode="full",
                              progress=crash_after_three_deal_pages)
    with session_scope(engine) as session:
        partial = session.scalar(select(func.count()).select_from(Deal))
    assert 0 < partial < len(company.deals)

    await sync(ctx, connection_id, "incremental")
    assert_store_equals_sandbox(engine, connection_id, company)
    with session_scope(engine) as session:
        total = session.scalar(select(func.count()).select_from(Deal).where(
            Deal.connection_id == connection_id))
    assert total == len(company.deals)  # nothing duplicated


@HUNDREDS
async def test_metrics_answer_exactly_from_the_synced_org(engine, db_url, company, sandbox,
                                                          multi):
    """Bookings and counts over the whole history equal the sandbox's own figures: in a
    one-currency org amount_home is Amount, to the cent."""
    from core.metrics import definitions as metrics

    ctx = make_context(engine, db_url)
    connection_id = add_connection(ctx, sandbox.url)
    await sync(ctx, connection_id, "full")
    deals = list(company.deals.values())
    start, end = min(d.close_date for d in deals), max(d.close_date for d in deals)
    category = {d.id: company.stage_by_id[d.stage_id].category for d in deals}
    won = [d for d in deals if category[d.id] == "won"]
    home = sum(((d.amount / d.exchange_rate).quantize(Decimal("0.0001")) for d in won),
               Decimal(0))
    with session_scope(engine) as session:
        total = metrics.summary(session, start=start, end=end, group_by="none",
                                connection_id=connection_id, settings=ctx.settings)["total"]
    assert Decimal(str(total["bookings"])) == home.quantize(Decimal("0.01"), ROUND_HALF_UP)
    assert total["deals_won"] == len(won)
    assert total["deals_lost"] == sum(category[d.id] == "lost" for d in deals)
    if not multi:
        assert all(d.currency == company.home_currency for d in deals)
        assert Decimal(str(total["bookings"])) == sum((d.amount for d in won), Decimal(0))


@HUNDREDS
async def test_full_sync_tombstones_records_the_crm_no_longer_has(engine, db_url, company,
                                                                  sandbox):
    ctx = make_context(engine, db_url)
    connection_id = add_connection(ctx, sandbox.url)
    await sync(ctx, connection_id, "full")
    vanished = sorted(company.deals)[5]
    del company.deals[vanished]  # purged long ago: not even in /deleted any more
    company.refresh()
    await sync(ctx, connection_id, "incremental")
    with session_scope(engine) as session:
        row = session.scalars(select(Deal).where(Deal.remote_id == vanished)).one()
        assert row.deleted_at is None  # an incremental sync cannot know
    await sync(ctx, connection_id, "full")
    assert_store_equals_sandbox(engine, connection_id, company)


@HUNDREDS
async def test_rejected_credentials_mark_the_connection_needs_reauth(engine, db_url, sandbox):
    ctx = make_context(engine, db_url)
    with session_scope(engine) as session:
        connection = Connection(provider="zoho", name="bad", config={"accounts_url": sandbox.url},
                                secrets_encrypted=ctx.secrets.seal({
                                    "client_id": "sandbox-client-id",
                                    "client_secret": "sandbox-client-secret",
                                    "refresh_token": "revoked-token-123"}))
        session.add(connection)
        session.flush()
        connection_id = int(connection.id or 0)
    with pytest.raises(Exception, match="invalid_code"):
        await sync(ctx, connection_id, "full")
    with session_scope(engine) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None and connection.status == "needs_reauth"
        assert "revoked-token-123" not in (connection.last_error or "")
        run = session.scalars(select(SyncRun)).one()
        assert run.status == "failed" and "invalid_code" in (run.error or "")
        assert "sandbox-client-secret" not in (run.error or "")


def test_modified_times_share_seconds_across_pages(company):
    # guards the premise of the overlap tests: batches of equal Modified_Time > one page
    stamps: dict[object, int] = {}
    for deal in company.deals.values():
        stamps[deal.modified_at] = stamps.get(deal.modified_at, 0) + 1
    assert max(stamps.values()) > 200
    assert timedelta(0) <= max(company.deals.values(), key=lambda d: d.modified_at).modified_at - \
        min(company.deals.values(), key=lambda d: d.modified_at).modified_at
