"""Roles on every route, called directly: what an admin, a manager of team North, a rep of
team North, nobody and a read API key each get, and that the data a signed-in user gets
is that of the people they may see (docs/api.md, "Who may call what").

Sessions are real: users are added, invited, set their password, sign in
(core.accounts) and send the session cookie (and its CSRF token) like the dashboard.
"""

import csv
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from api.access import CSRF_HEADER, SESSION_COOKIE
from core import accounts, store
from core.db import session_scope
from core.goals.targets import GoalInput, create_goal
from core.models import Connection, DashboardUser, Deal, Goal, Person, WebSession
from core.records import AccountRecord, DealRecord, StageRecord, UserRecord
from core.types import utcnow
from tests.api_support import (
    DASHBOARD_PAGES,
    Api,
    add_connection,
    app_routes,
    make_key,
    running_api,
)

V1 = "/api/v1"
PASSWORD = "a long enough password"
Q1 = {"start": "2025-01-01", "end": "2025-03-31"}
WHO = ("none", "key", "rep", "manager", "admin")
"""The callers, in the order they call each route (the admin last, so its changes are
made after everyone else was refused)."""
REPS = {"ann": ("ann@example.com", "North"), "bob": ("bob@example.com", "North"),
        "cat": ("cat@example.com", "South")}
STATUSES = ("open", "won", "lost")


@dataclass
class World:
    api: Api
    clients: dict[str, httpx.AsyncClient]  # by WHO
    ids: dict[str, Any]  # connection, people (ann, bob, cat), goals (<name>_goal)
    sessions: dict[str, tuple[str, str]] = field(default_factory=dict)  # role: (cookie, csrf)

    @property
    def engine(self) -> Any:
        return self.api.engine

    def person(self, name: str) -> int:
        return int(self.ids[name])

    def client(self, cookie: str, csrf: str | None = None) -> httpx.AsyncClient:
        headers = {CSRF_HEADER: csrf} if csrf else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.api.app),
                                 base_url="http://test", cookies={SESSION_COOKIE: cookie},
                                 headers=headers)


def seed_teams(engine: Any, connection_id: int) -> None:
    """Ann and Bob in team North, Cat in South: each owns an open, a won and a lost deal
    (closing in January 2025) and an account; one won deal has no owner."""
    users = [UserRecord(f"u-{n}", n.title(), email, team=team)
             for n, (email, team) in REPS.items()]
    stages = [StageRecord(f"s-{s}", s.title(), s, sort_order=i, probability=Decimal(50))
              for i, s in enumerate(STATUSES)]
    deals = [DealRecord(f"d-{n}-{s}", f"{n} {s}", amount=Decimal(100 + i),
                        amount_home=Decimal(100 + i), stage=s.title(),
                        stage_remote_id=f"s-{s}", status=s, probability=Decimal(50),
                        close_date=date(2025, 1, 10 + i), owner_email=email,
                        owner_name=n.title())
             for i, (n, (email, _)) in enumerate(REPS.items()) for s in STATUSES]
    deals.append(DealRecord("d-nobody", "nobody won", amount=Decimal(5000),
                            amount_home=Decimal(5000), status="won",
                            close_date=date(2025, 1, 20)))
    accounts_ = [AccountRecord(f"a-{n}", f"{n} Ltd", owner_email=email)
                 for n, (email, _) in REPS.items()]
    with session_scope(engine) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        connection.home_currency = "USD"
        for stream, records in (("users", users), ("stages", stages), ("deals", deals),
                                ("accounts", accounts_)):
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records)


def sign_in(engine: Any, email: str, role: str, **kwargs: Any) -> tuple[str, str]:
    """(cookie, CSRF token) of a new session of a new dashboard user."""
    with session_scope(engine) as session:
        user = accounts.add_user(session, email=email, role=role, **kwargs)
        accounts.use_link(session, accounts.create_link(session, user), PASSWORD)
    with session_scope(engine) as session:
        user = accounts.authenticate(session, email, PASSWORD)
        return accounts.open_session(session, user)


@pytest.fixture
async def world(sqlite_engine: Any) -> AsyncIterator[World]:
    async with running_api(sqlite_engine) as api:
        connection_id = add_connection(sqlite_engine)
        seed_teams(sqlite_engine, connection_id)
        ids: dict[str, Any] = {"connection": connection_id}
        with session_scope(sqlite_engine) as session:
            for name, (email, _) in REPS.items():
                ids[name] = session.execute(select(Person.id).where(
                    Person.email == email)).scalar_one()
            for name in (*REPS, "company"):
                email = REPS[name][0] if name in REPS else None
                goal = create_goal(session, GoalInput(
                    email, "bookings", date(2025, 1, 1), date(2025, 3, 31),
                    Decimal(1000)), api.app.state.settings)
                ids[f"{name}_goal"] = goal.id
            ids["bob_deal"] = session.execute(select(Deal.id).where(
                Deal.remote_id == "d-bob-open")).scalar_one()
        sessions = {"admin": sign_in(sqlite_engine, "boss@example.com", "admin"),
                    "manager": sign_in(sqlite_engine, "north@example.com", "manager",
                                       teams=["North"]),
                    "rep": sign_in(sqlite_engine, "ann@example.com", "rep")}
        world = World(api, {}, ids, sessions)
        key = make_key(sqlite_engine, "read")
        base = {"transport": httpx.ASGITransport(app=api.app), "base_url": "http://test"}
        world.clients["none"] = httpx.AsyncClient(**base)
        world.clients["key"] = httpx.AsyncClient(
            **base, headers={"Authorization": f"Bearer {key}"})
        for role, (cookie, csrf) in sessions.items():
            world.clients[role] = world.client(cookie, csrf)
        try:
            yield world
        finally:
            for client in world.clients.values():
                await client.aclose()


# ---- every route, every caller ----------------------------------------------------------

Expect = tuple[int, int, int, int, int]  # none, key (read), rep, manager, admin
ALL = (200,) * 5
READ = (401, 200, 200, 200, 200)


def admin_only(status: int) -> Expect:
    return (401, 403, 403, 403, status)


@dataclass
class Rule:
    """What each caller gets from `route` (method, path template), asked with `url` (the
    template filled from World.ids by default) and the body (or a body per caller)."""

    method: str
    route: str
    expect: Expect
    url: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    content: Callable[[str], bytes] | None = None
    content_type: str = "text/csv"


def _goal_for_bob(who: str) -> dict[str, Any]:
    month = WHO.index(who) + 4  # a period of its own for each caller
    return {"owner_email": "bob@example.com", "metric": "deals_won",
            "period_start": f"2025-{month:02}-01", "period_end": f"2025-{month:02}-28",
            "target": 3}


def _import_for_bob(who: str) -> bytes:
    month = WHO.index(who) + 4
    return (f"person_id,metric,period_start,period_end,target\n{{bob}},bookings,"
            f"2025-{month:02}-01,2025-{month:02}-28,500\n").encode()


PLAN = (b"members:\n  people: [ann@example.com, bob@example.com, cat@example.com]\n"
        b"effective:\n  from: 2025-01-01\nperiod: month\ncurrency: USD\nquota: 1000\n"
        b"tiers:\n  - rate: 0.1\n")  # no braces: rule contents go through str.format
JAN = {"period": "2025-01"}

RULES = [
    Rule("GET", "/health", ALL),
    Rule("GET", "/openapi.json", ALL),
    Rule("GET", "/docs", ALL),
    Rule("GET", "/redoc", ALL),
    Rule("GET", "/ops/prometheus", (401, 200, 403, 403, 200)),
    # connections, syncs and sync runs: admins
    Rule("POST", f"{V1}/connections", admin_only(422),
         json={"provider": "zoho", "name": "x", "config": {"dc": "mars"}}),
    Rule("POST", f"{V1}/digests", admin_only(422), json={"name": "x", "platform": "slack",
                                                          "url": "https://x.test/nope"}),
    Rule("GET", f"{V1}/digests", admin_only(200)),
    Rule("PATCH", f"{V1}/digests/{{channel_id}}", admin_only(404), url=f"{V1}/digests/99999",
         json={"hour": 8}),
    Rule("DELETE", f"{V1}/digests/{{channel_id}}", admin_only(404), url=f"{V1}/digests/99999"),
    Rule("GET", f"{V1}/digests/{{channel_id}}/preview", admin_only(404),
         url=f"{V1}/digests/99999/preview"),
    Rule("POST", f"{V1}/digests/{{channel_id}}/test", admin_only(404),
         url=f"{V1}/digests/99999/test"),
    Rule("GET", f"{V1}/connections", admin_only(200)),
    Rule("GET", f"{V1}/connections/{{connection_id}}", admin_only(200),
         url=f"{V1}/connections/{{connection}}"),
    Rule("PATCH", f"{V1}/connections/{{connection_id}}", admin_only(200),
         url=f"{V1}/connections/{{connection}}", json={"name": "seeded"}),
    Rule("DELETE", f"{V1}/connections/{{connection_id}}", admin_only(404),
         url=f"{V1}/connections/99999"),
    Rule("POST", f"{V1}/connections/{{connection_id}}/sync", admin_only(404),
         url=f"{V1}/connections/99999/sync"),
    Rule("POST", f"{V1}/connections/{{connection_id}}/stage-history/backfill", admin_only(404),
         url=f"{V1}/connections/99999/stage-history/backfill"),
    Rule("GET", f"{V1}/connections/{{connection_id}}/stage-history", admin_only(200),
         url=f"{V1}/connections/{{connection}}/stage-history"),
    Rule("GET", f"{V1}/sync-runs", admin_only(200)),
    Rule("GET", f"{V1}/sync-runs/{{run_id}}", admin_only(404), url=f"{V1}/sync-runs/99999"),
    Rule("GET", f"{V1}/connections/{{connection_id}}/sync-runs", admin_only(200),
         url=f"{V1}/connections/{{connection}}/sync-runs"),
    # records: everyone who reads (users, accounts and deals scoped to their people)
    Rule("GET", f"{V1}/users", READ),
    Rule("GET", f"{V1}/accounts", READ),
    Rule("GET", f"{V1}/stages", READ),
    Rule("GET", f"{V1}/deals", READ),
    Rule("GET", f"{V1}/activities", READ),
    Rule("GET", f"{V1}/deals/{{deal_id}}/stages", (401, 200, 404, 200, 200),
         url=f"{V1}/deals/{{bob_deal}}/stages"),
    Rule("GET", f"{V1}/stage-changes", READ),
    # API keys: admins; FX rates: read by all, set by write keys and admins
    Rule("POST", f"{V1}/api-keys", admin_only(201), json={"name": "bi", "scopes": ["read"]}),
    Rule("GET", f"{V1}/api-keys", admin_only(200)),
    Rule("DELETE", f"{V1}/api-keys/{{key_id}}", admin_only(404), url=f"{V1}/api-keys/99999"),
    Rule("PUT", f"{V1}/fx-rates/{{code}}", admin_only(200), url=f"{V1}/fx-rates/eur",
         json={"rate_to_reporting": "1.1"}),
    Rule("GET", f"{V1}/fx-rates", READ),
    # goals: read in scope; set by write keys, managers (their teams) and admins
    Rule("POST", f"{V1}/goals", (401, 403, 403, 201, 201), json=_goal_for_bob),
    Rule("POST", f"{V1}/goals/import", (401, 403, 403, 200, 200), content=_import_for_bob),
    Rule("GET", f"{V1}/goals", READ),
    Rule("GET", f"{V1}/goals/{{goal_id}}", (401, 200, 404, 200, 200),
         url=f"{V1}/goals/{{bob_goal}}"),
    Rule("PATCH", f"{V1}/goals/{{goal_id}}", (401, 403, 403, 200, 200),
         url=f"{V1}/goals/{{bob_goal}}", json={"target": 1200}),
    Rule("DELETE", f"{V1}/goals/{{goal_id}}", (401, 403, 403, 404, 204),
         url=f"{V1}/goals/{{cat_goal}}"),
    Rule("POST", f"{V1}/goals/push", (401, 403, 403, 200, 200), json={}),
    # metrics: everyone who reads, of their people
    Rule("GET", f"{V1}/metrics/summary", READ, params={**Q1, "group_by": "owner"}),
    Rule("GET", f"{V1}/metrics/deals", READ, params={**Q1, "metric": "forecast"}),
    Rule("GET", f"{V1}/metrics/pipeline", READ),
    Rule("GET", f"{V1}/metrics/funnel", READ, params={"start": "2024-01-01",
                                                      "end": "2026-12-31"}),
    Rule("GET", f"{V1}/metrics/velocity", READ, params={**Q1, "group_by": "owner"}),
    Rule("GET", f"{V1}/metrics/forecast-accuracy", READ, params=Q1),
    Rule("GET", f"{V1}/metrics/timeseries", READ,
         params={**Q1, "metric": "bookings", "interval": "month"}),
    Rule("GET", f"{V1}/metrics/scorecards", READ, params=Q1),
    # people: read in scope, changed by admins
    Rule("GET", f"{V1}/people", READ),
    Rule("GET", f"{V1}/people/unmatched", READ),
    Rule("GET", f"{V1}/people/{{person_id}}", (401, 200, 404, 200, 200),
         url=f"{V1}/people/{{bob}}"),
    Rule("PATCH", f"{V1}/people/{{person_id}}", admin_only(200), url=f"{V1}/people/{{bob}}",
         json={"name": "Bob"}),
    Rule("POST", f"{V1}/people/{{person_id}}/users", admin_only(422),
         url=f"{V1}/people/{{bob}}/users", json={"user_id": 99999}),
    # incentives: plans read by all, written, previewed and periods locked by admins;
    # statements of the caller's people
    Rule("PUT", f"{V1}/plans/{{key}}", admin_only(201), url=f"{V1}/plans/all",
         content=lambda _who: PLAN, content_type="application/yaml"),
    Rule("GET", f"{V1}/plans", READ),
    Rule("GET", f"{V1}/plans/{{key}}", READ, url=f"{V1}/plans/all"),
    Rule("POST", f"{V1}/plans/{{key}}/preview", admin_only(200), url=f"{V1}/plans/all/preview",
         params=JAN, content=lambda _who: PLAN, content_type="application/yaml"),
    Rule("GET", f"{V1}/statements", READ, params=JAN),
    Rule("POST", f"{V1}/periods/{{period}}/lock", admin_only(200),
         url=f"{V1}/periods/2025-01/lock"),
    # sales hygiene: read in scope; rules changed by admins
    Rule("GET", f"{V1}/hygiene", READ),
    Rule("GET", f"{V1}/hygiene/summary", READ),
    Rule("GET", f"{V1}/hygiene/rules", READ),
    Rule("PUT", f"{V1}/hygiene/rules/{{key}}", admin_only(200), url=f"{V1}/hygiene/rules/stale",
         json={"threshold": 45}),
    # webhooks: the vendor's own verification, whoever calls
    Rule("POST", f"{V1}/webhooks/{{provider}}/{{connection_id}}", (404,) * 5,
         url=f"{V1}/webhooks/nosuch/{{connection}}", json={}),
]
EXEMPT = {("MOUNT", "/static"): "the files of the /docs and /redoc pages",
          **dict.fromkeys(DASHBOARD_PAGES, "the dashboard's pages check roles themselves: "
                          "tests/unit/test_dashboard_pages.py")}


async def test_every_route_gives_each_caller_what_its_rule_says(world: World) -> None:
    outcomes = {}
    for rule in RULES:
        url = (rule.url or rule.route).format(**world.ids)
        got = []
        for who in WHO:
            body: dict[str, Any] = {"params": rule.params}
            if rule.content is not None:
                body["content"] = rule.content(who).decode().format(**world.ids).encode()
                body["headers"] = {"Content-Type": rule.content_type}
            elif rule.json is not None:
                body["json"] = rule.json(who) if callable(rule.json) else rule.json
            response = await world.clients[who].request(rule.method, url, **body)
            await world.api.app.state.jobs.wait_idle()
            got.append(response.status_code)
        outcomes[(rule.method, rule.route)] = tuple(got)
    wrong = {(rule.method, rule.route): (outcomes[(rule.method, rule.route)], rule.expect)
             for rule in RULES if outcomes[(rule.method, rule.route)] != rule.expect}
    assert wrong == {}, "route: (statuses got, expected) for none, key, rep, manager, admin"
    covered = {(rule.method, rule.route) for rule in RULES} | set(EXEMPT)
    routes = app_routes(world.api.app)
    assert routes - covered == set(), "routes without a rule in this test"
    assert covered - routes == set(), "rules for routes the app no longer has"


async def test_a_refused_caller_is_told_why(world: World) -> None:
    rep = await world.clients["rep"].post(f"{V1}/goals", json=_goal_for_bob("rep"))
    assert rep.json()["error"]["message"] == "a rep may not do this"
    key = await world.clients["key"].post(f"{V1}/goals", json=_goal_for_bob("key"))
    assert key.json()["error"]["message"] == "this API key lacks the 'write' scope"
    nobody = await world.clients["none"].get(f"{V1}/deals")
    assert nobody.json()["error"]["message"] == \
        "an API key is required: send Authorization: Bearer <key>"


# ---- what each one sees ------------------------------------------------------------------

async def rows(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"{V1}{path}", params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return list(response.json()["data"])


async def csv_rows(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, str]]:
    response = await client.get(f"{V1}{path}", params={**params, "format": "csv"})
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text)))


def deals_of(*names: str) -> set[str]:
    return {f"d-{n}-{s}" for n in names for s in STATUSES}


async def test_a_rep_sees_only_their_own_person(world: World) -> None:
    rep, ann = world.clients["rep"], world.person("ann")
    summary = (await rep.get(f"{V1}/metrics/summary",
                             params={**Q1, "group_by": "owner"})).json()
    assert [r["person_id"] for r in summary["data"]] == [ann]
    assert summary["total"]["bookings"] == summary["data"][0]["bookings"] == 100
    assert summary["total"]["goal"] == 1000  # Ann's goal; the company goal is not hers
    teams = (await rep.get(f"{V1}/metrics/summary", params={**Q1, "group_by": "team"})).json()
    assert [(r["team"], r["deals_won"]) for r in teams["data"]] == [("North", 1)]
    for metric in ("forecast", "win_rate", "open_pipeline"):
        listed = {r["remote_id"] for r in await rows(rep, "/metrics/deals", metric=metric, **Q1)}
        assert listed and listed <= deals_of("ann"), metric
    # asking for someone else, by id, email or team: nothing
    for other in ({"person_id": world.person("bob")}, {"owner_email": "cat@example.com"},
                  {"team": "South"}):
        assert await rows(rep, "/metrics/deals", metric="forecast", **Q1, **other) == []
    assert {r["remote_id"] for r in await rows(rep, "/deals")} == deals_of("ann")
    assert await rows(rep, "/deals", owner_person_id=world.person("cat")) == []
    assert await rows(rep, "/deals", owner_email="bob@example.com") == []
    assert [r["remote_id"] for r in await rows(rep, "/accounts")] == ["a-ann"]
    assert [r["email"] for r in await rows(rep, "/users")] == ["ann@example.com"]
    assert [p["id"] for p in await rows(rep, "/people")] == [ann]
    assert [g["person_id"] for g in await rows(rep, "/goals")] == [ann]
    assert await rows(rep, "/goals", company=True) == []
    series = (await rep.get(f"{V1}/metrics/timeseries", params={
        **Q1, "metric": "bookings", "interval": "quarter", "group_by": "owner"})).json()
    assert [(r["person_id"], r["value"]) for r in series["data"]] == [(ann, 100)]
    pipeline = (await rep.get(f"{V1}/metrics/pipeline")).json()
    assert sum(r["count"] for r in pipeline["data"]) == 1  # Ann's open deal
    for path in (f"/people/{world.person('bob')}", f"/goals/{world.ids['bob_goal']}",
                 f"/goals/{world.ids['company_goal']}"):
        response = await rep.get(f"{V1}{path}")
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


async def test_exports_hold_the_rows_of_the_json(world: World) -> None:
    rep = world.clients["rep"]
    for path, params, key in (("/deals", {}, "remote_id"), ("/accounts", {}, "remote_id"),
                              ("/users", {}, "email"), ("/people", {}, "id"),
                              ("/goals", {}, "id"),
                              ("/metrics/deals", {**Q1, "metric": "forecast"}, "remote_id")):
        json_rows = [str(r[key]) for r in await rows(rep, path, **params)]
        assert [r[key] for r in await csv_rows(rep, path, **params)] == json_rows, path
    summary = await csv_rows(rep, "/metrics/summary", **Q1, group_by="owner")
    assert [r["person_id"] for r in summary] == [str(world.person("ann")), ""]  # + total
    xlsx = await rep.get(f"{V1}/deals", params={"format": "xlsx"})
    assert xlsx.status_code == 200 and b"d-bob" not in xlsx.content


async def test_a_manager_sees_their_teams_people(world: World) -> None:
    manager, admin = world.clients["manager"], world.clients["admin"]
    north = {world.person("ann"), world.person("bob")}
    summary = (await manager.get(f"{V1}/metrics/summary",
                                 params={**Q1, "group_by": "owner"})).json()
    assert {r["person_id"] for r in summary["data"]} == north
    everyone = (await admin.get(f"{V1}/metrics/summary",
                                params={**Q1, "group_by": "owner"})).json()
    assert summary["data"] == [r for r in everyone["data"] if r["person_id"] in north]
    teams = (await manager.get(f"{V1}/metrics/summary",
                               params={**Q1, "group_by": "team"})).json()
    assert [r["team"] for r in teams["data"]] == ["North"]
    all_teams = (await admin.get(f"{V1}/metrics/summary",
                                 params={**Q1, "group_by": "team"})).json()
    assert [r["team"] for r in all_teams["data"]] == ["North", "South", None]
    assert teams["data"][0] == all_teams["data"][0]  # the same North row, goal included
    assert all_teams["total"]["goal"] == 1000 and teams["total"]["goal"] == 2000
    assert {r["remote_id"] for r in await rows(manager, "/deals")} == deals_of("ann", "bob")
    listed = await rows(manager, "/metrics/deals", metric="forecast", team="North", **Q1)
    assert {r["remote_id"] for r in listed} == {"d-ann-open", "d-ann-won", "d-bob-open",
                                                "d-bob-won"}
    assert await rows(manager, "/metrics/deals", metric="forecast", team="South", **Q1) == []
    assert {g["person_id"] for g in await rows(manager, "/goals")} == north
    assert (await manager.get(f"{V1}/people/{world.person('cat')}")).status_code == 404


async def test_scorecards_are_of_the_callers_people(world: World) -> None:
    rep, manager, admin = (world.clients[w] for w in ("rep", "manager", "admin"))
    ann, bob, cat = (world.person(n) for n in ("ann", "bob", "cat"))
    mine = (await rep.get(f"{V1}/metrics/scorecards", params=Q1)).json()
    assert [r["person_id"] for r in mine["data"]] == [ann]
    assert [t["team"] for t in mine["teams"]] == ["North"]
    assert mine["total"]["bookings"]["value"] == 100  # Ann's won deal; not the no-owner one
    assert mine["total"]["goal"]["value"] == 1000  # her goal, not the company's
    for other in ({"person_id": bob}, {"team": "South"}):
        response = await rep.get(f"{V1}/metrics/scorecards", params={**Q1, **other})
        assert response.status_code == 404, other
        assert response.json()["error"]["code"] == "not_found"
    north = (await manager.get(f"{V1}/metrics/scorecards", params=Q1)).json()
    assert [(r["person_id"], r["rank"]) for r in north["data"]] == [(bob, 1), (ann, 2)]
    everyone = (await admin.get(f"{V1}/metrics/scorecards", params=Q1)).json()
    assert [r["person_id"] for r in everyone["data"]] == [bob, ann, cat]
    assert north["data"] == everyone["data"][:2]  # the same cards
    assert [t["team"] for t in everyone["teams"]] == ["North", "South", None]
    assert everyone["teams"][0] == north["teams"][0]
    assert (await manager.get(f"{V1}/metrics/scorecards",
                              params={**Q1, "team": "South"})).status_code == 404
    one = (await admin.get(f"{V1}/metrics/scorecards", params={**Q1, "person_id": cat})).json()
    assert one["data"] == everyone["data"][2:]  # Cat alone in South: the same card


async def test_a_manager_sets_goals_only_for_their_teams(world: World) -> None:
    manager = world.clients["manager"]

    def goal(**owner: Any) -> dict[str, Any]:
        return {**owner, "metric": "bookings", "period_start": "2025-04-01",
                "period_end": "2025-06-30", "target": 100}

    def count() -> int:
        with session_scope(world.engine) as session:
            return int(session.execute(select(func.count()).select_from(Goal)).scalar_one())

    before = count()
    for body, field_ in ((goal(person_id=world.person("cat")), "person_id"),
                         (goal(owner_email="cat@example.com"), "owner_email"),
                         (goal(), "person_id")):
        response = await manager.post(f"{V1}/goals", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["details"][0]["field"] == field_
    moved = await manager.patch(f"{V1}/goals/{world.ids['bob_goal']}",
                                json={"person_id": world.person("cat")})
    assert moved.status_code == 422
    outside = await manager.patch(f"{V1}/goals/{world.ids['cat_goal']}", json={"target": 1})
    assert outside.status_code == 404
    imported = await manager.post(
        f"{V1}/goals/import", headers={"Content-Type": "text/csv"},
        content=b"owner_email,metric,period_start,period_end,target\n"
                b"bob@example.com,bookings,2025-04-01,2025-06-30,10\n"
                b"cat@example.com,bookings,2025-04-01,2025-06-30,10\n")
    assert imported.status_code == 422
    assert [r["line"] for r in imported.json()["error"]["rows"]] == [3]
    assert count() == before  # nothing was written
    made = await manager.post(f"{V1}/goals", json=goal(person_id=world.person("bob")))
    assert made.status_code == 201 and count() == before + 1


async def test_a_session_change_needs_the_csrf_token(world: World) -> None:
    cookie, csrf = world.sessions["manager"]
    body = _goal_for_bob("manager")
    async with world.client(cookie) as bare, world.client(cookie, "forged") as forged:
        for client in (bare, forged):
            response = await client.post(f"{V1}/goals", json=body)
            assert response.status_code == 403
            assert CSRF_HEADER in response.json()["error"]["message"]
            deleted = await client.delete(f"{V1}/goals/{world.ids['bob_goal']}")
            assert deleted.status_code == 403
        assert (await bare.get(f"{V1}/goals")).status_code == 200  # reads need no token
    with session_scope(world.engine) as session:
        goals = session.execute(select(Goal).where(Goal.deleted_at.is_(None))).scalars()
        assert len(list(goals)) == 4  # the seeded ones: nothing added, nothing deleted
    async with world.client(cookie, csrf) as good:
        assert (await good.post(f"{V1}/goals", json=body)).status_code == 201


async def test_ended_sessions_and_disabled_users_are_refused(world: World) -> None:
    admin_cookie, _ = world.sessions["admin"]
    manager_cookie, _ = world.sessions["manager"]
    rep_cookie, _ = world.sessions["rep"]

    async def status(cookie: str) -> int:
        async with world.client(cookie) as client:
            return (await client.get(f"{V1}/deals")).status_code

    assert {await status(c) for c in (admin_cookie, manager_cookie, rep_cookie)} == {200}
    with session_scope(world.engine) as session:  # the admin's session expired
        session.execute(update(WebSession).values(expires_at=utcnow() - timedelta(seconds=1))
                        .where(WebSession.user_id == select(DashboardUser.id).where(
                            DashboardUser.email == "boss@example.com").scalar_subquery()))
        accounts.close_session(session, manager_cookie)  # the manager signed out
        ann = accounts.find_user(session, "ann@example.com")
        ann.disabled_at = utcnow()  # disabled (its session row left in place)
    for cookie in (admin_cookie, manager_cookie, rep_cookie):
        async with world.client(cookie) as client:
            response = await client.get(f"{V1}/deals")
            assert response.status_code == 401
            assert response.json()["error"]["message"] == \
                "your session has ended: sign in again at /login"
            assert cookie not in response.text
    assert await status("not a session") == 401


async def test_a_manager_pushes_only_their_teams_goals(world: World) -> None:
    """The push job is limited to the manager's people: other teams' goals and company-wide
    goals are neither sent nor marked (an admin's push covers every goal)."""
    north = {world.ids["ann_goal"], world.ids["bob_goal"]}
    pushed = await world.clients["manager"].post(f"{V1}/goals/push", json={})
    assert pushed.status_code == 200, pushed.text
    assert {r["goal_id"] for r in pushed.json()["results"]} == north
    listed = {g["id"]: g["push"] for g in await rows(world.clients["admin"], "/goals")}
    assert {gid for gid, push in listed.items() if push} == north
    everything = await world.clients["admin"].post(f"{V1}/goals/push", json={})
    assert {r["goal_id"] for r in everything.json()["results"]} == north | {
        world.ids["cat_goal"], world.ids["company_goal"]}


async def test_statements_are_scoped_like_the_other_data(world: World) -> None:
    admin, manager, rep = (world.clients[w] for w in ("admin", "manager", "rep"))
    put = await admin.put(f"{V1}/plans/all", content=PLAN,
                          headers={"Content-Type": "application/yaml"})
    assert put.status_code == 201, put.text

    async def people(client: httpx.AsyncClient, **params: Any) -> list[tuple[int, Any]]:
        response = await client.get(f"{V1}/statements", params={**JAN, **params})
        assert response.status_code == 200, response.text
        return [(s["person_id"], s["payout"]) for s in response.json()["data"]]

    ann, bob, cat = (world.person(n) for n in ("ann", "bob", "cat"))
    # one won deal each in January: 100, 101 and 102 (10 %)
    assert await people(admin) == [(ann, 10), (bob, 10.1), (cat, 10.2)]
    assert await people(manager) == [(ann, 10), (bob, 10.1)]
    assert await people(rep) == [(ann, 10)]
    assert await people(rep, person=str(ann)) == [(ann, 10)]
    assert await people(rep, person="ann@example.com") == [(ann, 10)]
    for other in ({"person": str(bob)}, {"person_id": cat}, {"email": "bob@example.com"}):
        response = await rep.get(f"{V1}/statements", params={**JAN, **other})
        assert response.status_code == 404, other
    assert (await manager.get(f"{V1}/statements", params={**JAN, "person_id": cat})
            ).status_code == 404
    exported = await rep.get(f"{V1}/statements", params={**JAN, "format": "csv"})
    assert exported.status_code == 200 and "bob" not in exported.text.lower()
    for client in (rep, manager):
        assert (await client.put(f"{V1}/plans/all", content=PLAN, headers={
            "Content-Type": "application/yaml"})).status_code == 403
        assert (await client.post(f"{V1}/periods/2025-01/lock")).status_code == 403


async def test_stage_history_is_of_the_callers_people(world: World) -> None:
    moved = [DealRecord(f"d-{n}-open", f"{n} open", amount=Decimal(100), amount_home=Decimal(100),
                        stage="Negotiation", status="open", close_date=date(2025, 1, 10),
                        owner_email=REPS[n][0], owner_name=n.title())
             for n in REPS]
    with session_scope(world.engine) as session:
        store.upsert_records(session, stream="deals", connection_id=world.ids["connection"],
                             records=moved)
    seen = {who: {r["deal_remote_id"] for r in await rows(world.clients[who], "/stage-changes")}
            for who in ("rep", "manager", "admin")}
    assert seen == {"rep": {"d-ann-open"}, "manager": {"d-ann-open", "d-bob-open"},
                    "admin": {"d-ann-open", "d-bob-open", "d-cat-open"}}
    exported = await csv_rows(world.clients["rep"], "/stage-changes")
    assert [r["deal_remote_id"] for r in exported] == ["d-ann-open"]
    stages = await world.clients["manager"].get(f"{V1}/deals/{world.ids['bob_deal']}/stages")
    assert [c["to_stage"] for c in stages.json()["changes"]] == ["Negotiation"]


async def test_evaluation_metrics_are_of_the_callers_people(world: World) -> None:
    rep, manager = world.clients["rep"], world.clients["manager"]
    ann = world.person("ann")
    velocity = (await rep.get(f"{V1}/metrics/velocity",
                              params={**Q1, "group_by": "owner"})).json()
    assert [(r["person_id"], r["open_deals"]) for r in velocity["data"]] == [(ann, 1)]
    created = datetime(2024, 12, 1, tzinfo=UTC)
    with session_scope(world.engine) as session:  # deals with a history before Q1
        store.upsert_records(session, stream="deals", connection_id=world.ids["connection"],
                             records=[DealRecord(
                                 f"x-{n}", f"{n} x", amount=Decimal(200),
                                 amount_home=Decimal(200), status="open",
                                 probability=Decimal(50), close_date=date(2025, 2, 1),
                                 remote_created_at=created, remote_modified_at=created,
                                 owner_email=REPS[n][0]) for n in REPS])
    accuracy = (await rep.get(f"{V1}/metrics/forecast-accuracy", params=Q1)).json()
    assert [(r["person_id"], r["forecast_at_start"]) for r in accuracy["data"]] == [(ann, 100)]
    funnel = (await manager.get(f"{V1}/metrics/funnel", params={
        "start": "2024-12-01", "end": "2024-12-31", "group_by": "owner"})).json()
    assert {r["owner_email"] for r in funnel["data"]} == {REPS["ann"][0], REPS["bob"][0]}
    teams = (await manager.get(f"{V1}/metrics/velocity",
                               params={**Q1, "group_by": "team"})).json()
    assert [(r["team"], r["open_deals"]) for r in teams["data"]] == [("North", 4)]  # + x-ann, x-bob
    pipeline = (await rep.get(f"{V1}/metrics/pipeline", params={"as_of": "2026-01-01"})).json()
    assert sum(r["count"] for r in pipeline["data"]) == 1  # Ann's open deal


async def test_hygiene_of_the_people_each_one_sees(world: World) -> None:
    """The open deals (closing in January 2025, long past) break past_close: a rep sees
    their own, a manager of North Ann's and Bob's, an admin everyone's."""
    seen = {}
    for who in ("rep", "manager", "admin"):
        items = await rows(world.clients[who], "/hygiene", rule="past_close")
        summary = (await world.clients[who].get(f"{V1}/hygiene/summary")).json()
        seen[who] = ({r["remote_id"] for r in items},
                     {r["person_id"]: r["counts"]["past_close"] for r in summary["data"]},
                     [t["team"] for t in summary["teams"]], summary["total"]["total"])
    ann, bob, cat = (world.person(n) for n in ("ann", "bob", "cat"))
    assert seen["rep"] == ({"d-ann-open"}, {ann: 1}, ["North"], 1)
    assert seen["manager"] == ({"d-ann-open", "d-bob-open"}, {ann: 1, bob: 1}, ["North"], 2)
    assert seen["admin"] == ({"d-ann-open", "d-bob-open", "d-cat-open"},
                             {ann: 1, bob: 1, cat: 1}, ["North", "South"], 3)
    other = await world.clients["rep"].get(f"{V1}/hygiene", params={"owner_person_id": bob})
    assert other.json()["data"] == []
    south = await world.clients["manager"].get(f"{V1}/hygiene/summary", params={"team": "South"})
    assert south.json()["data"] == []
    refused = await world.clients["manager"].put(f"{V1}/hygiene/rules/stale",
                                                 json={"enabled": False})
    assert refused.status_code == 403
    rules = (await world.clients["rep"].get(f"{V1}/hygiene/rules")).json()["data"]
    assert [r["enabled"] for r in rules if r["key"] == "stale"] == [True]
