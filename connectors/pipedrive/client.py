"""One Pipedrive company over HTTP: settings, the error envelope, the rate budget, and the
metadata every capability reads (home currency, custom field names, pipelines and stages,
currencies). The connector's streams (connector.py), webhooks (notifications.py) and goal
push (goals.py) build on it. Every behaviour cites docs/vendors/pipedrive.md (§n).
"""

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import ApiClient, SourceInfo, StageRecord
from connectors.endpoints import Endpoint
from connectors.http import json_body, raise_for_transient
from connectors.pipedrive import mapping
from connectors.pipedrive.auth import ApiTokenAuth, BearerAuth, OAuthTokens
from connectors.pipedrive.wire import (
    ACTIVITY_TYPES_PATH,
    BURST_WINDOW,
    CUSTOM_FIELD_KEY,
    DAILY_LEFT,
    DEFAULT_OAUTH_URL,
    MAX_LIMIT,
    TEAMS_PATH,
    TOKEN_PATH,
    V1,
    VENDOR_HOSTS,
    WRITES_LEFT,
    deal_page,
)
from core.errors import AuthError, ConfigError, RateLimited, SourceError, TransientError

log = logging.getLogger("crmsync.pipedrive")
META_TTL = 300.0  # seconds field names, stages and currencies are reused between jobs


class PipedriveConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"company_domain", "api_url",
                                                           "oauth_url"})
    """Keys that decide where the secrets go: changing one drops the stored secrets."""

    company_domain: str | None = Field(
        default=None, pattern=r"^[a-z0-9][a-z0-9-]{0,62}$",
        description="The company's subdomain: `acme` for https://acme.pipedrive.com "
                    "(API-token connections, §1)")
    api_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="Overrides the company's API host (sandboxes, proxies)")
    oauth_url: str | None = Field(
        default=None, pattern=r"^https?://[^\s/]+(:\d+)?/?$",
        description="Overrides https://oauth.pipedrive.com (sandboxes)")
    home_currency: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$",
        description="The connection's home currency; default: the authorized user's "
                    "default_currency (§8)")
    burst_limit: int = Field(
        default=20, ge=1, le=1000,
        description="Requests per 2 seconds the plan allows this token (§6): 20 is the "
                    "lowest API-token plan")
    page_limit: int = Field(default=MAX_LIMIT, ge=1, le=MAX_LIMIT,
                            description="Records per page (§2: at most 500, the default)")
    daily_reserve: int = Field(
        default=0, ge=0,
        description="Tokens of the company's daily API budget (§6) left for its other "
                    "integrations: every crmsync process of the connection stops calling "
                    "once Pipedrive reports no more than this many left")
    goal_pipeline_ids: list[int] | None = Field(
        default=None, description="Pipelines a pushed goal tracks (§7); default: all")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)

    @property
    def token_url(self) -> str:
        return f"{(self.oauth_url or DEFAULT_OAUTH_URL).rstrip('/')}{TOKEN_PATH}"

    @property
    def api_base(self) -> str | None:
        """The API host for API-token calls (OAuth calls use the token's api_domain)."""
        if self.api_url:
            return self.api_url.rstrip("/")
        return f"https://{self.company_domain}.pipedrive.com" if self.company_domain else None

    def deal_url(self, remote_id: str) -> str | None:
        """§13: the deal's page on the company domain (API-token connections, or OAuth ones
        given company_domain); None when the domain is unknown."""
        base = self.api_base
        return deal_page(base, remote_id) if base and remote_id.isdigit() else None

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        found = [Endpoint(self.token_url, VENDOR_HOSTS)]
        if self.api_base:
            found.append(Endpoint(self.api_base, VENDOR_HOSTS))
        return found


class PipedriveSecrets(BaseModel):
    """Either `api_token`, or an OAuth app's client_id, client_secret and refresh_token."""

    model_config = ConfigDict(extra="forbid")

    api_token: SecretStr | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> "PipedriveSecrets":
        oauth = [self.client_id, self.client_secret, self.refresh_token]
        given = [s is not None and bool(s.get_secret_value().strip()) for s in oauth]
        token = self.api_token is not None and bool(self.api_token.get_secret_value().strip())
        if token and any(given):
            raise ValueError("give api_token, or client_id, client_secret and refresh_token, "
                             "not both")
        if not token and not all(given):
            raise ValueError("give api_token, or all of client_id, client_secret and "
                             "refresh_token (OAuth)")
        return self


class PipedriveError(SourceError):
    """An error answer (§9) a caller may branch on (`status`, e.g. 404 for a goal gone)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class BudgetExhausted(SourceError):
    """§6: the company's daily token budget is used up (or down to the reserve), or the
    user's POST/PUT fair-use allowance of the day."""


DAILY_STOP = ("Pipedrive's daily API token budget of the company is used up{detail}; what "
              "was synced is kept and the next sync resumes after the budget resets at "
              "midnight, or after buying more (docs/pipedrive.md)")
WRITES_STOP = ("Pipedrive's fair-use allowance of POST/PUT requests of this API token's user "
               "is used up for today (x-daily-requests-left: 0, §6); goals and webhooks are "
               "written again tomorrow (docs/pipedrive.md)")


@dataclass
class RateState:
    """What the last answer's headers said (§6): the 2-second window, the daily token
    budget left and the POST/PUT fair-use requests left (None: not sent)."""

    pause_until: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    daily_left: int | None = None
    writes_left: int | None = None
    retry_after: float | None = None  # of a 429 that ended the day's budget


def parse_response(response: httpx.Response, rate: RateState | None = None) -> Any:
    """Classify an answer (§9, §6); messages never carry credentials."""
    headers = response.headers
    if rate is not None:
        rate.headers = {k: v for k, v in headers.items() if k.startswith("x-")}
        if headers.get("x-ratelimit-remaining") == "0":  # wait out the window (§6)
            reset = _seconds(headers.get("x-ratelimit-reset")) or BURST_WINDOW
            rate.pause_until = asyncio.get_running_loop().time() + min(reset, 60.0)
        rate.daily_left = _count(headers.get(DAILY_LEFT))
        rate.writes_left = _count(headers.get(WRITES_LEFT))
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 429:
        if headers.get(DAILY_LEFT) == "0":
            if rate is not None:
                rate.retry_after = _seconds(headers.get("Retry-After"))
            raise BudgetExhausted(DAILY_STOP.format(detail=f" (HTTP 429 on {where})"))
        if "Retry-After" not in headers:  # the window's reset is the wait (§6)
            raise RateLimited(f"HTTP 429 from Pipedrive on {where}",
                              _seconds(headers.get("x-ratelimit-reset")) or BURST_WINDOW)
    raise_for_transient(response)
    body = _body(response)
    if 200 <= response.status_code < 300 and body.get("success", True) is not False:
        return body
    message = str(body.get("error") or body.get("message") or f"HTTP {response.status_code}")
    text = f"Pipedrive {response.status_code} on {where}: {message}"
    if response.status_code == 401:
        raise AuthError(f"Pipedrive refused the credentials (HTTP 401: {message}); update the "
                        "connection's api_token, or authorize the OAuth app again")
    if response.status_code == 403:
        if not body:  # §6: the HTML page served to integrations that ignore 429s
            raise RateLimited(f"Pipedrive blocked the calls (HTTP 403 page on {where}) after "
                              "repeated 429s; waiting", 60.0)
        raise ConfigError(f"{text}. The token's user or the OAuth app lacks a permission or "
                          "scope this needs (deals:read, users:read, goals:full, "
                          "webhooks:full), or the plan lacks the feature")
    if response.status_code == 410:
        raise ConfigError(f"{text}. Pipedrive no longer serves this endpoint")
    raise PipedriveError(response.status_code, text)


def _body(response: httpx.Response) -> dict[str, Any]:
    if response.status_code == 403 and "json" not in response.headers.get("content-type", ""):
        return {}
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError(f"Pipedrive sent an unexpected body on {response.request.url.path}")
    return body


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _count(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None


def until_midnight_utc() -> float:
    """Seconds to the next UTC midnight: when a day's budget resets (guess: Pipedrive says
    "midnight" in its server's time zone, §6)."""
    return float(86_400 - int(time.time()) % 86_400) or 1.0


@dataclass(frozen=True)
class Meta:
    """The company's metadata, read once per META_TTL (field names, pipelines, stages)."""

    deal_fields: dict[str, str]  # custom field hash -> name
    org_fields: dict[str, str]
    pipelines: dict[str, str]  # pipeline id -> name
    stages: dict[str, StageRecord]  # stage id -> record
    owners: dict[str, tuple[str | None, str]]  # user id -> (email, name), for record owners
    unknown: frozenset[str] = frozenset()  # unknown() keys still unknown when this was read
    reused: bool = False  # read by an earlier job (META_TTL)

    def unknown_in(self, rows: list[dict[str, Any]]) -> frozenset[str]:
        """The stages and owners `rows` refer to ("stage:<id>", "user:<id>") that this
        metadata does not know (added in Pipedrive since it was read), but for those it did
        not know when it was read."""
        keys = {f"stage:{raw['stage_id']}" for raw in rows if raw.get("stage_id") is not None}
        keys |= {f"user:{owner}" for raw in rows
                 if (owner := raw.get("owner_id") or raw.get("user_id")) is not None}
        return frozenset(k for k in keys if not self.knows(k)) - self.unknown

    def knows(self, key: str) -> bool:
        kind, _, remote_id = key.partition(":")
        return remote_id in (self.stages if kind == "stage" else self.owners)


class PipedriveClient:
    """Calls to one company with the connection's credentials, rate budget and retries,
    and its metadata."""

    def __init__(self, config: PipedriveConfig, secrets: PipedriveSecrets,
                 api: ApiClient) -> None:
        self.config = config
        self.api = api
        self.rate = RateState()
        self.home_currency: str | None = config.home_currency
        self.organization: str | None = None
        self.oauth: OAuthTokens | None = None
        self._api_token: ApiTokenAuth | None = None
        if secrets.api_token is not None:
            token = secrets.api_token.get_secret_value()
            if config.api_base is None:
                raise ConfigError("an API-token connection needs company_domain (acme for "
                                  "https://acme.pipedrive.com) or api_url")
            self._api_token = ApiTokenAuth(token)
            identity = f"{config.api_base}\0{token}"
        else:
            assert secrets.client_id and secrets.client_secret and secrets.refresh_token
            self.oauth = OAuthTokens(config.token_url, secrets.client_id.get_secret_value(),
                                     secrets.client_secret.get_secret_value(),
                                     secrets.refresh_token.get_secret_value(), api.limits,
                                     api.endpoints)
            identity = self.oauth.key
        self.key = "pipedrive:" + hashlib.sha256(identity.encode()).hexdigest()[:32]
        self._meta: asyncio.Task[Meta] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    # -- HTTP -----------------------------------------------------------------

    async def _target(self) -> tuple[str, httpx.Auth]:
        if self._api_token is not None:
            assert self.config.api_base is not None
            await self.api.endpoints.acheck(self.config.api_base, VENDOR_HOSTS)
            return self.config.api_base, self._api_token
        assert self.oauth is not None
        token = await self.oauth.get(self.api)
        return token.api_domain, BearerAuth(self.oauth, self.api, token)

    async def call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One call to {host}{path} within the budgets of §6, shared by every process of the
        connection through the job context's limits: the 2-second window, the company's
        daily token budget (down to `daily_reserve`) and, for POST/PUT with an API token,
        the user's fair-use allowance of the day."""
        await self._check_budget(method)
        base, auth = await self._target()
        try:
            result: dict[str, Any] = await self.api.send(
                method, f"{base}{path}", lambda r: parse_response(r, self.rate), auth=auth,
                before=self._burst_slot, **kwargs)
        except BudgetExhausted:
            await self._share_budget(0, self.rate.retry_after)
            raise
        await self._share_budget(self.rate.daily_left, None)
        return result

    async def _burst_slot(self) -> None:
        """Before every attempt of a call, its retries too (Pipedrive counts each request
        against the 2-second window, §6): a slot of the window, then any pause a 429's
        Retry-After asked for."""
        await self.api.limits.take(f"{self.key}|burst", self.config.burst_limit, BURST_WINDOW)
        wait = self.rate.pause_until - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    # -- the day's budgets, shared by every process (§6) ----------------------------------
    # Kept with the SharedLimits' expiring values (in this process, or in Redis for every
    # process, encrypted like tokens): {"daily": stopped, "writes": stopped}, until the
    # budget resets. Pipedrive's own counters (the headers) are the truth; crmsync only
    # remembers that one of its processes saw them run out, so the others stop at once
    # instead of spending calls on 429s.

    @property
    def _budget_key(self) -> str:
        return f"{self.key}|day"

    async def _check_budget(self, method: str) -> None:
        stopped = await self.api.limits.get_token(self._budget_key) or {}
        if stopped.get("daily"):
            reserve = self.config.daily_reserve
            raise BudgetExhausted(DAILY_STOP.format(
                detail=f" (down to the reserve of {reserve} tokens)" if reserve else ""))
        if stopped.get("writes") and method in ("POST", "PUT") and self._api_token is not None:
            raise BudgetExhausted(WRITES_STOP)

    async def _share_budget(self, daily_left: int | None, retry_after: float | None) -> None:
        """Remember for every process that the day's budget or write allowance ran out."""
        writes_out = self._api_token is not None and self.rate.writes_left == 0
        daily_out = daily_left is not None and daily_left <= self.config.daily_reserve
        if not (daily_out or writes_out):
            return
        stopped = await self.api.limits.get_token(self._budget_key) or {}
        stopped = {**stopped, **({"daily": True} if daily_out else {}),
                   **({"writes": True} if writes_out else {})}
        await self.api.limits.put_token(self._budget_key, stopped,
                                        retry_after or until_midnight_utc())
        log.warning("Pipedrive budget of the day used up: %s", ", ".join(sorted(stopped)))

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.call("GET", path, params=params)

    async def v2_pages(self, path: str, params: dict[str, Any]
                       ) -> AsyncIterator[list[dict[str, Any]]]:
        """§2: a v2 list, `limit` 500, following additional_data.next_cursor until null."""
        cursor: str | None = None
        while True:
            page_params = {**params, "limit": self.config.page_limit}
            if cursor:
                page_params["cursor"] = cursor
            body = await self.get(path, page_params)
            rows = body.get("data") or []
            if not isinstance(rows, list):
                raise SourceError(f"Pipedrive {path} answered data that is not a list")
            yield rows
            cursor = (body.get("additional_data") or {}).get("next_cursor")
            if not cursor:
                return

    async def v1_all(self, path: str) -> list[dict[str, Any]]:
        """§2: a v1 list, start/limit 500, until more_items_in_collection is false."""
        rows: list[dict[str, Any]] = []
        start = 0
        while True:
            body = await self.get(f"{V1}{path}", {"start": start,
                                                  "limit": self.config.page_limit})
            rows += [r for r in body.get("data") or [] if isinstance(r, dict)]
            pagination = (body.get("additional_data") or {}).get("pagination") or {}
            if not pagination.get("more_items_in_collection"):
                return rows
            start = int(pagination.get("next_start") or start + self.config.page_limit)

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate as the token's user; the home currency is the configured one or the
        user's default_currency (§8)."""
        me = (await self.get(f"{V1}/users/me")).get("data") or {}
        self.home_currency = self.config.home_currency or me.get("default_currency")
        self.organization = me.get("company_name")
        return SourceInfo(home_currency=self.home_currency, organization=self.organization)

    def meta(self) -> "asyncio.Task[Meta]":
        if self._meta is None:
            self._meta = asyncio.ensure_future(self._cached_meta())
        return self._meta

    async def meta_for(self, rows: list[dict[str, Any]]) -> Meta:
        """meta(), read again first when it came from an earlier job and `rows` refer to a
        stage or user it does not know: a stage or user added since would otherwise leave
        the records without their stage's name or their owner's email (so without their
        person) until they change again. Ids still unknown then (a user gone from the users
        list) are remembered with it and make no later job read it again."""
        task = self.meta()
        meta = await task
        if meta.reused and (unknown := meta.unknown_in(rows)):
            if self._meta is task:  # not read again by another stream meanwhile
                self._meta = asyncio.ensure_future(self._cached_meta(unknown))
            meta = await self.meta()
        return meta

    async def _cached_meta(self, unknown: frozenset[str] | None = None) -> Meta:
        """The memo's metadata (unless `unknown`: read it again because of those ids)."""
        memo_key = f"{self.key}|meta"
        cached = None if unknown else self.api.limits.memo.get(memo_key)
        if isinstance(cached, Meta):
            return replace(cached, reused=True)
        meta = await self._read_meta()
        if unknown:
            meta = replace(meta, unknown=frozenset(k for k in unknown if not meta.knows(k)))
        self.api.limits.memo.put(memo_key, meta, META_TTL)
        return meta

    async def _read_meta(self) -> Meta:
        deal_fields = _custom_names(await self.v1_all("/dealFields"))
        org_fields = _custom_names(await self.v1_all("/organizationFields"))
        pipelines = {str(p["id"]): str(p.get("name") or p["id"])
                     async for page in self.v2_pages("/api/v2/pipelines", {})
                     for p in page if not p.get("is_deleted")}
        stages: dict[str, StageRecord] = {}
        async for page in self.v2_pages("/api/v2/stages", {}):
            for raw in page:
                if not raw.get("is_deleted"):
                    record = mapping.stage(raw, pipelines)
                    stages[record.remote_id] = record
        owners = {str(u["id"]): (u.get("email"), str(u.get("name") or u["id"]))
                  for u in await self.v1_all("/users") if u.get("id") is not None}
        return Meta(deal_fields, org_fields, pipelines, stages, owners)

    async def teams(self) -> dict[str, str]:
        """§10: user id -> team name from /v1/legacyTeams; {} when the plan has no teams
        (Pipedrive answers 403 then, which must not fail a sync)."""
        try:
            body = await self.get(f"{V1}{TEAMS_PATH}")
        except ConfigError as exc:
            log.info("Pipedrive teams unavailable, users synced without a team: %s", exc)
            return {}
        rows = body.get("data") or []
        return mapping.team_of_users([r for r in rows if isinstance(r, dict)])

    async def custom_activity_types(self) -> frozenset[str]:
        """§12: the key_strings of the company's custom activity types (/v1/activityTypes)."""
        memo_key = f"{self.key}|activity-types"
        cached = self.api.limits.memo.get(memo_key)
        if isinstance(cached, frozenset):
            return cached
        rows = (await self.get(f"{V1}{ACTIVITY_TYPES_PATH}")).get("data") or []
        found = frozenset(str(t["key_string"]) for t in rows
                          if isinstance(t, dict) and t.get("key_string")
                          and t.get("is_custom_flag"))
        self.api.limits.memo.put(memo_key, found, META_TTL)
        return found

    async def currency_ids(self) -> dict[str, int]:
        """§8: currency code -> id (goals refer to currencies by id, §7)."""
        memo_key = f"{self.key}|currencies"
        cached = self.api.limits.memo.get(memo_key)
        if isinstance(cached, dict):
            return cached
        found = {str(c["code"]).upper(): int(c["id"]) for c in await self.v1_all("/currencies")
                 if c.get("code") and c.get("id") is not None}
        self.api.limits.memo.put(memo_key, found, META_TTL)
        return found

    async def map_deal(self, raw: dict[str, Any]) -> Any:
        if self.home_currency is None:
            await self.check()
        meta = await self.meta_for([raw])
        return mapping.deal(raw, meta, self.home_currency)


def _custom_names(fields: list[dict[str, Any]]) -> dict[str, str]:
    """§2: the hash key -> name of every custom field."""
    return {str(f["key"]): str(f.get("name") or f["key"]) for f in fields
            if f.get("key") and CUSTOM_FIELD_KEY.match(str(f["key"]))}
