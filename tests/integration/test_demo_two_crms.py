"""`crmsync demo`: every CRM with a sandbox, one team. The sandboxes (Zoho, Fxiaoke,
Pipedrive, ...) share some reps (same emails); all are synced, those reps are one owner in
the metrics, goals go into every CRM."""

import re
from datetime import date
from decimal import Decimal

from sqlalchemy import select

from connectors import registry
from connectors.sandbox import generate_company
from core.db import make_engine, session_scope
from core.models import Connection, DealStageChange, GoalPush, SyncRun, User
from tests.api_support import running_api


def test_shared_reps_keep_other_seeds_unchanged():
    today = date(2025, 6, 1)
    zoho = generate_company(seed=42, deals=100, today=today)
    alone = generate_company(seed=43, deals=100, today=today)
    names = [(r.first_name, r.last_name) for r in zoho.reps[1:4]]
    both = generate_company(seed=43, deals=100, today=today, shared_reps=names)
    assert [r.email for r in generate_company(seed=43, deals=100, today=today).reps] == [
        r.email for r in alone.reps]  # no shared reps: as before
    shared = {r.email for r in zoho.reps} & {r.email for r in both.reps}
    assert shared == {r.email for r in zoho.reps[1:4]}
    assert all(r.active and r.role == "Sales Rep" for r in both.reps[1:4])
    assert len({r.email for r in both.reps}) == len(both.reps)
    assert len(both.deals) == len(alone.deals)
    assert both.generated_with is not None
    assert generate_company(**both.generated_with).reps[1].email == both.reps[1].email


async def test_the_demo_syncs_both_crms_and_counts_a_shared_rep_once(tmp_path, demo_store):
    done = demo_store  # `crmsync demo --no-serve` (tests/integration/conftest.py), a copy
    demo_store.copy_to(tmp_path)
    for sandbox in registry.sandboxes().values():
        assert sandbox.demo_name in done.stdout
    assert re.search(r"connection 1:\s+\d+\s+inserted.*connection 2:\s+\d+\s+inserted",
                     done.stdout.replace("\n", " "))

    engine = make_engine(f"sqlite:///{tmp_path / 'crmsync.db'}")
    with session_scope(engine) as session:
        connections = {c.provider: int(c.id or 0) for c in session.scalars(select(Connection))}
        runs = {(r.connection_id, r.status) for r in session.scalars(select(SyncRun))}
        users = list(session.scalars(select(User).where(User.deleted_at.is_(None))))  # type: ignore[union-attr]
        pushes = list(session.scalars(select(GoalPush)))
        backfilled = set(session.scalars(select(DealStageChange.connection_id).where(
            DealStageChange.source == "crm")))
    assert set(connections) == set(registry.providers()) >= {"zoho", "fxiaoke"}
    # each full sync read the stage history its CRM keeps (Fxiaoke keeps none)
    assert backfilled == {cid for provider, cid in connections.items()
                          if "stage_history" in registry.capabilities(provider)}
    assert connections["fxiaoke"] not in backfilled
    assert done.stdout.count("reading the stage history the CRM keeps") == len(backfilled)
    assert runs == {(cid, "succeeded") for cid in connections.values()}
    by_email: dict[str, set[int]] = {}
    for user in users:
        by_email.setdefault(str(user.email), set()).add(user.connection_id)
    in_both = sorted(e for e, ids in by_email.items() if len(ids) == len(connections))
    assert len(in_both) == 3
    # the Pipedrive sandbox's reps carry their team (its /v1/legacyTeams)
    teams = {u.team for u in users if u.connection_id == connections["pipedrive"]}
    assert teams >= {"East", "West"}, teams

    # goals pushed into every CRM: a record id from each vendor (Zoho: digits, Fxiaoke: hex)
    inserted = {(p.connection_id, p.goal_id): p.remote_id for p in pushes
                if p.status == "inserted"}
    patterns = {"zoho": r"\d+", "fxiaoke": r"[0-9a-f]{24}", "pipedrive": r"[0-9a-f]{32}"}
    for provider, cid in connections.items():
        ids = [r for (c, _), r in inserted.items() if c == cid]
        pattern = patterns.get(provider, r".+")
        assert ids and all(re.fullmatch(pattern, str(r)) for r in ids), (provider, ids)
    shared_goals = set.intersection(*({g for (c, g) in inserted if c == cid}
                                      for cid in connections.values()))
    assert shared_goals  # the shared reps' goals went into every CRM

    async with running_api(engine) as api:
        params = {"start": "2022-01-01", "end": "2030-12-31", "group_by": "owner"}
        board = await api.get("/api/v1/metrics/summary", params=params)
        assert board.status_code == 200, board.text
        per_crm = {}
        for provider, cid in connections.items():
            response = await api.get("/api/v1/metrics/summary",
                                     params={**params, "connection_id": cid})
            assert response.status_code == 200, response.text
            per_crm[provider] = {r["owner_email"]: r for r in response.json()["data"]}
        rows = board.json()["data"]
        for email in in_both:
            [row] = [r for r in rows if r["owner_email"] == email]  # once, not per CRM
            parts = [per_crm[provider][email] for provider in connections]
            assert all(part["bookings"] > 0 for part in parts)
            total = sum(Decimal(str(part["bookings"])) for part in parts)
            assert abs(Decimal(str(row["bookings"])) - total) <= Decimal("0.01") * len(parts)
            assert row["deals_won"] == sum(part["deals_won"] for part in parts)
        # and the leaderboard's team rows show the Pipedrive teams
        by_team = await api.get("/api/v1/metrics/summary", params={
            **params, "group_by": "team", "connection_id": connections["pipedrive"]})
        assert by_team.status_code == 200, by_team.text
        assert {"East", "West"} <= {r["team"] for r in by_team.json()["data"]}

        # each robot of the chat sandbox received this week's digest once; its top line is
        # the API's leaderboard of that week (the channel's team, or everyone)
        sent = re.findall(
            r"(\w+) robot got (\d+) message \((.+?): \S+ (\S+) – (\S+) · (.+?)\); "
            r"top: (.+?) ([\d,]+\.\d\d) (\w+) \((\d+) won\)", done.stdout)
        assert {s[0] for s in sent} == {"wecom", "slack", "dingtalk"}, done.stdout
        people = await api.get("/api/v1/people", params={"limit": 500})
        assert people.status_code == 200 and people.json()["next_cursor"] is None
        east = {p["id"] for p in people.json()["data"] if p["team"] == "East"}
        assert east
        for platform, got, _, start, end, scope, rep, bookings, money, won in sent:
            assert got == "1", (platform, got)
            team = scope if platform == "wecom" else None
            assert scope in ({"East"} if team else {"everyone", "全员"}), scope
            week = await api.get("/api/v1/metrics/summary", params={
                "start": start, "end": end, "group_by": "owner"})
            assert week.status_code == 200, week.text
            body = week.json()
            rows = [r for r in body["data"] if team is None or r["person_id"] in east]
            top = max(rows, key=lambda r: Decimal(str(r["bookings"])))
            assert (top["owner_name"], f"{Decimal(str(top['bookings'])):,.2f}",
                    top["deals_won"], body["currency"]) == (rep, bookings, int(won), money)
        assert "crmsync digest preview 'demo East (WeCom)'" in done.stdout
    engine.dispose()
