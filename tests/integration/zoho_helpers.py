"""Helpers for end-to-end tests against the sandboxes over real HTTP (Zoho's first)."""

from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import Engine, select

from connectors.http import RetryPolicy, tls_context
from connectors.sandbox.dataset import Company, StageDef
from connectors.sandbox.dataset import Deal as CompanyDeal
from connectors.sandbox.server import BackgroundServer
from core import history, store
from core.config import Settings
from core.db import session_scope
from core.models import Account, Connection, Deal, SyncRun
from core.security import SecretBox
from workers.context import JobContext
from workers.jobs import sync_connection

SANDBOX_SECRETS = {
    "client_id": "sandbox-client-id",
    "client_secret": "sandbox-client-secret",
    "refresh_token": "sandbox-refresh-token",
}
FAST_RETRY = RetryPolicy(attempts=8, initial_wait=0.01, max_wait=0.2)


def make_context(engine: Engine, url: str) -> JobContext:
    from cryptography.fernet import Fernet

    key = Fernet.generate_key().decode()
    return JobContext(settings=Settings(database_url=url, secret_key=key), engine=engine,
                      secrets=SecretBox(key), retry=FAST_RETRY)


def add_connection(ctx: JobContext, sandbox_url: str, name: str = "zoho sandbox") -> int:
    with session_scope(ctx.engine) as session:
        connection = Connection(provider="zoho", name=name,
                                config={"accounts_url": sandbox_url},
                                secrets_encrypted=ctx.secrets.seal(SANDBOX_SECRETS))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def history_backfilled(engine: Engine, *connection_ids: int) -> None:
    """Mark the connections' stage history as backfilled: their first full sync queues no
    backfill (a read of every deal's history) where it is not the point of the test."""
    with session_scope(engine) as session:
        for connection_id in connection_ids:
            store.set_state(session, connection_id=connection_id,
                            stream=history.BACKFILL_STREAM, state={"finished": True})


async def sync(ctx: JobContext, connection_id: int, mode: str) -> int:
    from core import store

    with session_scope(ctx.engine) as session:
        run_id = int(store.create_run(session, connection_id=connection_id, mode=mode).id or 0)
    await sync_connection(ctx, connection_id=connection_id, run_id=run_id, mode=mode)
    return run_id


def expected_deals(company: Company) -> dict[str, dict[str, Any]]:
    out = {}
    for deal in company.deals.values():
        stage = company.stage_by_id[deal.stage_id]
        owner = company.rep_by_id[deal.owner_id]
        out[deal.id] = {
            "name": deal.name,
            "amount": deal.amount,
            "currency": deal.currency,
            "exchange_rate": deal.exchange_rate,
            "amount_home": (deal.amount / deal.exchange_rate).quantize(Decimal("0.0001")),
            "stage": stage.name,
            "pipeline_stage": (stage.pipeline, stage.name),
            "status": stage.category,
            "probability": Decimal(deal.probability),
            "close_date": deal.close_date,
            "remote_created_at": deal.created_at,
            "remote_modified_at": deal.modified_at,
            "owner_email": owner.email,
            "account_remote_id": deal.account_id,
        }
    return out


def stored_deals(engine: Engine, connection_id: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as db:
        rows = db.execute(select(*Deal.__table__.columns).where(  # type: ignore[attr-defined]
            Deal.connection_id == connection_id, Deal.deleted_at.is_(None)))  # type: ignore[union-attr]
        return {
            d.remote_id: {
                "name": d.name, "amount": d.amount, "currency": d.currency,
                "exchange_rate": d.exchange_rate, "amount_home": d.amount_home,
                "stage": d.stage, "status": d.status,
                "pipeline_stage": ((d.pipeline or "").split(" (")[0], d.stage),
                "probability": d.probability, "close_date": d.close_date,
                "remote_created_at": d.remote_created_at,
                "remote_modified_at": d.remote_modified_at, "owner_email": d.owner_email,
                "account_remote_id": d.account_remote_id,
            }
            for d in rows
        }


def expected_accounts(company: Company) -> dict[str, dict[str, Any]]:
    return {
        a.id: {"name": a.name, "industry": a.industry,
               "owner_email": company.rep_by_id[a.owner_id].email,
               "remote_created_at": a.created_at, "remote_modified_at": a.modified_at}
        for a in company.accounts.values()
    }


def stored_accounts(engine: Engine, connection_id: int) -> dict[str, dict[str, Any]]:
    with engine.connect() as db:
        rows = db.execute(select(*Account.__table__.columns).where(  # type: ignore[attr-defined]
            Account.connection_id == connection_id, Account.deleted_at.is_(None)))  # type: ignore[union-attr]
        return {
            a.remote_id: {"name": a.name, "industry": a.industry, "owner_email": a.owner_email,
                          "remote_created_at": a.remote_created_at,
                          "remote_modified_at": a.remote_modified_at}
            for a in rows
        }


def assert_store_equals_sandbox(engine: Engine, connection_id: int, company: Company) -> None:
    want, got = expected_deals(company), stored_deals(engine, connection_id)
    assert set(got) == set(want), (
        f"missing {len(set(want) - set(got))}, extra {len(set(got) - set(want))}")
    diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
             if got[i][k] != v]
    assert not diffs, diffs[:5]
    want_a, got_a = expected_accounts(company), stored_accounts(engine, connection_id)
    assert set(got_a) == set(want_a)
    diffs = [(i, k, got_a[i][k], v) for i, row in want_a.items() for k, v in row.items()
             if got_a[i][k] != v]
    assert not diffs, diffs[:5]


def stored(engine: Engine, connection_id: int, model: Any,
           fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The connection's rows of `model` by remote id: the fields asked for, as the columns'
    types read them (rows, not ORM objects: building thousands of those cost more CPU
    than the syncs they check)."""
    with engine.connect() as db:
        rows = db.execute(select(model.remote_id, *(getattr(model, f) for f in fields))
                          .where(model.connection_id == connection_id))
        return {remote_id: dict(zip(fields, values, strict=True))
                for remote_id, *values in rows}


def run_row(engine: Engine, run_id: int) -> SyncRun:
    with session_scope(engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None
        session.expunge(run)
        return run


def control(server: BackgroundServer, method: str, path: str, **kwargs: Any) -> Any:
    """A call to the sandbox's control API. 60 s: the harness's patience, not a claim
    (httpx's default 5 s timed out a mutation of 12,500 deals at load 19)."""
    kwargs.setdefault("timeout", 60.0)
    response = httpx.request(method, f"{server.url}/_sandbox{path}", verify=tls_context(),
                             **kwargs)
    assert response.status_code < 300, response.text
    return response.json()


def move_to_a_new_stage(company: Company) -> tuple[CompanyDeal, StageDef]:
    """Move an open deal to an open stage of its pipeline it never was in (a stage history
    move no backfill has seen yet): the deal and the stage."""
    deal = next(d for d in company.deals.values()
                if company.stage_by_id[d.stage_id].category == "open")
    pipeline = company.stage_by_id[deal.stage_id].pipeline
    visited = {m.stage_id for m in deal.history}
    target = next(s for s in company.stages if s.pipeline == pipeline
                  and s.id not in visited and s.category == "open")
    company.edit_deal(deal.id, stage_id=target.id)
    return deal, target
