"""The push_goals job on SQLite and PostgreSQL against respx-faked Zoho: what is sent, what is
stored per goal, idempotency, edits, deletions, per-element errors, INVALID_MODULE, 429."""

import json
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from core import store
from core.config import Settings
from core.db import session_scope
from core.goals import targets as goals
from core.models import Connection, GoalPush
from core.records import UserRecord
from tests.integration.zoho_helpers import make_context
from workers.jobs import push_goals

ACCOUNTS = "https://accounts.zoho.eu"
API = "https://www.zohoapis.eu"
UPSERT = f"{API}/crm/v8/Sales_Goals/upsert"
SETTINGS = Settings(database_url="sqlite://", reporting_currency="USD")


@pytest.fixture
def ctx(engine, db_url):
    ctx = make_context(engine, db_url)
    secrets = {"client_id": "cid", "client_secret": "cs", "refresh_token": "rt"}
    with session_scope(engine) as session:
        for name, users in (("zoho", [("77", "Ann Lee", "ann@x.com"),
                                      ("78", "Bob Roy", "bob@x.com")]),
                            ("other", [("5", "Cy Doe", "cy@x.com")])):
            connection = Connection(provider="zoho", name=name, config={"dc": "eu"},
                                    home_currency="USD",
                                    secrets_encrypted=ctx.secrets.seal(secrets))
            session.add(connection)
            session.flush()
            store.upsert_records(session, stream="users", connection_id=connection.id,
                                 records=[UserRecord(*u) for u in users])
    yield ctx


def add_goal(engine, owner: str | None, metric: str = "bookings", target: str = "1000") -> int:
    with session_scope(engine) as session:
        goal = goals.create_goal(session, goals.GoalInput(
            owner, metric, date(2025, 4, 1), date(2025, 6, 30), Decimal(target)), SETTINGS)
        return int(goal.id or 0)


class FakeModule:
    """Zoho's upsert by Goal_Key and delete by ids, answering element envelopes
    (docs/vendors/zoho.md §9)."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.sent: list[list[dict[str, Any]]] = []

    def upsert(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["duplicate_check_fields"] == ["Goal_Key"] and body["trigger"] == []
        self.sent.append(body["data"])
        out = []
        for item in body["data"]:
            found = next((i for i, r in self.records.items()
                          if r["Goal_Key"] == item["Goal_Key"]), None)
            rid = found or str(9000 + len(self.records))
            self.records[rid] = item
            out.append({"code": "SUCCESS", "action": "update" if found else "insert",
                        "duplicate_field": "Goal_Key" if found else None,
                        "status": "success", "details": {"id": rid}})
        return httpx.Response(200, json={"data": out})

    def delete(self, request: httpx.Request) -> httpx.Response:
        ids = request.url.params["ids"].split(",")
        for rid in ids:
            self.records.pop(rid)
        return httpx.Response(200, json={"data": [
            {"code": "SUCCESS", "status": "success", "details": {"id": i}} for i in ids]})


@pytest.fixture
def zoho():
    fake = FakeModule()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{ACCOUNTS}/oauth/v2/token").mock(return_value=httpx.Response(200, json={
            "access_token": "tok", "api_domain": API, "expires_in": 3600}))
        router.post(UPSERT).mock(side_effect=fake.upsert)
        router.delete(f"{API}/crm/v8/Sales_Goals").mock(side_effect=fake.delete)
        # the push reads whether the org has multi-currency (its goal records then carry
        # Currency): a multi-currency org, as zoho/crm-oas getCurrencies' 200 example
        router.get(f"{API}/crm/v8/org/currencies").mock(return_value=httpx.Response(
            200, json={"currencies": [{"iso_code": "USD", "is_base": True}]}))
        router.get(f"{API}/crm/v8/org").mock(return_value=httpx.Response(
            200, json={"org": [{"iso_code": "USD", "company_name": "Acme"}]}))
        yield router, fake


def statuses(result: dict[str, Any]) -> dict[int, str]:
    return {r["goal_id"]: r["status"] for r in result["results"]}


async def test_push_stores_results_and_a_second_push_changes_nothing(ctx, zoho):
    router, fake = zoho
    ann, bob, cy = (add_goal(ctx.engine, o) for o in ("ann@x.com", "bob@x.com", "cy@x.com"))
    company = add_goal(ctx.engine, None, "deals_won", "40")
    first = await push_goals(ctx, connection_id=1)
    assert statuses(first) == {ann: "inserted", bob: "inserted", cy: "skipped",
                               company: "inserted"}
    skipped = next(r for r in first["results"] if r["goal_id"] == cy)
    assert skipped["error"] == "cy@x.com is not a user of this CRM"
    assert first["connections"] == [{"connection_id": 1, "error": None,
                                     "counts": {"inserted": 3, "skipped": 1}}]
    by_key = {r["Goal_Key"]: r for r in fake.records.values()}
    assert by_key[f"crmsync-goal-{ann}"]["Sales_Rep"] == {"id": "77"}
    assert by_key[f"crmsync-goal-{ann}"]["Name"] == "Ann Lee - Bookings - 2025-Q2"
    assert by_key[f"crmsync-goal-{company}"]["Sales_Rep"] is None
    with session_scope(ctx.engine) as session:
        row = goals.goal_rows(session, [goals.get_goal(session, ann)], SETTINGS)[0]
        assert [(p["connection_id"], p["status"], p["remote_id"]) for p in row["push"]] == [
            (1, "inserted", next(i for i, r in fake.records.items()
                                 if r["Goal_Key"] == f"crmsync-goal-{ann}"))]

    calls = router.routes[1].call_count
    second = await push_goals(ctx, connection_id=1)
    assert router.routes[1].call_count == calls  # nothing sent
    assert statuses(second) == {ann: "unchanged", bob: "unchanged", cy: "skipped",
                                company: "unchanged"}
    assert len(fake.records) == 3

    with session_scope(ctx.engine) as session:
        goals.update_goal(session, ann, {"target": Decimal("2500")}, SETTINGS)
        goals.delete_goal(session, bob)
    third = await push_goals(ctx, connection_id=1)
    assert statuses(third) == {ann: "updated", bob: "deleted", cy: "skipped",
                               company: "unchanged"}
    assert fake.sent[-1] == [next(r for r in fake.records.values()
                                  if r["Goal_Key"] == f"crmsync-goal-{ann}")]
    assert {r["Goal_Key"]: r["Target_Amount"] for r in fake.records.values()} == {
        f"crmsync-goal-{ann}": 2500, f"crmsync-goal-{company}": 40}
    fourth = await push_goals(ctx, connection_id=1)
    assert bob not in statuses(fourth) and len(fake.records) == 2


async def test_invalid_module_is_stored_per_goal_and_retried_next_time(ctx, zoho):
    router, fake = zoho
    ann = add_goal(ctx.engine, "ann@x.com")
    router.post(UPSERT).mock(return_value=httpx.Response(400, json={
        "code": "INVALID_MODULE", "details": {}, "message": "invalid module",
        "status": "error"}))
    result = await push_goals(ctx, connection_id=1)
    assert statuses(result) == {ann: "error"}
    assert "Create New Module" in result["connections"][0]["error"]
    with session_scope(ctx.engine) as session:
        push = session.get(GoalPush, (ann, 1))
        assert push.status == "error" and "Goal_Key" in push.error and push.pushed_hash is None
    router.post(UPSERT).mock(side_effect=fake.upsert)
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "inserted"}


async def test_an_element_error_then_429_then_success(ctx, zoho):
    router, fake = zoho
    ann = add_goal(ctx.engine, "ann@x.com")
    router.post(UPSERT).mock(return_value=httpx.Response(400, json={"data": [{
        "code": "INVALID_DATA", "status": "error", "message": "invalid data",
        "details": {"api_name": "Target_Amount"}}]}))
    result = await push_goals(ctx, connection_id=1)
    assert result["results"][0]["error"] == "Zoho INVALID_DATA: invalid data (field Target_Amount)"
    router.post(UPSERT).mock(side_effect=[
        httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "details": {}, "message": "x",
                                  "status": "error"}), fake.upsert])
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "inserted"}


async def test_every_connection_and_an_unknown_one(ctx, zoho):
    from core.errors import ConfigError

    add_goal(ctx.engine, "cy@x.com")
    with pytest.raises(ConfigError, match="connection 99 does not exist"):
        await push_goals(ctx, connection_id=99)
    both = await push_goals(ctx)  # connection 2 holds cy (the same fake answers for it)
    assert [(c["connection_id"], c["counts"]) for c in both["connections"]] == [
        (1, {"skipped": 1}), (2, {"inserted": 1})]


async def test_a_goal_reassigned_to_someone_outside_the_crm_leaves_it(ctx, zoho):
    _router, fake = zoho
    ann = add_goal(ctx.engine, "ann@x.com")
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "inserted"}
    with session_scope(ctx.engine) as session:
        goals.update_goal(session, ann, {"owner_email": "cy@x.com"}, SETTINGS)
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "deleted"}
    assert fake.records == {}  # no record with the wrong rep stays behind
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "skipped"}
    with session_scope(ctx.engine) as session:
        goals.update_goal(session, ann, {"owner_email": "bob@x.com"}, SETTINGS)
    assert statuses(await push_goals(ctx, connection_id=1)) == {ann: "inserted"}
    assert [r["Sales_Rep"] for r in fake.records.values()] == [{"id": "78"}]
