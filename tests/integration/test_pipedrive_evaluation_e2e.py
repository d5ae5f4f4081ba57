"""Pipedrive's evaluation data end to end, the sandbox over real HTTP into SQLite and
PostgreSQL: activities (full and incremental sync compared exactly with the sandbox's
company, deletions the incremental read cannot see), stage history backfilled from each
deal's flow, users' teams (and a plan without Teams), links to deals."""

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine, select

from connectors.pipedrive import PipedriveConfig, PipedriveConnector
from connectors.pipedrive.sandbox import create_app
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.sandbox import Company, generate_company
from connectors.sandbox.server import BackgroundServer
from core.db import session_scope
from core.models import Activity, DealStageChange, Person, User
from tests.integration.test_pipedrive_goals_e2e import BURST, PLAN_BURST
from tests.integration.test_pipedrive_sync_e2e import API_TOKEN, add_connection, synced
from tests.integration.zoho_helpers import make_context, stored
from workers.jobs import backfill_stage_history

FIELDS = ("type", "kind", "subject", "occurred_at", "done", "completed_at",
          "duration_seconds", "owner_remote_id", "owner_email", "deal_remote_id",
          "account_remote_id", "remote_created_at", "remote_modified_at", "deleted_at")
KINDS = ("call", "meeting", "task")  # the neutral company's notes are no Pipedrive activity


def expected_activities(company: Company) -> dict[str, dict[str, Any]]:
    """What the store must hold, from the dataset (not from the wire): Pipedrive keeps due
    times and durations in minutes (docs/vendors/pipedrive.md §12)."""
    out = {}
    for a in company.activities.values():
        if a.kind not in KINDS:
            continue
        done_at = a.completed_at or (a.modified_at if a.done else None)
        out[a.id] = {
            "type": a.kind, "kind": a.kind, "subject": a.subject,
            "occurred_at": a.start.replace(second=0), "done": a.done,
            "completed_at": done_at if a.done else None,
            "duration_seconds": None if a.duration_seconds is None
            else a.duration_seconds // 60 * 60,
            "owner_remote_id": a.owner_id, "owner_email": company.rep_by_id[a.owner_id].email,
            "deal_remote_id": a.deal_id, "account_remote_id": a.account_id,
            "remote_created_at": a.created_at, "remote_modified_at": a.modified_at,
            "deleted_at": None}
    return out


def assert_activities_equal(engine: Engine, connection_id: int, company: Company,
                            gone: set[str]) -> None:
    got = stored(engine, connection_id, Activity, FIELDS)
    want = expected_activities(company)
    live = {i for i, row in got.items() if row["deleted_at"] is None}
    assert live == set(want), sorted(live ^ set(want))[:5]
    diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
             if got[i][k] != v]
    assert not diffs, (len(diffs), diffs[:5])
    assert gone <= set(got) - live, sorted(gone - (set(got) - live))[:5]


async def test_activities_sync_exactly_and_a_full_sync_finds_what_was_deleted(engine, db_url):
    company = generate_company(seed=23, deals=1_300, accounts=120, activities=1_200)
    app = create_app(company)
    with BackgroundServer(app) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN)
        await synced(ctx, engine, connection_id, "full")
        kinds = {a.kind for a in company.activities.values()}
        assert kinds == {*KINDS, "note"} and len(expected_activities(company)) > 500
        assert_activities_equal(engine, connection_id, company, set())

        ids = sorted(a.id for a in company.activities.values() if a.kind in KINDS)
        company.edit_activity(ids[0], done=True, subject="Held after all")
        added = company.add_activity(kind="meeting", subject="Fresh meeting",
                                     start=datetime(2026, 3, 3, 9, 30, 15, tzinfo=UTC),
                                     duration_seconds=3_600, deal_id=sorted(company.deals)[0])
        deleted = company.delete_activity(ids[1]).id
        run = await synced(ctx, engine, connection_id, "incremental")
        assert run.api_calls < 15, run.api_calls
        got = stored(engine, connection_id, Activity, ("subject", "deleted_at"))
        assert got[ids[0]]["subject"] == "Held after all" and added.id in got
        # deleting does not bump update_time (§12): the incremental read cannot see it
        assert got[deleted]["deleted_at"] is None
        await synced(ctx, engine, connection_id, "full")
        assert_activities_equal(engine, connection_id, company, {deleted})


async def test_stage_history_backfills_each_deals_flow(engine, db_url):
    company = generate_company(seed=11, deals=150, accounts=30)
    app = create_app(company, concurrency_limit=6, burst_limit=PLAN_BURST)
    state: PipedriveState = app.state.pipedrive
    with BackgroundServer(app) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN, burst_limit=BURST)
        await synced(ctx, engine, connection_id, "full")
        done = await backfill_stage_history(ctx, connection_id=connection_id)
        live = list(company.deals.values())
        assert done["deals"] == len(live) and done["skipped"] is None
        assert len(live) <= done["api_calls"] <= len(live) + 8  # one flow page a deal
        expected = set()
        for deal in live:  # the open stages each deal showed (won/lost are statuses, §4)
            shown = state.wire.shown_stages(deal)
            expected |= {(deal.id, at, stage.name, shown[i - 1][0].name if i else None)
                         for i, (stage, at) in enumerate(shown)}
        with session_scope(engine) as session:
            got = {(c.deal_remote_id, c.changed_at, c.to_stage, c.from_stage)
                   for c in session.scalars(select(DealStageChange)
                                            .where(DealStageChange.source == "crm"))}
        assert got == expected and done["changes"] == len(expected)
        assert any(len(state.wire.shown_stages(d)) > 2 for d in live)

        # a deal's link opens its page in the (sandbox's) web app
        deal = live[0]
        url = PipedriveConnector.deal_url(PipedriveConfig(api_url=server.url), deal.id)
        assert url is not None
        async with httpx.AsyncClient() as client:
            page = await client.get(url)
        assert page.status_code == 200 and deal.name in page.text


async def test_users_and_their_people_carry_the_pipedrive_team(sqlite_engine, sqlite_url):
    company = generate_company(seed=5, deals=40, accounts=10)
    teams = {r.id: r.team for r in company.reps}
    assert sorted(set(teams.values())) == ["East", "Management", "West"]
    with BackgroundServer(create_app(company)) as server:
        ctx = make_context(sqlite_engine, sqlite_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN)
        await synced(ctx, sqlite_engine, connection_id, "full")
    got = stored(sqlite_engine, connection_id, User, ("team",))
    assert {i: r["team"] for i, r in got.items()} == teams
    with session_scope(sqlite_engine) as session:  # people took the team from the users
        people = {p.email: p.team for p in session.scalars(select(Person))}
    assert {r.email: people[r.email] for r in company.reps} == \
        {r.email: r.team for r in company.reps}


async def test_a_plan_without_teams_syncs_users_without_one(sqlite_engine, sqlite_url):
    company = generate_company(seed=5, deals=40, accounts=10)
    with BackgroundServer(create_app(company, teams=False)) as server:
        ctx = make_context(sqlite_engine, sqlite_url)
        connection_id = add_connection(ctx, server.url, API_TOKEN)
        run = await synced(ctx, sqlite_engine, connection_id, "full")
        async with httpx.AsyncClient() as client:
            refused = await client.get(f"{server.url}/api/v1/legacyTeams",
                                       headers={"x-api-token": API_TOKEN["api_token"]})
        assert refused.status_code == 403
    got = stored(sqlite_engine, connection_id, User, ("team", "active"))
    assert len(got) == len(company.reps) and run.error is None
    assert {r["team"] for r in got.values()} == {None}
