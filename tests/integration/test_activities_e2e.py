"""Activities end to end (docs/evaluation.md, Activities): the Zoho and Fxiaoke sandboxes over
real HTTP, synced full and then incrementally into SQLite and PostgreSQL, compared exactly
with the synthetic company each sandbox serves; activity_counts from the synced store."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors.fxiaoke.sandbox.state import FxiaokeState
from connectors.fxiaoke.sandbox.wire import hex_id
from connectors.fxiaoke.wire import from_ms, to_ms
from connectors.sandbox import Company, generate_company
from connectors.sandbox.dataset import Activity as SandboxActivity
from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app as zoho_app
from core.activities import activity_counts, empty_counts
from core.db import session_scope
from core.models import Activity, User
from tests.integration.test_fxiaoke_sync_e2e import add_connection as fx_connection
from tests.integration.test_fxiaoke_sync_e2e import (
    fast_budget,  # noqa: F401 (a fixture)
    state_of,
)
from tests.integration.test_fxiaoke_sync_e2e import serve as fx_serve
from tests.integration.zoho_helpers import add_connection, make_context, run_row, stored, sync

FIELDS = ("type", "kind", "subject", "occurred_at", "activity_date", "done", "completed_at",
          "duration_seconds", "owner_remote_id", "owner_email", "deal_remote_id",
          "account_remote_id", "remote_created_at", "remote_modified_at", "deleted_at")
ZOHO_KINDS = {"call": "call", "meeting": "meeting", "task": "task"}  # Zoho has no notes here


@pytest.fixture
def company() -> Company:
    return generate_company(seed=5, deals=600, accounts=80, activities=900)


def zoho_expected(company: Company) -> dict[str, dict[str, Any]]:
    """Calls, Events and Tasks as docs/vendors/zoho.md §14 maps them."""
    out = {}
    for a in company.activities.values():
        if a.kind not in ZOHO_KINDS:
            continue
        inbound = a.kind == "call" and a.done and int(a.id) % 4 == 0  # the sandbox's choice
        out[a.id] = {
            "type": a.kind, "kind": ("Inbound" if inbound else "Outbound")
            if a.kind == "call" else None,
            "subject": a.subject, "occurred_at": a.start, "activity_date": a.start.date(),
            "done": None if a.kind == "meeting" else a.done,
            "completed_at": a.completed_at if a.kind == "task" else None,
            "duration_seconds": None if a.kind == "task" else a.duration_seconds,
            "owner_remote_id": a.owner_id, "owner_email": company.rep_by_id[a.owner_id].email,
            "deal_remote_id": a.deal_id,
            "account_remote_id": None if a.deal_id else a.account_id,
            "remote_created_at": a.created_at, "remote_modified_at": a.modified_at,
            "deleted_at": None}
    return out


def live(engine, connection_id: int) -> dict[str, dict[str, Any]]:
    rows = stored(engine, connection_id, Activity, FIELDS)
    return {i: r for i, r in rows.items() if r["deleted_at"] is None}


def assert_same(got: dict[str, dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    assert set(got) == set(want), (len(set(want) - set(got)), len(set(got) - set(want)))
    diffs = [(i, k, got[i][k], v) for i, row in want.items() for k, v in row.items()
             if got[i][k] != v]
    assert not diffs, (len(diffs), diffs[:5])


def counts_by_rep(engine, connection_id: int,
                  activities: list[tuple[SandboxActivity, str, bool]],
                  owner_key: Any, start: date, end: date) -> dict[int | None, dict[str, int]]:
    """What activity_counts must answer, from the sandbox's own activities."""
    with session_scope(engine) as session:
        person = {u.remote_id: u.person_id for u in session.scalars(
            select(User).where(User.connection_id == connection_id))}
    out: dict[int | None, dict[str, int]] = {}
    for a, kind, counted in activities:
        if counted and start <= a.start.date() <= end:
            row = out.setdefault(person[owner_key(a)], empty_counts())
            row[kind] += 1
            row["total"] += 1
    return out


async def test_zoho_activities_full_then_incremental(engine, db_url, company):
    with BackgroundServer(zoho_app(company, concurrency_limit=6)) as server:
        ctx = make_context(engine, db_url)
        connection_id = add_connection(ctx, server.url)
        run = run_row(engine, await sync(ctx, connection_id, "full"))
        assert run.status == "succeeded", run.error
        want = zoho_expected(company)
        assert len(want) > 700
        assert_same(live(engine, connection_id), want)
        assert run.counts is not None
        assert run.counts["activities"]["upserted"] == len(want)

        # counts per rep over the last 90 days: calls and tasks when done, every meeting
        end = max(a.start for a in company.activities.values()).date()
        start = end - timedelta(days=90)
        held = [(a, a.kind, a.done or a.kind == "meeting")
                for a in company.activities.values() if a.kind in ZOHO_KINDS]
        with session_scope(engine) as session:
            got = activity_counts(session, start=start, end=end, connection_id=connection_id)
        assert got == counts_by_rep(engine, connection_id, held, lambda a: a.owner_id,
                                    start, end)
        assert sum(c["total"] for c in got.values()) > 50

        # edits, additions and deletions between syncs
        calls = sorted(i for i, a in company.activities.items() if a.kind == "call")
        tasks = sorted(i for i, a in company.activities.items()
                       if a.kind == "task" and not a.done)
        company.edit_activity(tasks[0], done=True)
        company.edit_activity(calls[0], subject="Renamed call", duration_seconds=42)
        deal_id = sorted(company.deals)[0]
        added = company.add_activity(kind="meeting", subject="New demo", deal_id=deal_id,
                                     start=datetime(2026, 1, 5, 9, 30, tzinfo=UTC),
                                     duration_seconds=3600)
        gone = company.delete_activity(calls[1])
        run = run_row(engine, await sync(ctx, connection_id, "incremental"))
        assert run.status == "succeeded", run.error
        assert run.api_calls < 30, run.api_calls
        assert_same(live(engine, connection_id), zoho_expected(company))
        rows = stored(engine, connection_id, Activity, FIELDS)
        assert rows[gone.id]["deleted_at"] == gone.deleted_at
        assert rows[added.id]["deal_remote_id"] == deal_id
        assert rows[tasks[0]]["done"] is True and rows[tasks[0]]["completed_at"] is not None

        # a full sync tombstones what the CRM no longer lists (a purge past the window of
        # the deleted list, docs/vendors/zoho.md §3)
        company.activities.pop(calls[2])
        company.refresh()
        assert run_row(engine, await sync(ctx, connection_id, "full")).status == "succeeded"
        assert stored(engine, connection_id, Activity, FIELDS)[calls[2]]["deleted_at"]
        assert_same(live(engine, connection_id), zoho_expected(company))


def fx_expected(state: FxiaokeState) -> dict[str, dict[str, Any]]:
    """Follow-up records as docs/vendors/fxiaoke.md §10 maps them: held calls (电话) and
    meetings (拜访) and notes; voided ones as tombstones at their void time."""
    company, tenant = state.company, state.tenant
    kinds = {"call": "电话", "meeting": "拜访", "note": None}
    voided = {d.id: d.deleted_at for d in company.deletions
              if d.entity == "activities" and not d.permanent}
    out = {}
    pool = [(a, None) for a in company.activities.values()]
    pool += [(company.deleted_activities[i], at) for i, at in voided.items()]
    for a, at in pool:
        if not a.done or a.kind not in kinds:
            continue
        owner = company.rep_by_id[a.owner_id]
        out[hex_id(a.id)] = {
            "type": a.kind, "kind": kinds[a.kind], "subject": a.subject, "occurred_at": a.start,
            "activity_date": a.start.date(), "done": True, "completed_at": None,
            "duration_seconds": None, "owner_remote_id": tenant.fsuid[a.owner_id],
            "owner_email": tenant.user(owner).get("email"),
            "deal_remote_id": hex_id(a.deal_id) if a.deal_id else None,
            "account_remote_id": hex_id(a.account_id) if a.account_id else None,
            "remote_created_at": a.start,
            "remote_modified_at": a.modified_at if at is None else at,
            "deleted_at": at}
    return out


async def test_fxiaoke_follow_up_records_full_then_incremental(engine, db_url, company):
    with fx_serve(company) as server:
        state = state_of(server)
        ctx = make_context(engine, db_url)
        connection_id = fx_connection(ctx, server.url)
        run = run_row(engine, await sync(ctx, connection_id, "full"))
        assert run.status == "succeeded", run.error
        want = fx_expected(state)
        assert Counter(r["type"] for r in want.values()).keys() == {"call", "meeting", "note"}
        assert stored(engine, connection_id, Activity, FIELDS) == want
        assert any(r["deleted_at"] for r in want.values())  # voided ones are tombstones

        end = max(a.start for a in company.activities.values()).date()
        start = end - timedelta(days=120)
        held = [(a, a.kind, True) for a in company.activities.values()
                if a.done and a.kind in ("call", "meeting", "note")]
        with session_scope(engine) as session:
            got = activity_counts(session, start=start, end=end)
        assert got == counts_by_rep(engine, connection_id, held,
                                    lambda a: state.tenant.fsuid[a.owner_id], start, end)

        calls = sorted(i for i, a in company.activities.items() if a.kind == "call" and a.done)
        company.edit_activity(calls[0], subject="客户回访电话")
        added = company.add_activity(kind="note", subject="需求确认", done=True,
                                     account_id=sorted(company.accounts)[0])
        gone = company.delete_activity(calls[1])
        run = run_row(engine, await sync(ctx, connection_id, "incremental"))
        assert run.status == "succeeded" and run.api_calls < 20, (run.error, run.api_calls)
        want = fx_expected(state)
        assert stored(engine, connection_id, Activity, FIELDS) == want
        assert want[hex_id(gone.id)]["deleted_at"] == from_ms(to_ms(gone.deleted_at))
        assert want[hex_id(added.id)]["type"] == "note"
