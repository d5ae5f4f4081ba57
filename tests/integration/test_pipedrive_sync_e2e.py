"""Pipedrive end to end: the sandbox (written from docs/vendors/pipedrive.md) over real HTTP,
synced into SQLite and PostgreSQL, compared field by field with the sandbox's dataset:
more deals than the largest page (500), won and lost deals, several currencies converted
with the FX table, deleted deals, and what a full sync no longer sees."""

import re
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import orjson
from sqlalchemy import Engine, select

from connectors.pipedrive.sandbox import create_app
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.sandbox import Company, generate_company
from connectors.sandbox.server import BackgroundServer
from core.db import session_scope
from core.metrics.currency import set_rate
from core.models import Account as StoredAccount
from core.models import Connection, FxRate, Stage, SyncRun
from core.models import Deal as StoredDeal
from tests.integration.test_fxiaoke_sync_e2e import control, run_row, stored
from tests.integration.zoho_helpers import make_context, sync

DEAL_FIELDS = ("name", "amount", "currency", "amount_home", "stage", "stage_remote_id",
               "status", "probability", "close_date", "remote_created_at",
               "remote_modified_at", "owner_remote_id", "owner_email", "account_remote_id",
               "pipeline", "deleted_at")
ACCOUNT_FIELDS = ("name", "industry", "owner_remote_id", "owner_email", "remote_created_at",
                  "remote_modified_at", "deleted_at")
API_TOKEN = {"api_token": "sandbox-api-token"}
OAUTH = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
         "refresh_token": "sandbox-refresh-token"}
QUANTUM = Decimal("0.0001")  # core.columns.Money


def add_connection(ctx: Any, url: str, secrets: dict[str, str], **config: Any) -> int:
    with session_scope(ctx.engine) as session:
        for code, per_home in (("EUR", "0.92"), ("GBP", "0.79"), ("CNY", "7.10"),
                               ("JPY", "150.25")):  # USD per unit: the sandbox's own rates
            set_rate(session, code, Decimal(1) / Decimal(per_home))
        connection = Connection(provider="pipedrive", name="pipedrive sandbox",
                                config={"api_url": url, "oauth_url": url, **config},
                                secrets_encrypted=ctx.secrets.seal(secrets))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def expected(state: PipedriveState, rates: dict[str, Decimal]
             ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every live deal and organization, from the dataset (not from the wire)."""
    company: Company = state.company
    deals, accounts = {}, {}
    for deal in company.deals.values():
        stage = company.stage_by_id[deal.stage_id]
        kept = state.wire.kept_stage(deal)  # won/lost deals keep their open stage (§4)
        owner = company.rep_by_id[deal.owner_id]
        home = deal.amount if deal.currency == "USD" else \
            (deal.amount * rates[deal.currency]).quantize(QUANTUM, ROUND_HALF_EVEN)
        deals[deal.id] = {
            "name": deal.name, "amount": deal.amount, "currency": deal.currency,
            "amount_home": home, "stage": kept.name, "stage_remote_id": kept.id,
            "status": stage.category, "probability": Decimal(deal.probability),
            "close_date": deal.close_date, "remote_created_at": deal.created_at,
            "remote_modified_at": deal.modified_at, "owner_remote_id": owner.id,
            "owner_email": owner.email, "account_remote_id": deal.account_id,
            "pipeline": stage.pipeline, "deleted_at": None}
    for account in company.accounts.values():
        owner = company.rep_by_id[account.owner_id]
        accounts[account.id] = {
            "name": account.name, "industry": account.industry,
            "owner_remote_id": owner.id, "owner_email": owner.email,
            "remote_created_at": account.created_at,
            "remote_modified_at": account.modified_at, "deleted_at": None}
    return deals, accounts


def assert_store_equals_sandbox(engine: Engine, connection_id: int, state: PipedriveState,
                                gone: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    with session_scope(engine) as session:
        rates = {r.code: r.rate_to_reporting for r in session.scalars(select(FxRate))}
    want_deals, want_accounts = expected(state, rates)
    for model, fields, want in ((StoredDeal, DEAL_FIELDS, want_deals),
                                (StoredAccount, ACCOUNT_FIELDS, want_accounts)):
        got = stored(engine, connection_id, model, fields)
        live = {i for i, row in got.items() if row["deleted_at"] is None}
        assert live == set(want), (model.__name__, sorted(live ^ set(want))[:5])
        diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
                 if got[i][k] != v]
        assert not diffs, (model.__name__, len(diffs), diffs[:5])
        if model is StoredDeal:
            tombstoned = set(got) - live
            assert tombstoned == set(gone), sorted(tombstoned ^ set(gone))[:5]


async def synced(ctx: Any, engine: Engine, connection_id: int, mode: str) -> SyncRun:
    """A sync run that succeeded."""
    run = run_row(engine, await sync(ctx, connection_id, mode))
    assert run.status == "succeeded", run.error
    return run


async def test_full_and_incremental_sync_equal_the_sandbox(engine, db_url):
    company = generate_company(seed=17, deals=1_300, accounts=140)
    app = create_app(company)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN)
        run = await synced(ctx, engine, connection_id, "full")
        deals = state.company.deals.values()
        statuses = {company.stage_by_id[d.stage_id].category for d in deals}
        assert len(company.deals) > 1_000 and statuses == {"open", "won", "lost"}
        assert len({d.currency for d in deals}) >= 4
        assert_store_equals_sandbox(engine, connection_id, state)
        pages = -(-len(company.deals) // 500) + -(-len(company.accounts) // 500)
        assert pages <= run.api_calls <= pages + 12, run.api_calls  # + metadata, deleted
        with session_scope(engine) as session:  # every outcome from metadata (§4)
            categories = set(session.scalars(select(Stage.category).where(
                Stage.connection_id == connection_id)))
            raws = list(session.scalars(select(StoredDeal.raw)))
        assert categories == {"open", "won", "lost"}
        dumped = orjson.dumps(raws).decode()  # no 40-character hash anywhere (§2)
        assert "Region" in dumped and not re.search(r'"[0-9a-f]{40}"', dumped)

        ids = sorted(company.deals)
        control(server, "PATCH", f"/deals/{ids[0]}", json={"stage": "Closed Won"})
        control(server, "PATCH", f"/deals/{ids[1]}", json={"stage": "Closed Lost"})
        control(server, "PATCH", f"/deals/{ids[2]}", json={"amount": "12345.67",
                                                           "currency": "GBP"})
        control(server, "POST", "/deals", json={"name": "Fresh deal", "amount": "999.99",
                                                "currency": "EUR", "close_date": "2026-03-31"})
        deleted = control(server, "DELETE", f"/deals/{ids[3]}")["id"]
        mutated = control(server, "POST", "/mutate", json={"fraction": 0.03, "seed": 4})
        run = await synced(ctx, engine, connection_id, "incremental")
        assert run.api_calls < 20, run.api_calls
        gone = {deleted, *mutated["deleted"]}
        assert_store_equals_sandbox(engine, connection_id, state, gone)

        # a deal that disappears without a trace (deleted over 30 days ago, §3): only a
        # full sync can see that it is gone
        vanished = ids[10]
        company.deals.pop(vanished)
        company.refresh()
        await sync(ctx, connection_id, "incremental")
        assert stored(engine, connection_id, StoredDeal, ("deleted_at",))[vanished] == {
            "deleted_at": None}
        run = await synced(ctx, engine, connection_id, "full")
        assert_store_equals_sandbox(engine, connection_id, state, gone | {vanished})


async def test_an_oauth_connection_syncs_through_the_token_api_domain(sqlite_engine,
                                                                       sqlite_url):
    company = generate_company(seed=4, deals=120, accounts=30)
    app = create_app(company, token_ttl=3600)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        ctx = make_context(sqlite_engine, sqlite_url)
        connection_id = add_connection(ctx, server.url, OAUTH)
        await synced(ctx, sqlite_engine, connection_id, "full")
        assert state.token_grants == 1  # one token for every stream
        assert_store_equals_sandbox(sqlite_engine, connection_id, state)
        state.tokens.clear()  # every token expires: a 401, one refresh, the call again
        control(server, "PATCH", f"/deals/{sorted(company.deals)[0]}", json={"amount": "5.00"})
        await synced(ctx, sqlite_engine, connection_id, "incremental")
        assert state.token_grants == 2
        assert_store_equals_sandbox(sqlite_engine, connection_id, state)


async def test_a_refused_token_marks_the_connection_needs_reauth(sqlite_engine, sqlite_url):
    app = create_app(generate_company(seed=4, deals=20, accounts=5))
    with BackgroundServer(app) as server:
        ctx = make_context(sqlite_engine, sqlite_url)
        connection_id = add_connection(ctx, server.url, {"api_token": "revoked-token"})
        run_id = 0
        try:
            run_id = await sync(ctx, connection_id, "full")
        except Exception as exc:  # the job re-raises the auth failure after recording it
            assert "api_token" in str(exc)
        with session_scope(sqlite_engine) as session:
            connection = session.get(Connection, connection_id)
            assert connection is not None
            assert connection.status == "needs_reauth", connection.status
            assert "api_token" in (connection.last_error or "")
            assert "revoked-token" not in (connection.last_error or "")
        assert run_id == 0 or run_row(sqlite_engine, run_id).status == "failed"


def test_won_deals_close_on_their_won_date():
    """The sandbox puts won_time on the dataset's close date (§4), which the comparison
    above relies on."""
    company = generate_company(seed=2, deals=50, accounts=10)
    state: PipedriveState = create_app(company).state.pipedrive
    for deal in company.deals.values():
        wire = state.wire.deal(deal)
        if wire["status"] == "won":
            assert wire["won_time"][:10] == deal.close_date.isoformat()
            assert date.fromisoformat(wire["expected_close_date"]) == deal.close_date
