"""Salesforce connector against respx-faked Salesforce answers (docs/vendors/salesforce.md
shapes): the JWT assertion, sessions, query cursors, SOQL windows, deletions, limits and
currencies."""

import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qs

import httpx
import pytest
import respx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import ValidationError

from connectors.http import ApiClient, LocalLimits, RetryPolicy, build_client
from connectors.salesforce import SalesforceConnector
from connectors.salesforce.client import ApiBudgetExhausted, SalesforceConfig, SalesforceSecrets
from connectors.salesforce.wire import b64url_decode, format_datetime
from core.errors import AuthError, RateLimited

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
DATA = f"{INSTANCE}/services/data/v62.0"
USER_ID = "005Dn000001AbCdIAK"
FAST = RetryPolicy(attempts=4, initial_wait=0.001, max_wait=0.01)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption()).decode()
REFRESH = {"client_id": "ck", "client_secret": "cs", "refresh_token": "rt"}
NOW = datetime.now(UTC).replace(microsecond=0)


def make(config: dict[str, Any] | None = None,
         secrets: dict[str, Any] | None = None) -> SalesforceConnector:
    api = ApiClient(build_client(), retry=FAST, limits=LocalLimits())
    return SalesforceConnector(
        SalesforceConfig.model_validate({"username": "integration@acme.com", **(config or {})}),
        SalesforceSecrets.model_validate(secrets or {"client_id": "ck", "private_key": PEM}),
        api)


def token(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={
        "access_token": f"00Dx!{time.monotonic_ns()}", "instance_url": INSTANCE,
        "id": f"{LOGIN}/id/00Dx0000000001/{USER_ID}", "token_type": "Bearer",
        "issued_at": "1278448832702", "signature": "x", "scope": "api"})


def answer(records: list[dict[str, Any]], *, done: bool = True, following: str | None = None,
           used: int = 10) -> httpx.Response:
    body: dict[str, Any] = {"totalSize": len(records), "done": done, "records": records}
    if following:
        body["nextRecordsUrl"] = following
    return httpx.Response(200, json=body, headers={"Sforce-Limit-Info":
                                                   f"api-usage={used}/100000"})


def opportunity(i: int, stamp: datetime, **extra: Any) -> dict[str, Any]:
    return {"attributes": {"type": "Opportunity"}, "Id": f"006{i:015d}", "Name": f"Deal {i}",
            "Amount": 1000.5, "StageName": "Prospecting", "IsClosed": False, "IsWon": False,
            "Probability": 10.0, "CloseDate": "2026-03-31", "OwnerId": USER_ID,
            "AccountId": None, "CreatedDate": format_datetime(stamp),
            "SystemModstamp": format_datetime(stamp), **extra}


def soql(request: httpx.Request) -> str:
    return request.url.params["q"]


def metadata(mock: respx.MockRouter, *, multi: bool = True,
             dated: list[dict[str, Any]] | None = None) -> None:
    """The org's describe, currencies, stages and users (§3, §5)."""
    mock.post(f"{LOGIN}/services/oauth2/token").mock(side_effect=token)
    fields = [{"name": n} for n in ("Id", "Amount", "SystemModstamp")]
    if multi:
        fields.append({"name": "CurrencyIsoCode"})
    mock.get(f"{DATA}/sobjects/Opportunity/describe").respond(200, json={"fields": fields})
    mock.get(f"{DATA}/limits").respond(200, json={
        "DailyApiRequests": {"Max": 100000, "Remaining": 99000}})


def tables(query: str, extra: Any) -> httpx.Response:
    """The metadata queries every read makes, then `extra` for the rest."""
    if "FROM CurrencyType" in query:
        return answer([{"IsoCode": "USD", "ConversionRate": 1.0, "IsCorporate": True},
                       {"IsoCode": "EUR", "ConversionRate": 0.8, "IsCorporate": False}])
    if "FROM DatedConversionRate" in query:
        return answer(extra.dated if hasattr(extra, "dated") else [])
    if "FROM Organization" in query:
        return answer([{"Id": "00D", "Name": "Acme", "DefaultCurrencyIsoCode": "GBP"}])
    if "FROM OpportunityStage" in query:
        return answer([
            {"Id": "01J1", "ApiName": "Prospecting", "MasterLabel": "Prospecting",
             "IsClosed": False, "IsWon": False, "DefaultProbability": 10, "SortOrder": 1},
            {"Id": "01J2", "ApiName": "Closed Won", "MasterLabel": "Signed",
             "IsClosed": True, "IsWon": True, "DefaultProbability": 100, "SortOrder": 2},
            {"Id": "01J3", "ApiName": "Closed Won Alt", "MasterLabel": "Closed Won (old)",
             "IsClosed": True, "IsWon": False, "DefaultProbability": 0, "SortOrder": 3}])
    if "FROM User" in query:
        return answer([{"Id": USER_ID, "Name": "Ana Lima", "Email": "Ana@Acme.com",
                        "IsActive": True, "Title": "AE", "Department": "West",
                        "ManagerId": None, "SystemModstamp": format_datetime(NOW)}])
    return extra(query)


async def read(source: SalesforceConnector, stream: str,
               cursor: dict[str, Any] | None = None) -> list[Any]:
    return [page async for page in source.read(stream, cursor)]


# ---- auth (§1) -------------------------------------------------------------------------------
async def test_the_jwt_assertion_is_signed_rs256_with_the_documented_claims():
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), lambda q: answer([])))
        source = make(config={"login_url": "https://test.salesforce.com"})
        grant = mock.post("https://test.salesforce.com/services/oauth2/token").mock(
            side_effect=token)
        info = await source.check()
    assert info.home_currency == "USD" and info.organization == "Acme"
    form = parse_qs(grant.calls.last.request.content.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert "client_secret" not in form and "refresh_token" not in form
    header, claims, signature = form["assertion"][0].split(".")
    assert json.loads(b64url_decode(header)) == {"alg": "RS256"}
    body = json.loads(b64url_decode(claims))
    assert (body["iss"], body["sub"], body["aud"]) == ("ck", "integration@acme.com",
                                                      "https://test.salesforce.com")
    assert 0 < body["exp"] - time.time() <= 180  # §1: within 3 minutes
    KEY.public_key().verify(b64url_decode(signature), f"{header}.{claims}".encode(),
                            padding.PKCS1v15(), hashes.SHA256())  # raises when forged


async def test_the_refresh_flow_posts_a_form_and_calls_the_instance_url():
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        query = mock.get(f"{DATA}/query").mock(
            side_effect=lambda r: tables(soql(r), lambda q: answer([])))
        source = make(secrets=REFRESH, config={"username": None})
        await source.check()
        grant = mock.routes[0]
    form = parse_qs(grant.calls.last.request.content.decode())
    assert form == {"grant_type": ["refresh_token"], "client_id": ["ck"],
                    "client_secret": ["cs"], "refresh_token": ["rt"]}
    assert "rt" not in str(grant.calls.last.request.url)  # never in the URL
    assert query.calls.last.request.url.host == "acme.my.salesforce.com"
    assert query.calls.last.request.headers["Authorization"].startswith("Bearer 00Dx!")
    assert await source.user_id() == USER_ID


async def test_an_expired_session_is_renewed_once_then_the_error_is_clear():
    expired = httpx.Response(401, json=[{"message": "Session expired or invalid",
                                         "errorCode": "INVALID_SESSION_ID"}])
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        limits = mock.get(f"{DATA}/limits").mock(side_effect=[
            expired, httpx.Response(200, json={"DailyApiRequests": {"Max": 10, "Remaining": 9}})])
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), lambda q: answer([])))
        source = make()
        await source.check()
        grants = mock.routes[0].call_count
        assert grants == 2 and limits.call_count == 2  # one renewal, then the call again
        tokens = {c.request.headers["Authorization"] for c in limits.calls}
        assert len(tokens) == 2
        limits.mock(side_effect=[expired, expired])
        with pytest.raises(AuthError, match="INVALID_SESSION_ID"):
            await source.check()


async def test_refused_credentials_say_what_to_fix_without_echoing_them():
    with respx.mock() as mock:
        mock.post(f"{LOGIN}/services/oauth2/token").respond(400, json={
            "error": "invalid_grant", "error_description": "expired access/refresh token"})
        source = make(secrets={**REFRESH, "refresh_token": "secret-rt"}, config={"username": None})
        with pytest.raises(AuthError) as refused:
            await source.check()
    assert "invalid_grant" in str(refused.value) and "secret-rt" not in str(refused.value)


def test_secrets_need_one_complete_flow_and_a_real_key():
    with pytest.raises(ValidationError, match="private_key"):
        SalesforceSecrets.model_validate({"client_id": "ck", "refresh_token": "rt"})
    with pytest.raises(ValidationError, match="PEM"):
        SalesforceSecrets.model_validate({"client_id": "ck", "private_key": "not a key"})
    with pytest.raises(ValidationError):
        SalesforceConfig.model_validate({"login_url": "ftp://login.salesforce.com"})
    assert SalesforceSecrets.model_validate(REFRESH).private_key is None


# ---- queries (§2, §4) --------------------------------------------------------------------------
async def test_query_cursors_follow_next_records_url_with_the_batch_size():
    first = [opportunity(i, NOW - timedelta(days=1)) for i in range(3)]
    second = [opportunity(i, NOW - timedelta(hours=1)) for i in range(3, 5)]
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        oldest = NOW - timedelta(days=2)

        def deals(query: str) -> httpx.Response:
            if "LIMIT 1" in query:
                return answer([{"SystemModstamp": format_datetime(oldest)}])
            return answer(first, done=False,
                          following="/services/data/v62.0/query/01gD0000002HU6KIAW-2000")
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deals))
        more = mock.get(f"{DATA}/query/01gD0000002HU6KIAW-2000").respond(
            200, json={"totalSize": 5, "done": True, "records": second})
        pages = await read(make(config={"batch_size": 500}), "deals")
    assert [len(p.records) for p in pages] == [3, 2]
    assert more.calls.last.request.headers["Sforce-Query-Options"] == "batchSize=500"
    assert pages[-1].cursor == {"modstamp": second[-1]["SystemModstamp"]}
    assert pages[0].cursor == {"modstamp": first[-1]["SystemModstamp"]}


async def test_full_reads_go_window_by_window_and_incremental_reads_overlap():
    asked: list[str] = []
    oldest = NOW - timedelta(days=25, hours=1)

    def deals(query: str) -> httpx.Response:
        asked.append(query)
        if "LIMIT 1" in query:
            return answer([{"SystemModstamp": format_datetime(oldest)}])
        return answer([])
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deals))
        source = make(config={"window_days": 10})
        await read(source, "deals")
        windows = [q for q in asked if "LIMIT 1" not in q]
        assert len(windows) == 3
        starts = [oldest + timedelta(days=10 * i) for i in range(3)]
        for query, start in zip(windows, starts, strict=True):
            assert f"SystemModstamp >= {start:%Y-%m-%dT%H:%M:%S}Z" in query
            assert query.endswith("ORDER BY SystemModstamp, Id")
            assert "CurrencyIsoCode" in query  # §5: a multi-currency org
        assert f"SystemModstamp < {starts[1]:%Y-%m-%dT%H:%M:%S}Z" in windows[0]
        assert "SystemModstamp <" not in windows[2]  # the last window is open-ended
        asked.clear()
        recent = NOW - timedelta(hours=1)
        await read(source, "deals", {"modstamp": format_datetime(recent)})
        assert len(asked) == 1  # one open-ended window, starting one minute earlier
        assert f"SystemModstamp >= {recent - timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}Z" \
            in asked[0] and "SystemModstamp <" not in asked[0]


async def test_a_query_timeout_halves_the_window():
    asked: list[str] = []
    oldest = NOW - timedelta(days=5)

    def deals(query: str) -> httpx.Response:
        asked.append(query)
        if "LIMIT 1" in query:
            return answer([{"SystemModstamp": format_datetime(oldest)}])
        if len([q for q in asked if "LIMIT 1" not in q]) == 1:
            return httpx.Response(400, json=[{"message": "Your query request was running "
                                              "for too long.", "errorCode": "QUERY_TIMEOUT"}])
        return answer([])
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deals))
        await read(make(config={"window_days": 8}), "deals")
    windows = [q for q in asked if "LIMIT 1" not in q]
    start = f"{oldest:%Y-%m-%dT%H:%M:%S}Z"
    assert start in windows[0] and start in windows[1]
    assert f"< {oldest + timedelta(days=4):%Y-%m-%dT%H:%M:%S}Z" in windows[1]


async def test_deletions_come_from_query_all_with_is_deleted():
    gone = NOW - timedelta(hours=2)
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        query_all = mock.get(f"{DATA}/queryAll").mock(side_effect=lambda r: answer(
            [{"Id": "006A", "SystemModstamp": format_datetime(gone)}]
            if "FROM Opportunity" in soql(r) else []))
        pages = await read(make(), "deletions", {"deals": "2026-05-01T10:00:00.000+0000"})
    queries = [soql(c.request) for c in query_all.calls]
    assert "FROM Opportunity WHERE IsDeleted = true AND SystemModstamp >= "\
           "2026-05-01T09:59:00Z" in queries[0]
    assert "FROM Account WHERE IsDeleted = true" in queries[1]
    assert "SystemModstamp >=" not in queries[1]  # no cursor yet: the whole recycle bin
    [deletion] = [d for p in pages for d in p.deletions]
    assert (deletion.entity, deletion.remote_id, deletion.deleted_at) == ("deals", "006A", gone)
    assert pages[-1].cursor == {"deals": format_datetime(gone)}


# ---- limits (§6) -------------------------------------------------------------------------------
async def test_a_sync_stops_before_the_daily_reserve():
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/limits").respond(200, json={
            "DailyApiRequests": {"Max": 100000, "Remaining": 9000}})
        with pytest.raises(ApiBudgetExhausted, match="9000 of 100000 left"):
            await make().check()

    calls = 0

    def deals(query: str) -> httpx.Response:
        nonlocal calls
        calls += 1
        if "LIMIT 1" in query:
            return answer([{"SystemModstamp": format_datetime(NOW - timedelta(days=90))}])
        return answer([], used=95_000)  # Sforce-Limit-Info: now inside the 10% reserve
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deals))
        with pytest.raises(ApiBudgetExhausted, match="api_reserve_percent"):
            await read(make(config={"window_days": 10}), "deals")
    assert calls == 2  # the oldest stamp, one window: then it stopped


async def test_request_limit_exceeded_stops_and_the_concurrent_limit_waits():
    exceeded = httpx.Response(403, json=[{"message": "TotalRequests Limit exceeded.",
                                          "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        limits = mock.get(f"{DATA}/limits").mock(return_value=exceeded)
        with pytest.raises(ApiBudgetExhausted, match="daily API allocation exhausted"):
            await make().check()
        assert limits.call_count == 1  # not retried: it is a 24-hour allocation
        limits.mock(return_value=httpx.Response(403, json=[{
            "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED"}]))
        with pytest.raises(RateLimited):
            await make().check()
        assert limits.call_count == 1 + FAST.attempts  # retried as a transient limit


# ---- currencies and outcomes (§3, §5) -----------------------------------------------------------
def deal_reader(rows: list[dict[str, Any]]) -> Any:
    def deals(query: str) -> httpx.Response:
        if "LIMIT 1" in query:
            return answer([{"SystemModstamp": format_datetime(NOW - timedelta(days=1))}])
        return answer(rows)
    return deals


async def test_multi_currency_amounts_convert_with_currency_type():
    rows = [opportunity(1, NOW, CurrencyIsoCode="EUR", Amount=800.0, StageName="Closed Won",
                        IsClosed=True, IsWon=True),
            opportunity(2, NOW, CurrencyIsoCode="USD", Amount=99.99, StageName="Closed Won Alt",
                        IsClosed=True, IsWon=False)]
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deal_reader(rows)))
        deals = [d for p in await read(make(), "deals") for d in p.records]
    euro, dollar = deals
    assert (euro.currency, euro.amount, euro.exchange_rate, euro.amount_home) == (
        "EUR", Decimal("800.0"), Decimal("0.8"), Decimal("1000"))
    assert (euro.status, euro.stage, euro.stage_remote_id) == ("won", "Signed", "01J2")
    # the stage is named "Closed Won ..." but IsWon is false: lost (never from names)
    assert (dollar.status, dollar.amount_home, dollar.owner_email) == (
        "lost", Decimal("99.99"), "ana@acme.com")


async def test_advanced_currency_management_uses_the_rate_of_the_close_date():
    class Dated:
        dated: ClassVar[list[dict[str, Any]]] = [
                {"IsoCode": "EUR", "ConversionRate": 0.5, "StartDate": "0001-01-01",
                 "NextStartDate": "2026-01-01"},
                 {"IsoCode": "EUR", "ConversionRate": 0.9, "StartDate": "2026-01-01",
                  "NextStartDate": "9999-12-31"}]

        def __call__(self, query: str) -> httpx.Response:
            return deal_reader(rows)(query)
    rows = [opportunity(1, NOW, CurrencyIsoCode="EUR", Amount=90.0, CloseDate="2026-02-01"),
            opportunity(2, NOW, CurrencyIsoCode="EUR", Amount=90.0, CloseDate="2025-12-31")]
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), Dated()))
        deals = [d for p in await read(make(), "deals") for d in p.records]
    assert [(d.exchange_rate, d.amount_home) for d in deals] == [
        (Decimal("0.9"), Decimal("100")), (Decimal("0.5"), Decimal("180"))]


async def test_a_single_currency_org_selects_no_currency_field():
    asked: list[str] = []

    def deals(query: str) -> httpx.Response:
        asked.append(query)
        return deal_reader([opportunity(1, NOW, Amount=10.0)])(query)
    with respx.mock(assert_all_called=False) as mock:
        metadata(mock, multi=False)
        mock.get(f"{DATA}/query").mock(side_effect=lambda r: tables(soql(r), deals))
        source = make()
        assert (await source.check()).home_currency == "GBP"  # Organization's currency
        [deal] = [d for p in await read(source, "deals") for d in p.records]
    assert all("CurrencyIsoCode" not in q for q in asked)
    assert (deal.currency, deal.exchange_rate, deal.amount_home) == ("GBP", Decimal(1),
                                                                     Decimal("10.0"))
