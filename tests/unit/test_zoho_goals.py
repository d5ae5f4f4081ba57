"""Goal push to Zoho (docs/vendors/zoho.md §9) against respx-faked Zoho, and the sandbox's
goals module."""

import json
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, RetryPolicy, build_client
from connectors.sandbox import generate_company
from connectors.zoho import ZohoConfig, ZohoConnector, ZohoSecrets
from connectors.zoho.goals import period_label, record
from connectors.zoho.sandbox import create_app
from connectors.zoho.sandbox.goals import goal_records
from core.errors import AuthError, ConfigError
from core.records import GoalDeletion, GoalOut
from tests.conftest import SANDBOX_ENDPOINTS

ACCOUNTS = "https://accounts.zoho.eu"
API = "https://www.zohoapis.eu"
UPSERT = f"{API}/crm/v8/Sales_Goals/upsert"
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)


def goal(i: int, *, rep: str | None = "77", metric: str = "bookings",
         target: str = "500000.10") -> GoalOut:
    return GoalOut(i, f"crmsync-goal-{i}", "jean@example.com" if rep else None, rep,
                   "Jean Lafleur" if rep else None, metric, date(2025, 4, 1), date(2025, 6, 30),
                   Decimal(target), "USD" if metric == "bookings" else None)


def inserted(i: int) -> dict[str, Any]:
    return {"code": "SUCCESS", "duplicate_field": None, "action": "insert",
            "status": "success", "message": "record added", "details": {"id": f"900{i}"}}


def updated(i: int) -> dict[str, Any]:
    return {"code": "SUCCESS", "duplicate_field": "Goal_Key", "action": "update",
            "status": "success", "message": "record updated",
            "details": {"id": f"900{i}", "Modified_Time": "2025-05-01T10:00:00+05:30"}}


async def push(goals: list[GoalOut], deletions: list[GoalDeletion] | None = None,
               module: str = "Sales_Goals") -> tuple[list[Any], ZohoConnector]:
    async with build_client() as client:
        connector = ZohoConnector(
            ZohoConfig(dc="eu", goals_module=module),
            ZohoSecrets(client_id="cid", client_secret="csecret", refresh_token="rtok"),
            ApiClient(client, retry=FAST))
        return await connector.push_goals(goals, deletions or []), connector


NOT_ENABLED = {"code": "CURRENCIES_NOT_ENABLED", "details": {},
               "message": "Multi currency is not enabled", "status": "error"}


def org(router: respx.MockRouter, *, multi: bool) -> None:
    """An org with multi-currency (EUR home, USD too) or without it (403, crm-oas example)."""
    router.get(f"{API}/crm/v8/org/currencies").mock(return_value=httpx.Response(
        200, json={"currencies": [{"iso_code": "EUR", "is_base": True},
                                  {"iso_code": "USD", "is_base": False}]}) if multi
        else httpx.Response(403, json=NOT_ENABLED))
    router.get(f"{API}/crm/v8/org").mock(return_value=httpx.Response(200, json={
        "org": [{"company_name": "Acme", "iso_code": "EUR" if multi else "USD"}]}))


@pytest.fixture
def zoho(respx_mock):
    respx_mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(return_value=httpx.Response(200, json={
        "access_token": "tok", "api_domain": API, "token_type": "Bearer", "expires_in": 3600}))
    org(respx_mock, multi=False)
    return respx_mock


def sent(route: respx.Route, call: int = 0) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(route.calls[call].request.content)
    return body


async def test_upsert_sends_the_section_9_body_and_reads_each_element(zoho):
    route = zoho.post(UPSERT).mock(return_value=httpx.Response(207, json={"data": [
        inserted(1), updated(2),
        {"code": "INVALID_DATA", "status": "error", "message": "the related id given seems "
         "to be invalid", "details": {"api_name": "Sales_Rep", "json_path": "$.data[2]"}}]}))
    results, _ = await push([goal(1), goal(2, rep=None, metric="deals_won", target="12"),
                             goal(3)])
    assert [(r.goal_id, r.status, r.remote_id) for r in results] == [
        (1, "inserted", "9001"), (2, "updated", "9002"), (3, "error", None)]
    assert results[2].error == ("Zoho INVALID_DATA: the related id given seems to be invalid "
                                "(field Sales_Rep)")
    request = route.calls[0].request
    assert request.headers["Authorization"] == "Zoho-oauthtoken tok"
    assert b'"Target_Amount": 500000.1,' in request.content  # a JSON number, never a string
    body = sent(route)
    assert body["duplicate_check_fields"] == ["Goal_Key"] and body["trigger"] == []
    assert body["data"][0] == {
        "Name": "Jean Lafleur - Bookings - 2025-Q2", "Goal_Key": "crmsync-goal-1",
        "Sales_Rep": {"id": "77"}, "Period_Start": "2025-04-01", "Period_End": "2025-06-30",
        "Target_Amount": 500000.1, "Metric": "Bookings"}
    assert body["data"][1]["Sales_Rep"] is None and body["data"][1]["Target_Amount"] == 12
    assert body["data"][1]["Name"] == "Company - Deals Won - 2025-Q2"


async def test_a_multi_currency_org_gets_the_target_with_its_currency(respx_mock):
    respx_mock.post(f"{ACCOUNTS}/oauth/v2/token").mock(return_value=httpx.Response(200, json={
        "access_token": "tok", "api_domain": API, "token_type": "Bearer", "expires_in": 3600}))
    org(respx_mock, multi=True)
    route = respx_mock.post(UPSERT).mock(return_value=httpx.Response(200, json={"data": [
        inserted(1), inserted(2)]}))
    eur = GoalOut(1, "k1", None, None, None, "bookings", date(2025, 4, 1), date(2025, 6, 30),
                  Decimal("9200"), "EUR")
    results, connector = await push([eur, goal(2, metric="deals_won", target="3")])
    assert [r.status for r in results] == ["inserted", "inserted"]
    data = sent(route)["data"]
    assert (data[0]["Currency"], data[0]["Target_Amount"]) == ("EUR", 9200)
    assert "Currency" not in data[1]  # a count of deals has no currency
    assert connector.home_currency == "EUR" and connector.multi_currency is True


async def test_a_one_currency_org_never_gets_a_currency_field(zoho):
    route = zoho.post(UPSERT).mock(return_value=httpx.Response(200, json={"data": [
        inserted(1)]}))
    results, connector = await push([goal(1)])
    assert results[0].status == "inserted"
    assert "Currency" not in sent(route)["data"][0]
    assert connector.home_currency == "USD" and connector.multi_currency is False


async def test_sandbox_goals_currency_follows_the_org(company):
    """Multi-currency org: Currency stored (home by default, unknown codes refused); a
    one-currency org refuses the field itself, as Zoho does for a field it lacks."""
    app, client, auth = await sandbox(company)
    answer = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={"data": [
        item("a", None, Currency="EUR"), item("b", None), item("c", None, Currency="XXX")]})
    assert answer.status_code == 207
    assert [e["status"] for e in answer.json()["data"]] == ["success", "success", "error"]
    assert answer.json()["data"][2]["details"]["api_name"] == "Currency"
    assert sorted(r["Currency"] for r in goal_records(app)) == ["EUR", company.home_currency]
    await client.aclose()

    one = generate_company(seed=5, deals=60, reps=4)
    app, client, auth = await sandbox(one, multi_currency=False)
    refused = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={"data": [
        item("a", None, Currency="USD")]})
    assert refused.status_code == 400
    assert refused.json()["data"] == [{"code": "INVALID_DATA", "message": "invalid data",
                                       "status": "error", "details": {
                                           "api_name": "Currency",
                                           "json_path": "$.data[0].Currency"}}]
    ok = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={"data": [
        item("a", None)]})
    assert ok.status_code == 200 and "Currency" not in goal_records(app)[0]
    await client.aclose()


async def test_goals_push_into_either_kind_of_sandbox_org(company):
    """The connector against the sandbox: Currency only where the org has it."""
    for multi in (True, False):
        app = create_app(generate_company(seed=5, deals=60, reps=4), multi_currency=multi)
        async with build_client(transport=httpx.ASGITransport(app=app)) as client:
            connector = ZohoConnector(
                ZohoConfig(accounts_url="http://sandbox.test"), ZohoSecrets(
                    client_id="sandbox-client-id", client_secret="sandbox-client-secret",
                    refresh_token="sandbox-refresh-token"),
                ApiClient(client, retry=FAST, endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS)))
            results = await connector.push_goals([goal(1, rep=None)], [])
        assert results[0].status == "inserted", results[0].error
        stored = goal_records(app)[0]
        assert stored.get("Currency") == ("USD" if multi else None)
        assert ("Currency" in stored) is multi


async def test_an_all_failed_batch_is_read_per_element_too(zoho):
    zoho.post(UPSERT).mock(return_value=httpx.Response(400, json={"data": [
        {"code": "MANDATORY_NOT_FOUND", "status": "error", "message": "required field not found",
         "details": {"api_name": "Name", "json_path": "$.data[0].Name"}}]}))
    results, _ = await push([goal(1)])
    assert results[0].status == "error"
    assert results[0].error == ("Zoho MANDATORY_NOT_FOUND: required field not found "
                                "(field Name)")


async def test_batches_of_100_records(zoho):
    def answer(request: httpx.Request) -> httpx.Response:
        data = json.loads(request.content)["data"]
        return httpx.Response(200, json={"data": [inserted(int(d["Goal_Key"].split("-")[-1]))
                                                  for d in data]})

    route = zoho.post(UPSERT).mock(side_effect=answer)
    results, _ = await push([goal(i) for i in range(1, 251)])
    assert [len(sent(route, i)["data"]) for i in range(route.call_count)] == [100, 100, 50]
    assert [r.remote_id for r in results] == [f"900{i}" for i in range(1, 251)]


async def test_invalid_module_says_how_to_create_it(zoho):
    zoho.post(f"{API}/crm/v8/My_Goals/upsert").mock(return_value=httpx.Response(400, json={
        "code": "INVALID_MODULE", "details": {"resource_path_index": 0},
        "message": "the module name given seems to be invalid", "status": "error"}))
    with pytest.raises(ConfigError) as caught:
        await push([goal(1)], module="My_Goals")
    message = str(caught.value)
    for text in ("'My_Goals'", "Create New Module", "Goal_Key (Single Line, Do not allow "
                 "duplicate values)", "Sales_Rep (Lookup to Users)", "Period_Start (Date)",
                 "Target_Amount (Currency)", "Metric (Pick List: Bookings, Deals Won)",
                 "goals_module"):
        assert text in message


async def test_429_then_success_is_retried(zoho):
    route = zoho.post(UPSERT).mock(side_effect=[
        httpx.Response(429, json={"code": "TOO_MANY_REQUESTS", "details": {},
                                  "message": "limit", "status": "error"}),
        httpx.Response(200, json={"data": [inserted(1)]})])
    results, connector = await push([goal(1)])
    assert route.call_count == 2 and results[0].status == "inserted"
    assert connector.api_calls == 5  # token + currencies + org + 429 + success


async def test_an_auth_failure_is_an_auth_error(zoho):
    zoho.post(UPSERT).mock(return_value=httpx.Response(401, json={
        "code": "AUTHENTICATION_FAILURE", "details": {}, "message": "Authentication failed",
        "status": "error"}))
    with pytest.raises(AuthError):
        await push([goal(1)])


async def test_deletions_by_ids_and_a_record_already_gone(zoho):
    route = zoho.delete(f"{API}/crm/v8/Sales_Goals").mock(return_value=httpx.Response(
        207, json={"data": [
            {"code": "SUCCESS", "details": {"id": "11"}, "message": "record deleted",
             "status": "success"},
            {"code": "INVALID_DATA", "details": {"id": "12"},
             "message": "the related id given seems to be invalid", "status": "error"},
            {"code": "RECORD_LOCKED", "details": {"id": "13"}, "message": "locked",
             "status": "error"}]}))
    results, _ = await push([], [GoalDeletion(1, "k1", "11"), GoalDeletion(2, "k2", "12"),
                                 GoalDeletion(3, "k3", "13")])
    assert [(r.goal_id, r.status) for r in results] == [(1, "deleted"), (2, "deleted"),
                                                        (3, "error")]
    assert results[2].error == "Zoho RECORD_LOCKED: locked"
    params = route.calls[0].request.url.params
    assert params["ids"] == "11,12,13" and params["wf_trigger"] == "false"


def test_names_and_periods_are_readable():
    g = goal(1)
    for start, end, label in ((date(2025, 4, 1), date(2025, 4, 30), "2025-04"),
                              (date(2025, 1, 1), date(2025, 12, 31), "2025"),
                              (date(2025, 2, 1), date(2025, 4, 30), "2025-02-01 to 2025-04-30"),
                              (date(2025, 10, 1), date(2025, 12, 31), "2025-Q4")):
        g.period_start, g.period_end = start, end
        assert period_label(g) == label
    g.owner_name = "x" * 200
    assert len(record(g)["Name"]) == 120


# ---- the sandbox's goals module ----------------------------------------------------------

@pytest.fixture
def company():
    return generate_company(seed=5, deals=60, reps=4)


async def sandbox(company, **kwargs: Any) -> tuple[Any, httpx.AsyncClient, dict[str, str]]:
    app = create_app(company, **kwargs)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sb")
    token = (await client.post("/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": "sandbox-client-id",
        "client_secret": "sandbox-client-secret",
        "refresh_token": "sandbox-refresh-token"})).json()["access_token"]
    return app, client, {"Authorization": f"Zoho-oauthtoken {token}"}


def item(key: str, rep: str | None, **extra: Any) -> dict[str, Any]:
    return {"Name": f"goal {key}", "Goal_Key": key, "Sales_Rep": rep and {"id": rep},
            "Period_Start": "2025-04-01", "Period_End": "2025-06-30",
            "Target_Amount": 1000.5, "Metric": "Bookings", **extra}


async def test_sandbox_upsert_inserts_then_updates_by_goal_key(company):
    app, client, auth = await sandbox(company)
    rep = company.reps[1]
    body = {"data": [item("k1", rep.id)], "duplicate_check_fields": ["Goal_Key"], "trigger": []}
    first = await client.post("/crm/v8/Sales_Goals/upsert", json=body, headers=auth)
    assert first.status_code == 200, first.text
    element = first.json()["data"][0]
    assert (element["code"], element["action"], element["status"]) == (
        "SUCCESS", "insert", "success")
    record_id = element["details"]["id"]
    body["data"][0]["Target_Amount"] = 2000
    second = await client.post("/crm/v8/sales_goals/upsert", json=body, headers=auth)
    element = second.json()["data"][0]
    assert (element["action"], element["duplicate_field"], element["details"]["id"]) == (
        "update", "Goal_Key", record_id)
    records = goal_records(app)
    assert len(records) == 1 and records[0]["Target_Amount"] == 2000
    assert records[0]["Sales_Rep"] == {"name": rep.full_name, "id": rep.id}
    listed = await client.get("/crm/v8/Sales_Goals", params={"fields": "Goal_Key,Sales_Rep"},
                              headers=auth)
    assert listed.json()["data"] == [{"id": record_id, "Goal_Key": "k1",
                                      "Sales_Rep": {"name": rep.full_name, "id": rep.id}}]
    assert (await client.get("/crm/v8/Sales_Goals", headers=auth)).json()["code"] == \
        "REQUIRED_PARAM_MISSING"
    control = (await client.get("/_sandbox/goals")).json()
    assert control["module"] == "Sales_Goals" and len(control["records"]) == 1
    deals = await client.get("/crm/v8/Deals", params={"fields": "Deal_Name"}, headers=auth)
    assert deals.status_code == 200  # the generic modules still answer
    await client.aclose()


async def test_sandbox_validates_each_element(company):
    app, client, auth = await sandbox(company)
    data = [item("ok", company.reps[0].id), item("d", None, Period_End="30/06/2025"),
            item("r", "123"), item("m", None, Metric="Revenue"), item("n", None, Name=None),
            item("t", None, Target_Amount="lots"), item("x", None, Colour="red")]
    response = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={
        "data": data, "duplicate_check_fields": ["Goal_Key"]})
    assert response.status_code == 207
    elements = response.json()["data"]
    assert [(e["code"], e["details"].get("api_name")) for e in elements] == [
        ("SUCCESS", None), ("INVALID_DATA", "Period_End"), ("INVALID_DATA", "Sales_Rep"),
        ("INVALID_DATA", "Metric"), ("MANDATORY_NOT_FOUND", "Name"),
        ("INVALID_DATA", "Target_Amount"), ("INVALID_DATA", "Colour")]
    assert elements[1]["details"] == {"api_name": "Period_End", "json_path":
                                      "$.data[1].Period_End", "expected_data_type": "date"}
    assert len(goal_records(app)) == 1
    too_many = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={
        "data": [item(str(i), None) for i in range(101)]})
    assert too_many.status_code == 400 and too_many.json()["code"] == "LIMIT_EXCEEDED"
    bad_check = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={
        "data": [item("k", None)], "duplicate_check_fields": ["Metric"]})
    assert bad_check.json()["code"] == "INVALID_DATA"
    assert (await client.post("/crm/v8/Sales_Goals/upsert", content=b"{", headers=auth)
            ).status_code == 400
    assert len(goal_records(app)) == 1
    await client.aclose()


async def test_sandbox_delete_by_ids(company):
    app, client, auth = await sandbox(company)
    response = await client.post("/crm/v8/Sales_Goals/upsert", headers=auth, json={
        "data": [item("a", None), item("b", None)], "duplicate_check_fields": ["Goal_Key"]})
    ids = [e["details"]["id"] for e in response.json()["data"]]
    deleted = await client.delete("/crm/v8/Sales_Goals", params={"ids": f"{ids[0]},42"},
                                  headers=auth)
    assert deleted.status_code == 207
    assert [(e["code"], e["details"]["id"]) for e in deleted.json()["data"]] == [
        ("SUCCESS", ids[0]), ("INVALID_DATA", "42")]
    assert [r["id"] for r in goal_records(app)] == [ids[1]]
    missing = await client.delete("/crm/v8/Sales_Goals", headers=auth)
    assert missing.json()["code"] == "REQUIRED_PARAM_MISSING"
    cleared = await client.delete("/_sandbox/goals")
    assert cleared.json()["records"] == [] and goal_records(app) == []
    await client.aclose()


async def test_a_sandbox_without_the_module_answers_invalid_module(company):
    app, client, auth = await sandbox(company, goals_module=None)
    for response in (
        await client.post("/crm/v8/Sales_Goals/upsert", json={"data": []}, headers=auth),
        await client.get("/crm/v8/Sales_Goals", params={"fields": "Name"}, headers=auth),
        await client.delete("/crm/v8/Sales_Goals", params={"ids": "1"}, headers=auth),
    ):
        assert response.status_code == 400 and response.json()["code"] == "INVALID_MODULE"
    assert goal_records(app) == []
    deals = await client.post("/crm/v8/Deals/upsert", json={"data": []}, headers=auth)
    assert deals.json()["code"] == "NOT_SUPPORTED"
    await client.aclose()
