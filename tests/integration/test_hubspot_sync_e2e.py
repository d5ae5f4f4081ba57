"""HubSpot end to end: the sandbox over real HTTP, synced into SQLite and PostgreSQL, and
compared exactly with what the sandbox's account holds (docs/vendors/hubspot.md)."""

import asyncio
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, select

from connectors.hubspot import client as hubspot_client
from connectors.hubspot.client import DailyLimitReached
from connectors.hubspot.sandbox import create_app
from connectors.hubspot.sandbox.state import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_TOKEN,
    HubSpotState,
)
from connectors.hubspot.sandbox.wire import stage_label
from connectors.sandbox import Company, generate_company
from connectors.sandbox.server import BackgroundServer
from core.db import session_scope
from core.models import Account as StoredAccount
from core.models import Connection, SyncRun, User
from core.models import Deal as StoredDeal
from tests.integration.test_fxiaoke_sync_e2e import control, run_row, stored
from tests.integration.zoho_helpers import make_context, sync

STATIC = {"access_token": SANDBOX_TOKEN, "client_secret": SANDBOX_CLIENT_SECRET}
OAUTH = {"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET,
         "refresh_token": SANDBOX_REFRESH_TOKEN}
DEAL_FIELDS = ("name", "amount", "currency", "amount_home", "stage", "status", "close_date",
               "remote_created_at", "remote_modified_at", "owner_email", "account_remote_id",
               "pipeline", "deleted_at")
ACCOUNT_FIELDS = ("name", "industry", "owner_email", "remote_created_at", "remote_modified_at",
                  "deleted_at")
MONEY = Decimal("0.0001")


@pytest.fixture(autouse=True)
def no_search_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the connector at the documented 5 searches a second (the sandbox enforces it)."""
    monkeypatch.setattr(hubspot_client, "SEARCH_RATE", hubspot_client.RateBudget(5, 1.0))


def serve(company: Company, **kwargs: Any) -> BackgroundServer:
    app = create_app(company, **kwargs)
    server = BackgroundServer(app)
    server.hs_state = app.state.hubspot  # type: ignore[attr-defined]
    return server


def state_of(server: BackgroundServer) -> HubSpotState:
    state: HubSpotState = server.hs_state  # type: ignore[attr-defined]
    return state


def add_connection(ctx: Any, url: str, secrets: dict[str, str] | None = None) -> int:
    with session_scope(ctx.engine) as session:
        connection = Connection(provider="hubspot", name="hubspot sandbox",
                                config={"base_url": url, "burst_limit": 190},
                                secrets_encrypted=ctx.secrets.seal(secrets or STATIC))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def expected(state: HubSpotState, gone: dict[str, datetime] | None = None
             ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every live deal and company as the account shows them (the dataset through §2-§6),
    plus the tombstones the store must hold: archived records (archivedAt) and `gone`."""
    company, wire = state.company, state.wire
    deals: dict[str, dict[str, Any]] = {}
    for deal in company.deals.values():
        stage = company.stage_by_id[deal.stage_id]
        rate = wire.conversion_rate(deal.currency)
        home = (deal.amount * rate).quantize(Decimal("0.01")) if state.home_amounts \
            else (deal.amount * rate).quantize(MONEY)
        deals[deal.id] = {
            "name": deal.name, "amount": deal.amount, "currency": deal.currency,
            "amount_home": home, "stage": stage_label(stage), "status": stage.category,
            "close_date": deal.close_date, "remote_created_at": deal.created_at,
            "remote_modified_at": deal.modified_at,
            "owner_email": company.rep_by_id[deal.owner_id].email,
            "account_remote_id": deal.account_id, "pipeline": stage.pipeline,
            "deleted_at": None}
    accounts = {a.id: {"name": a.name, "industry": a.industry,
                       "owner_email": company.rep_by_id[a.owner_id].email,
                       "remote_created_at": a.created_at, "remote_modified_at": a.modified_at,
                       "deleted_at": None} for a in company.accounts.values()}
    tombstones = {d.id: d.deleted_at for e in ("deals", "accounts") for d in state.archived(e)}
    tombstones.update(gone or {})
    return deals, {**accounts, **{i: {"deleted_at": at} for i, at in tombstones.items()
                                  if i not in deals and i not in accounts}}


def assert_store_equals_sandbox(engine: Engine, connection_id: int, state: HubSpotState,
                                gone: dict[str, datetime] | None = None) -> None:
    want_deals, want_rest = expected(state, gone)
    got_deals = stored(engine, connection_id, StoredDeal, DEAL_FIELDS)
    got_accounts = stored(engine, connection_id, StoredAccount, ACCOUNT_FIELDS)
    live_accounts = {i: r for i, r in want_rest.items() if "name" in r}
    tombstones = {i: r["deleted_at"] for i, r in want_rest.items() if "name" not in r}
    for got, want in ((got_deals, want_deals), (got_accounts, live_accounts)):
        missing = set(want) - set(got)
        assert not missing, (len(missing), sorted(missing)[:5])
        diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
                 if got[i][k] != v]
        assert not diffs, (len(diffs), diffs[:5])
    dead = {i: r["deleted_at"] for got in (got_deals, got_accounts) for i, r in got.items()
            if i not in want_deals and i not in live_accounts}
    assert dead == {i: at for i, at in tombstones.items() if i in dead}, "wrong tombstone times"
    assert set(dead) <= set(tombstones), sorted(set(dead) - set(tombstones))[:5]


@pytest.fixture
def company() -> Company:
    return generate_company(seed=17, deals=1600, accounts=140)


async def test_full_then_incremental_sync_matches_the_account(engine, db_url, company):
    with serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        assert len({d.currency for d in company.deals.values()}) >= 3  # multi-currency
        assert state.archived("deals")  # some deals are archived already
        run_id = await sync(ctx, connection_id, "full")
        run = run_row(engine, run_id)
        assert run.status == "succeeded", run.error
        assert_store_equals_sandbox(engine, connection_id, state)
        kinds = [a.kind for a in company.activities.values()]
        list_pages = -(-len(company.deals) // 100) + -(-len(company.accounts) // 100) + sum(
            -(-kinds.count(k) // 100) for k in set(kinds))  # §13: calls, meetings, ...
        assert list_pages <= run.api_calls <= list_pages + 24, run.api_calls
        with session_scope(engine) as session:
            statuses = set(session.scalars(select(StoredDeal.status).where(
                StoredDeal.connection_id == connection_id)))
            assert {"open", "won", "lost"} <= statuses
            owners = {u.remote_id: u for u in session.scalars(select(User).where(
                User.connection_id == connection_id))}
            assert set(owners) == {r.id for r in company.reps}  # owner ids, not user ids
            assert not owners[next(r.id for r in company.reps if not r.active)].active \
                if any(not r.active for r in company.reps) else True
            connection = session.get(Connection, connection_id)
            assert connection is not None and connection.home_currency == "USD"

        ids = sorted(company.deals)
        won = next(s.name for s in company.stages if s.category == "won")
        control(server, "PATCH", f"/deals/{ids[0]}", json={"stage": won})
        control(server, "PATCH", f"/deals/{ids[1]}", json={"amount": "12345.67",
                                                           "currency": "EUR"})
        control(server, "POST", "/deals", json={"name": "Fresh deal", "amount": "999.99",
                                                "currency": "JPY", "close_date": "2026-12-31"})
        control(server, "DELETE", f"/deals/{ids[2]}")  # archived (§10)
        merged = control(server, "POST", "/hubspot/merge", json={
            "object": "deals", "primary": ids[3], "merged": ids[4]})
        assert merged["merged"] == [ids[4]]
        control(server, "DELETE", f"/accounts/{sorted(company.accounts)[0]}")
        run_id = await sync(ctx, connection_id, "incremental")
        run = run_row(engine, run_id)
        # deals and companies, then each activity object's search and archived list (§13)
        assert run.status == "succeeded" and run.api_calls <= 48, (run.error, run.api_calls)
        gone = {ids[4]: company.deals[ids[3]].modified_at}  # merged away at the merge
        assert_store_equals_sandbox(engine, connection_id, state, gone)
        with session_scope(engine) as session:
            row = session.scalars(select(StoredDeal).where(
                StoredDeal.connection_id == connection_id, StoredDeal.remote_id == ids[0])).one()
            assert (row.status, row.stage) == ("won", stage_label(company.stage_named(won)))
            fresh = session.scalars(select(StoredDeal).where(
                StoredDeal.connection_id == connection_id,
                StoredDeal.name == "Fresh deal")).one()
            assert str(fresh.close_date) == "2026-12-31"  # the calendar day, no zone shift

        # a full sync tombstones what it no longer sees, even without an archived entry
        victim = ids[10]
        company.delete_deal(victim, permanent=True)  # purged from the recycle bin
        run_id = await sync(ctx, connection_id, "full")
        assert run_row(engine, run_id).status == "succeeded"
        got = stored(engine, connection_id, StoredDeal, ("deleted_at",))
        assert got[victim]["deleted_at"] is not None


async def test_converted_amounts_oauth_and_a_burst_of_429s(engine, db_url, company):
    """Deals without amount_in_home_currency are converted with the account's rates (§6);
    OAuth tokens are minted once for the run; injected 429s and 500s retry and converge."""
    with serve(company, home_amounts=False) as server:
        state = state_of(server)
        for fault in ({"kind": "429", "count": 3, "path": "/crm/v3/objects/deals", "after": 2},
                      {"kind": "500", "count": 2, "after": 5}):
            control(server, "POST", "/faults", json=fault)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url, OAUTH)
        run_id = await sync(ctx, connection_id, "full")
        assert run_row(engine, run_id).status == "succeeded", run_row(engine, run_id).error
        assert_store_equals_sandbox(engine, connection_id, state)
        stats = control(server, "GET", "/stats")
        assert stats["served"]["429"] == 3 and stats["served"]["500"] == 2, stats
        assert stats["token_grants"] == 1


async def test_more_than_10000_deals_sharing_one_modified_time(sqlite_engine, sqlite_url):
    """§3: an incremental read after a mass update of over 10,000 deals in one second (on
    the default store only: the windows are the connector's, the same on either store)."""
    engine, db_url = sqlite_engine, sqlite_url
    company = generate_company(seed=23, deals=12_500, accounts=200)
    with serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        assert run_row(engine, await sync(ctx, connection_id, "full")).status == "succeeded"
        result = control(server, "POST", "/mutate", json={"fraction": 1.0, "seed": 3})
        stamps = {company.deals[i].modified_at for i in result["edited"] + result["added"]}
        assert len(stamps) == 1 and len(result["edited"]) + len(result["added"]) > 10_000
        run_id = await sync(ctx, connection_id, "incremental")
        run = run_row(engine, run_id)
        assert run.status == "succeeded", run.error
        assert_store_equals_sandbox(engine, connection_id, state)
        stats = control(server, "GET", "/stats")
        assert stats["served"].get("429", 0) == 0, stats  # within 5 searches a second


async def test_the_daily_limit_stops_the_sync_and_the_next_one_resumes(engine, db_url, company):
    with serve(company, daily_limit=20) as server:  # the metadata, then pages of 3 streams
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        with pytest.raises(DailyLimitReached):
            await sync(ctx, connection_id, "full")
        with session_scope(engine) as session:
            run = session.scalars(select(SyncRun)).one()
            connection = session.get(Connection, connection_id)
            assert connection is not None and "daily API limit" in (connection.last_error or "")
        assert run.status == "failed" and "next sync resumes" in (run.error or "")
        assert SANDBOX_TOKEN not in (run.error or "")
        kept = stored(engine, connection_id, StoredDeal, ("name",))
        assert 0 < len(kept) < len(company.deals)  # what was synced stays
        state.daily_limit = None
        run_id = await sync(ctx, connection_id, "full")
        assert run_row(engine, run_id).status == "succeeded"
        assert_store_equals_sandbox(engine, connection_id, state)


async def test_a_revoked_refresh_token_marks_the_connection_needs_reauth(engine, db_url,
                                                                         company):
    with serve(company) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url, {**OAUTH,
                                                         "refresh_token": "revoked-token-7"})
        with pytest.raises(Exception, match="invalid_grant"):
            await sync(ctx, connection_id, "full")
        with session_scope(engine) as session:
            connection = session.get(Connection, connection_id)
            assert connection is not None and connection.status == "needs_reauth"
            assert "revoked-token-7" not in (connection.last_error or "")
            assert "BAD_REFRESH_TOKEN" in (connection.last_error or "")


async def test_a_change_not_yet_in_search_is_read_by_the_next_sync(sqlite_engine, sqlite_url,
                                                                   company):
    """§3: changes take moments to reach search; the cursor stays behind, so a change the
    first incremental sync could not see is read by the next one."""
    engine, db_url = sqlite_engine, sqlite_url
    with serve(company, search_lag=2.0) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        await sync(ctx, connection_id, "full")
        deal_id = sorted(company.deals)[0]
        control(server, "PATCH", f"/deals/{deal_id}", json={"amount": "777.77"})
        await sync(ctx, connection_id, "incremental")  # search does not show it yet
        assert stored(engine, connection_id, StoredDeal, ("amount",))[deal_id]["amount"] != \
            Decimal("777.77")
        await asyncio.sleep(max(0.0, company.deals[deal_id].modified_at.timestamp() + 2.5 -
                                time.time()))
        await sync(ctx, connection_id, "incremental")
        assert_store_equals_sandbox(engine, connection_id, state)
