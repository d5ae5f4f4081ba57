"""The Zoho CRM sandbox against docs/vendors/zoho.md: OAuth, records paging, errors, faults,
control API."""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.applications import Starlette

from connectors.sandbox import Company, generate_company
from connectors.zoho.sandbox import create_app
from connectors.zoho.sandbox.wire import MODULES

CREDENTIALS = {"grant_type": "refresh_token", "client_id": "sandbox-client-id",
               "client_secret": "sandbox-client-secret",
               "refresh_token": "sandbox-refresh-token"}
FIELDS = "Deal_Name,Amount,Currency,Exchange_Rate,Stage,Pipeline,Probability,Closing_Date," \
         "Account_Name,Owner,Created_Time,Modified_Time"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$")  # §2: no ms, no Z


def small() -> Company:
    return generate_company(seed=3, deals=300, accounts=40)


class Api:
    """A client with a token, and the app's state at hand."""

    def __init__(self, app: Starlette, client: httpx.AsyncClient) -> None:
        self.app, self.client = app, client
        self.state = app.state.zoho
        self.headers: dict[str, str] = {}

    async def login(self) -> None:
        response = await self.client.post("/oauth/v2/token", data=CREDENTIALS)
        self.headers = {"Authorization": f"Zoho-oauthtoken {response.json()['access_token']}"}

    async def get(self, path: str, headers: dict[str, str] | None = None,
                  **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params,
                                     headers={**self.headers, **(headers or {})})

    async def deals(self, **params: Any) -> httpx.Response:
        return await self.get("/crm/v8/Deals", **{"fields": FIELDS, **params})


MakeApi = Callable[..., Awaitable["Api"]]


@pytest_asyncio.fixture
async def make_api() -> AsyncIterator[MakeApi]:
    clients: list[httpx.AsyncClient] = []

    async def make(company: Company | None = None, **kwargs: Any) -> Api:
        app = create_app(company if company is not None else small(), **kwargs)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://sandbox")
        clients.append(client)
        api = Api(app, client)
        await api.login()
        return api

    yield make
    for client in clients:
        await client.aclose()


@pytest_asyncio.fixture
async def api(make_api: MakeApi) -> Api:
    return await make_api()


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == "error"  # §7 envelope
    assert set(body) == {"code", "details", "message", "status"}
    return body


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---- OAuth (§1) -----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_token_grant_from_form_or_query(api: Api) -> None:
    response = await api.client.post("/oauth/v2/token", data=CREDENTIALS)
    body = response.json()
    assert response.status_code == 200 and body["token_type"] == "Bearer"
    assert body["api_domain"] == "http://sandbox" and body["expires_in"] == 3600
    assert body["access_token"].startswith("1000.")
    by_query = await api.client.post("/oauth/v2/token", params=CREDENTIALS)
    assert "access_token" in by_query.json()
    assert api.state.token_grants == 3  # the fixture's login, then these two


@pytest.mark.asyncio
@pytest.mark.parametrize(("change", "expected"), [
    ({"refresh_token": "revoked"}, "invalid_code"),
    ({"client_id": "other"}, "invalid_client"),
    ({"client_secret": "wrong"}, "invalid_client"),
])
async def test_token_failures_are_http_200_with_an_error_key(
        api: Api, change: dict[str, str], expected: str) -> None:
    response = await api.client.post("/oauth/v2/token", data={**CREDENTIALS, **change})
    assert response.status_code == 200 and response.json() == {"error": expected}
    assert "sandbox-client-secret" not in response.text


@pytest.mark.asyncio
async def test_token_endpoint_throttles_a_busy_refresh_token(make_api: MakeApi) -> None:
    api = await make_api(token_grant_limit=3)
    for _ in range(2):
        assert (await api.client.post("/oauth/v2/token", data=CREDENTIALS)).status_code == 200
    blocked = await api.client.post("/oauth/v2/token", data=CREDENTIALS)
    assert blocked.status_code == 400 and blocked.json()["error"] == "Access Denied"
    assert "too many requests" in blocked.json()["error_description"]


@pytest.mark.asyncio
async def test_auth_header_rules(make_api: MakeApi) -> None:
    api = await make_api(token_ttl=0)  # tokens expire as soon as they are issued
    error(await api.client.get("/crm/v8/Deals", params={"fields": "Deal_Name"}), 401,
          "AUTHENTICATION_FAILURE")
    error(await api.deals(), 401, "INVALID_TOKEN")
    fresh = await make_api()
    token = fresh.headers["Authorization"].split()[1]
    ok = await fresh.client.get("/crm/v8/org", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200 and DATETIME.match(ok.headers["X-Accesstoken-Reset"])
    error(await fresh.get("/crm/v8/org", headers={"Authorization": "Zoho-oauthtoken nope"}),
          401, "INVALID_TOKEN")


# ---- records (§2) ---------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_fields_are_mandatory_and_at_most_50(api: Api) -> None:
    body = error(await api.get("/crm/v8/Deals"), 400, "REQUIRED_PARAM_MISSING")
    assert body["details"] == {"param_name": "fields"}
    names = ["Deal_Name"] + [f"Custom_{i}" for i in range(50)]
    error(await api.deals(fields=",".join(names)), 400, "LIMIT_EXCEEDED")
    assert (await api.deals(fields=",".join(names[:50]))).status_code == 200


@pytest.mark.asyncio
async def test_records_carry_only_requested_fields_in_zoho_shapes(api: Api) -> None:
    body = (await api.deals(fields="Deal_Name,Owner,Modified_Time,Nonexistent")).json()
    row = body["data"][0]
    assert {k for k in row if not k.startswith("$")} == {"id", "Deal_Name", "Owner",
                                                         "Modified_Time"}
    assert isinstance(row["id"], str) and row["id"].isdigit()
    assert set(row["Owner"]) == {"name", "id", "email"}
    assert DATETIME.match(row["Modified_Time"]) and row["Modified_Time"].endswith(
        ("-04:00", "-05:00"))  # the org's zone, America/New_York


@pytest.mark.asyncio
async def test_record_values_match_the_company(api: Api) -> None:
    company = api.state.company
    deal = next(d for d in company.deals.values() if d.currency != company.home_currency)
    row = (await api.deals(ids=deal.id)).json()["data"][0]
    stage = company.stage_by_id[deal.stage_id]
    assert row["Amount"] == float(deal.amount) and row["Currency"] == deal.currency
    assert row["Exchange_Rate"] == float(deal.exchange_rate)
    assert row["Stage"] == stage.name and row["Pipeline"] == f"{stage.pipeline} (Standard)"
    assert row["Probability"] == deal.probability
    assert row["Closing_Date"] == deal.close_date.isoformat()
    assert row["Account_Name"] == {"name": company.accounts[deal.account_id].name,
                                   "id": deal.account_id}
    assert row["Owner"]["email"] == company.rep_by_id[deal.owner_id].email
    assert parse(row["Modified_Time"]) == deal.modified_at
    assert parse(row["Created_Time"]) == deal.created_at


@pytest.mark.asyncio
async def test_default_sort_is_id_desc_and_per_page_caps_at_200(api: Api) -> None:
    body = (await api.deals(per_page=500)).json()
    ids = [r["id"] for r in body["data"]]
    assert len(ids) == 200 and body["info"]["per_page"] == 200
    assert ids == sorted(ids, reverse=True)
    assert body["info"]["sort_by"] == "id" and body["info"]["sort_order"] == "desc"
    assert body["info"]["more_records"] is True and body["info"]["next_page_token"]
    created = (await api.deals(sort_by="Created_Time", sort_order="asc")).json()["data"]
    times = [parse(r["Created_Time"]) for r in created]
    assert times == sorted(times)
    error(await api.deals(sort_by="Deal_Name"), 400, "INVALID_DATA")
    error(await api.deals(per_page="ten"), 400, "INVALID_DATA")


@pytest.mark.asyncio
async def test_page_11_is_the_discrete_pagination_limit(make_api: MakeApi) -> None:
    api = await make_api(generate_company(seed=4, deals=2300))
    assert (await api.deals(page=10)).json()["info"]["more_records"] is True
    response = await api.deals(page=11)
    assert response.status_code == 400
    assert response.json() == {  # §2: the exact body from the Airbyte log
        "code": "DISCRETE_PAGINATION_LIMIT_EXCEEDED", "details": {"limit": 2000},
        "message": "You can only get the first 2000 records without using page_token param",
        "status": "error"}


@pytest.mark.asyncio
async def test_page_token_walk_sees_every_record_once_in_modified_order(make_api: MakeApi) -> None:
    company = generate_company(seed=4, deals=2300)
    api = await make_api(company)
    params = {"sort_by": "Modified_Time", "sort_order": "asc", "per_page": 200}
    pages: list[list[dict[str, Any]]] = []
    token = None
    while True:
        response = await api.deals(**params, **({"page_token": token} if token else {}))
        body = response.json()
        pages.append(body["data"])
        token = body["info"]["next_page_token"]
        assert body["info"]["page"] == len(pages)
        if not body["info"]["more_records"]:
            assert token is None
            break
    rows = [r for page in pages for r in page]
    keys = [(parse(r["Modified_Time"]), r["id"]) for r in rows]
    assert keys == sorted(keys) and len(rows) > 2000
    assert sorted(r["id"] for r in rows) == sorted(company.deals)  # each exactly once
    straddling = [i for i in range(len(pages) - 1)
                  if pages[i][-1]["Modified_Time"] == pages[i + 1][0]["Modified_Time"]]
    assert straddling, "the dataset should put one timestamp on both sides of a page break"


@pytest.mark.asyncio
async def test_page_token_rules(api: Api) -> None:
    first = (await api.deals(per_page=100)).json()["info"]
    token = first["next_page_token"]
    assert first["page_token_expiry"] and DATETIME.match(first["page_token_expiry"])
    second = await api.deals(per_page=100, page_token=token)
    assert second.status_code == 200 and second.json()["info"]["previous_page_token"] is None
    error(await api.deals(per_page=100, page_token=token, page=2), 400,
          "AMBIGUITY_DURING_PROCESSING")
    body = error(await api.deals(per_page=100, page_token=token, sort_order="asc"), 400,
                 "TOKEN_BOUND_DATA_MISMATCH")
    assert body["details"] == {"param_name": "sort_order"}
    error(await api.deals(page_token="not-a-token"), 400, "INVALID_DATA")
    api.state.page_tokens.ttl = -1  # tokens minted from now on are already expired
    stale = (await api.deals(per_page=100)).json()["info"]["next_page_token"]
    error(await api.deals(per_page=100, page_token=stale), 400, "EXPIRED_VALUE")


@pytest.mark.asyncio
async def test_page_token_stops_at_the_cap(api: Api) -> None:
    api.state.pagination_cap = 200  # stands for 100,000 (§2)
    token = (await api.deals(per_page=100)).json()["info"]["next_page_token"]
    body = (await api.deals(per_page=100, page_token=token)).json()
    assert body["info"]["more_records"] is True
    error(await api.deals(per_page=100, page_token=body["info"]["next_page_token"]), 400,
          "PAGINATION_LIMIT_EXCEEDED")


@pytest.mark.asyncio
async def test_if_modified_since_is_inclusive_and_304_when_nothing_changed(api: Api) -> None:
    company = api.state.company
    deal = sorted(company.deals.values(), key=lambda d: d.modified_at)[len(company.deals) // 2]
    moment = deal.modified_at
    india = moment.astimezone(datetime.strptime("+0530", "%z").tzinfo).isoformat()
    body = (await api.deals(headers={"If-Modified-Since": india}, per_page=200,
                            sort_by="Modified_Time", sort_order="asc")).json()
    expected = sorted((d.modified_at, d.id) for d in company.deals.values()
                      if d.modified_at >= moment)
    got = [(parse(r["Modified_Time"]), r["id"]) for r in body["data"]]
    assert got == expected[:200] and deal.id in {r["id"] for r in body["data"]}
    later = (moment + timedelta(seconds=1)).isoformat()
    after = (await api.deals(headers={"If-Modified-Since": later}, ids=deal.id))
    assert after.status_code in (204, 304) and after.content == b""
    future = (company.latest + timedelta(days=1)).isoformat()
    nothing = await api.deals(headers={"If-Modified-Since": future})
    assert nothing.status_code == 304 and nothing.content == b""
    for bad in ("yesterday", "2025-06-01T10:00:00"):  # no offset is not ISO-8601 with offset
        error(await api.deals(headers={"If-Modified-Since": bad}), 400, "INVALID_DATA")


@pytest.mark.asyncio
async def test_no_records_is_204_with_an_empty_body(make_api: MakeApi) -> None:
    api = await make_api(generate_company(seed=1, deals=0, accounts=20))
    empty = await api.deals()
    assert empty.status_code == 204 and empty.content == b""
    beyond = await (await make_api()).deals(page=5)  # 300 deals: page 5 is past the end
    assert beyond.status_code == 204 and beyond.content == b""


@pytest.mark.asyncio
async def test_ids_and_single_record(api: Api) -> None:
    wanted = sorted(api.state.company.deals)[:3]
    rows = (await api.deals(ids=",".join(wanted))).json()["data"]
    assert sorted(r["id"] for r in rows) == wanted
    error(await api.deals(ids=",".join(str(10**18 + i) for i in range(101))), 400,
          "LIMIT_EXCEEDED")
    one = (await api.get(f"/crm/v8/Deals/{wanted[0]}")).json()["data"]
    assert len(one) == 1 and one[0]["id"] == wanted[0] and "Stage" in one[0]
    assert (await api.get("/crm/v8/Deals/1234567")).status_code == 204
    account = (await api.get("/crm/v8/Accounts", fields="Account_Name,Industry")).json()
    assert {"id", "Account_Name", "Industry"} <= set(account["data"][0])


@pytest.mark.asyncio
async def test_deleted_records(api: Api) -> None:
    body = (await api.get("/crm/v8/Deals/deleted")).json()
    assert body["info"]["more_records"] is False and body["data"]
    row = body["data"][0]
    assert set(row) == {"deleted_by", "id", "display_name", "type", "created_by",
                        "deleted_time"}
    permanent = (await api.get("/crm/v8/Deals/deleted", type="permanent")).json()["data"]
    assert all(r["type"] == "permanent" and r["display_name"] is None for r in permanent)
    assert (await api.get("/crm/v8/Accounts/deleted", type="recycle")).status_code == 200
    error(await api.get("/crm/v8/Deals/deleted", type="bin"), 400, "INVALID_DATA")
    since = (api.state.company.latest + timedelta(seconds=1)).isoformat()
    unchanged = await api.get("/crm/v8/Deals/deleted", headers={"If-Modified-Since": since})
    assert unchanged.status_code == 304
    victim = sorted(api.state.company.deals)[0]
    assert (await api.client.delete(f"/_sandbox/deals/{victim}")).status_code == 200
    fresh = (await api.get("/crm/v8/Deals/deleted", type="recycle",
                           headers={"If-Modified-Since": since})).json()["data"]
    assert [r["id"] for r in fresh] == [victim] and fresh[0]["display_name"]


@pytest.mark.asyncio
async def test_users(api: Api) -> None:
    body = (await api.get("/crm/v8/users", type="AllUsers")).json()
    users = body["users"]
    assert len(users) == len(api.state.company.reps) and body["info"]["count"] == len(users)
    first = users[0]
    assert "created_time" in first and "Modified_Time" in first  # §2: the mixed casing
    assert {u["status"] for u in users} == {"active", "inactive"}
    assert set(first["role"]) == {"name", "id"}
    active = (await api.get("/crm/v8/users", type="ActiveUsers")).json()["users"]
    gone = (await api.get("/crm/v8/users", type="DeactiveUsers")).json()["users"]
    assert len(active) + len(gone) == len(users) and len(gone) == 1
    assert len((await api.get("/crm/v8/users", type="CurrentUser")).json()["users"]) == 1
    assert (await api.get("/crm/v8/users", type="DeletedUsers")).status_code == 204
    assert (await api.get("/crm/v8/users", per_page=5, page=2)).json()["info"]["page"] == 2
    error(await api.get("/crm/v8/users", type="Everyone"), 400, "INVALID_DATA")
    since = (api.state.company.latest + timedelta(seconds=1)).isoformat()
    assert (await api.get("/crm/v8/users", headers={"If-Modified-Since": since})
            ).status_code == 304


@pytest.mark.asyncio
async def test_org_and_currencies(api: Api) -> None:
    org = (await api.get("/crm/v8/org")).json()["org"][0]
    assert org["time_zone"] == "America/New_York" and org["iso_code"] == "USD"
    currencies = {c["iso_code"]: c for c in
                  (await api.get("/crm/v8/org/currencies")).json()["currencies"]}
    assert currencies["CNY"]["exchange_rate"] == "7.100000000"  # §8: a string
    assert currencies["USD"]["is_base"] and not currencies["EUR"]["is_base"]


@pytest.mark.asyncio
async def test_layouts_pipelines_and_stage_metadata(api: Api) -> None:
    error(await api.get("/crm/v8/settings/layouts"), 400, "REQUIRED_PARAM_MISSING")
    error(await api.get("/crm/v8/settings/layouts", module="Potatoes"), 400, "INVALID_MODULE")
    layout = (await api.get("/crm/v8/settings/layouts", module="Deals")).json()["layouts"][0]
    body = error(await api.get("/crm/v8/settings/pipeline"), 400, "REQUIRED_PARAM_MISSING")
    assert body["details"] == {"param_name": "layout_id"}
    pipelines = (await api.get("/crm/v8/settings/pipeline", layout_id=layout["id"])
                 ).json()["pipeline"]
    assert [p["display_value"] for p in pipelines] == ["Standard (Standard)",
                                                       "Renewals (Standard)"]
    maps = {m["display_value"]: m for m in pipelines[0]["maps"]}
    assert maps["Disqualified"]["forecast_type"] == "Closed Lost"
    assert maps["Closed Won"]["forecast_type"] == "Closed Won"
    fields = (await api.get("/crm/v8/settings/fields", module="Deals")).json()["fields"]
    stage = next(f for f in fields if f["api_name"] == "Stage")
    values = {v["display_value"]: v for v in stage["pick_list_values"]}
    assert values["Churned"]["forecast_type"] == "Closed Lost"
    assert values["Negotiation/Review"]["probability"] == 80
    assert all({"api_name", "data_type", "json_type"} <= set(f) for f in fields)


@pytest.mark.asyncio
async def test_unknown_module_path_and_method(api: Api) -> None:
    error(await api.get("/crm/v8/Potatoes", fields="Name"), 400, "INVALID_MODULE")
    error(await api.get("/crm/v8/nothing/here/at/all"), 404, "INVALID_URL_PATTERN")
    error(await api.get("/crm/v8/settings/unknown"), 404, "INVALID_URL_PATTERN")
    error(await api.client.delete("/crm/v8/users", headers=api.headers), 400,
          "INVALID_REQUEST_METHOD")


# ---- limits and faults (§7) -----------------------------------------------------------------
@pytest.mark.asyncio
async def test_too_many_concurrent_calls_get_429(make_api: MakeApi) -> None:
    api = await make_api(latency=0.2, concurrency_limit=2)
    responses = await asyncio.gather(*(api.get("/crm/v8/org") for _ in range(5)))
    limited = [r for r in responses if r.status_code == 429]
    assert len(limited) == 3 and sum(r.status_code == 200 for r in responses) == 2
    error(limited[0], 429, "TOO_MANY_REQUESTS")
    assert "retry-after" not in limited[0].headers  # §7: none documented
    stats = (await api.client.get("/_sandbox/stats")).json()
    assert stats["served_429"] == 3 and stats["max_in_flight"] == 2


@pytest.mark.asyncio
async def test_daily_credits_run_out(make_api: MakeApi) -> None:
    api = await make_api(credits_per_day=4)
    responses = [await api.get("/crm/v8/org") for _ in range(5)]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 429]
    assert "X-API-CREDITS-REMAINING" not in responses[0].headers
    assert responses[3].headers["X-API-CREDITS-REMAINING"] == "0"


async def add_fault(api: Api, **fault: Any) -> None:
    response = await api.client.post("/_sandbox/faults", json=fault)
    assert response.status_code == 201, response.text


@pytest.mark.asyncio
async def test_fault_429_and_500_honour_count_path_and_after(api: Api) -> None:
    await add_fault(api, kind="429", count=2, path="/crm/v8/Deals", after=1)
    await add_fault(api, kind="500", count=1, path="/crm/v8/org")
    statuses = [(await api.deals()).status_code for _ in range(4)]
    assert statuses == [200, 429, 429, 200]
    error(await api.get("/crm/v8/org"), 500, "INTERNAL_ERROR")
    assert (await api.get("/crm/v8/org")).status_code == 200
    assert (await api.client.get("/_sandbox/faults")).json()["faults"] == []


@pytest.mark.asyncio
async def test_fault_timeout_hangs_past_the_client_timeout(make_api: MakeApi) -> None:
    api = await make_api(hang_seconds=5)
    await add_fault(api, kind="timeout", path="/crm/v8/org")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(api.get("/crm/v8/org"), timeout=0.2)
    assert api.state.harness.in_flight == 0
    assert (await api.get("/crm/v8/org")).status_code == 200


@pytest.mark.asyncio
async def test_fault_truncated_sends_half_a_body_with_status_200(api: Api) -> None:
    whole = await api.deals()
    await add_fault(api, kind="truncated", path="/crm/v8/Deals")
    cut = await api.deals()
    assert cut.status_code == 200 and len(cut.content) == len(whole.content) // 2
    with pytest.raises(json.JSONDecodeError):
        cut.json()


@pytest.mark.asyncio
async def test_fault_expire_token_forces_a_refresh(api: Api) -> None:
    await add_fault(api, kind="expire_token", after=1)
    assert (await api.get("/crm/v8/org")).status_code == 200
    error(await api.get("/crm/v8/org"), 401, "INVALID_TOKEN")
    await api.login()
    assert (await api.get("/crm/v8/org")).status_code == 200


@pytest.mark.asyncio
async def test_faults_can_be_cleared_and_bad_ones_are_refused(api: Api) -> None:
    await add_fault(api, kind="500", count=3)
    assert (await api.client.delete("/_sandbox/faults")).json() == {"cleared": 1}
    assert (await api.get("/crm/v8/org")).status_code == 200
    for bad in ({"kind": "fire"}, {"kind": "429", "count": -1}, {"kind": "500", "oops": 1}):
        response = await api.client.post("/_sandbox/faults", json=bad)
        assert response.status_code == 400 and response.json()["error"]


# ---- control API ----------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_control_edits_bump_modified_time_and_show_up_incrementally(api: Api) -> None:
    company = api.state.company
    cursor = company.latest.isoformat()
    deal_id = sorted(company.deals)[10]
    patched = await api.client.patch(f"/_sandbox/deals/{deal_id}", json={
        "amount": 4321.5, "stage": "Closed Won", "close_date": "2025-01-31",
        "owner_email": company.reps[1].email.upper()})
    assert patched.status_code == 200, patched.text
    assert patched.json()["stage"] == "Closed Won" and patched.json()["probability"] == 100
    added = await api.client.post("/_sandbox/deals", json={"name": "Big one", "amount": 10,
                                                           "currency": "JPY"})
    assert added.status_code == 201
    account = await api.client.post("/_sandbox/accounts", json={"name": "Newco"})
    assert account.status_code == 201
    changed = (await api.deals(headers={"If-Modified-Since": cursor}, sort_by="Modified_Time",
                               sort_order="asc")).json()["data"]
    by_id = {r["id"]: r for r in changed}
    # Inclusive: the deals stamped exactly at the cursor come back too, nothing older does.
    assert set(by_id) == {d.id for d in company.deals.values()
                          if d.modified_at >= parse(cursor)}
    assert {deal_id, added.json()["id"]} <= set(by_id)
    assert by_id[deal_id]["Amount"] == 4321.5 and by_id[deal_id]["Stage"] == "Closed Won"
    assert parse(by_id[deal_id]["Modified_Time"]) > parse(cursor)
    assert by_id[deal_id]["Owner"]["id"] == company.reps[1].id
    accounts = (await api.get("/crm/v8/Accounts", fields="Account_Name",
                              headers={"If-Modified-Since": cursor})).json()["data"]
    assert [a["Account_Name"] for a in accounts] == ["Newco"]


@pytest.mark.asyncio
async def test_control_rejects_bad_input_and_changes_nothing(api: Api) -> None:
    company = api.state.company
    deal_id = sorted(company.deals)[0]
    version = company.version
    for body in ({"stage": "Nope"}, {"colour": "red"}, {"close_date": "31/01/2025"},
                 {"owner_email": "ghost@example.com"}, {"amount": "lots"}, {}):
        response = await api.client.patch(f"/_sandbox/deals/{deal_id}", json=body)
        assert response.status_code == 400 and response.json()["error"], body
    bad_json = await api.client.patch(f"/_sandbox/deals/{deal_id}", content=b"{oops")
    assert bad_json.status_code == 400
    assert (await api.client.patch("/_sandbox/deals/999", json={"name": "x"})).status_code == 404
    assert (await api.client.delete("/_sandbox/accounts/999")).status_code == 404
    assert (await api.client.post("/_sandbox/deals", json={"name": "no amount"})
            ).status_code == 400
    assert company.version == version


@pytest.mark.asyncio
async def test_control_mutate_reset_and_stats(api: Api) -> None:
    before = len(api.state.company.deals)
    result = (await api.client.post("/_sandbox/mutate", json={"fraction": 0.1, "seed": 1})
              ).json()
    assert len(result["edited"]) + len(result["added"]) + len(result["deleted"]) == round(
        before * 0.1)
    assert (await api.client.post("/_sandbox/mutate", json={"fraction": 2})).status_code == 400
    await api.deals()
    stats = (await api.client.get("/_sandbox/stats")).json()
    assert stats["calls"]["/crm/v8/Deals"] == 1 and stats["token_grants"] == 1
    assert "/_sandbox/stats" not in stats["calls"]  # the control API is not counted
    reset = (await api.client.post("/_sandbox/reset")).json()
    assert reset["deals"] == before and api.state.company.deals.keys() == small().deals.keys()
    assert (await api.client.get("/_sandbox/stats")).json()["total_calls"] == 0
    assert (await api.get("/crm/v8/org")).status_code == 200  # logins survive a reset


async def test_an_org_without_multi_currency(make_api):
    """Below Enterprise (§8): one currency, amounts in it, no Currency or Exchange_Rate
    fields, /org/currencies 403 CURRENCIES_NOT_ENABLED (crm-oas getCurrencies example)."""
    multi = small()
    company = small()
    api = await make_api(company, multi_currency=False)
    answer = await api.get("/crm/v8/org/currencies")
    assert answer.status_code == 403
    assert answer.json() == {"code": "CURRENCIES_NOT_ENABLED", "details": {},
                             "message": "Multi currency is not enabled", "status": "error"}
    org = (await api.get("/crm/v8/org")).json()["org"][0]
    assert (org["iso_code"], org["mc_status"]) == (company.home_currency, False)
    fields = (await api.get("/crm/v8/settings/fields", module="Deals")).json()["fields"]
    names = {f["api_name"] for f in fields}
    assert "Amount" in names and not {"Currency", "Exchange_Rate"} & names
    rows = (await api.deals(per_page=200)).json()["data"]
    assert rows and all("Currency" not in r and "Exchange_Rate" not in r for r in rows)
    for row in rows:  # each amount is the multi-currency org's, in the home currency
        deal = multi.deals[row["id"]]
        assert row["Amount"] == float((deal.amount / deal.exchange_rate).quantize(
            Decimal("0.01")))
    edit = await api.client.patch(f"/_sandbox/deals/{rows[0]['id']}", json={"currency": "EUR"})
    assert edit.status_code == 400  # the org has no other currency
    await api.client.post("/_sandbox/reset")
    assert {d.currency for d in api.state.company.deals.values()} == {company.home_currency}


async def test_records_carry_a_renamed_stage_by_its_actual_value(make_api):
    api = await make_api(small())
    pipelines = (await api.get("/crm/v8/settings/pipeline",
                               layout_id=MODULES["deals"].layout_id)).json()
    renamed = [m for p in pipelines["pipeline"] for m in p["maps"]
               if m["display_value"] != m["actual_value"]]
    assert [(m["display_value"], m["actual_value"], m["forecast_type"]) for m in renamed] == [
        ("Closed-Lost to Competition", "Closed Lost to Competition", "Closed Lost")]
    stage = next(s for s in api.state.company.stages if s.name == "Closed-Lost to Competition")
    ids = [d.id for d in api.state.company.deals.values() if d.stage_id == stage.id]
    assert ids
    rows = (await api.deals(ids=",".join(ids[:100]))).json()["data"]
    assert {r["Stage"] for r in rows} == {"Closed Lost to Competition"}


async def test_stage_history_related_list(api: Api) -> None:
    """§13: a deal's stage moves newest first, `fields` mandatory, paged, 204 when none."""
    company = api.state.company
    deal = max(company.deals.values(), key=lambda d: len(d.history))
    path = f"/crm/v8/Deals/{deal.id}/Stage_History"
    error(await api.get(path), 400, "REQUIRED_PARAM_MISSING")
    response = await api.get(path, fields="Stage,Last_Modified_Time")
    assert response.status_code == 200
    body = response.json()
    names = [company.stage_by_id[m.stage_id].name for m in deal.history]
    assert [r["Stage"] for r in body["data"]] == names[::-1]
    assert all(set(r) == {"id", "Stage", "Last_Modified_Time"} for r in body["data"])
    assert all(DATETIME.match(r["Last_Modified_Time"]) for r in body["data"])
    assert body["info"]["more_records"] is False
    first = await api.get(path, fields="Stage", per_page=1)
    assert first.json()["info"] == {"per_page": 1, "count": 1, "page": 1,
                                    "more_records": len(names) > 1}
    assert (await api.get("/crm/v8/Deals/1/Stage_History", fields="Stage")).status_code == 204
    error(await api.get("/crm/v8/Deals/x1/Stage_History", fields="Stage"), 400, "INVALID_DATA")


@pytest.mark.asyncio
async def test_calls_events_and_tasks_serve_their_own_activities(api: Api) -> None:
    """docs/vendors/zoho.md §14: one module per kind, What_Id with $se_module; the deleted
    list of each module holds its own kind only."""
    company = api.state.company
    for module, kind in (("Calls", "call"), ("Events", "meeting"), ("Tasks", "task")):
        rows, token = [], None
        while True:
            params = {"fields": "Owner,What_Id,Modified_Time", "per_page": 200,
                      **({"page_token": token} if token else {})}
            body = (await api.get(f"/crm/v8/{module}", **params)).json()
            rows += body["data"]
            token = body["info"]["next_page_token"]
            if not body["info"]["more_records"]:
                break
        want = {i for i, a in company.activities.items() if a.kind == kind}
        assert {r["id"] for r in rows} == want, module
        for row in rows:
            activity = company.activities[row["id"]]
            assert row["$se_module"] == ("Deals" if activity.deal_id else
                                         "Accounts" if activity.account_id else None)
            assert (row["What_Id"] or {}).get("id") == (activity.deal_id or activity.account_id)
    call = next(i for i, a in company.activities.items() if a.kind == "call")
    company.delete_activity(call)
    deleted = (await api.get("/crm/v8/Calls/deleted", type="all")).json()["data"]
    assert call in {d["id"] for d in deleted}
    events = await api.get("/crm/v8/Events/deleted", type="all")
    assert events.status_code == 204 or call not in {d["id"] for d in events.json()["data"]}
    held = next(a for a in company.activities.values() if a.kind == "call" and a.done)
    row = (await api.get("/crm/v8/Calls", ids=held.id, fields="Call_Start_Time,"
                         "Call_Duration_in_seconds,Outgoing_Call_Status")).json()["data"][0]
    assert parse(row["Call_Start_Time"]) == held.start
    assert row["Call_Duration_in_seconds"] == held.duration_seconds
    assert row["Outgoing_Call_Status"] in (None, "Completed")  # inbound calls have none


@pytest.mark.asyncio
async def test_control_activities_add_edit_delete_and_refuse_bad_input(api: Api) -> None:
    company = api.state.company
    cursor = company.latest.isoformat()
    deal_id = sorted(company.deals)[0]
    added = await api.client.post("/_sandbox/activities", json={
        "kind": "call", "subject": "Intro", "start": "2026-03-02T09:30:00+08:00",
        "duration_seconds": 600, "done": True, "deal_id": deal_id,
        "owner_email": company.reps[2].email})
    assert added.status_code == 201, added.text
    call = added.json()
    assert (call["start"], call["deal_id"]) == ("2026-03-02T01:30:00+00:00", deal_id)
    task = (await api.client.post("/_sandbox/activities", json={
        "kind": "task", "subject": "Send quote", "start": "2026-03-05T15:00:00+00:00"})).json()
    assert task["start"] == "2026-03-05T00:00:00+00:00" and task["done"] is False  # a due date
    done = await api.client.patch(f"/_sandbox/activities/{task['id']}", json={"done": True})
    assert done.json()["completed_at"] == done.json()["modified_at"]
    changed = (await api.get("/crm/v8/Calls", fields="Subject,What_Id",
                             headers={"If-Modified-Since": cursor})).json()["data"]
    assert (call["id"], deal_id, "Deals") in [
        (r["id"], (r["What_Id"] or {}).get("id"), r["$se_module"]) for r in changed]
    assert {r["id"] for r in changed} == {  # inclusive: the calls stamped at the cursor too
        i for i, a in company.activities.items()
        if a.kind == "call" and a.modified_at >= parse(cursor)}
    version = company.version
    for body in ({"kind": "dance", "subject": "x"}, {"subject": "no kind"},
                 {"kind": "call", "subject": "x", "start": "tomorrow"},
                 {"kind": "call", "subject": "x", "deal_id": "999"},
                 {"kind": "call", "subject": "x", "colour": "red"}):
        response = await api.client.post("/_sandbox/activities", json=body)
        assert response.status_code == 400 and response.json()["error"], body
    assert (await api.client.patch(f"/_sandbox/activities/{call['id']}", json={})
            ).status_code == 400
    assert (await api.client.get("/_sandbox/activities/999")).status_code == 404
    assert company.version == version
    gone = await api.client.delete(f"/_sandbox/activities/{call['id']}")
    assert gone.status_code == 200 and gone.json()["entity"] == "activities"
