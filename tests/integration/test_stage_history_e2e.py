"""Stage history end to end: the Zoho sandbox's Stage_History over real HTTP, backfilled
into SQLite and PostgreSQL (workers.jobs.backfill_stage_history), then read through the API
(GET /deals/{id}/stages, GET /stage-changes)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from core.db import session_scope
from core.models import Connection, Deal, DealStageChange, DealVersion
from tests.api_support import running_api
from tests.integration.zoho_helpers import (
    add_connection,
    make_context,
    move_to_a_new_stage,
    sync,
)
from workers.jobs import backfill_stage_history

V1 = "/api/v1"


def whole_seconds(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


@pytest.fixture
def company():
    return generate_company(seed=11, deals=120, accounts=30)


async def test_backfill_reads_every_deal_once_and_keeps_each_move_once(engine, db_url,
                                                                      company):
    with BackgroundServer(create_app(company, concurrency_limit=6)) as sandbox:
        ctx = make_context(engine, db_url)
        cid = add_connection(ctx, sandbox.url)
        await sync(ctx, cid, "full")
        done = await backfill_stage_history(ctx, connection_id=cid)
        live = list(company.deals.values())
        assert (done["deals"], done["skipped"]) == (len(live), None)
        # one Stage_History call per deal, plus the token and the pipeline metadata
        assert len(live) <= done["api_calls"] <= len(live) + 5
        expected = {
            (d.id, whole_seconds(m.changed_at), company.stage_by_id[m.stage_id].name,
             company.stage_by_id[d.history[i - 1].stage_id].name if i else None)
            for d in live for i, m in enumerate(d.history)}
        with session_scope(engine) as session:
            stored = {(c.deal_remote_id, c.changed_at, c.to_stage, c.from_stage)
                      for c in session.scalars(select(DealStageChange)
                                               .where(DealStageChange.source == "crm"))}
        assert stored == expected
        assert done["changes"] == len(expected)
        assert any(len(d.history) > 2 for d in live)  # deals with real paths

        # resumes where it stopped: nothing left to read; a restart reads all, adds nothing
        again = await backfill_stage_history(ctx, connection_id=cid)
        assert (again["deals"], again["changes"]) == (0, 0)
        # a move observed by a sync and then backfilled is one stored move
        deal, target = move_to_a_new_stage(company)
        pipeline = target.pipeline
        await sync(ctx, cid, "incremental")
        restart = await backfill_stage_history(ctx, connection_id=cid, restart=True)
        assert (restart["deals"], restart["changes"]) == (len(live), 0)
        with session_scope(engine) as session:
            moves = session.scalars(select(DealStageChange).where(
                DealStageChange.deal_remote_id == deal.id,
                DealStageChange.to_stage == target.name)).all()
            assert [m.source for m in moves] == ["sync"]
            versions = session.scalars(select(DealVersion).where(
                DealVersion.deal_remote_id == deal.id).order_by(DealVersion.valid_from)).all()
            assert [(v.stage, v.valid_to is None) for v in versions] == [
                (company.stage_by_id[deal.history[-2].stage_id].name, False),
                (target.name, True)]  # as first synced, then as the sync saw it move
            assert versions[0].valid_from == whole_seconds(deal.created_at)
            deal_id = session.execute(select(Deal.id).where(Deal.remote_id == deal.id)).scalar()

    async with running_api(engine) as api:
        stages = (await api.get(f"{V1}/deals/{deal_id}/stages")).json()
        assert [s["stage"] for s in stages["stays"]] == [
            company.stage_by_id[m.stage_id].name for m in deal.history]
        assert stages["stays"][0]["entered_at"] == whole_seconds(
            deal.history[0].changed_at).isoformat().replace("+00:00", "Z")
        assert all(s["left_at"] is not None for s in stages["stays"][:-1])
        assert stages["stays"][-1]["left_at"] is None
        assert stages["stays"][-1]["days"] is not None and stages["stays"][-1]["days"] >= 0
        rows = await api.all_pages(f"{V1}/stage-changes", limit=100)
        assert len(rows) == len(expected) + 1  # the move the sync observed
        assert {r["source"] for r in rows} == {"crm", "sync"}
        since = sorted(r["changed_at"] for r in rows)[len(rows) // 2]
        later = await api.all_pages(f"{V1}/stage-changes", since=since)
        assert later and all(r["changed_at"] >= since for r in later)
        csv = await api.get(f"{V1}/stage-changes", params={"format": "csv",
                                                           "pipeline": pipeline})
        assert csv.status_code == 200
        lines = csv.text.strip().splitlines()
        assert lines[0].startswith("id,connection_id,deal_id,deal_remote_id")
        assert len(lines) - 1 == sum(1 for r in rows if r["pipeline"] == pipeline)
        assert (await api.get(f"{V1}/deals/999999/stages")).status_code == 404


async def test_a_provider_without_stage_history_backfills_nothing(engine, db_url):
    ctx = make_context(engine, db_url)
    with session_scope(engine) as session:
        connection = Connection(provider="fxiaoke", name="fx",
                                config={"current_open_user_id": "FSUID_1"},
                                secrets_encrypted=ctx.secrets.seal({
                                    "app_id": "a", "app_secret": "b", "permanent_code": "c"}))
        session.add(connection)
        session.flush()
        cid = int(connection.id or 0)
    done = await backfill_stage_history(ctx, connection_id=cid)
    assert done["deals"] == 0 and "observe" in done["skipped"]
