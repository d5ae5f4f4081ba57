"""Zoho CRM connector (API v8). Every behaviour cites docs/vendors/zoho.md (§n)."""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import (
    ApiClient,
    Channel,
    GoalDeletion,
    GoalOut,
    Page,
    PushResult,
    Sandbox,
    SourceInfo,
    StageRecord,
    WebhookIntake,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.endpoints import Endpoint
from connectors.http import json_body, raise_for_transient
from connectors.zoho import mapping, notifications
from connectors.zoho.auth import ACCOUNTS_HOSTS, ACCOUNTS_SERVERS, ZohoAuth
from connectors.zoho.cli import build_app as build_command_line
from connectors.zoho.sandbox import SANDBOX
from core.errors import AuthError, ConfigError, SourceError

log = logging.getLogger("crmsync.zoho")

PER_PAGE = 200  # §2: default and max per_page
MAX_FIELDS = 50  # §2: at most 50 field API names per call
PAGE_TOKEN_CAP = 100_000  # §2: page_token reaches 100,000 records, then PAGINATION_LIMIT_EXCEEDED
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
AUTH_CODES = {"INVALID_TOKEN", "AUTHENTICATION_FAILURE", "OAUTH_SCOPE_MISMATCH"}
CONFIG_CODES = {"INVALID_MODULE", "NO_PERMISSION", "FEATURE_NOT_SUPPORTED", "FEATURE_NOT_ENABLED"}
RESTART_CODES = {"PAGINATION_LIMIT_EXCEEDED", "EXPIRED_VALUE"}  # §2: restart from the cursor
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

    @property
    def token_url(self) -> str:
        dc = "com" if self.dc == "us" else self.dc  # Zoho's own name for .com is "us"
        base = (self.accounts_url or ACCOUNTS_SERVERS[dc]).rstrip("/")
        return f"{base}/oauth/v2/token"

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(self.token_url, ACCOUNTS_HOSTS)]


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


class _Restart(Exception):
    """A page_token walk must start again from the cursor (§2 token cap or expiry)."""


class ZohoConnector:
    """Reads users, stages, accounts, deals and deletions from one Zoho CRM org."""

    name: ClassVar[str] = "zoho"
    config_model: ClassVar[type[BaseModel]] = ZohoConfig
    secrets_model: ClassVar[type[BaseModel]] = ZohoSecrets
    max_in_flight: ClassVar[int] = 5  # §7: Free edition concurrency; higher editions allow more
    channel_renew_within: ClassVar[timedelta] = notifications.RENEW_WITHIN  # §5
    sandbox: ClassVar[Sandbox] = SANDBOX

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

    async def _api_domain(self) -> str:
        return (await self.auth.get(self.api)).api_domain

    async def get(
        self, path: str, params: dict[str, Any] | None = None, since: str | None = None
    ) -> Any:
        """GET {api_domain}/crm/v8{path}; None for 204/304 (§2: both mean "no records")."""
        url = f"{await self._api_domain()}/crm/v8{path}"
        headers = {"If-Modified-Since": since} if since else {}
        return await self.api.send(
            "GET", url, _parse, params=params, headers=headers, auth=self.auth
        )

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        """Any other call to {api_domain}/crm/v8{path} (notifications, §5)."""
        url = f"{await self._api_domain()}/crm/v8{path}"
        return await self.api.send(method, url, _parse, auth=self.auth, **kwargs)

    # -- webhooks (§5, connectors/zoho/notifications.py) -----------------------

    @classmethod
    def parse_webhook(cls, request: WebhookRequest, known: WebhookSecrets) -> WebhookIntake:
        return notifications.parse(request, known)

    async def resolve_webhook_events(
        self, payloads: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, Page]]:
        return await notifications.resolve(self, payloads)

    # -- notification channels (§5; connectors.base.NotificationChannels) ------

    async def subscribe_channel(self, notify_url: str) -> Channel:
        return await notifications.subscribe_channel(self, notify_url)

    async def renew_channel(self, channel: Channel) -> Channel:
        return await notifications.renew_channel(self, channel)

    async def unsubscribe_channels(self, channel_ids: Sequence[str]) -> None:
        await notifications.unsubscribe(self, channel_ids)

    # -- command line (connectors/zoho/cli.py: crmsync zoho exchange-code) -----

    @classmethod
    def command_line(cls, add_connection: Callable[..., None]) -> Any:
        return build_command_line(add_connection)

    # -- goal push (§9, connectors/zoho/goals.py; connectors.base.GoalPusher) ---

    async def push_goals(
        self, goals: Sequence[GoalOut], deletions: Sequence[GoalDeletion]
    ) -> list[PushResult]:
        """Goals into the custom module `goals_module` via upsert; deletions by id."""
        from connectors.zoho import goals as zoho_goals  # it imports this module

        return await zoho_goals.push_goals(self, goals, deletions)

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate and read the home currency (§8: the currency with is_base; an org
        without multi-currency answers CURRENCIES_NOT_ENABLED: its /org `iso_code` is home)."""
        try:
            body = await self.get("/org/currencies")
        except _ZohoError as exc:
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

    async def _field_names(self, module: str, wanted: tuple[str, ...]) -> str:
        """The wanted fields this org has (single-currency orgs lack Currency, §8)."""
        available = {f.get("api_name") for f in await self._module_fields(module)}
        names = [f for f in wanted if f in available] if available else list(wanted)
        if len(names) > MAX_FIELDS:
            raise ConfigError(f"asked Zoho for {len(names)} fields; the limit is {MAX_FIELDS}")
        return ",".join(names)

    def stages(self) -> "asyncio.Task[list[StageRecord]]":
        if self._stages is None:
            self._stages = asyncio.ensure_future(self._read_stages())
        return self._stages

    async def _read_stages(self) -> list[StageRecord]:
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

    # -- streams --------------------------------------------------------------

    def read(self, stream: str, cursor: dict[str, Any] | None) -> AsyncIterator[Page]:
        readers = {
            "users": self._read_users,
            "stages": self._read_stage_stream,
            "accounts": self._read_accounts,
            "deals": self._read_deals,
            "deletions": self._read_deletions,
        }
        if stream not in readers:
            raise ConfigError(f"Zoho has no stream {stream!r}")
        return readers[stream](cursor or {})

    async def _read_users(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§2: /users?type=AllUsers, key `users`, page/per_page, If-Modified-Since."""
        since = cursor.get("modified_since")
        newest = since
        page = 1
        while True:
            body = await self.get(
                "/users",
                {"type": "AllUsers", "page": page, "per_page": PER_PAGE},
                since=_overlap(since),
            )
            users = (body or {}).get("users") or []
            records = [mapping.user(u) for u in users]
            newest = _newest(newest, (u.get("Modified_Time") for u in users))
            more = bool((body or {}).get("info", {}).get("more_records"))
            if records or not more:
                yield Page(records=records, cursor=None if more else {"modified_since": newest})
            if not more:
                return
            page += 1

    async def _read_stage_stream(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        yield Page(records=await self.stages(), cursor={})

    async def _read_accounts(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        fields = await self._field_names("Accounts", ACCOUNT_FIELDS)
        async for raws, state in self._walk("Accounts", fields, cursor):
            yield Page(records=[mapping.account(r) for r in raws], cursor=state)

    async def _read_deals(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        fields = await self._field_names("Deals", DEAL_FIELDS)
        stage_map = mapping.stage_lookup(await self.stages())
        if self.home_currency is None:
            await self.check()
        async for raws, state in self._walk("Deals", fields, cursor):
            yield Page(
                records=[mapping.deal(r, stage_map, self.home_currency) for r in raws], cursor=state
            )

    async def _walk(
        self, module: str, fields: str, cursor: dict[str, Any]
    ) -> AsyncIterator[tuple[list[dict[str, Any]], dict[str, Any]]]:
        """Records oldest change first (§2: sort_by=Modified_Time asc, page_token past 2,000).

        The cursor is the newest Modified_Time committed; the next read starts at
        that instant minus one second (overlap, never cursor + 1 s), so records
        sharing a Modified_Time across a page boundary are re-read, never lost.
        """
        since = cursor.get("modified_since")
        restarted_at: str | None = None
        while True:
            try:
                async for raws, newest in self._query(module, fields, since):
                    since = newest
                    yield raws, {"modified_since": newest}
                return
            except _Restart:
                if since is None or since == restarted_at:
                    raise SourceError(
                        f"Zoho {module}: cannot page past {PAGE_TOKEN_CAP} records that share "
                        f"Modified_Time {since}; sync again later or use a full sync"
                    ) from None
                restarted_at = since
                log.info("restarting %s walk from %s", module, since)

    async def _query(
        self, module: str, fields: str, since: str | None
    ) -> AsyncIterator[tuple[list[dict[str, Any]], str | None]]:
        params: dict[str, Any] = {
            "fields": fields,
            "per_page": PER_PAGE,
            "sort_by": "Modified_Time",
            "sort_order": "asc",
        }
        newest, read, token = since, 0, None
        while True:
            page_params = {**params, **({"page_token": token} if token else {"page": 1})}
            try:
                body = await self.get(f"/{module}", page_params, since=_overlap(since))
            except _ZohoError as exc:
                if exc.code in RESTART_CODES and read:
                    raise _Restart from exc
                raise SourceError(str(exc)) from None
            if not body:
                return
            records = body.get("data") or []
            read += len(records)
            newest = _newest(newest, (r.get("Modified_Time") for r in records))
            yield records, newest
            info = body.get("info") or {}
            token = info.get("next_page_token")
            if not info.get("more_records"):
                return
            if not token or read + PER_PAGE > PAGE_TOKEN_CAP:
                raise _Restart  # continue from the newest Modified_Time seen

    async def _read_deletions(self, cursor: dict[str, Any]) -> AsyncIterator[Page]:
        """§3: /{Module}/deleted?type=all, page/per_page (no page_token), If-Modified-Since."""
        state = dict(cursor)
        for module, entity in (("Deals", "deals"), ("Accounts", "accounts")):
            since = state.get(entity)
            newest = since
            page = 1
            while True:
                body = await self.get(
                    f"/{module}/deleted",
                    {"type": "all", "page": page, "per_page": PER_PAGE},
                    since=_overlap(since),
                )
                rows = (body or {}).get("data") or []
                newest = _newest(newest, (r.get("deleted_time") for r in rows))
                more = bool((body or {}).get("info", {}).get("more_records"))
                if not more:
                    state[entity] = newest
                yield Page(
                    deletions=[mapping.deletion(entity, r) for r in rows],
                    cursor=None if more else dict(state),
                )
                if not more:
                    break
                page += 1


class _ZohoError(SourceError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _parse(response: httpx.Response) -> Any:
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
    raise _ZohoError(code, text)


def _overlap(since: str | None) -> str | None:
    """The If-Modified-Since to send for a cursor: one second earlier (overlap)."""
    if not since:
        return None
    return (datetime.fromisoformat(since.replace("Z", "+00:00")) - timedelta(seconds=1)).isoformat(
        timespec="seconds"
    )


def _newest(current: str | None, values: Any) -> str | None:
    best = current
    best_at = mapping.timestamp(current) if current else None
    for value in values:
        at = mapping.timestamp(value)
        if at is not None and (best_at is None or at > best_at):
            best, best_at = value, at
    return best
