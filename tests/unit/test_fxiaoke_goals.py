"""Goal push to Fxiaoke (docs/vendors/fxiaoke.md §4): respx-faked Fxiaoke, and the sandbox
goals object."""

import json
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from connectors.fxiaoke import FxiaokeConfig, FxiaokeConnector, FxiaokeSecrets
from connectors.fxiaoke import client as fx_client
from connectors.fxiaoke.goals import period_type, record, schema, setup_message
from connectors.fxiaoke.wire import day_ms
from connectors.http import ApiClient, RetryPolicy, build_client
from core.errors import AuthError, ConfigError
from core.records import GoalDeletion, GoalOut

BASE = "https://open.fxiaoke.com"
CUSTOM = f"{BASE}/cgi/crm/custom/v2/data"
ADMIN = "FSUID_F8E5C73533927249281F06800BC975AA"
REP = "FSUID_0123456789ABCDEF0123456789ABCDEF"
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
SECRETS = {"app_id": "FSAID_demo", "app_secret": "s3cret-app-secret",
           "permanent_code": "perm-code-123"}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(fx_client, "RATE", fx_client.RateBudget(100, 0.05))
    yield


def goal(i: int, *, rep: str | None = REP, metric: str = "bookings", target: str = "500000.10",
         start: date = date(2025, 4, 1), end: date = date(2025, 6, 30)) -> GoalOut:
    return GoalOut(i, f"crmsync-goal-{i}", "wang.wu@example.cn" if rep else None, rep,
                   "王五" if rep else None, metric, start, end, Decimal(target),
                   "CNY" if metric == "bookings" else None)


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


# A goals object whose admin kept §4's API names; fields are still found by label.
OLD_FIELDS: dict[str, Any] = {
    "name": {"label": "Name"}, "period__c": {"label": "Period"},
    "period_type__c": {"label": "Period type", "options": [
        {"value": v, "label": v.title()} for v in ("month", "quarter", "year")]},
    "employee__c": {"label": "Employee"}, "target_amount__c": {"label": "Target"},
    "metric__c": {"label": "指标", "options": [{"value": "bookings", "label": "成交额"},
                                               {"value": "deals_won", "label": "赢单数"}]},
    "external_id__c": {"label": "External ID"}}


class FakeGoals:
    """The goals object as §4 describes it: query by external_id__c, create, update, invalid."""

    def __init__(self, router: respx.Router) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.errors: dict[str, list[dict[str, Any]]] = {}  # path suffix -> queued bodies
        self.calls: list[tuple[str, dict[str, Any]]] = []
        router.post(f"{BASE}/cgi/corpAccessToken/get/V2").respond(json={
            "errorCode": 0, "corpAccessToken": "tok-1", "corpId": "FSCID_demo",
            "expiresIn": 7200})
        for name in ("query", "create", "update", "invalid", "get"):
            router.post(f"{CUSTOM}/{name}").mock(side_effect=self._handler(name))
        self.describe = router.post(f"{BASE}/cgi/crm/v2/object/describe").respond(json={
            "errorCode": 0, "data": {"describe": {"fields": OLD_FIELDS}}})

    def _handler(self, name: str):
        def handle(request: httpx.Request) -> httpx.Response:
            body = body_of(request)
            assert body["corpAccessToken"] == "tok-1" and body["currentOpenUserId"] == ADMIN
            self.calls.append((name, body))
            queued = self.errors.get(name)
            if queued:
                return httpx.Response(200, json=queued.pop(0))
            return httpx.Response(200, json=getattr(self, name)(body["data"]))
        return handle

    def query(self, data: dict[str, Any]) -> dict[str, Any]:
        [flt] = data["search_query_info"]["filters"]
        assert (flt["field_name"], flt["operator"]) == ("external_id__c", "IN")
        rows = [r for r in self.rows.values() if r["external_id__c"] in flt["field_values"]]
        return {"errorCode": 0, "errorMessage": "OK", "data": {"dataList": rows}}

    def create(self, data: dict[str, Any]) -> dict[str, Any]:
        row = dict(data["object_data"])
        row["_id"] = f"{len(self.rows) + 1:024x}"
        row["life_status"] = "normal"
        self.rows[row["_id"]] = row
        return {"errorCode": 0, "errorMessage": "OK", "dataId": row["_id"]}

    def update(self, data: dict[str, Any]) -> dict[str, Any]:
        values = data["object_data"]
        assert "owner" not in values  # §4: owner only through changeOwner
        self.rows[values["_id"]].update(values)
        return {"errorCode": 0, "errorMessage": "OK", "dataId": values["_id"]}

    def invalid(self, data: dict[str, Any]) -> dict[str, Any]:
        row = self.rows.get(data["object_data_id"])
        if row is None or row["life_status"] == "invalid":
            return {"errorCode": 10006, "errorMessage": "数据不存在或已作废"}
        row["life_status"] = "invalid"
        return {"errorCode": 0, "errorMessage": "OK"}

    def get(self, data: dict[str, Any]) -> dict[str, Any]:
        row = self.rows.get(data["objectDataId"])
        if row is None:
            return {"errorCode": 10006, "errorMessage": "数据不存在"}
        return {"errorCode": 0, "errorMessage": "OK", "data": row}


async def push(goals: list[GoalOut], deletions: list[GoalDeletion] | None = None,
               **config: Any) -> list[Any]:
    async with build_client() as client:
        connector = FxiaokeConnector(
            FxiaokeConfig.model_validate({"base_url": BASE, "current_open_user_id": ADMIN,
                                          **config}),
            FxiaokeSecrets.model_validate(SECRETS), ApiClient(client, retry=FAST))
        return await connector.push_goals(goals, deletions or [])


def test_a_goal_becomes_an_object_data_in_the_vendor_formats():
    found = schema(OLD_FIELDS, "object_SalesGoal__c", {})
    data = record(goal(7), "object_SalesGoal__c", found)
    assert data == {
        "dataObjectApiName": "object_SalesGoal__c", "name": "王五 - Bookings - 2025-Q2",
        "period__c": day_ms(date(2025, 4, 1)), "period_type__c": "quarter",
        "target_amount__c": "500000.10", "metric__c": "bookings",
        "external_id__c": "crmsync-goal-7", "employee__c": [REP]}
    company = record(goal(8, rep=None, metric="deals_won", target="25"), "object_SalesGoal__c",
                     found)
    assert "employee__c" not in company and company["target_amount__c"] == "25"
    assert period_type(goal(1, start=date(2025, 1, 1), end=date(2025, 12, 31))) == "year"
    assert period_type(goal(1, start=date(2025, 2, 1), end=date(2025, 2, 28))) == "month"
    assert period_type(goal(1, start=date(2025, 2, 1), end=date(2025, 4, 30))) == "quarter"
    assert period_type(goal(1, start=date(2025, 2, 3), end=date(2025, 4, 30))) is None


@respx.mock
async def test_create_then_update_the_same_record_found_by_external_id():
    fake = FakeGoals(respx.mock)
    first = await push([goal(1), goal(2, rep=None, metric="deals_won", target="25")])
    assert [(r.goal_id, r.status) for r in first] == [(1, "inserted"), (2, "inserted")]
    created = [body for name, body in fake.calls if name == "create"]
    assert created[0]["triggerWorkFlow"] is False and created[0]["triggerApprovalFlow"] is False
    assert created[0]["data"]["object_data"]["owner"] == [REP]
    assert created[1]["data"]["object_data"]["owner"] == [ADMIN]  # company goal: acting user
    ids = {r.goal_id: r.remote_id for r in first}
    assert set(ids.values()) == set(fake.rows)

    again = await push([goal(1, target="600000")])  # edited: the same record, no duplicate
    assert [(r.status, r.remote_id) for r in again] == [("updated", ids[1])]
    [update] = [body for name, body in fake.calls if name == "update"]
    # the update page documents triggerWorkFlow only, top-level next to data
    assert update["triggerWorkFlow"] is False and "triggerApprovalFlow" not in update
    values = update["data"]["object_data"]
    assert values["_id"] == ids[1] and values["dataObjectApiName"] == "object_SalesGoal__c"
    assert len(fake.rows) == 2 and fake.rows[ids[1]]["target_amount__c"] == "600000"
    assert sum(1 for name, _ in fake.calls if name == "query") == 2  # one per 100 goals


@respx.mock
async def test_each_write_reads_its_own_error_code():
    fake = FakeGoals(respx.mock)
    fake.errors["create"] = [{"errorCode": 10006, "errorMessage": "字段target_amount__c必须是数字"}]
    results = await push([goal(1), goal(2)])
    by_id = {r.goal_id: r for r in results}
    statuses = sorted(r.status for r in results)
    assert statuses == ["error", "inserted"]
    failed = next(r for r in by_id.values() if r.status == "error")
    assert "10006" in (failed.error or "") and "target_amount__c" in (failed.error or "")
    assert len(fake.rows) == 1
    odd = await push([goal(3, start=date(2025, 4, 2))])  # not a calendar period: not sent
    assert odd[0].status == "error" and "period_type__c" in (odd[0].error or "")


@respx.mock
async def test_a_rate_limit_pauses_then_succeeds():
    fake = FakeGoals(respx.mock)
    fake.errors["create"] = [{"errorCode": 14001, "errorMessage": "调用次数超过限制"}]
    results = await push([goal(1)])
    assert [r.status for r in results] == ["inserted"]
    assert [name for name, _ in fake.calls].count("create") == 2
    assert len(fake.rows) == 1


@respx.mock
async def test_deletions_void_the_record_and_a_voided_or_gone_one_counts_as_deleted():
    fake = FakeGoals(respx.mock)
    [made] = await push([goal(1)])
    assert made.remote_id is not None
    gone = GoalDeletion(1, "crmsync-goal-1", made.remote_id)
    missing = GoalDeletion(2, "crmsync-goal-2", "f" * 24)
    results = await push([], [gone, missing])
    assert [(r.goal_id, r.status) for r in results] == [(1, "deleted"), (2, "deleted")]
    assert fake.rows[made.remote_id]["life_status"] == "invalid"  # voided, not purged
    assert [(r.status) for r in await push([], [gone])] == ["deleted"]  # idempotent
    fake.errors["invalid"] = [{"errorCode": 10006, "errorMessage": "数据已被锁定"}]
    fake.rows[made.remote_id]["life_status"] = "normal"  # refused, and still there: an error
    [locked] = await push([], [gone])
    assert locked.status == "error" and "10006" in (locked.error or "")


@respx.mock
async def test_a_goal_whose_record_was_voided_in_the_crm_says_what_to_do():
    fake = FakeGoals(respx.mock)
    [made] = await push([goal(1)])
    fake.rows[str(made.remote_id)]["life_status"] = "invalid"
    [result] = await push([goal(1, target="1")])
    assert result.status == "error" and "voided" in (result.error or "")


@respx.mock
async def test_a_missing_goals_object_is_a_config_error_with_setup_steps():
    fake = FakeGoals(respx.mock)
    fake.describe.respond(json={"errorCode": 10006, "errorMessage": "对象不存在"})
    with pytest.raises(ConfigError) as caught:
        await push([goal(1)], goals_object="object_Goal__c")
    assert str(caught.value) == setup_message("object_Goal__c")
    assert "External ID" in str(caught.value) and not fake.calls


@respx.mock
async def test_a_missing_field_is_refused_naming_its_label_and_config_overrides_it():
    fake = FakeGoals(respx.mock)
    fields = {k: v for k, v in OLD_FIELDS.items() if k != "target_amount__c"}
    fields["field_rU4l5__c"] = {"label": "年度目标"}  # labelled otherwise
    fake.describe.respond(json={"errorCode": 0, "data": {"describe": {"fields": fields}}})
    with pytest.raises(ConfigError, match="no field labelled 'Target'") as caught:
        await push([goal(1)])
    assert "goals_fields" in str(caught.value) and not fake.calls
    [made] = await push([goal(1)], goals_fields={"target": "field_rU4l5__c"})
    assert made.status == "inserted"
    assert fake.rows[str(made.remote_id)]["field_rU4l5__c"] == "500000.10"
    fields["metric__c"] = {"label": "Metric", "options": [{"value": "x1", "label": "Bookings"}]}
    fake.describe.respond(json={"errorCode": 0, "data": {"describe": {"fields": fields}}})
    with pytest.raises(ConfigError, match="'Metric' has no option labelled 'Deals won'"):
        await push([goal(1)], goals_fields={"target": "field_rU4l5__c"})


@respx.mock
async def test_a_permission_error_stops_the_push():
    fake = FakeGoals(respx.mock)
    fake.errors["query"] = [{"errorCode": 20014, "errorMessage": "无权限"}]
    with pytest.raises(AuthError):
        await push([goal(1)])


async def test_the_sandbox_object_checks_formats_and_voids():
    from connectors.fxiaoke.sandbox import create_app
    from connectors.fxiaoke.sandbox.wire import GOALS_OBJECT, open_user_id
    from connectors.sandbox import generate_company

    company = generate_company(seed=3, deals=50, reps=4, today=date(2025, 6, 15))
    app = create_app(company)
    rep = company.reps[1]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        connector = sandbox_connector(c, open_user_id(rep))
        out = GoalOut(1, "crmsync-goal-1", rep.email, open_user_id(rep), rep.full_name,
                      "bookings", date(2025, 4, 1), date(2025, 6, 30), Decimal("1000.5"), "CNY")
        [made] = await connector.push_goals([out], [])
        rows = app.state.fxiaoke.custom[GOALS_OBJECT]
        # generated API names and option codes, found by label
        row = rows[str(made.remote_id)]
        assert made.status == "inserted" and row["field_rU4l5__c"] == "1000.50"
        assert (row["field_t7Lq2__c"], row["field_m8Kc7__c"]) == ("9eL1m3kQz", "option1")
        assert "mc_currency" not in row and app.state.fxiaoke.workflow_runs == 0
        [again] = await connector.push_goals([out], [])
        assert (again.status, again.remote_id) == ("updated", made.remote_id) and len(rows) == 1
        [gone] = await connector.push_goals([], [GoalDeletion(1, out.key, str(made.remote_id))])
        assert gone.status == "deleted" and rows[str(made.remote_id)]["life_status"] == "invalid"
        assert app.state.fxiaoke.workflow_runs == 0  # triggerWorkFlow: false where documented


async def test_a_multi_currency_tenant_gets_the_goal_currency_on_the_record():
    from connectors.fxiaoke.sandbox import create_app
    from connectors.fxiaoke.sandbox.wire import GOALS_OBJECT, open_user_id
    from connectors.sandbox import generate_company

    company = generate_company(seed=3, deals=50, reps=4, today=date(2025, 6, 15))
    app = create_app(company, multi_currency=True)
    rep = company.reps[1]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        connector = sandbox_connector(c, open_user_id(rep))
        out = GoalOut(1, "crmsync-goal-1", rep.email, open_user_id(rep), rep.full_name,
                      "bookings", date(2025, 4, 1), date(2025, 6, 30), Decimal("1000.5"), "CNY")
        [made] = await connector.push_goals([out], [])
    row = app.state.fxiaoke.custom[GOALS_OBJECT][str(made.remote_id)]
    assert (row["mc_currency"], row["field_rU4l5__c"]) == ("CNY", "1000.50")


def sandbox_connector(client: httpx.AsyncClient, acting_user: str) -> FxiaokeConnector:
    """The connector on the sandbox tenant (its documented demo credentials)."""
    return FxiaokeConnector(
        FxiaokeConfig.model_validate({"base_url": BASE, "current_open_user_id": acting_user}),
        FxiaokeSecrets.model_validate({"app_id": "FSAID_sandbox0001",
                                       "app_secret": "sandbox-app-secret",
                                       "permanent_code": "sandbox-permanent-code"}),
        ApiClient(client, retry=FAST))
