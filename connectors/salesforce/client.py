"""One Salesforce org over the REST API: settings, the error envelope, the daily API
budget, SOQL queries with their cursors, and the metadata every capability reads (home
currency, rates, stages, users). The connector's streams (connector.py) and quota push
(goals.py) build on it. Every behaviour cites docs/vendors/salesforce.md (§n).
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.base import ApiClient, SourceInfo, StageRecord, UserRecord
from connectors.endpoints import Endpoint
from connectors.http import json_body, raise_for_transient
from connectors.salesforce import mapping
from connectors.salesforce.auth import HOSTS, SalesforceAuth, jwt_assertion, load_private_key
from connectors.salesforce.wire import (
    API_VERSION,
    BATCH_MAX,
    CONCURRENT_REQUESTS,
    INVALID_SESSION,
    INVALID_TYPE,
    JWT_GRANT,
    LOGIN_URL,
    QUERY_OPTIONS_HEADER,
    QUERY_TIMEOUT,
    RECORD_PAGE,
    REQUEST_LIMIT,
    SHARED_LOGINS,
    TOKEN_PATH,
    api_usage,
)
from core.errors import AuthError, ConfigError, RateLimited, SourceError

log = logging.getLogger("crmsync.salesforce")

CONFIG_CODES = {"API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED", "INSUFFICIENT_ACCESS",
                "FUNCTIONALITY_NOT_ENABLED"}
METADATA_TTL = 3600.0  # seconds describe and rates are reused (api.limits.memo)
CONCURRENCY_PAUSE = 5.0  # §6: no Retry-After; wait this long on the concurrent-request limit
USER_FIELDS = "Id, Name, Email, IsActive, Title, Department, ManagerId, SystemModstamp"


class SalesforceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"login_url", "username"})
    """Keys that decide where the secrets go: changing one drops the stored secrets."""

    login_url: str = Field(
        default=LOGIN_URL, pattern=r"^https?://[^\s/?#]+(:\d+)?/?$",
        description="§1: https://login.salesforce.com, https://test.salesforce.com for "
                    "sandboxes, or the org's My Domain URL")
    username: str | None = Field(
        default=None, min_length=3, max_length=80,
        description="The integration user's username (the JWT bearer flow's sub)")
    api_version: str = Field(default=API_VERSION, pattern=r"^[3-9]\d\.0$")
    window_days: int = Field(default=30, ge=1, le=366,
                             description="SystemModstamp days per query (narrowed on "
                                         "QUERY_TIMEOUT)")
    batch_size: int = Field(default=BATCH_MAX, ge=200, le=2000)
    api_reserve_percent: int = Field(
        default=10, ge=0, le=90,
        description="Share of the daily API allocation left for the org's other "
                    "integrations: a sync stops before using it")
    forecasting_type: str = Field(default="OpportunityRevenue",
                                  pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
    quantity_forecasting_type: str = Field(default="OpportunityQuantity",
                                           pattern=r"^[A-Za-z][A-Za-z0-9_]{0,79}$")
    forecast_period: Literal["month", "quarter"] = Field(
        default="quarter",
        description="§8: the org's forecast period (Setup > Forecasts Settings): a goal "
                    "becomes a quota when it spans one fiscal period of this length")
    company_quota_owner_id: str | None = Field(
        default=None, pattern=r"^005[A-Za-z0-9]{12}([A-Za-z0-9]{3})?$",
        description="The user whose quota holds a company-wide goal (default: the one "
                    "active user at the top of the hierarchy other than the integration user)")
    instance_url: str | None = Field(
        default=None, pattern=r"^https://[^\s/?#]+/?$",
        description="§10: the org's address in a browser (its My Domain, "
                    "https://acme.my.salesforce.com), for links to opportunities; a My "
                    "Domain login_url serves as well")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)

    @property
    def token_url(self) -> str:
        return f"{self.login_url.rstrip('/')}{TOKEN_PATH}"

    def deal_url(self, remote_id: str) -> str | None:
        """§10: the opportunity's Lightning record page, on `instance_url` or a login_url
        that is the org's own (My Domain, a sandbox); None behind the shared login hosts,
        which do not say which org."""
        base = self.instance_url or (None if self.login_url.rstrip("/") in SHARED_LOGINS
                                     else self.login_url)
        if base is None:
            return None
        record = quote(remote_id, safe="")
        return base.rstrip("/") + RECORD_PAGE.format(object="Opportunity", id=record)

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(self.token_url, HOSTS)]


class SalesforceSecrets(BaseModel):
    """§1: client_id with refresh_token and client_secret (refresh-token grant), or with
    private_key (the JWT bearer grant, with config `username`)."""

    model_config = ConfigDict(extra="forbid")

    client_id: SecretStr = Field(min_length=1)
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key: SecretStr | None = None

    @field_validator("private_key")
    @classmethod
    def _pem(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                load_private_key(value.get_secret_value())
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _flow(self) -> "SalesforceSecrets":
        if not self.client_id.get_secret_value().strip():
            raise ValueError("client_id must not be blank")
        if self.private_key is None and (self.refresh_token is None
                                         or self.client_secret is None):
            raise ValueError("give private_key (JWT bearer flow) or refresh_token and "
                                 "client_secret (refresh-token flow)")
        return self


class SalesforceError(SourceError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ApiBudgetExhausted(SourceError):
    """§6: the org's daily API allocation is used up, or down to the reserve we leave."""


class QueryTimedOut(SalesforceError):
    """§2 QUERY_TIMEOUT: the caller narrows its window and asks again."""


def errors_of(body: Any) -> list[dict[str, Any]]:
    """§7: an array of {message, errorCode}; a lone object is read the same way."""
    if isinstance(body, dict):
        body = [body]
    return [e for e in body if isinstance(e, dict)] if isinstance(body, list) else []


def parse_response(response: httpx.Response) -> Any:
    """Map a REST answer to data or an error (§6, §7); 204 is None."""
    if response.status_code == 204:
        return None
    raise_for_transient(response)
    body = json_body(response)
    if response.status_code in (200, 201):
        return body
    first = (errors_of(body) or [{}])[0]
    code = str(first.get("errorCode") or f"HTTP {response.status_code}")
    message = str(first.get("message") or "")
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 401 or code == INVALID_SESSION:
        raise AuthError(f"Salesforce refused the session ({code}: {message}) even after a new "
                        "one was issued; reconnect the integration user or check its profile")
    if code == REQUEST_LIMIT:
        if message == CONCURRENT_REQUESTS or "concurrent" in message.lower():
            raise RateLimited(f"Salesforce concurrent request limit ({message})",
                              CONCURRENCY_PAUSE)
        raise ApiBudgetExhausted(
            f"Salesforce daily API allocation exhausted ({code}: {message}). The data synced "
            "so far is kept; the next sync resumes where this one stopped once the rolling "
            "24-hour allocation frees up (or the org buys more)")
    if code == QUERY_TIMEOUT:
        raise QueryTimedOut(response.status_code, code, f"Salesforce {code} on {where}")
    if code in CONFIG_CODES:
        raise ConfigError(f"Salesforce {code}: {message} ({where}): give the integration user "
                          "API access (the API Enabled permission) in an edition with the "
                          "REST API")
    raise SalesforceError(response.status_code, code, f"Salesforce {code}: {message} ({where})")


def soql_list(values: list[str]) -> str:
    """Quoted SOQL values for IN (...) (§2: backslash escapes)."""
    return ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


class SalesforceClient:
    """Calls to one org with its session, budget and retries, and the org's metadata (home
    currency, rates, stages, users), read once per client (describe and rates also kept in
    the process's memo for an hour)."""

    def __init__(self, config: SalesforceConfig, secrets: SalesforceSecrets,
                 api: ApiClient) -> None:
        self.config = config
        self.api = api
        client_id = secrets.client_id.get_secret_value()
        if secrets.private_key is not None and config.username:
            key = load_private_key(secrets.private_key.get_secret_value())
            audience = config.login_url.rstrip("/")

            def form() -> dict[str, str]:
                return {"grant_type": JWT_GRANT, "assertion": jwt_assertion(
                    key, client_id=client_id, username=str(config.username),
                    audience=audience)}
            credential = f"jwt\0{client_id}\0{config.username}"
        elif secrets.refresh_token is not None and secrets.client_secret is not None:
            refresh, client_secret = (secrets.refresh_token.get_secret_value(),
                                      secrets.client_secret.get_secret_value())

            def form() -> dict[str, str]:
                return {"grant_type": "refresh_token", "client_id": client_id,
                        "client_secret": client_secret, "refresh_token": refresh}
            credential = f"refresh\0{client_id}\0{refresh}"
        else:
            raise ConfigError("the JWT bearer flow needs config username (the integration "
                              "user's username) next to secrets private_key; or give "
                              "refresh_token and client_secret")
        self.auth = SalesforceAuth(config.token_url, form, credential, api.limits,
                                   api.endpoints)
        self.usage: tuple[int, int] | None = None  # §6 (used, max) from the last answer
        self._in_flight = 0  # calls sent and not answered yet (the streams run in parallel)
        self.home_currency: str | None = None
        self.organization: str | None = None
        self._meta: asyncio.Task[tuple[bool, mapping.Rates]] | None = None
        self._stages: asyncio.Task[list[StageRecord]] | None = None
        self._users: asyncio.Task[dict[str, UserRecord]] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    @property
    def data_path(self) -> str:
        return f"/services/data/v{self.config.api_version}"

    # -- HTTP -----------------------------------------------------------------

    def _parse(self, response: httpx.Response) -> Any:
        usage = api_usage(response.headers.get("Sforce-Limit-Info"))
        if usage is not None:
            # answers to parallel calls can arrive out of order: an older count must not
            # lower the newer one (that let one call more through the reserve)
            if self.usage is not None and self.usage[1] == usage[1]:
                usage = (max(usage[0], self.usage[0]), usage[1])
            self.usage = usage
        return parse_response(response)

    def _check_budget(self) -> None:
        """§6: stop before the reserve left for the org's other integrations (counting the
        calls in flight, which the last answer's usage does not include yet)."""
        if self.usage is None:
            return
        used, maximum = self.usage
        used += self._in_flight
        reserve = maximum * self.config.api_reserve_percent // 100
        if maximum - used <= reserve:
            raise ApiBudgetExhausted(
                f"Salesforce daily API requests: {maximum - used} of {maximum} left, at the "
                f"reserve of {self.config.api_reserve_percent}% kept for the org's other "
                "integrations (config api_reserve_percent). The data synced so far is kept; "
                "the next sync resumes once the rolling 24-hour allocation frees up")

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """A REST call to {instance_url}{path}: path is under /services/data/vXX.X, or a
        nextRecordsUrl (§2)."""
        self._check_budget()
        self._in_flight += 1
        try:
            session = await self.auth.get(self.api)
            url = f"{session.instance_url}{path}"
            return await self.api.send(method, url, self._parse, auth=self.auth, **kwargs)
        finally:
            self._in_flight -= 1

    async def data(self, method: str, resource: str, **kwargs: Any) -> Any:
        return await self.call(method, f"{self.data_path}{resource}", **kwargs)

    async def query(self, soql: str, *, deleted: bool = False
                    ) -> AsyncIterator[list[dict[str, Any]]]:
        """The batches of a SOQL query (§2: nextRecordsUrl while not done); `deleted` uses
        queryAll (recycle bin included, §4)."""
        headers = {QUERY_OPTIONS_HEADER: f"batchSize={self.config.batch_size}"}
        body = await self.data("GET", "/queryAll" if deleted else "/query",
                               params={"q": soql}, headers=headers)
        while True:
            if not isinstance(body, dict) or not isinstance(body.get("records"), list):
                raise SourceError("Salesforce answered a query without records")
            yield body["records"]
            following = body.get("nextRecordsUrl")
            if body.get("done", True) or not following:
                return
            if not str(following).startswith("/services/data/"):
                raise SourceError(f"Salesforce nextRecordsUrl {following!r} is not a "
                                  "REST path")
            body = await self.call("GET", str(following), headers=headers)

    async def query_rows(self, soql: str) -> list[dict[str, Any]]:
        return [row async for batch in self.query(soql) for row in batch]

    async def user_id(self) -> str | None:
        """The integration user (§1: the last segment of the token answer's id)."""
        return (await self.auth.get(self.api)).user_id

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate, read the daily budget (§6) and the home currency (§5)."""
        limits = await self.data("GET", "/limits")
        daily = (limits or {}).get("DailyApiRequests") or {}
        if isinstance(daily.get("Max"), int) and isinstance(daily.get("Remaining"), int):
            self.usage = (daily["Max"] - daily["Remaining"], daily["Max"])
        self._check_budget()
        _, found = await self.meta()
        org = await self.query_rows("SELECT Id, Name, DefaultCurrencyIsoCode FROM Organization")
        self.organization = str(org[0].get("Name")) if org else None
        return SourceInfo(home_currency=found.home, organization=self.organization)

    def meta(self) -> "asyncio.Task[tuple[bool, mapping.Rates]]":
        if self._meta is None:
            self._meta = asyncio.ensure_future(self._fetch_meta())
        return self._meta

    async def _fetch_meta(self) -> tuple[bool, mapping.Rates]:
        """§3, §5: multi-currency when Opportunity has CurrencyIsoCode; the corporate
        currency and CurrencyType rates; dated rates (empty without advanced currency
        management)."""
        memo_key = f"salesforce-meta:{self.auth.key}"
        cached = self.api.limits.memo.get(memo_key)
        if cached is not None:
            multi, found = cached
            self.home_currency = found.home
            return multi, found
        described = await self.data("GET", "/sobjects/Opportunity/describe")
        fields = {str(f.get("name")) for f in (described or {}).get("fields") or []
                  if isinstance(f, dict)}
        multi = "CurrencyIsoCode" in fields
        if multi:
            types = await self.query_rows(
                "SELECT IsoCode, ConversionRate, IsCorporate, IsActive FROM CurrencyType")
            home = next((str(t["IsoCode"]) for t in types if t.get("IsCorporate")), None)
            try:
                dated = await self.query_rows(
                    "SELECT IsoCode, ConversionRate, StartDate, NextStartDate "
                    "FROM DatedConversionRate ORDER BY IsoCode, StartDate")
            except SalesforceError as exc:
                if exc.code != INVALID_TYPE:
                    raise
                dated = []
        else:
            types, dated = [], []
            org = await self.query_rows("SELECT DefaultCurrencyIsoCode FROM Organization")
            home = str(org[0]["DefaultCurrencyIsoCode"]) if org else None
        if not home:
            raise SourceError("Salesforce named no corporate currency (CurrencyType "
                              "IsCorporate, Organization DefaultCurrencyIsoCode)")
        found = mapping.rates(home, types, dated)
        self.home_currency = home
        self.api.limits.memo.put(memo_key, (multi, found), METADATA_TTL)
        return multi, found

    def stages(self) -> "asyncio.Task[list[StageRecord]]":
        if self._stages is None:
            self._stages = asyncio.ensure_future(self._fetch_stages())
        return self._stages

    async def _fetch_stages(self) -> list[StageRecord]:
        """§3: every OpportunityStage, inactive ones too (old deals may sit in them)."""
        rows = await self.query_rows(
            "SELECT Id, ApiName, MasterLabel, IsActive, IsClosed, IsWon, DefaultProbability, "
            "SortOrder, SystemModstamp FROM OpportunityStage ORDER BY SortOrder")
        return [mapping.stage(r) for r in rows]

    def users(self) -> "asyncio.Task[dict[str, UserRecord]]":
        if self._users is None:
            self._users = asyncio.ensure_future(self._fetch_users())
        return self._users

    async def _fetch_users(self) -> dict[str, UserRecord]:
        """§3: the org's standard users (not partner, portal or automated ones)."""
        rows = await self.query_rows(f"SELECT {USER_FIELDS} FROM User "
                                     "WHERE UserType = 'Standard' ORDER BY Id")
        return {str(r["Id"]): mapping.user(r) for r in rows}

