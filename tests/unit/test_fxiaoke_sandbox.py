"""The Fxiaoke sandbox against docs/vendors/fxiaoke.md: token, errorCodes, query rules,
records, writes."""

import re
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio

from connectors.fxiaoke import callbacks
from connectors.fxiaoke.sandbox import create_app
from connectors.fxiaoke.sandbox.state import (
    SANDBOX_AES_KEY,
    SANDBOX_APP_ID,
    SANDBOX_APP_SECRET,
    SANDBOX_PERMANENT_CODE,
    FxiaokeState,
)
from connectors.fxiaoke.sandbox.wire import hex_id
from connectors.fxiaoke.wire import TENANT_TZ, from_ms
from connectors.sandbox import Company, generate_company

QUERY = "/cgi/crm/v2/data/query"
CUSTOM = "/cgi/crm/custom/v2/data"
CREDENTIALS = {"appId": SANDBOX_APP_ID, "appSecret": SANDBOX_APP_SECRET,
               "permanentCode": SANDBOX_PERMANENT_CODE}


def small() -> Company:
    return generate_company(seed=3, deals=300, accounts=40)


class Api:
    def __init__(self, client: httpx.AsyncClient, state: FxiaokeState) -> None:
        self.client, self.state = client, state
        self.auth: dict[str, Any] = {}

    async def login(self) -> None:
        body = (await self.client.post("/cgi/corpAccessToken/get/V2", json=CREDENTIALS)).json()
        self.auth = {"corpAccessToken": body["corpAccessToken"], "corpId": body["corpId"],
                     "currentOpenUserId": self.state.tenant.fsuid[
                         self.state.company.manager.id]}

    async def call(self, path: str, status: int = 200, **body: Any) -> dict[str, Any]:
        response = await self.client.post(path, json={**self.auth, **body})
        assert response.status_code == status  # §6: always HTTP 200
        result: dict[str, Any] = response.json()
        return result

    async def query(self, api_name: str = "NewOpportunityObj", path: str = QUERY,
                    total: bool | None = None, **info: Any) -> dict[str, Any]:
        info.setdefault("limit", 100)
        info.setdefault("offset", 0)
        data = {"dataObjectApiName": api_name, "search_query_info": info}
        if total is not None:
            data["find_explicit_total_num"] = total
        return await self.call(path, data=data)


@pytest_asyncio.fixture
async def make() -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    async def build(company: Company | None = None, login: bool = True, **kwargs: Any) -> Api:
        app = create_app(company if company is not None else small(), **kwargs)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://fx.test")
        clients.append(client)
        api = Api(client, app.state.fxiaoke)
        if login:
            await api.login()
        return api

    yield build
    for client in clients:
        await client.aclose()


# ---- token (§1.1) ---------------------------------------------------------------------------
async def test_token_issue_and_errors(make):
    api = await make(login=False)
    good = (await api.client.post("/cgi/corpAccessToken/get/V2", json=CREDENTIALS)).json()
    assert good["errorCode"] == 0 and good["expiresIn"] == 7200
    assert good["corpId"].startswith("FSCID_")
    bad = await api.client.post("/cgi/corpAccessToken/get/V2",
                                json={**CREDENTIALS, "appSecret": "nope"})
    assert bad.status_code == 200 and bad.json()["errorCode"] == 10006  # §8.1
    assert "nope" not in bad.text
    await api.login()
    assert (await api.query(**{}))["errorCode"] == 0
    api.auth["corpAccessToken"] = "F" * 32
    assert (await api.query())["errorCode"] == 20016  # unknown or expired
    del api.auth["corpAccessToken"]
    assert (await api.query())["errorCode"] == 10013  # missing
    await api.login()
    api.auth["corpId"] = "FSCID_other"
    assert (await api.query())["errorCode"] == 20017


async def test_tokens_expire_after_expires_in(make):
    api = await make(token_ttl=0)
    assert (await api.query())["errorCode"] == 20016


async def test_the_token_endpoint_allows_ten_calls_a_minute(make):
    api = await make(login=False)
    codes = [(await api.client.post("/cgi/corpAccessToken/get/V2", json=CREDENTIALS)).json()[
        "errorCode"] for _ in range(11)]
    assert codes == [0] * 10 + [14001]


async def test_crm_calls_need_an_active_acting_user(make):
    api = await make()
    api.auth.pop("currentOpenUserId")
    assert (await api.query())["errorCode"] == 10006
    leaver = next(r for r in api.state.company.reps if not r.active)
    api.auth["currentOpenUserId"] = api.state.tenant.fsuid[leaver.id]
    assert (await api.query())["errorCode"] == 10006


async def test_unknown_paths_bad_json_and_methods_are_10006_with_http_200(make):
    api = await make()
    assert (await api.call("/cgi/crm/v2/data/nothing"))["errorCode"] == 10006
    response = await api.client.post(QUERY, content=b"{not json")
    assert response.status_code == 200 and response.json()["errorCode"] == 10006
    response = await api.client.get(QUERY)
    assert response.status_code == 200 and response.json()["errorCode"] == 10006


# ---- query rules (§2) -----------------------------------------------------------------------
@pytest.mark.parametrize("info, code, message", [
    ({"limit": 101}, 10006, "limit"),
    ({"limit": 0}, 10006, "limit"),
    ({"limit": 100, "offset": 150}, 10006, "multiple"),
    ({"limit": 100, "offset": 10100}, 10013, "offset out of range 10000"),
    ({"filters": [{"field_name": "name", "operator": "NEQ", "field_values": ["x"]}]},
     10006, "NEQ"),
    ({"filters": [{"field_name": "name", "operator": "EQ", "field_values": "x"}]},
     10006, "list"),
    ({"limit": "100"}, 10006, "limit"),
])
async def test_query_limits_and_operators_are_enforced(make, info, code, message):
    api = await make()
    body = await api.query(**info)
    assert body["errorCode"] == code and message in body["errorMessage"]


async def test_offset_10000_is_the_last_allowed_offset(make):
    api = await make(generate_company(seed=3, deals=10_150, accounts=40))
    body = await api.query(limit=100, offset=10_000, orders=[{"fieldName": "_id",
                                                              "isAsc": True}])
    assert body["errorCode"] == 0 and len(body["data"]["dataList"]) > 0


async def test_filters_are_anded_and_n_means_not_equal(make):
    api = await make()
    rows = (await api.query(filters=[
        {"field_name": "sales_status", "operator": "N", "field_values": ["1"]},
        {"field_name": "amount", "operator": "GTE", "field_values": ["50000"]}],
        total=True))["data"]
    assert rows["dataList"] and all(r["sales_status"] != "1" and Decimal(r["amount"]) >= 50000
                                    for r in rows["dataList"])
    expected = [d for d in api.state.table("NewOpportunityObj").rows
                if d["sales_status"] != "1" and Decimal(d["amount"]) >= 50000]
    assert rows["total"] == len(expected)
    no_total = (await api.query(filters=[]))["data"]
    assert no_total["total"] == 0  # §2: total only with find_explicit_total_num


async def test_orders_and_projection(make):
    api = await make()
    body = await api.query(orders=[{"fieldName": "amount", "isAsc": False}],
                           fieldProjection=["name", "amount"], limit=50)
    rows = body["data"]["dataList"]
    assert all(set(r) <= {"_id", "name", "amount"} for r in rows)
    amounts = [Decimal(r["amount"]) for r in rows]
    assert amounts == sorted(amounts, reverse=True)


async def test_an_id_keyset_pages_past_10000(make):
    api = await make(generate_company(seed=3, deals=10_150, accounts=40), calls_per_window=500)
    seen: list[str] = []
    after = ""
    while True:
        filters = [{"field_name": "_id", "operator": "GT", "field_values": [after]}]
        rows = (await api.query(filters=filters, orders=[{"fieldName": "_id",
                                                          "isAsc": True}]))["data"]["dataList"]
        seen += [r["_id"] for r in rows]
        if len(rows) < 100:
            break
        after = rows[-1]["_id"]
    assert len(seen) == len(set(seen)) == len(api.state.company.deals) > 10_000


# ---- records (§3) ---------------------------------------------------------------------------
async def test_deal_records_have_the_documented_shapes(make):
    api = await make()
    rows = (await api.query(limit=100))["data"]["dataList"]
    company = api.state.company
    for row in rows:
        deal = company.deals[str(int(row["_id"], 16))]
        assert re.fullmatch(r"[0-9a-f]{24}", row["_id"])
        assert isinstance(row["amount"], str) and re.fullmatch(r"\d+\.\d\d", row["amount"])
        assert isinstance(row["owner"], list) and row["owner"][0].startswith("FSUID_")
        assert re.fullmatch(r"FSUID_[0-9A-F]{32}", row["owner"][0])
        assert isinstance(row["create_time"], int) and row["create_time"] > 10**12  # ms
        local = from_ms(row["close_date"]).astimezone(TENANT_TZ)
        assert (local.hour, local.minute, local.date()) == (0, 0, deal.close_date)
        assert row["life_status"] == "normal" and row["is_deleted"] is False
        assert row["sales_status__r"] in ("进行中", "赢单", "输单")
        assert None not in row.values()  # §2: null fields are left out


async def test_null_fields_are_omitted(make):
    company = small()
    api = await make(company)
    orphan = company.add_deal(name="No account", amount="5.00", account_id=None)
    row = (await api.call("/cgi/crm/v2/data/get", data={
        "dataObjectApiName": "NewOpportunityObj", "objectDataId": hex_id(orphan.id)}))["data"]
    assert "account_id" not in row and "account_id__r" not in row


async def test_describe_gives_outcome_labels_and_stages(make):
    api = await make()
    body = await api.call("/cgi/crm/v2/object/describe", apiName="NewOpportunityObj",
                          includeDetail=True)
    fields = body["data"]["describe"]["fields"]
    assert {o["label"] for o in fields["sales_status"]["options"]} >= {"赢单", "输单"}
    positions = {o["value"] for o in fields["sales_stage"]["options"]}
    processes = fields["sales_process_id"]["options"]
    assert len(processes) == 2  # two sales processes whose stage codes overlap (§3)
    per_process = [[c["value"] for c in p["child_options"]] for p in processes]
    assert all(codes == [str(i + 1) for i in range(len(codes))] for codes in per_process)
    assert set(per_process[0]) & set(per_process[1]) and \
        {c for codes in per_process for c in codes} == positions
    assert [c["label"] for c in processes[1]["child_options"]][-2:] == ["赢单", "输单"]
    assert all(isinstance(c["probability"], int) for p in processes for c in p["child_options"])
    unknown = await api.call("/cgi/crm/v2/object/describe", apiName="NoSuchObj")
    assert unknown["errorCode"] == 10006


async def test_directory_apis(make):
    api = await make()
    depts = (await api.call("/cgi/department/list"))["departments"]
    root = next(d for d in depts if "parentId" not in d)
    assert root["id"] == 999999 and all(d.get("parentId", 999999) == 999999 for d in depts)
    top = await api.call("/cgi/user/list", departmentId=999999, fetchChild=True)
    assert len(top["userList"]) == len(api.state.company.reps)
    reps = api.state.company.reps
    # many Fxiaoke reps have only a mobile: the last two here have no email
    assert {u.get("email") for u in top["userList"]} == {r.email for r in reps[:-2]} | {None}
    assert all(u["mobile"] for u in top["userList"])
    alone = await api.call("/cgi/user/list", departmentId=999999, fetchChild=False)
    assert alone["userList"] == []
    assert (await api.call("/cgi/user/list"))["errorCode"] == 10006
    manager = api.state.company.manager
    found = await api.call("/cgi/user/getByMobile", mobile="13800130000")
    assert found["empList"][0]["openUserId"] == api.state.tenant.fsuid[manager.id]


# ---- voids and deletes (§2, §4) -------------------------------------------------------------
async def test_records_show_every_change_after_they_were_read(make):
    """Rows are rendered once and kept: an edit, a renamed account (shown on its deals and
    follow-up records) and a change made without the company's notice all show."""
    api = await make()
    company = api.state.company
    with_deals = {d.account_id: d for d in company.deals.values()}
    activity = next(a for a in company.activities.values() if a.done and a.kind in (
        "call", "meeting", "note") and a.account_id in with_deals)
    deal = with_deals[activity.account_id]

    async def read(api_name: str, field: str, value: str) -> list[dict[str, Any]]:
        found = await api.query(api_name, filters=[
            {"field_name": field, "operator": "EQ", "field_values": [value]}])
        rows: list[dict[str, Any]] = found["data"]["dataList"]
        return rows

    account = hex_id(deal.account_id)
    assert await read("NewOpportunityObj", "account_id", account)  # rendered, kept
    assert await read("ActiveRecordObj", "_id", hex_id(activity.id))
    company.edit_account(deal.account_id, name="Renamed Ltd")
    shown = await read("NewOpportunityObj", "account_id", account)
    assert {r["account_id__r"] for r in shown} == {"Renamed Ltd"}
    assert len(shown) == sum(d.account_id == deal.account_id for d in company.deals.values())
    [note] = await read("ActiveRecordObj", "_id", hex_id(activity.id))
    assert [r["name"] for r in note["related_object_data"]
            if r["describe_api_name"] == "AccountObj"] == ["Renamed Ltd"]
    company.edit_deal(deal.id, name="Renamed deal")
    [row] = await read("NewOpportunityObj", "_id", hex_id(deal.id))
    assert row["name"] == "Renamed deal"
    company.edit_activity(activity.id, subject="Said again")  # announced without its id
    [note] = await read("ActiveRecordObj", "_id", hex_id(activity.id))
    assert note["active_record_content"] == "Said again"


async def test_void_then_delete(make):
    api = await make()
    deal_id = sorted(api.state.company.deals)[0]
    target = {"dataObjectApiName": "NewOpportunityObj"}
    refused = await api.call("/cgi/crm/v2/data/delete", data={**target,
                                                               "idList": [hex_id(deal_id)]})
    assert refused["errorCode"] == 10006  # only voided records can be deleted
    assert (await api.call("/cgi/crm/v2/data/invalid", data={
        **target, "object_data_id": hex_id(deal_id)}))["errorCode"] == 0
    voided = await api.query(filters=[{"field_name": "life_status", "operator": "EQ",
                                       "field_values": ["invalid"]}])
    assert [r["_id"] for r in voided["data"]["dataList"]] == [hex_id(deal_id)]
    assert (await api.call("/cgi/crm/v2/data/delete", data={
        **target, "idList": [hex_id(deal_id)]}))["errorCode"] == 0
    gone = await api.call("/cgi/crm/v2/data/get", data={**target,
                                                        "objectDataId": hex_id(deal_id)})
    assert gone["errorCode"] != 0


# ---- limits (§6) ----------------------------------------------------------------------------
async def test_100_calls_per_window_per_interface_then_14001(make):
    api = await make(calls_per_window=5, window=60)
    codes = [(await api.query(limit=1))["errorCode"] for _ in range(6)]
    assert codes == [0] * 5 + [14001]
    other = await api.call("/cgi/department/list")  # another interface has its own budget
    assert other["errorCode"] == 0


async def test_the_daily_quota_then_30002(make):
    api = await make(daily_quota=2)
    codes = [(await api.call("/cgi/department/list"))["errorCode"] for _ in range(3)]
    assert codes == [0, 0, 30002]


async def test_harness_faults_speak_error_codes_with_http_200(make):
    api = await make()
    await api.client.post("/_sandbox/faults", json=[{"kind": "500", "count": 1},
                                                    {"kind": "429", "count": 1}])
    assert (await api.query())["errorCode"] == -1
    assert (await api.query())["errorCode"] == 14001
    assert (await api.query())["errorCode"] == 0


# ---- custom-object writes (§4) --------------------------------------------------------------
def goal(api: Api, **extra: Any) -> dict[str, Any]:
    rep = api.state.company.reps[1]
    return {"dataObjectApiName": "object_SalesGoal__c", "name": "Q3 bookings",
            "field_p3Rk1__c": 1751299200000, "field_t7Lq2__c": "9eL1m3kQz",
            "field_e2Mn4__c": [api.state.tenant.fsuid[rep.id]], "field_rU4l5__c": "150000.00",
            "field_m8Kc7__c": "option1", "field_x9Wd3__c": "goal-1",
            "owner": [api.state.tenant.fsuid[rep.id]], **extra}


async def test_custom_object_create_update_and_query(make):
    api = await make()
    created = await api.call(f"{CUSTOM}/create", triggerWorkFlow=False,
                             data={"object_data": goal(api), "details": {}})
    assert created["errorCode"] == 0 and created["dataId"]
    duplicate = await api.call(f"{CUSTOM}/create", data={"object_data": goal(api)})
    assert duplicate["errorCode"] == 10006  # field_x9Wd3__c is unique
    updated = await api.call(f"{CUSTOM}/update", data={"object_data": {
        "_id": created["dataId"], "dataObjectApiName": "object_SalesGoal__c",
        "field_rU4l5__c": 175000}})
    assert updated["errorCode"] == 0
    rows = (await api.query("object_SalesGoal__c", path=f"{CUSTOM}/query", filters=[
        {"field_name": "field_x9Wd3__c", "operator": "EQ", "field_values": ["goal-1"]}]))
    [row] = rows["data"]["dataList"]
    assert row["field_rU4l5__c"] == "175000.00" and row["field_t7Lq2__c"] == "9eL1m3kQz"
    wrong_path = await api.query("object_SalesGoal__c")
    assert wrong_path["errorCode"] == 10006  # §2: __c objects use the custom path


@pytest.mark.parametrize("object_data, message", [
    ({"field_rU4l5__c": 1}, "NullPointerException"),  # §4: _id outside object_data
    ({"_id": "nope", "dataObjectApiName": "object_SalesGoal__c"}, "不存在"),
])
async def test_custom_updates_need_id_and_api_name_inside_object_data(make, object_data,
                                                                       message):
    api = await make()
    body = await api.call(f"{CUSTOM}/update", data={"object_data": object_data})
    assert body["errorCode"] == 10006 and message in body["errorMessage"]


@pytest.mark.parametrize("bad", [
    {"field_t7Lq2__c": "week"}, {"field_rU4l5__c": "lots"}, {"field_p3Rk1__c": "2025-07-01"},
    {"field_e2Mn4__c": "FSUID_X"}, {"unknown__c": 1}, {"owner": []},
])
async def test_custom_object_field_validation(make, bad):
    api = await make()
    body = await api.call(f"{CUSTOM}/create", data={"object_data": goal(api, **bad)})
    assert body["errorCode"] == 10006
    assert not api.state.custom.get("object_SalesGoal__c")  # bad input changes nothing


async def test_owner_changes_are_refused_by_update(make):
    api = await make()
    created = await api.call(f"{CUSTOM}/create", data={"object_data": goal(api)})
    body = await api.call(f"{CUSTOM}/update", data={"object_data": {
        "_id": created["dataId"], "dataObjectApiName": "object_SalesGoal__c",
        "owner": [api.state.tenant.fsuid[api.state.company.reps[2].id]]}})
    assert body["errorCode"] == 10006


# ---- callbacks (§5) and control -------------------------------------------------------------
def test_callbacks_are_signed_and_encrypted_as_documented():
    event = {"tenantId": 700001, "eventType": "update", "apiName": "AccountObj",
             "dataId": "0" * 24, "timestamp": 1, "messageId": "M1"}
    body = callbacks.build_callback(event, SANDBOX_AES_KEY, enterprise_account="acmedemo",
                                    message_id="M1", retry_times=1)
    assert list(body) == ["timestamp", "nonce", "messageId", "retryTimes",
                          "enterpriseAccount", "encryptedContent", "signature"]
    assert re.fullmatch(r"[0-9a-f]{40}", body["signature"])
    assert callbacks.verify(body, SANDBOX_AES_KEY).raw == event


async def test_control_settings_reject_bad_input(make):
    api = await make()
    for body in ({"callback_url": "ftp://x"}, {"daily_quota": -1}, {"nope": 1}, {}):
        response = await api.client.patch("/_sandbox/fxiaoke", json=body)
        assert response.status_code == 400, body
    ok = await api.client.patch("/_sandbox/fxiaoke", json={"daily_quota": 5})
    assert ok.json()["daily_quota"] == 5 and SANDBOX_AES_KEY not in ok.text


async def test_reset_restores_the_data_and_keeps_the_listeners(make):
    api = await make()
    deal_id = sorted(api.state.company.deals)[0]
    await api.client.delete(f"/_sandbox/deals/{deal_id}")
    assert api.state.voided
    await api.client.post("/_sandbox/reset")
    assert not api.state.voided and deal_id in api.state.company.deals
    await api.client.delete(f"/_sandbox/deals/{deal_id}")
    assert deal_id in api.state.voided  # the new company still reports its changes


async def test_the_daily_quota_resets_at_midnight_in_the_tenant_zone(make):
    api = await make(daily_quota=1)
    assert (await api.call("/cgi/department/list"))["errorCode"] == 0
    assert (await api.call("/cgi/department/list"))["errorCode"] == 30002
    api.state.quota_day = "2000-01-01"  # as if the day had turned
    assert (await api.call("/cgi/department/list"))["errorCode"] == 0


ROW = {"_id": "a1", "name": "华东大客户", "amount": "150.50", "owner": ["FSUID_A", "FSUID_B"],
       "probability": 60}


@pytest.mark.parametrize("name, operator, values, expected", [
    ("amount", "GT", ["150.5"], False), ("amount", "GTE", [150.5], True),
    ("amount", "LT", ["1000"], True), ("amount", "LTE", ["150.49"], False),
    ("name", "EQ", ["华东大客户"], True), ("name", "N", ["华东大客户"], False),
    ("name", "LIKE", ["大客"], True), ("name", "NLIKE", ["大客"], False),
    ("name", "STARTWITH", ["华东"], True), ("name", "ENDWITH", ["华东"], False),
    ("name", "CONTAINS", ["客户"], True),
    ("close_date", "IS", [], True), ("close_date", "ISN", [], False), ("name", "ISN", [], True),
    ("probability", "IN", [10, 60], True), ("probability", "NIN", [10, 60], False),
    ("probability", "BETWEEN", [50, 60], True), ("probability", "NBETWEEN", [50, 60], False),
    ("owner", "EQ", ["FSUID_B"], True), ("owner", "HASANYOF", ["FSUID_C", "FSUID_A"], True),
    ("owner", "NHASANYOF", ["FSUID_C"], True), ("missing", "GT", [1], False),
])
def test_every_documented_operator(name, operator, values, expected):
    from connectors.fxiaoke.sandbox.wire import matches

    assert matches(ROW, name, operator, values) is expected


async def test_an_invalidated_token_answers_11014(make):
    api = await make()
    api.state.revoke_tokens()
    body = await api.query()
    assert body["errorCode"] == 11014  # 参数corpAccessToken不合法, not 20016


async def test_a_non_admin_acting_user_sees_only_their_own_records(make):
    api = await make()
    rep = api.state.company.reps[1]
    api.auth["currentOpenUserId"] = api.state.tenant.fsuid[rep.id]
    rows = (await api.query())["data"]["dataList"]
    assert rows and all(r["owner"] == [api.state.tenant.fsuid[rep.id]] for r in rows)
    other = next(d for d in api.state.company.deals.values() if d.owner_id != rep.id)
    hidden = await api.call("/cgi/crm/v2/data/get", data={
        "dataObjectApiName": "NewOpportunityObj", "objectDataId": hex_id(other.id)})
    assert hidden["errorCode"] == 10006


@pytest.mark.parametrize(("language", "won"), [("zh-TW", "贏單"), ("en", "Won")])
async def test_describe_labels_follow_the_tenant_language(make, language, won):
    api = await make(language=language)
    body = await api.call("/cgi/crm/v2/object/describe", apiName="NewOpportunityObj")
    fields = body["data"]["describe"]["fields"]
    assert won in {o["label"] for o in fields["sales_status"]["options"]}


async def test_multi_currency_deals_carry_their_currency_and_rate(make):
    api = await make(multi_currency=True)
    rows = (await api.query())["data"]["dataList"]
    foreign = [r for r in rows if "mc_currency" in r]
    assert foreign and all(r["mc_functional_currency"] == "CNY" for r in foreign)
    deal = api.state.company.deals[str(int(foreign[0]["_id"], 16))]
    home = Decimal(foreign[0]["amount"]) * Decimal(foreign[0]["mc_exchange_rate"])
    assert abs(home - api.state.tenant.amount(deal)) < 1
    body = await api.call("/cgi/crm/v2/object/describe", apiName="NewOpportunityObj")
    assert "mc_currency" in body["data"]["describe"]["fields"]
