"""One Zoho CRM org over HTTP (API v8): settings, the error envelope, and the metadata
every capability reads (home currency, field lists, stages). The connector's streams
(connector.py), webhooks (notifications.py) and goal push (goals.py) build on it.
Every behaviour cites docs/vendors/zoho.md (§n)."""

import asyncio
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import ApiClient, SourceInfo, StageRecord
from connectors.endpoints import Endpoint
from connectors.http import json_body, raise_for_transient
from connectors.zoho import mapping
from connectors.zoho.auth import ACCOUNTS_HOSTS, ACCOUNTS_SERVERS, ZohoAuth
from connectors.zoho.wire import DEALS_TAB, ORG_PATTERN, WEB_SERVERS, record_path
from core.errors import AuthError, ConfigError, SourceError

MAX_FIELDS = 50  # §2: at most 50 field API names per call
DEAL_FIELDS = (
    "Deal_Name",
    "Amount",
    "Currency",
    "Exchange_Rate",
    "Stage",
    "Pipeline",
    "Probability",
    "Closing_Date",
    "Owner",
    "Account_Name",
    "Created_Time",
    "Modified_Time",
    "Type",
    "Lead_Source",
    "Expected_Revenue",
)
ACCOUNT_FIELDS = (
    "Account_Name",
    "Industry",
    "Owner",
    "Created_Time",
    "Modified_Time",
    "Account_Type",
    "Annual_Revenue",
    "Employees",
    "Website",
)
_ACTIVITY_COMMON = ("Owner", "What_Id", "Created_Time", "Modified_Time")
# §14: the fields read from each activity module (research: the SDK's record classes).
ACTIVITY_FIELDS: dict[str, tuple[str, ...]] = {
    "Calls": ("Subject", "Call_Type", "Call_Start_Time", "Call_Duration_in_seconds",
              "Outgoing_Call_Status", "Call_Result", *_ACTIVITY_COMMON),
    "Events": ("Event_Title", "Start_DateTime", "End_DateTime", "All_day", *_ACTIVITY_COMMON),
    "Tasks": ("Subject", "Status", "Due_Date", "Closed_Time", *_ACTIVITY_COMMON),
}
AUTH_CODES = {"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "OAUTH_SCOPE_MISMATCH"}
CONFIG_CODES = {"INVALID_MODULE", "NO_PERMISSION", "FEATURE_NOT_SUPPORTED", "FEATURE_NOT_ENABLED"}
# Orgs without multi-currency (below Enterprise) answer GET /org/currencies with HTTP 403
# CURRENCIES_NOT_ENABLED (zoho/crm-oas v8.0/currencies/operations/getCurrencies, example
# response-403-currenciesnotenabled); their records have no Currency or Exchange_Rate.
NO_CURRENCIES = "CURRENCIES_NOT_ENABLED"
# The success statuses Zoho's v8 endpoints document (zoho/crm-oas v8.0: e.g. 201 for
# createNotifications and createRecords, 202 in notifications.json, 207 for a batch with
# some failures, whose per-element status the caller reads; 204/304 mean "no content").
SUCCESS = (200, 201, 202, 207)

class ZohoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"dc", "accounts_url"})
    """Keys that decide where the secrets go: changing one drops the stored secrets."""

    dc: Literal["com", "us", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa", "uk", "ae"] = "com"
    accounts_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(:\d+)?(/[^\s]*)?$",
        description="Overrides the accounts server of `dc` (sandboxes, proxies).",
    )
    goals_module: str = Field(default="Sales_Goals", pattern=r"^[A-Za-z][A-Za-z0-9_]{0,49}$")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)
    org: str | None = Field(
        default=None, pattern=ORG_PATTERN,
        description="The org's domain name (GET /org domain_name, e.g. org60012345), for "
                    "links to records in Zoho CRM (§12); without it links open the user's "
                    "default org.")

    @property
    def token_url(self) -> str:
        dc = "com" if self.dc == "us" else self.dc  # Zoho's own name for .com is "us"
        base = (self.accounts_url or ACCOUNTS_SERVERS[dc]).rstrip("/")
        return f"{base}/oauth/v2/token"

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(self.token_url, ACCOUNTS_HOSTS)]

    def deal_url(self, remote_id: str) -> str:
        """The deal's page in Zoho CRM's web app (§12); with `accounts_url` (a sandbox, a
        proxy), on that server."""
        if self.accounts_url:
            url = httpx.URL(self.accounts_url)
            base = f"{url.scheme}://{url.netloc.decode()}"
        else:
            base = WEB_SERVERS["com" if self.dc == "us" else self.dc]
        return base + record_path(self.org, DEALS_TAB, quote(remote_id, safe=""))


class ZohoSecrets(BaseModel):
    model_config = ConfigDict(extra="forbid")

    client_id: SecretStr = Field(min_length=1)
    client_secret: SecretStr = Field(min_length=1)
    refresh_token: SecretStr = Field(min_length=1)

    @model_validator(mode="after")
    def _not_blank(self) -> "ZohoSecrets":
        for name in ("client_id", "client_secret", "refresh_token"):
            if not getattr(self, name).get_secret_value().strip():
                raise ValueError(f"{name} must not be blank")
        return self


class ZohoClient:
    """Calls to one org with the connection's auth, in-flight cap and retries, and the
    org's metadata, read once per client."""

    def __init__(self, config: ZohoConfig, secrets: ZohoSecrets, api: ApiClient) -> None:
        self.config = config
        self.api = api
        self.auth = ZohoAuth(
            config.token_url,
            secrets.client_id.get_secret_value(),
            secrets.client_secret.get_secret_value(),
            secrets.refresh_token.get_secret_value(),
            api.limits,
            api.endpoints,
        )
        self.home_currency: str | None = None
        self.multi_currency: bool | None = None  # known after check()
        self._fields: dict[str, asyncio.Task[list[dict[str, Any]]]] = {}
        self._stages: asyncio.Task[list[StageRecord]] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    # -- HTTP -----------------------------------------------------------------

    async def api_domain(self) -> str:
        return (await self.auth.get(self.api)).api_domain

    async def get(
        self, path: str, params: dict[str, Any] | None = None, since: str | None = None
    ) -> Any:
        """GET {api_domain}/crm/v8{path}; None for 204/304 (§2: both mean "no records")."""
        url = f"{await self.api_domain()}/crm/v8{path}"
        headers = {"If-Modified-Since": since} if since else {}
        return await self.api.send(
            "GET", url, parse_response, params=params, headers=headers, auth=self.auth
        )

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any other call to {api_domain}/crm/v8{path} (notifications, §5)."""
        url = f"{await self.api_domain()}/crm/v8{path}"
        return await self.api.send(method, url, parse_response, auth=self.auth, **kwargs)

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate and read the home currency (§8: the currency with is_base; an org
        without multi-currency answers CURRENCIES_NOT_ENABLED: its /org `iso_code` is home)."""
        try:
            body = await self.get("/org/currencies")
        except ZohoError as exc:
            if exc.code != NO_CURRENCIES:
                raise
            body = None
        currencies = (body or {}).get("currencies") or []
        home = next((c.get("iso_code") for c in currencies if c.get("is_base")), None)
        org = await self.get("/org")
        org_info = ((org or {}).get("org") or [{}])[0]
        home = home or org_info.get("iso_code") or org_info.get("currency")
        self.home_currency = home
        self.multi_currency = bool(currencies)
        return SourceInfo(home_currency=home, organization=org_info.get("company_name"))

    def _module_fields(self, module: str) -> "asyncio.Task[list[dict[str, Any]]]":
        if module not in self._fields:
            self._fields[module] = asyncio.ensure_future(self._read_fields(module))
        return self._fields[module]

    async def _read_fields(self, module: str) -> list[dict[str, Any]]:
        body = await self.get("/settings/fields", {"module": module})
        return list((body or {}).get("fields") or [])

    async def field_names(self, module: str, wanted: tuple[str, ...]) -> str:
        """The wanted fields this org has (single-currency orgs lack Currency, §8)."""
        available = {f.get("api_name") for f in await self._module_fields(module)}
        names = [f for f in wanted if f in available] if available else list(wanted)
        if len(names) > MAX_FIELDS:
            raise ConfigError(f"asked Zoho for {len(names)} fields; the limit is {MAX_FIELDS}")
        return ",".join(names)

    def stages(self) -> "asyncio.Task[list[StageRecord]]":
        if self._stages is None:
            self._stages = asyncio.ensure_future(self._fetch_stages())
        return self._stages

    async def _fetch_stages(self) -> list[StageRecord]:
        """Stages per pipeline (§4: layouts -> pipeline?layout_id), typed by forecast_type."""
        picklist: list[dict[str, Any]] = next(
            (
                f.get("pick_list_values") or []
                for f in await self._module_fields("Deals")
                if f.get("api_name") == "Stage"
            ),
            [],
        )
        probabilities = {
            str(v.get("display_value")): mapping.decimal(v.get("probability")) for v in picklist
        }
        layouts = ((await self.get("/settings/layouts", {"module": "Deals"})) or {}).get(
            "layouts"
        ) or []
        found: dict[str, StageRecord] = {}
        for layout in layouts:
            body = await self.get("/settings/pipeline", {"layout_id": layout["id"]})
            for pipeline in (body or {}).get("pipeline") or []:
                for entry in pipeline.get("maps") or []:
                    record = mapping.stage(pipeline, entry, probabilities)
                    found[record.remote_id] = record
        if not found:  # an org without pipelines: the Stage picklist carries forecast_type
            for index, entry in enumerate(picklist):
                record = mapping.stage(
                    {"id": "picklist", "display_value": None},
                    {"sequence_number": index + 1, **entry},
                    probabilities,
                )
                found[record.remote_id] = record
        return list(found.values())

class ZohoError(SourceError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_response(response: httpx.Response) -> Any:
    """Map a Zoho API response to data or an error (§7 envelope, §2 204/304).

    Every documented success status returns the body (SUCCESS); a 207 holds one result per
    element, which the caller reads (notifications._granted_expiry, goals._elements)."""
    if response.status_code in (204, 304):
        return None
    raise_for_transient(response)
    body = json_body(response)
    if response.status_code in SUCCESS:
        return body
    error = body if isinstance(body, dict) else {}
    for key in ("watch", "data"):  # batch endpoints put the error inside the element list
        items = error.get(key)
        if "code" not in error and isinstance(items, list) and items and \
                isinstance(items[0], dict):
            error = items[0]
    code = str(error.get("code")) if error.get("code") else f"HTTP {response.status_code}"
    message = error.get("message", "")
    text = f"Zoho {code}: {message} ({response.request.method} {response.request.url.path})"
    if response.status_code == 401 or code in AUTH_CODES:
        raise AuthError(f"Zoho refused the access token ({code}): {message}")
    if code in CONFIG_CODES or (response.status_code == 403 and code != NO_CURRENCIES):
        raise ConfigError(text)
    raise ZohoError(code, text)


