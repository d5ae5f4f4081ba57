"""Fxiaoke end to end: the sandbox over real HTTP, synced into SQLite and PostgreSQL."""

from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.fxiaoke import callbacks
from connectors.fxiaoke import client as fx_client
from connectors.fxiaoke.sandbox import create_app
from connectors.fxiaoke.sandbox.state import (
    SANDBOX_AES_KEY,
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_PERMANENT_CODE,
    FxiaokeState,
)
from connectors.fxiaoke.sandbox.wire import hex_id
from connectors.http import tls_context
from connectors.sandbox import Account, Company, Deal, generate_company
from connectors.sandbox.server import BackgroundServer
from core.db import session_scope
from core.models import Account as StoredAccount
from core.models import Connection, SyncRun, User
from core.models import Deal as StoredDeal
from tests.integration.zoho_helpers import control, make_context, run_row, stored, sync

SECRETS = {"app_id": SANDBOX_APP_ID, "app_secret": SANDBOX_APP_SECRET,
           "permanent_code": SANDBOX_PERMANENT_CODE, "aes_key": SANDBOX_AES_KEY}
DEAL_FIELDS = ("name", "amount", "currency", "exchange_rate", "amount_home", "stage", "status",
               "probability", "close_date", "remote_created_at", "remote_modified_at",
               "owner_email", "owner_name", "account_remote_id", "account_name", "pipeline",
               "deleted_at")
ACCOUNT_FIELDS = ("name", "industry", "owner_email", "owner_name", "remote_created_at",
                  "remote_modified_at", "deleted_at")


@pytest.fixture(autouse=True)
def fast_budget(monkeypatch):
    """The per-interface budget (docs/vendors/fxiaoke.md §6) on a 1 s window, so tests need
    not wait 20 s."""
    monkeypatch.setattr(fx_client, "RATE", fx_client.RateBudget(100, 1.0))


def serve(company: Company, **kwargs: Any) -> BackgroundServer:
    kwargs.setdefault("window", 1.0)
    app = create_app(company, **kwargs)
    server = BackgroundServer(app)
    server.fx_state = app.state.fxiaoke  # type: ignore[attr-defined]
    return server


def state_of(server: BackgroundServer) -> FxiaokeState:
    state: FxiaokeState = server.fx_state  # type: ignore[attr-defined]
    return state


def add_connection(ctx: Any, url: str, **config: Any) -> int:
    config = {"base_url": url, **config}
    config.setdefault("current_open_user_id", None)
    if config["current_open_user_id"] is None and "admin_mobile" not in config:
        del config["current_open_user_id"]
        config["admin_mobile"] = "13800130000"  # the manager, employee 1000
    config = {k: v for k, v in config.items() if v is not None}
    with session_scope(ctx.engine) as session:
        connection = Connection(provider="fxiaoke", name="fxiaoke sandbox", config=config,
                                secrets_encrypted=ctx.secrets.seal(SECRETS))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def expected(state: FxiaokeState) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Every deal and account the tenant shows, from the dataset (not from the wire)."""
    company, tenant = state.company, state.tenant
    voided = {i: at for i, (_, at) in state.voided.items() if i not in state.purged}
    names = {a.id: a.name for a in company.accounts.values()}
    names.update({i: r.name for i, (r, _) in state.voided.items() if isinstance(r, Account)})
    deals: dict[str, dict[str, Any]] = {}
    accounts: dict[str, dict[str, Any]] = {}
    live_deals = [(d, None) for d in company.deals.values()]
    live_accounts = [(a, None) for a in company.accounts.values()]
    gone = [(r, voided[i]) for i, (r, _) in state.voided.items() if i in voided]
    for deal, at in live_deals + [(r, t) for r, t in gone if isinstance(r, Deal)]:
        assert isinstance(deal, Deal)
        stage = company.stage_by_id[deal.stage_id]
        owner = company.rep_by_id[deal.owner_id]
        amount = tenant.amount(deal)
        deals[hex_id(deal.id)] = {
            "name": deal.name, "amount": amount, "currency": "CNY",
            "exchange_rate": Decimal(1), "amount_home": amount,
            "stage": tenant.stage_of[stage.id].label, "status": stage.category,
            "probability": Decimal(deal.probability), "close_date": deal.close_date,
            "remote_created_at": deal.created_at,
            "remote_modified_at": deal.modified_at if at is None else _ms(at),
            "owner_email": tenant.user(owner).get("email"), "owner_name": owner.full_name,
            "account_remote_id": hex_id(deal.account_id) if deal.account_id else None,
            "account_name": names.get(deal.account_id or ""),
            "pipeline": stage.pipeline, "deleted_at": None if at is None else _ms(at),
        }
    for account, at in live_accounts + [(r, t) for r, t in gone if isinstance(r, Account)]:
        assert isinstance(account, Account)
        owner = company.rep_by_id[account.owner_id]
        accounts[hex_id(account.id)] = {
            "name": account.name, "industry": account.industry,
            "owner_email": tenant.user(owner).get("email"),
            "owner_name": owner.full_name, "remote_created_at": account.created_at,
            "remote_modified_at": account.modified_at if at is None else _ms(at),
            "deleted_at": None if at is None else _ms(at),
        }
    return deals, accounts


def _ms(value: int) -> Any:
    from connectors.fxiaoke.wire import from_ms

    return from_ms(value)


def assert_store_equals_sandbox(engine: Engine, connection_id: int, state: FxiaokeState,
                                *, purged_known: set[str] | None = None) -> None:
    want_deals, want_accounts = expected(state)
    for model, fields, want in ((StoredDeal, DEAL_FIELDS, want_deals),
                                (StoredAccount, ACCOUNT_FIELDS, want_accounts)):
        got = stored(engine, connection_id, model, fields)
        extra = set(got) - set(want)
        # purged records the store saw voided keep their tombstone; nothing else is extra
        assert all(got[i]["deleted_at"] is not None for i in extra), sorted(extra)[:5]
        assert extra <= (purged_known or set()), sorted(extra)[:5]
        missing = set(want) - set(got)
        assert not missing, (model.__name__, len(missing), sorted(missing)[:5])
        diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
                 if got[i][k] != v]
        assert not diffs, (model.__name__, len(diffs), diffs[:5])


def wire(server: BackgroundServer, path: str, data: dict[str, Any]) -> dict[str, Any]:
    """A business call made the way any Fxiaoke client makes it (§1.1 body style)."""
    token = httpx.post(f"{server.url}/cgi/corpAccessToken/get/V2", json={
        "appId": SANDBOX_APP_ID, "appSecret": SANDBOX_APP_SECRET,
        "permanentCode": SANDBOX_PERMANENT_CODE}, verify=tls_context()).json()
    state = state_of(server)
    body = {"corpAccessToken": token["corpAccessToken"], "corpId": token["corpId"],
            "currentOpenUserId": state.tenant.fsuid[state.company.manager.id], "data": data}
    result: dict[str, Any] = httpx.post(f"{server.url}{path}", json=body,
                                        verify=tls_context()).json()
    return result


async def test_full_and_incremental_sync_over_10000_deals(engine, db_url):
    company = generate_company(seed=11, deals=10_500, accounts=300)
    with serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        run_id = await sync(ctx, connection_id, "full")
        run = run_row(engine, run_id)
        assert run.status == "succeeded", run.error
        assert len(company.deals) > 10_000
        assert_store_equals_sandbox(engine, connection_id, state)
        pages = -(-len(company.deals) // 99) + -(-len(company.accounts) // 99)
        pages += -(-len(state.table("ActiveRecordObj").rows) // 99)  # follow-up records
        assert pages <= run.api_calls <= pages + 40, run.api_calls  # + ties, token, directory

        # edits, additions, voids and purges between syncs, through the control API
        ids = sorted(company.deals)
        moved = company.deals[ids[0]]
        control(server, "PATCH", f"/deals/{ids[0]}", json={"stage": "Closed Won"})
        control(server, "PATCH", f"/deals/{ids[1]}", json={"amount": "12345.67"})
        control(server, "POST", "/deals", json={"name": "Fresh deal", "amount": "999.99",
                                                "close_date": "2026-03-31"})
        control(server, "DELETE", f"/deals/{ids[2]}")  # voided: stays queryable, invalid
        account_id = sorted(company.accounts)[0]
        control(server, "DELETE", f"/accounts/{account_id}")  # voids its deals too
        control(server, "POST", "/accounts", json={"name": "Brand New Ltd",
                                                   "industry": "Retail"})
        run_id = await sync(ctx, connection_id, "incremental")
        run = run_row(engine, run_id)
        assert run.status == "succeeded" and run.api_calls < 20, (run.error, run.api_calls)
        assert_store_equals_sandbox(engine, connection_id, state)
        with session_scope(engine) as session:
            won = session.scalars(select(StoredDeal).where(
                StoredDeal.remote_id == hex_id(moved.id))).one()
            assert (won.status, won.stage) == ("won", "赢单")
            connection = session.get(Connection, connection_id)
            assert connection is not None and connection.home_currency == "CNY"
            assert session.scalars(select(User).where(User.connection_id == connection_id,
                                                      User.email == company.manager.email)).one()

        # purge the voided deal (§4: only voided records can be deleted): the tombstone stays
        assert wire(server, "/cgi/crm/v2/data/delete", {
            "dataObjectApiName": "NewOpportunityObj", "idList": [hex_id(ids[2])]}
        )["errorCode"] == 0
        await sync(ctx, connection_id, "incremental")
        assert_store_equals_sandbox(engine, connection_id, state,
                                    purged_known={hex_id(ids[2])})


@pytest.fixture
def company() -> Company:
    return generate_company(seed=5, deals=1200, accounts=120)


async def test_voided_then_purged_between_syncs_needs_a_full_sync(engine, db_url, company):
    with serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url,
                                       current_open_user_id=state.tenant.fsuid[
                                           company.manager.id])
        await sync(ctx, connection_id, "full")
        doomed = sorted(company.deals)[3]
        control(server, "DELETE", f"/deals/{doomed}")
        assert wire(server, "/cgi/crm/v2/data/delete", {
            "dataObjectApiName": "NewOpportunityObj", "idList": [hex_id(doomed)]}
        )["errorCode"] == 0
        await sync(ctx, connection_id, "incremental")
        got = stored(engine, connection_id, StoredDeal, ("deleted_at",))
        assert got[hex_id(doomed)]["deleted_at"] is None  # an incremental read cannot know
        await sync(ctx, connection_id, "full")
        got = stored(engine, connection_id, StoredDeal, ("deleted_at",))
        assert got[hex_id(doomed)]["deleted_at"] is not None
        assert_store_equals_sandbox(engine, connection_id, state,
                                    purged_known={hex_id(doomed)})


async def test_rate_limits_and_busy_errors_pause_and_converge(engine, db_url, company,
                                                              monkeypatch):
    # the connector's own budget is off: the sandbox's 14001 must pause it, not fail it
    monkeypatch.setattr(fx_client, "RATE", fx_client.RateBudget(10_000, 0.5))
    with serve(company, calls_per_window=5, window=0.5, concurrency_limit=3) as server:
        for fault in ({"kind": "500", "count": 3, "path": "/cgi/crm/v2/data/query",
                       "after": 2},
                      {"kind": "expire_token", "count": 1, "after": 6},
                      {"kind": "truncated", "count": 1, "path": "/cgi/crm/v2/data/query",
                       "after": 4}):
            control(server, "POST", "/faults", json=fault)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        run_id = await sync(ctx, connection_id, "full")
        assert run_row(engine, run_id).status == "succeeded", run_row(engine, run_id).error
        assert_store_equals_sandbox(engine, connection_id, state_of(server))
        stats = control(server, "GET", "/stats")
        assert stats["served"].get("14001", 0) > 0 and stats["served"]["500"] == 3, stats


async def test_daily_quota_stops_the_sync_and_the_next_one_resumes(engine, db_url, company):
    with serve(company, daily_quota=12) as server:  # room for a page of deals beside the
        # follow-up records read at the same time
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        with pytest.raises(fx_client.QuotaExhausted):
            await sync(ctx, connection_id, "full")
        with session_scope(engine) as session:
            run = session.scalars(select(SyncRun)).one()
        assert run.status == "failed" and "30002" in (run.error or "")
        assert "quota" in (run.error or "") and "sandbox-app-secret" not in (run.error or "")
        kept = stored(engine, connection_id, StoredDeal, ("name",))
        assert 0 < len(kept) < len(company.deals)  # what was synced stays
        control(server, "PATCH", "/fxiaoke", json={"daily_quota": None, "quota_used": 0})
        run_id = await sync(ctx, connection_id, "incremental")
        assert run_row(engine, run_id).status == "succeeded"
        assert_store_equals_sandbox(engine, connection_id, state)


async def test_rejected_credentials_mark_the_connection_needs_reauth(engine, db_url, company):
    with serve(company) as server:
        ctx = make_context(engine, db_url)
        with session_scope(engine) as session:
            connection = Connection(provider="fxiaoke", name="bad", config={
                "base_url": server.url, "admin_mobile": "13800130000"},
                secrets_encrypted=ctx.secrets.seal({**SECRETS, "app_secret": "wrong-secret-9"}))
            session.add(connection)
            session.flush()
            connection_id = int(connection.id or 0)
        with pytest.raises(Exception, match="10006"):
            await sync(ctx, connection_id, "full")
        with session_scope(engine) as session:
            connection = session.get(Connection, connection_id)
            assert connection is not None and connection.status == "needs_reauth"
            assert "wrong-secret-9" not in (connection.last_error or "")
            assert "app_secret" in (connection.last_error or "")


def test_changes_fire_signed_encrypted_callbacks(company):
    received: list[callbacks.CallbackEvent] = []

    async def receiver(request: Request) -> JSONResponse:
        event = callbacks.verify(await request.json(), SANDBOX_AES_KEY)
        received.append(event)
        return JSONResponse(callbacks.acknowledgement(SANDBOX_AES_KEY))

    with BackgroundServer(Starlette(routes=[Route("/hook", receiver, methods=["POST"])])) \
            as hook, serve(company) as server:
        control(server, "PATCH", "/fxiaoke", json={"callback_url": f"{hook.url}/hook"})
        deal_id = sorted(company.deals)[0]
        control(server, "PATCH", f"/deals/{deal_id}", json={"amount": "10.00"})
        control(server, "DELETE", f"/deals/{deal_id}")
        created = control(server, "POST", "/accounts", json={"name": "Hook Ltd"})
        state_of(server).wait_for_callbacks()
        log = control(server, "GET", "/fxiaoke")["callbacks"]
    assert [(e.event_type, e.api_name, e.data_id) for e in received] == [
        ("update", "NewOpportunityObj", hex_id(deal_id)),
        ("invalid", "NewOpportunityObj", hex_id(deal_id)),
        ("add", "AccountObj", hex_id(created["id"])),
    ]
    assert all(entry["status"] == "delivered" and entry["attempts"] == 1 for entry in log)


def test_a_receiver_that_does_not_acknowledge_gets_retries(company):
    bodies: list[dict[str, Any]] = []

    async def receiver(request: Request) -> JSONResponse:
        bodies.append(await request.json())
        return JSONResponse({"ok": True})  # not the signed "success" reply

    with BackgroundServer(Starlette(routes=[Route("/hook", receiver, methods=["POST"])])) \
            as hook, serve(company, callback_url=None) as server:
        control(server, "PATCH", "/fxiaoke", json={"callback_url": f"{hook.url}/hook"})
        control(server, "PATCH", f"/deals/{sorted(company.deals)[0]}", json={"name": "Renamed"})
        state_of(server).wait_for_callbacks()
        log = control(server, "GET", "/fxiaoke")["callbacks"]
    assert [b.get("retryTimes") for b in bodies] == [None, 1, 2]
    assert len({b["messageId"] for b in bodies}) == 1
    for body in bodies:  # every retry is signed with retryTimes included (§5)
        callbacks.verify(body, SANDBOX_AES_KEY)
    assert log[0]["status"] == "failed" and log[0]["attempts"] == 3


async def test_records_changed_during_a_full_sync_are_not_skipped(engine, db_url, company):
    from core import store
    from workers.jobs import sync_connection

    with serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        changed: list[str] = []

        def edit_while_reading(stream: str, counts: Any, done: bool) -> None:
            # after each of the first deal pages, edit deals the read has not reached and
            # some it has passed: with offset paging, rows would shift and be skipped
            if stream == "deals" and not done and len(changed) < 30:
                result = control(server, "POST", "/mutate",
                                 json={"fraction": 0.005, "seed": len(changed)})
                changed.extend(result["edited"] + result["added"] + result["deleted"])

        with session_scope(engine) as session:
            run_id = int(store.create_run(session, connection_id=connection_id,
                                          mode="full").id or 0)
        await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode="full",
                              progress=edit_while_reading)
        assert changed
        # the full read saw every change made before it passed them; the rest are newer
        # than its cursor and arrive with the next incremental sync
        await sync(ctx, connection_id, "incremental")
        assert_store_equals_sandbox(engine, connection_id, state)
