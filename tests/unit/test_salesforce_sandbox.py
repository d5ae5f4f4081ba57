"""The Salesforce sandbox speaks Salesforce's REST API as documented
(docs/vendors/salesforce.md): tokens, SOQL and its errors, query cursors, limits,
getDeleted, sessions."""

import json
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connectors.salesforce.sandbox import create_app
from connectors.salesforce.sandbox.soql import SoqlError, parse
from connectors.salesforce.sandbox.state import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_PRIVATE_KEY,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_USERNAME,
    SalesforceState,
)
from connectors.salesforce.sandbox.wire import record_id
from connectors.salesforce.wire import b64url, format_datetime
from connectors.sandbox import Company, generate_company

BASE = "http://sandbox.test"
DATA = "/services/data/v62.0"


@pytest.fixture(scope="module")
def company() -> Company:
    return generate_company(seed=9, deals=2300, accounts=100)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


async def session(http: httpx.AsyncClient) -> dict[str, str]:
    token = await http.post("/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN})
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


def assertion(claims: dict[str, Any], key_pem: str = SANDBOX_PRIVATE_KEY) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    head = b64url(json.dumps({"alg": "RS256"}).encode())
    body = b64url(json.dumps(claims).encode())
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64url(signature)}"


async def test_the_token_endpoint_grants_refresh_and_jwt_and_words_refusals(company):
    async with client(create_app(company)) as http:
        granted = (await http.post("/services/oauth2/token", data={
            "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
            "refresh_token": SANDBOX_REFRESH_TOKEN})).json()
        assert granted["instance_url"] == BASE and "expires_in" not in granted
        assert granted["id"].startswith(f"{BASE}/id/00D")
        good = {"iss": SANDBOX_CLIENT_ID, "sub": SANDBOX_USERNAME, "aud": BASE,
                "exp": int(time.time()) + 120}
        jwt = "urn:ietf:params:oauth:grant-type:jwt-bearer"
        ok = await http.post("/services/oauth2/token", data={"grant_type": jwt,
                                                              "assertion": assertion(good)})
        assert ok.status_code == 200 and ok.json()["scope"] == "api"
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()
        for claims, key, error in (
                (good, other, ("invalid_grant", "invalid assertion")),
                ({**good, "exp": int(time.time()) - 600}, SANDBOX_PRIVATE_KEY,
                 ("invalid_grant", "expired authorization code")),
                ({**good, "aud": "https://elsewhere.example"}, SANDBOX_PRIVATE_KEY,
                 ("invalid_grant", "audience is invalid")),
                ({**good, "sub": "someone@else"}, SANDBOX_PRIVATE_KEY,
                 ("invalid_grant", "user hasn't approved this consumer")),
                ({**good, "iss": "nope"}, SANDBOX_PRIVATE_KEY,
                 ("invalid_client_id", "client identifier invalid"))):
            refused = await http.post("/services/oauth2/token", data={
                "grant_type": jwt, "assertion": assertion(claims, key)})
            assert refused.status_code == 400
            assert (refused.json()["error"], refused.json()["error_description"]) == error
        bad = await http.post("/services/oauth2/token", data={
            "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
            "client_secret": "wrong", "refresh_token": SANDBOX_REFRESH_TOKEN})
        assert bad.json() == {"error": "invalid_client",
                              "error_description": "invalid client credentials"}


async def test_soql_filters_orders_and_refuses_like_salesforce(company):
    app = create_app(company)
    async with client(app) as http:
        auth = await session(http)

        async def q(text: str) -> httpx.Response:
            return await http.get(f"{DATA}/query", params={"q": text}, headers=auth)
        won = (await q("SELECT Id, Amount, IsWon FROM Opportunity WHERE IsWon = true "
                       "AND (CurrencyIsoCode = 'EUR' OR CurrencyIsoCode IN ('GBP')) "
                       "ORDER BY Amount DESC, Id LIMIT 5")).json()
        amounts = [r["Amount"] for r in won["records"]]
        assert len(amounts) == 5 and amounts == sorted(amounts, reverse=True)
        assert all(r["IsWon"] for r in won["records"])
        assert list(won["records"][0]) == ["attributes", "Id", "Amount", "IsWon"]
        stamp = sorted(d.modified_at for d in company.deals.values())[-10]
        recent = (await q(f"select id, systemmodstamp from opportunity where "
                          f"SystemModstamp >= {stamp:%Y-%m-%dT%H:%M:%S}Z")).json()
        want = {record_id("deals", d.id) for d in company.deals.values() if d.modified_at >= stamp}
        assert {r["Id"] for r in recent["records"]} == want
        assert all(r["SystemModstamp"].endswith(".000+0000") for r in recent["records"])
        for text, code in (
                ("SELECT Id FROM Opportunity WHERE SystemModstamp > '2026-01-01T00:00:00Z'",
                 "INVALID_FIELD"),
                ("SELECT Nope FROM Opportunity", "INVALID_FIELD"),
                ("SELECT Id FROM Widget", "INVALID_TYPE"),
                ("SELECT Id FROM Opportunity WHERE", "MALFORMED_QUERY"),
                ("SELECT Owner.Name FROM Opportunity", "MALFORMED_QUERY")):
            refused = await q(text)
            assert refused.status_code == 400 and refused.json()[0]["errorCode"] == code, text
    single = create_app(company, multi_currency=False)
    async with client(single) as http:
        auth = await session(http)
        refused = await http.get(f"{DATA}/query", headers=auth, params={
            "q": "SELECT Id, CurrencyIsoCode FROM Opportunity"})
        assert refused.json()[0]["errorCode"] == "INVALID_FIELD"  # §5
        described = (await http.get(f"{DATA}/sobjects/Opportunity/describe",
                                    headers=auth)).json()
        assert "CurrencyIsoCode" not in {f["name"] for f in described["fields"]}


def test_the_parser_reads_nested_conditions_and_literals():
    query = parse("SELECT Id FROM Opportunity WHERE NOT (Amount < 10.5 OR Name LIKE 'A%') "
                  "AND CloseDate >= 2026-01-01 AND SystemModstamp < 2026-01-01T10:00:00+02:00 "
                  "AND StageName NOT IN ('Closed Won', 'It\\'s') ORDER BY CloseDate DESC "
                  "NULLS LAST LIMIT 10 OFFSET 5")
    assert (query.limit, query.offset, query.order[0].descending) == (10, 5, True)
    with pytest.raises(SoqlError):
        parse("SELECT Id FROM Opportunity GROUP BY Id")


async def test_query_cursors_page_by_the_batch_size_and_expire_past_ten(company):
    async with client(create_app(company)) as http:
        auth = await session(http)
        first = (await http.get(f"{DATA}/query", params={"q": "SELECT Id FROM Opportunity"},
                                headers=auth)).json()
        assert first["totalSize"] == len(company.deals) > 2000
        assert len(first["records"]) == 2000 and not first["done"]
        assert first["nextRecordsUrl"].startswith(f"{DATA}/query/01g")
        rest = (await http.get(first["nextRecordsUrl"], headers=auth)).json()
        assert rest["done"] and len(rest["records"]) == len(company.deals) - 2000
        small = {**auth, "Sforce-Query-Options": "batchSize=300"}
        urls = []
        for _ in range(11):  # §2: at most 10 open cursors; the 11th closes the oldest
            body = (await http.get(f"{DATA}/queryAll", headers=small,
                                   params={"q": "SELECT Id FROM Opportunity"})).json()
            assert len(body["records"]) == 300
            urls.append(body["nextRecordsUrl"])
        assert urls[0].startswith(f"{DATA}/queryAll/01g") and urls[0].endswith("-300")
        closed = await http.get(urls[0], headers=auth)
        assert closed.status_code == 400
        assert closed.json()[0]["errorCode"] == "INVALID_QUERY_LOCATOR"
        assert len((await http.get(urls[1], headers=auth)).json()["records"]) == 300


async def test_sessions_expire_and_the_daily_allocation_runs_out(company):
    app = create_app(company, api_max=5)
    state: SalesforceState = app.state.salesforce
    async with client(app) as http:
        auth = await session(http)
        limits = await http.get(f"{DATA}/limits", headers=auth)
        assert limits.json()["DailyApiRequests"] == {"Max": 5, "Remaining": 4}
        assert limits.headers["Sforce-Limit-Info"] == "api-usage=1/5"
        for _ in range(4):
            assert (await http.get(f"{DATA}/limits", headers=auth)).status_code == 200
        over = await http.get(f"{DATA}/limits", headers=auth)
        assert over.status_code == 403 and over.json() == [{
            "message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        state.expire_tokens()
        gone = await http.get(f"{DATA}/limits", headers=auth)
        assert gone.status_code == 401 and gone.json() == [{
            "message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


async def test_get_deleted_lists_the_recycle_bin_within_fifteen_days(company):
    app = create_app(generate_company(seed=9, deals=300, accounts=40))
    state: SalesforceState = app.state.salesforce
    victim = sorted(state.company.deals)[0]
    async with client(app) as http:
        auth = await session(http)
        assert (await http.delete(f"/_sandbox/deals/{victim}")).status_code == 200
        now = state.now()
        window = {"start": format_datetime(now - timedelta(days=1)),
                  "end": format_datetime(now + timedelta(minutes=1))}
        body = (await http.get(f"{DATA}/sobjects/Opportunity/deleted/", params=window,
                               headers=auth)).json()
        assert record_id("deals", victim) in {r["id"] for r in body["deletedRecords"]}
        assert {"earliestDateAvailable", "latestDateCovered"} <= set(body)
        too_old = await http.get(f"{DATA}/sobjects/Opportunity/deleted/", headers=auth,
                                 params={**window, "start": format_datetime(
                                     now - timedelta(days=20))})
        assert too_old.json()[0]["errorCode"] == "INVALID_REPLICATION_DATE"
        everything = (await http.get(f"{DATA}/queryAll", headers=auth, params={
            "q": "SELECT Id, IsDeleted FROM Opportunity WHERE IsDeleted = true"})).json()
        assert record_id("deals", victim) in {r["Id"] for r in everything["records"]}
        live = (await http.get(f"{DATA}/query", headers=auth, params={
            "q": "SELECT Id FROM Opportunity WHERE IsDeleted = true"})).json()
        assert live["records"] == []  # query never shows the recycle bin


async def test_opportunity_history_and_activities_are_queryable():
    """§11: a row per stage an opportunity entered; §12: Tasks (calls, tasks) and Events
    (meetings), and a deleted Task in queryAll only."""
    company = generate_company(seed=9, deals=200, accounts=30)
    app = create_app(company)
    state: SalesforceState = app.state.salesforce
    deal = next(d for d in company.deals.values() if len(d.history) > 2)
    async with client(app) as http:
        headers = await session(http)
        rows = (await http.get(f"{DATA}/query", headers=headers, params={"q": (
            "SELECT OpportunityId, StageName, CreatedDate FROM OpportunityHistory WHERE "
            f"OpportunityId IN ('{record_id('deals', deal.id)}') ORDER BY CreatedDate")})).json()
        assert [(r["StageName"], r["CreatedDate"]) for r in rows["records"]] == [
            (company.stage_by_id[m.stage_id].name, format_datetime(m.changed_at))
            for m in deal.history]
        count = (await http.get(f"{DATA}/query", headers=headers, params={
            "q": "SELECT COUNT() FROM Event"})).json()["totalSize"]
        assert count == sum(a.kind == "meeting" for a in company.activities.values())
        victim = next(a for a in company.activities.values() if a.kind == "task")
        company.delete_activity(victim.id)
        live = (await http.get(f"{DATA}/query", headers=headers, params={
            "q": "SELECT Id FROM Task WHERE IsDeleted = true"})).json()
        binned = (await http.get(f"{DATA}/queryAll", headers=headers, params={
            "q": "SELECT Id, IsDeleted FROM Task WHERE IsDeleted = true"})).json()
    assert state.company is company and live["records"] == []
    assert [r["Id"][:3] for r in binned["records"]] == ["00T"]
