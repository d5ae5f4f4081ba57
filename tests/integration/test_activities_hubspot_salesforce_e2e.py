"""Activities end to end for HubSpot (calls, meetings, tasks, notes: docs/vendors/hubspot.md §13)
and Salesforce (Task and Event: docs/vendors/salesforce.md §12): each sandbox over real
HTTP, synced into SQLite and PostgreSQL, and the activity table compared exactly with the
synthetic company's activities as each CRM shows them; then edits, a new activity and a
deletion reach it through an incremental sync."""

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from connectors import registry
from connectors.hubspot import client as hubspot_client
from connectors.salesforce.sandbox.wire import activity_id, record_id
from connectors.sandbox import Company, generate_company
from connectors.sandbox.dataset import Activity
from connectors.sandbox.server import BackgroundServer
from core.activities import activity_counts
from core.db import session_scope
from core.models import Activity as StoredActivity
from core.models import Person
from tests.integration.test_stage_history_hubspot_salesforce_e2e import add_connection
from tests.integration.zoho_helpers import make_context, sync

FIELDS = ("type", "subject", "kind", "occurred_at", "done", "completed_at", "duration_seconds",
          "owner_email", "deal_remote_id", "account_remote_id", "remote_created_at",
          "remote_modified_at", "deleted_at")
Expected = dict[str, dict[str, Any]]


@pytest.fixture(autouse=True)
def no_search_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep HubSpot's connector at the documented 5 searches a second."""
    monkeypatch.setattr(hubspot_client, "SEARCH_RATE", hubspot_client.RateBudget(5, 1.0))


def hubspot(company: Company, a: Activity) -> tuple[str, dict[str, Any]] | None:
    """docs/vendors/hubspot.md §13: every kind; a call's direction and a task's type as
    `kind`; a note says nothing of being done."""
    return a.id, {
        "type": a.kind, "subject": a.subject,
        "kind": {"call": "OUTBOUND", "task": "TODO"}.get(a.kind), "occurred_at": a.start,
        "done": None if a.kind == "note" else a.done,
        "completed_at": a.completed_at if a.kind == "task" and a.done else None,
        "duration_seconds": a.duration_seconds if a.kind in ("call", "meeting") else None,
        "owner_email": company.rep_by_id[a.owner_id].email, "deal_remote_id": a.deal_id,
        "account_remote_id": a.account_id, "remote_created_at": a.created_at,
        "remote_modified_at": a.modified_at, "deleted_at": None}


def salesforce(company: Company, a: Activity) -> tuple[str, dict[str, Any]] | None:
    """docs/vendors/salesforce.md §12: no notes; calls and tasks are Tasks due on a date
    (00:00 UTC), a held call completed at its end; meetings are Events, not said to be held."""
    if a.kind == "note":
        return None
    meeting, call = a.kind == "meeting", a.kind == "call"
    done_at = (a.start + timedelta(seconds=a.duration_seconds or 0) if call
               else a.completed_at) if a.done and not meeting else None
    return activity_id(a.kind, a.id), {
        "type": a.kind, "subject": a.subject,
        "kind": "Event" if meeting else "Call" if call else "Task",
        "occurred_at": a.start if meeting else datetime.combine(a.start.date(), time(), UTC),
        "done": None if meeting else a.done, "completed_at": done_at,
        "duration_seconds": a.duration_seconds if meeting or call else None,
        "owner_email": company.rep_by_id[a.owner_id].email,
        "deal_remote_id": record_id("deals", a.deal_id) if a.deal_id else None,
        "account_remote_id": record_id("accounts", a.account_id) if a.account_id else None,
        "remote_created_at": a.created_at, "remote_modified_at": a.modified_at,
        "deleted_at": None}


CRMS: dict[str, Callable[[Company, Activity], tuple[str, dict[str, Any]] | None]] = {
    "hubspot": hubspot, "salesforce": salesforce}


def expected(provider: str, company: Company) -> Expected:
    rows = (CRMS[provider](company, a) for a in company.activities.values())
    return dict(r for r in rows if r is not None)


def stored(engine: Any, connection_id: int) -> Expected:
    with session_scope(engine) as session:
        rows = session.scalars(select(StoredActivity).where(
            StoredActivity.connection_id == connection_id)).all()
        return {r.remote_id: {f: getattr(r, f) for f in FIELDS} for r in rows}


@pytest.mark.parametrize("provider", sorted(CRMS))
async def test_the_activity_table_holds_the_crms_activities_exactly(engine, db_url, provider):
    company = generate_company(seed=31, deals=160, accounts=30, activities=420)
    sandbox = registry.sandbox_of(provider)
    assert sandbox is not None and "activities" in registry.capabilities(provider)
    with BackgroundServer(sandbox.create_app(company)) as server:
        ctx = make_context(engine, db_url)
        cid = add_connection(ctx, provider, server.url)
        await sync(ctx, cid, "full")
        want = expected(provider, company)
        assert len(want) > 250 and {w["type"] for w in want.values()} >= {
            "call", "meeting", "task"}
        assert stored(engine, cid) == want

        # a call held and renamed, a new meeting, a task deleted: one incremental sync
        call = next(a for a in company.activities.values() if a.kind == "call" and not a.done)
        company.edit_activity(call.id, subject="Call back about pricing", done=True)
        deal = next(iter(company.deals.values()))
        added = company.add_activity(kind="meeting", subject="Contract review",
                                     owner_id=deal.owner_id, duration_seconds=3600,
                                     start=datetime(2026, 1, 5, 14, 0, tzinfo=UTC),
                                     deal_id=deal.id, account_id=deal.account_id)
        task = next(a for a in company.activities.values() if a.kind == "task")
        gone = company.delete_activity(task.id)
        await sync(ctx, cid, "incremental")
        want = expected(provider, company)
        key, _ = CRMS[provider](company, task) or ("", {})
        have = stored(engine, cid)
        assert have.pop(key)["deleted_at"] == gone.deleted_at
        assert have == want
        added_key, _ = CRMS[provider](company, added) or ("", {})
        assert have[added_key]["subject"] == "Contract review"

        # the counts per rep follow the CRM: held calls and meetings, completed tasks
        with session_scope(engine) as session:
            counts = activity_counts(session, start=datetime(2000, 1, 1).date(),
                                     end=datetime(2100, 1, 1).date(), connection_id=cid)
            emails = {int(p.id or 0): p.email for p in session.scalars(select(Person))}
        calls: dict[str, int] = {}
        for row in want.values():
            if row["type"] == "call" and row["done"] is not False:
                calls[row["owner_email"]] = calls.get(row["owner_email"], 0) + 1
        assert {emails[p]: c["call"] for p, c in counts.items()
                if p is not None and c["call"]} == calls
