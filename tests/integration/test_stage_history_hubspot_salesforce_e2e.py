"""Stage history end to end for HubSpot (dealstage's property history, 50 deals a batch read,
docs/vendors/hubspot.md §11) and Salesforce (OpportunityHistory in one SOQL query a batch,
docs/vendors/salesforce.md §11): each sandbox over real HTTP, synced and backfilled into
SQLite and PostgreSQL (workers.jobs.backfill_stage_history), compared exactly with the
stage paths of the synthetic company."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from connectors import registry
from connectors.hubspot.sandbox.wire import stage_label
from connectors.salesforce.sandbox.wire import record_id
from connectors.sandbox import Company, Deal, generate_company
from connectors.sandbox.dataset import StageDef
from connectors.sandbox.server import BackgroundServer
from core.db import session_scope
from core.models import Connection, DealStageChange
from tests.integration.zoho_helpers import make_context, move_to_a_new_stage, sync
from workers.jobs import backfill_stage_history


@dataclass(frozen=True)
class Crm:
    provider: str
    remote_id: Callable[[Deal], str]
    stage_name: Callable[[StageDef], str]
    calls: Callable[[int], int]  # the most API calls a backfill of n deals may make


CRMS = {
    # a batch read per 50 deals (docs/vendors/hubspot.md §11), the pipelines read once
    "hubspot": Crm("hubspot", lambda d: d.id, stage_label, lambda n: -(-n // 50) + 1),
    # one query per 200 opportunities plus its nextRecordsUrl pages (2,000 rows each), the
    # stages and the session
    "salesforce": Crm("salesforce", lambda d: record_id("deals", d.id), lambda s: s.name,
                      lambda n: -(-n // 200) * 2 + 3),
}


def whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


def add_connection(ctx: Any, provider: str, url: str) -> int:
    sandbox = registry.sandbox_of(provider)
    assert sandbox is not None
    with session_scope(ctx.engine) as session:
        connection = Connection(provider=provider, name=f"{provider} sandbox",
                                config=dict(sandbox.config(url)),
                                secrets_encrypted=ctx.secrets.seal(dict(sandbox.secrets)))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def expected_moves(crm: Crm, company: Company) -> set[tuple[str, datetime, str, str | None]]:
    return {(crm.remote_id(d), whole_seconds(m.changed_at),
             crm.stage_name(company.stage_by_id[m.stage_id]),
             crm.stage_name(company.stage_by_id[d.history[i - 1].stage_id]) if i else None)
            for d in company.deals.values() for i, m in enumerate(d.history)}


@pytest.mark.parametrize("provider", sorted(CRMS))
async def test_backfill_stores_every_deals_stage_path_once(engine, db_url, provider):
    crm = CRMS[provider]
    company = generate_company(seed=23, deals=130, accounts=30)
    sandbox = registry.sandbox_of(provider)
    assert sandbox is not None
    with BackgroundServer(sandbox.create_app(company)) as server:
        ctx = make_context(engine, db_url)
        cid = add_connection(ctx, provider, server.url)
        await sync(ctx, cid, "full")
        done = await backfill_stage_history(ctx, connection_id=cid)
        expected = expected_moves(crm, company)
        with session_scope(engine) as session:
            stored = {(c.deal_remote_id, c.changed_at, c.to_stage, c.from_stage)
                      for c in session.scalars(select(DealStageChange)
                                               .where(DealStageChange.source == "crm"))}
        assert stored == expected
        assert (done["deals"], done["changes"]) == (len(company.deals), len(expected))
        assert any(len(d.history) > 2 for d in company.deals.values())
        assert done["api_calls"] <= crm.calls(len(company.deals)), done

        # a deal moved after the backfill: a restart stores its new move once (the sync saw
        # it first), and nothing else
        deal, target = move_to_a_new_stage(company)
        await sync(ctx, cid, "incremental")
        again = await backfill_stage_history(ctx, connection_id=cid, restart=True)
        assert (again["deals"], again["changes"]) == (len(company.deals), 0)
        with session_scope(engine) as session:
            moves = session.scalars(select(DealStageChange).where(
                DealStageChange.deal_remote_id == crm.remote_id(deal),
                DealStageChange.to_stage == crm.stage_name(target))).all()
            assert [m.source for m in moves] == ["sync"]
