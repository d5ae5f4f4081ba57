"""Fxiaoke connector against respx-faked Fxiaoke responses (docs/vendors/fxiaoke.md shapes)."""

import itertools
import json
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.endpoints import EndpointPolicy
from connectors.fxiaoke import FxiaokeConfig, FxiaokeConnector, FxiaokeSecrets, mapping
from connectors.fxiaoke import client as fx_client
from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from core.errors import AuthError, ConfigError, SourceError
from tests.conftest import SANDBOX_ENDPOINTS

BASE = "https://open-hwcloud.fxiaoke.com"
FAST = RetryPolicy(attempts=5, initial_wait=0.001, max_wait=0.01)
ADMIN = "FSUID_F8E5C73533927249281F06800BC975AA"
REP = "FSUID_0123456789ABCDEF0123456789ABCDEF"
SECRETS = {"app_id": "FSAID_demo", "app_secret": "s3cret-app-secret",
           "permanent_code": "perm-code-123"}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(fx_client, "RATE", fx_client.RateBudget(100, 0.05))
    yield


_tokens = itertools.count()


def token_ok(request: httpx.Request, expires: int = 7200) -> httpx.Response:
    body = httpx.Request("POST", "/", content=request.content).read()
    assert b"perm-code-123" in body  # §1.1: credentials in the JSON body, never the URL
    assert "perm-code" not in str(request.url)
    return httpx.Response(200, json={"errorCode": 0, "errorMessage": "success",
                                     "corpAccessToken": f"tok-{next(_tokens)}",
                                     "corpId": "FSCID_demo", "expiresIn": expires})


def deal(i: int, modified: int, **extra: Any) -> dict[str, Any]:
    return {"_id": f"{i:024x}", "name": f"Deal {i}", "amount": "21739535.00",
            "close_date": 1690214400000, "account_id": "6508f92086a6c8000190db97",
            "account_id__r": "建案", "sales_process_id": "p1",
            "sales_process_id__r": "建案销售流程",
            "sales_stage": "5", "sales_stage__r": "贏單", "sales_status": "2",
            "sales_status__r": "赢单", "probability": 100, "owner": [REP],
            "owner__r": {"id": "1000", "name": "王五", "dept": "1003"}, "life_status": "normal",
            "create_time": 1695287785275, "last_modified_time": modified, "is_deleted": False,
            **extra}


DESCRIBE = {"errorCode": 0, "errorMessage": "OK", "data": {"describe": {"fields": {
    "sales_process_id": {"options": [{"value": "p1", "label": "建案销售流程",
                                      "child_options": [{"sales_stage": ["1", "5", "6"]}]}]},
    "sales_stage": {"options": [{"value": "1", "label": "初步接洽"},
                                {"value": "5", "label": "贏單"},
                                {"value": "6", "label": "输单"}]},
    "sales_status": {"options": [{"value": "1", "label": "进行中"},
                                 {"value": "7", "label": "赢单"},
                                 {"value": "2", "label": "输单"}]},  # codes differ: labels rule
}}}}


class FakeFx:
    """Serves /data/query as §2 documents: limit <= 100, offset <= 10000, AND filters, orders."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows
        self.queries: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []  # queued error bodies, served first

    def query(self, request: httpx.Request) -> httpx.Response:
        body = httpx.Request("POST", "/", content=request.content).read()
        import json

        payload = json.loads(body)
        assert payload["corpAccessToken"].startswith("tok-") and payload["corpId"] == "FSCID_demo"
        assert payload["currentOpenUserId"] == ADMIN
        info = payload["data"]["search_query_info"]
        self.queries.append(info)
        if self.responses:
            return httpx.Response(200, json=self.responses.pop(0))
        limit, offset = info["limit"], info["offset"]
        assert limit <= 100 and offset % limit == 0
        if offset > 10_000:
            return httpx.Response(200, json={"errorCode": 10013,
                                             "errorMessage": "offset out of range 10000"})
        rows = [r for r in self.rows if all(self._match(r, f) for f in info["filters"])]
        for order in reversed(info["orders"]):
            rows.sort(key=lambda r, o=order: r[o["fieldName"]], reverse=not order["isAsc"])
        page = rows[offset:offset + limit]
        return httpx.Response(200, json={"errorCode": 0, "errorMessage": "OK",
                                         "data": {"dataList": page, "total": 0}})

    @staticmethod
    def _match(row: dict[str, Any], f: dict[str, Any]) -> bool:
        value, wanted = row[f["field_name"]], f["field_values"][0]
        return {"EQ": value == wanted, "GT": value > wanted, "GTE": value >= wanted}[
            f["operator"]]


def directory(router: respx.Router) -> None:
    router.post(f"{BASE}/cgi/department/list").respond(json={
        "errorCode": 0, "departments": [{"id": 999999, "name": "公司"},
                                        {"id": 1003, "name": "华东", "parentId": 999999}]})
    router.post(f"{BASE}/cgi/user/list").respond(json={"errorCode": 0, "userList": [
        {"openUserId": REP, "name": "王五", "email": "Wang.Wu@Example.cn", "isStop": False,
         "mainDepartmentId": 1003, "position": "销售"},
        {"openUserId": ADMIN, "name": "管理员", "email": "admin@example.cn", "isStop": True,
         "departmentIds": [999999]}]})
    router.post(f"{BASE}/cgi/crm/v2/object/describe").respond(json=DESCRIBE)


def make(limits: LocalLimits | None = None,
         **config: Any) -> tuple[FxiaokeConnector, ApiClient]:
    api = ApiClient(build_client(), max_in_flight=4, retry=FAST, limits=limits)
    cfg = FxiaokeConfig.model_validate({"base_url": BASE, "current_open_user_id": ADMIN,
                                        **config})
    return FxiaokeConnector(cfg, FxiaokeSecrets.model_validate(SECRETS), api), api


async def pages(connector: FxiaokeConnector, stream: str,
                cursor: dict[str, Any] | None = None) -> list[Any]:
    return [p async for p in connector.read(stream, cursor)]


def records(found: list[Any]) -> list[Any]:
    return [r for p in found for r in p.records]


# ---- auth -----------------------------------------------------------------------------------
@respx.mock
async def test_the_token_is_cached_until_expiry_minus_the_margin_and_shared():
    token = respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    fake = FakeFx([deal(1, 1000)])
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    directory(respx)
    limits = LocalLimits()  # the process's, held by its job context
    first, api = make(limits)
    await pages(first, "deals")
    assert token.call_count == 1
    second, _ = make(limits)  # another job of the same connection shares the cached token
    await second.query("AccountObj", [], [])
    assert token.call_count == 1
    await api.client.aclose()


@respx.mock
async def test_an_expired_token_refreshes_once_and_the_call_is_retried():
    token = respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    fake = FakeFx([deal(1, 1000)])
    fake.responses.append({"errorCode": 20016, "errorMessage": "corpAccessToken不存在或者已经过期"})
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    connector, _ = make()
    rows = await connector.query("NewOpportunityObj", [], [])
    assert [r["_id"] for r in rows] == [deal(1, 0)["_id"]] and token.call_count == 2


@respx.mock
async def test_a_token_rejected_twice_is_an_auth_error():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    expired = {"errorCode": 20016, "errorMessage": "expired"}
    respx.post(f"{BASE}/cgi/crm/v2/data/query").respond(json=expired)
    connector, _ = make()
    with pytest.raises(AuthError, match="20016"):
        await connector.query("NewOpportunityObj", [], [])


@respx.mock
async def test_a_short_lived_token_is_refetched_when_it_expires(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])  # the token cache's clock
    token = respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(
        side_effect=lambda r: token_ok(r, expires=7200))
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=FakeFx([]).query)
    connector, _ = make()
    await connector.query("AccountObj", [], [])
    clock[0] += 7200 - 181  # still fresh: cached until expiresIn - 180 s
    await connector.query("AccountObj", [], [])
    assert token.call_count == 1
    clock[0] += 2
    await connector.query("AccountObj", [], [])
    assert token.call_count == 2


@respx.mock
async def test_bad_credentials_are_an_auth_error_without_secrets():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").respond(json={
        "errorCode": 10006, "errorMessage": "appSecret错误"})
    connector, _ = make()
    with pytest.raises(AuthError) as caught:
        await connector.check()
    text = str(caught.value)
    assert "10006" in text and "app_secret" in text
    assert all(v not in text for v in SECRETS.values())


@respx.mock
async def test_the_acting_user_is_looked_up_by_mobile():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    lookup = respx.post(f"{BASE}/cgi/user/getByMobile").respond(json={
        "errorCode": 0, "empList": [{"openUserId": ADMIN, "name": "管理员"}]})
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=FakeFx([]).query)
    api = ApiClient(build_client(), retry=FAST)
    cfg = FxiaokeConfig(base_url=BASE, admin_mobile="13800138000")
    connector = FxiaokeConnector(cfg, FxiaokeSecrets.model_validate(SECRETS), api)
    await connector.query("AccountObj", [], [])
    await connector.query("AccountObj", [], [])
    assert lookup.call_count == 1


@respx.mock
async def test_an_unknown_mobile_is_a_config_error():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    respx.post(f"{BASE}/cgi/user/getByMobile").respond(json={"errorCode": 0, "empList": []})
    api = ApiClient(build_client(), retry=FAST)
    connector = FxiaokeConnector(FxiaokeConfig(base_url=BASE, admin_mobile="13800138000"),
                                 FxiaokeSecrets.model_validate(SECRETS), api)
    with pytest.raises(ConfigError, match="admin_mobile"):
        await connector.open_user_id()


# ---- paging (§2) ----------------------------------------------------------------------------
@respx.mock
async def test_more_than_10000_records_are_read_by_keyset_never_past_offset_10000():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    # 10,250 deals; 250 of them share one last_modified_time (more than two pages' worth)
    rows = [deal(i, 1_700_000_000_000 + (i if i < 5000 or i >= 5250 else 5000))
            for i in range(10_250)]
    fake = FakeFx(rows)
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    directory(respx)
    connector, _ = make()
    found = records(await pages(connector, "deals"))
    assert sorted(r.remote_id for r in found) == sorted(r["_id"] for r in rows)
    assert len(found) == len({r.remote_id for r in found}) == 10_250  # no duplicates
    assert all(q["offset"] == 0 and q["limit"] == 100 for q in fake.queries)
    ties = [q for q in fake.queries if any(f["field_name"] == "_id" for f in q["filters"])]
    assert ties and all(q["orders"] == [{"fieldName": "_id", "isAsc": True}] for q in ties)
    assert len(fake.queries) <= 10_250 // 99 + 5, len(fake.queries)


@respx.mock
async def test_incremental_reads_from_the_cursor_minus_the_overlap_ascending():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    fake = FakeFx([deal(i, 1_000_000 + i * 1000) for i in range(10)])
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    directory(respx)
    connector, _ = make()
    found = await pages(connector, "deals", {"modified_since": 1_000_000 + 9 * 1000})
    first = fake.queries[0]
    assert first["filters"] == [{"field_name": "last_modified_time", "operator": "GTE",
                                 "field_values": [1_009_000 - 60_000]}]
    assert first["orders"][0] == {"fieldName": "last_modified_time", "isAsc": True}
    assert [p.cursor for p in found][-1] == {"modified_since": 1_009_000}


# ---- error codes and limits (§6) ------------------------------------------------------------
@respx.mock
async def test_busy_codes_retry_and_14001_pauses_then_resumes():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    fake = FakeFx([deal(1, 5)])
    fake.responses += [{"errorCode": -1, "errorMessage": "系统繁忙"},
                       {"errorCode": 14001, "errorMessage": "调用次数超过限制"},
                       {"errorCode": -2, "errorMessage": "系统错误"},
                       {"errorCode": 30004, "errorMessage": "too frequent"}]
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    connector, _ = make()
    slept: list[float] = []
    real_sleep = fx_client.asyncio.sleep

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await real_sleep(0)

    fx_client.asyncio.sleep = sleep  # type: ignore[assignment]
    try:
        rows = await connector.query("NewOpportunityObj", [], [])
    finally:
        fx_client.asyncio.sleep = real_sleep  # type: ignore[assignment]
    assert len(rows) == 1 and len(fake.queries) == 5
    assert fx_client.RATE.window in slept and 1.0 in slept  # 14001: a window; 30004: 1 s


@respx.mock
async def test_the_client_keeps_to_100_calls_per_window_per_interface():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=FakeFx([]).query)
    fx_client.RATE = fx_client.RateBudget(3, 0.3)
    connector, _ = make()
    loop = fx_client.asyncio.get_running_loop()
    start = loop.time()
    for _ in range(7):
        await connector.query("AccountObj", [], [])
    assert loop.time() - start >= 0.55  # 7 calls at 3 per 0.3 s need two waits


@respx.mock
@pytest.mark.parametrize("code, error", [
    (30002, "quota"), (30003, "Open API pack"), (20014, "authorized"), (10006, "10006"),
])
async def test_other_error_codes_stop_with_a_clear_message(code, error):
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    respx.post(f"{BASE}/cgi/crm/v2/data/query").respond(
        json={"errorCode": code, "errorMessage": "msg"})
    connector, api = make()
    with pytest.raises(SourceError, match=error):
        await connector.query("AccountObj", [], [])
    assert api.api_calls == 2  # token + one call: none of these is retried


@respx.mock
async def test_errors_are_read_from_error_code_not_http_status():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    respx.post(f"{BASE}/cgi/crm/v2/data/query").respond(
        200, json={"errorCode": "0", "errorMessage": "OK", "data": {"dataList": []}})
    connector, _ = make()
    assert await connector.query("AccountObj", [], []) == []  # "0" as a string is success


# ---- mapping (§3) ---------------------------------------------------------------------------
def meta() -> mapping.DealMeta:
    return mapping.deal_meta(mapping.describe_fields(DESCRIBE))


def users() -> mapping.Directory:
    rep = mapping.user({"openUserId": REP, "name": "王五", "email": "Wang.Wu@Example.cn",
                        "mainDepartmentId": 1003}, {"1003": {"id": 1003, "name": "华东"}})
    return mapping.Directory({REP: rep})


def test_stages_and_outcomes_come_from_describe_labels():
    m = meta()
    assert {s.remote_id: (s.name, s.category, s.pipeline, s.sort_order)
            for s in m.stages.values()} == {
        "p1:1": ("初步接洽", "open", "建案销售流程", 1),
        "p1:5": ("贏單", "won", "建案销售流程", 2), "p1:6": ("输单", "lost", "建案销售流程", 3)}
    assert m.status == {"1": "open", "7": "won", "2": "lost"}
    # sales_status "2" is 输单 in this tenant: the label decides, never the code
    raw = deal(1, 5, sales_status="2")
    del raw["sales_status__r"]
    assert mapping.deal(raw, m, users(), "CNY").status == "lost"
    raw = deal(1, 5, sales_status="7")
    del raw["sales_status__r"]
    assert mapping.deal(raw, m, users(), "CNY").status == "won"


def test_a_real_record_maps_exactly():
    record = mapping.deal(deal(1, 1754092250913, amount="21739535.07"), meta(), users(), "CNY")
    assert record.amount == Decimal("21739535.07") and isinstance(record.amount, Decimal)
    assert record.amount_home == record.amount and record.currency == "CNY"
    assert record.exchange_rate == 1
    assert (record.status, record.stage, record.stage_remote_id) == ("won", "贏單", "p1:5")
    assert record.probability == Decimal(100)
    assert record.owner_remote_id == REP and record.owner_email == "wang.wu@example.cn"
    assert record.owner_name == "王五" and record.account_name == "建案"
    assert record.pipeline == "建案销售流程"
    assert record.remote_modified_at == datetime(2025, 8, 1, 23, 50, 50, 913000, tzinfo=UTC)
    assert record.deleted_at is None


@pytest.mark.parametrize("ms, day", [
    (1690214400000, date(2023, 7, 25)),  # §3 real record: 2023-07-24T16:00Z = 00:00 +08:00
    (1690214400000 - 1, date(2023, 7, 24)),  # one ms before midnight in Shanghai
    (1690243200000, date(2023, 7, 25)),  # 00:00Z on the 25th is 08:00 there
    (1690300799999, date(2023, 7, 25)),  # 15:59:59.999Z is still the 25th there
    (1690300800000, date(2023, 7, 26)),  # 16:00Z on the 25th is the 26th in Shanghai
    ("1690214400000", date(2023, 7, 25)),
    ("2023-07-25", date(2023, 7, 25)),
])
def test_close_dates_are_days_in_asia_shanghai(ms, day):
    assert mapping.day(ms) == day


@pytest.mark.parametrize("amount, expected", [
    ("0.10", Decimal("0.10")), ("1,234.50", Decimal("1234.50")), (710, Decimal(710)),
    ("", None), (None, None),
])
def test_amounts_are_exact_decimals(amount, expected):
    record = mapping.deal(deal(1, 5, amount=amount), meta(), users(), "CNY")
    assert record.amount == expected


def test_a_garbled_amount_names_the_record():
    with pytest.raises(SourceError, match="abc"):
        mapping.deal(deal(1, 5, amount="abc"), meta(), users(), "CNY")


@pytest.mark.parametrize("owner, expected", [([REP, ADMIN], REP), (REP, REP), ([], None)])
def test_owner_is_a_list_whose_first_id_is_the_owner(owner, expected):
    assert mapping.deal(deal(1, 5, owner=owner), meta(), users(), "CNY").owner_remote_id == \
        expected


@pytest.mark.parametrize("extra", [{"life_status": "invalid"}, {"is_deleted": True},
                                   {"is_deleted": "true"}])
def test_voided_or_deleted_records_are_tombstones(extra):
    record = mapping.deal(deal(1, 1754092250913, **extra), meta(), users(), "CNY")
    assert record.deleted_at == datetime(2025, 8, 1, 23, 50, 50, 913000, tzinfo=UTC)
    account = mapping.account({"_id": "a1", "name": "客户", "last_modified_time": 5000,
                               **extra}, users())
    assert account.deleted_at is not None


def test_omitted_null_fields_map_to_none():
    record = mapping.deal({"_id": "x", "last_modified_time": 1}, meta(), users(), "CNY")
    assert (record.amount, record.close_date, record.account_remote_id, record.owner_email,
            record.status) == (None, None, None, None, "open")


@respx.mock
async def test_users_carry_their_department_as_team():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    directory(respx)
    connector, _ = make()
    found = {u.remote_id: u for u in records(await pages(connector, "users"))}
    assert found[REP].team == "华东" and found[REP].email == "wang.wu@example.cn"
    assert found[ADMIN].active is False and found[ADMIN].team == "公司"
    assert await pages(connector, "deletions") == []


# ---- config ---------------------------------------------------------------------------------
def test_config_needs_an_acting_user_and_validates_the_aes_key():
    with pytest.raises(ValidationError, match="current_open_user_id"):
        FxiaokeConfig.model_validate({})
    assert FxiaokeConfig.model_validate({"admin_mobile": "13800138000"}).base_url == \
        "https://open.fxiaoke.com"
    with pytest.raises(ValidationError, match="32 bytes"):
        FxiaokeSecrets.model_validate({**SECRETS, "aes_key": "c2hvcnQ="})
    with pytest.raises(ValidationError, match="blank"):
        FxiaokeSecrets.model_validate({**SECRETS, "app_secret": "  "})
    with pytest.raises(ValidationError):
        FxiaokeConfig.model_validate({"admin_mobile": "1", "opportunity_object": "Deals"})


@respx.mock
async def test_the_older_opportunity_object_is_selectable():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    directory(respx)
    describe = respx.post(f"{BASE}/cgi/crm/v2/object/describe").respond(json={
        "errorCode": 0, "data": {"describe": {"fields": [  # fields as a list: tolerated
            {"api_name": "status", "options": [{"value": "3", "label": "赢单"},
                                               {"value": "4", "label": "输单"}]}]}}})
    fake = FakeFx([{"_id": "a" * 24, "name": "旧商机", "expected_deal_amount": "88.80",
                    "status": "4", "owner": [REP], "last_modified_time": 7}])
    respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=fake.query)
    connector, _ = make(opportunity_object="OpportunityObj")
    [record] = records(await pages(connector, "deals"))
    assert b'"apiName":"OpportunityObj"' in describe.calls.last.request.content.replace(b" ", b"")
    assert (record.amount, record.status, record.owner_email) == (
        Decimal("88.80"), "lost", "wang.wu@example.cn")


async def test_one_record_is_fetched_and_mapped_against_the_sandbox():
    from connectors.fxiaoke.sandbox import create_app
    from connectors.fxiaoke.sandbox.state import (
        SANDBOX_APP_ID,
        SANDBOX_APP_SECRET,
        SANDBOX_PERMANENT_CODE,
    )
    from connectors.fxiaoke.sandbox.wire import hex_id
    from connectors.sandbox import generate_company

    company = generate_company(seed=3, deals=200, accounts=30)
    app = create_app(company)
    api = ApiClient(build_client(transport=httpx.ASGITransport(app=app)), retry=FAST,
                    endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS))
    connector = FxiaokeConnector(
        FxiaokeConfig(base_url="http://fx.test", admin_mobile="13800130000"),
        FxiaokeSecrets(app_id=SANDBOX_APP_ID, app_secret=SANDBOX_APP_SECRET,  # type: ignore[arg-type]
                       permanent_code=SANDBOX_PERMANENT_CODE), api)
    deal_id = sorted(company.deals)[0]
    raw = await connector.get_record("NewOpportunityObj", hex_id(deal_id))
    record = await connector.record_for("NewOpportunityObj", raw)
    deal = company.deals[deal_id]
    assert (record.remote_id, record.name, record.close_date) == (
        hex_id(deal_id), deal.name, deal.close_date)
    assert record.owner_email == company.rep_by_id[deal.owner_id].email
    with pytest.raises(SourceError):
        await connector.get_record("NewOpportunityObj", "f" * 24)
    with pytest.raises(ConfigError):
        await connector.record_for("ContactObj", raw)
    await api.client.aclose()


# ---- issue 10: what real tenants show -------------------------------------------------------
TWO_PROCESSES = {"data": {"describe": {"fields": {
    # §3: sales_stage is a position inside its process; each process lists its own stages
    "sales_process_id": {"options": [
        {"value": "pa", "label": "新客户流程", "child_options": [
            {"value": "1", "label": "初步接洽", "probability": 10},
            {"value": "2", "label": "方案报价", "probability": 60},
            {"value": "3", "label": "赢单", "probability": 100}]},
        {"value": "pb", "label": "续约流程", "child_options": [
            {"value": "1", "label": "续约洽谈", "probability": 50},
            {"value": "2", "label": "Closed Lost", "probability": 0}]}]},
    "sales_stage": {"options": [{"value": c, "label": f"阶段{c}"} for c in "123"]},
}}}}


def test_stages_are_keyed_by_process_with_each_process_order_and_probability():
    m = mapping.deal_meta(mapping.describe_fields(TWO_PROCESSES))
    assert {s.remote_id: (s.name, s.category, s.pipeline, s.sort_order, s.probability)
            for s in m.stages.values()} == {
        "pa:1": ("初步接洽", "open", "新客户流程", 1, 10),
        "pa:2": ("方案报价", "open", "新客户流程", 2, 60),
        "pa:3": ("赢单", "won", "新客户流程", 3, 100),
        "pb:1": ("续约洽谈", "open", "续约流程", 1, 50),
        "pb:2": ("Closed Lost", "lost", "续约流程", 2, 0)}
    raw = deal(1, 5, sales_process_id="pb", sales_process_id__r="续约流程", sales_stage="2")
    del raw["sales_stage__r"], raw["sales_status__r"], raw["sales_status"]
    record = mapping.deal(raw, m, users(), "CNY")
    assert (record.stage_remote_id, record.stage, record.status, record.pipeline) == (
        "pb:2", "Closed Lost", "lost", "续约流程")


@pytest.mark.parametrize(("won", "lost"), [("赢单", "输单"), ("贏單", "輸單"), ("Won", "Lost"),
                                           ("WON", "closed lost")])
def test_outcome_labels_in_simplified_traditional_chinese_and_english(won, lost):
    m = mapping.deal_meta({"sales_status": {"options": [
        {"value": "a", "label": "In progress"}, {"value": "b", "label": won},
        {"value": "c", "label": lost}]}})
    assert m.status == {"a": "open", "b": "won", "c": "lost"}


@pytest.mark.parametrize(("status", "live"), [("normal", True), ("under_review", True),
                                              ("in_change", True), ("ineffective", False),
                                              ("invalid", False)])
def test_life_statuses_that_count_as_live(status, live):
    record = mapping.deal(deal(1, 1_700_000_000_000, life_status=status), meta(), users(), "CNY")
    assert (record.deleted_at is None) == live


def test_a_multi_currency_deal_is_converted_with_its_exchange_rate():
    raw = deal(1, 5, amount="1000.00", mc_currency="USD", mc_exchange_rate="7.125",
               mc_functional_currency="CNY")
    record = mapping.deal(raw, meta(), users(), "CNY")
    assert (record.currency, record.exchange_rate, record.amount, record.amount_home) == (
        "USD", Decimal("7.125"), Decimal("1000.00"), Decimal("7125.00000"))
    home = mapping.deal(deal(2, 5, mc_currency="CNY", mc_exchange_rate="1"), meta(), users(),
                        "CNY")
    assert (home.currency, home.amount_home) == ("CNY", home.amount)
    with pytest.raises(SourceError, match="mc_exchange_rate"):
        mapping.deal(deal(3, 5, mc_currency="USD"), meta(), users(), "CNY")


def test_users_carry_their_mobile_when_they_have_no_email():
    rep = mapping.user({"openUserId": REP, "name": "王五", "mobile": " 13800138000 "}, {})
    assert (rep.email, rep.mobile) == (None, "13800138000")


@respx.mock
async def test_token_error_11014_refreshes_like_20016():
    respx.post(f"{BASE}/cgi/corpAccessToken/get/V2").mock(side_effect=token_ok)
    query = respx.post(f"{BASE}/cgi/crm/v2/data/query").mock(side_effect=[
        httpx.Response(200, json={"errorCode": 11014, "errorMessage": "参数corpAccessToken不合法"}),
        httpx.Response(200, json={"errorCode": 0, "data": {"dataList": []}})])
    connector, _ = make()
    assert await connector.query("AccountObj", [], []) == []
    sent = [json.loads(c.request.content)["corpAccessToken"] for c in query.calls]
    assert len(sent) == 2 and sent[0] != sent[1]


async def test_check_warns_when_the_acting_user_cannot_see_the_whole_company():
    from connectors.fxiaoke.sandbox import create_app
    from connectors.fxiaoke.sandbox.wire import open_user_id
    from connectors.sandbox import generate_company

    company = generate_company(seed=3, deals=60, reps=4, today=date(2025, 6, 15))
    app = create_app(company)
    secrets = FxiaokeSecrets.model_validate({"app_id": "FSAID_sandbox0001",
                                             "app_secret": "sandbox-app-secret",
                                             "permanent_code": "sandbox-permanent-code"})
    found = {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        for who in (company.manager, company.reps[1]):
            connector = FxiaokeConnector(FxiaokeConfig.model_validate(
                {"base_url": BASE, "current_open_user_id": open_user_id(who)}), secrets,
                ApiClient(c, retry=FAST))
            found[who.id] = (await connector.check()).warnings
    assert found[company.manager.id] == []  # the admin sees everyone's records
    [warning] = found[company.reps[1].id]  # a rep sees their own only (the sandbox's rule)
    assert open_user_id(company.reps[1]) in warning and "administrator" in warning
