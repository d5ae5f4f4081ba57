"""One HubSpot account over HTTP: settings, the error envelope, the rate budget, and the
metadata every capability reads (company currency and rates, pipelines). The connector's
streams (connector.py), webhooks (notifications.py) and goal push (goals.py) build on it.
Every behaviour cites docs/vendors/hubspot.md (§n)."""

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.base import ApiClient, SourceInfo, StageRecord, UserRecord
from connectors.endpoints import Endpoint
from connectors.http import json_body, retry_after_seconds
from connectors.hubspot import mapping
from connectors.hubspot.auth import OAuthTokens, Token
from connectors.hubspot.wire import (
    APP_URL,
    ASSOCIATION_BATCH_LIMIT,
    ASSOCIATIONS,
    BASE_URL,
    BATCH_LIMIT,
    BURST_WINDOW,
    COMPANY_CURRENCY_PATH,
    DEAL_TYPE_ID,
    EXCHANGE_RATES_PATH,
    HISTORY_BATCH_LIMIT,
    HOSTS,
    LEGACY_TOKEN_PATH,
    OBJECTS,
    OWNERS_LIMIT,
    OWNERS_PATH,
    PIPELINES_PATH,
    SEARCH_PER_SECOND,
    TOKEN_PATH,
)
from core.errors import AuthError, ConfigError, RateLimited, SourceError, TransientError

log = logging.getLogger("crmsync.hubspot")

SUCCESS = (200, 201, 207)  # §2, §9: 207 holds per-element errors the caller reads
LIMIT_MEMO_TTL = 3600.0  # seconds an observed X-HubSpot-RateLimit-Max is trusted


@dataclass
class RateBudget:
    """A sliding-window budget kept in the ApiClient's SharedLimits (per process, or with
    Redis for every process of the account together)."""

    calls: int
    window: float


SEARCH_RATE = RateBudget(SEARCH_PER_SECOND, 1.0)  # §3: 5 searches a second per account
SEARCHING_SYNCS = 2
"""Incremental syncs of one account run at a time (connectors.base.SharedAccount): each
spends about 6 of the account's 5 searches a second (§3), so two keep the budget busy
(one's other calls overlap the other's searches) and the rest wait in the queue, not in a
worker's slot. Full syncs list records (no search) and are not limited."""
HEADROOM = 0.9  # §7: use 90% of the burst limit, leaving room for other integrations


class HubSpotConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    credential_keys: ClassVar[frozenset[str]] = frozenset({"base_url"})
    """Keys that decide where the secrets go: changing one drops the stored secrets."""

    base_url: str = Field(default=BASE_URL, pattern=r"^https?://[^\s/]+(:\d+)?/?$",
                          description="https://api.hubapi.com (§1); a sandbox or proxy")
    redirect_uri: str | None = Field(default=None, pattern=r"^https?://\S+$",
                                     description="the OAuth app's redirect URI (§1)")
    burst_limit: int = Field(default=100, ge=10, le=1000,
                             description="requests per 10 s of the account's tier (§7)")
    goal_template_id: str | None = Field(
        default=None, pattern=r"^[0-9]{1,20}$",
        description="a goal_targets id whose template fields new goals copy (§9)")
    portal_id: int | None = Field(
        default=None, ge=1, le=10**12,
        description="the account's Hub ID (portal id), for links to deals in HubSpot (§12); "
                    "without it the dashboard shows no links")
    app_url: str = Field(default=APP_URL, pattern=r"^https://[^\s/]+/?$",
                         description="the web app's address (§12): https://app.hubspot.com, "
                                     "https://app-eu1.hubspot.com for EU accounts")
    sync_interval_minutes: int = Field(default=15, ge=1, le=1440)

    @property
    def api_base(self) -> str:
        return self.base_url.rstrip("/")

    def deal_url(self, remote_id: str) -> str | None:
        """The deal's record page in HubSpot's web app (§12), None without the portal id;
        with another `base_url` (a sandbox, a proxy) on that server."""
        if self.portal_id is None:
            return None
        base = self.app_url.rstrip("/") if self.api_base == BASE_URL else self.api_base
        record = quote(remote_id, safe="")
        return f"{base}/contacts/{self.portal_id}/record/{DEAL_TYPE_ID}/{record}"

    def credential_endpoints(self) -> list[Endpoint]:
        """The URLs the secrets are sent to (checked when the connection is saved)."""
        return [Endpoint(self.api_base + TOKEN_PATH, HOSTS),
                Endpoint(self.api_base + LEGACY_TOKEN_PATH, HOSTS),
                Endpoint(self.api_base + OBJECTS, HOSTS)]


class HubSpotSecrets(BaseModel):
    """A static token (private app), or OAuth (client id, secret, refresh token). The
    client secret also verifies webhooks (§8)."""

    model_config = ConfigDict(extra="forbid")

    access_token: SecretStr | None = None
    client_id: SecretStr | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None

    @model_validator(mode="after")
    def _one_way_in(self) -> "HubSpotSecrets":
        given = {n for n in ("access_token", "client_id", "client_secret", "refresh_token")
                 if getattr(self, n) is not None}
        blank = [n for n in given if not getattr(self, n).get_secret_value().strip()]
        if blank:
            raise ValueError(f"{', '.join(sorted(blank))} must not be blank")
        oauth = {"client_id", "client_secret", "refresh_token"}
        if "access_token" not in given and not oauth <= given:
            raise ValueError("give access_token (a private-app or static token), or "
                             "client_id, client_secret and refresh_token (OAuth)")
        return self


class HubSpotError(SourceError):
    """An error envelope (§7), kept so callers can branch on the status and category."""

    def __init__(self, message: str, status: int, category: str | None) -> None:
        super().__init__(message)
        self.status, self.category = status, category


class DailyLimitReached(SourceError):
    """§7 429 policyName DAILY: stop the run; the next sync resumes from its cursor."""


class _Unauthorized(SourceError):
    pass


class HubSpotClient:
    """Calls to one account with its token, rate budget and retries, and its metadata
    (company currency and rates, pipelines), read once per client."""

    def __init__(self, config: HubSpotConfig, secrets: HubSpotSecrets, api: ApiClient) -> None:
        self.config, self.api = config, api
        self.static = secrets.access_token.get_secret_value() if secrets.access_token else None
        self.oauth: OAuthTokens | None = None
        if self.static is None:
            assert secrets.client_id and secrets.client_secret and secrets.refresh_token
            self.oauth = OAuthTokens(config.api_base, secrets.client_id.get_secret_value(),
                                     secrets.client_secret.get_secret_value(),
                                     secrets.refresh_token.get_secret_value(),
                                     config.redirect_uri, api.limits, api.endpoints)
        identity = self.static or (self.oauth.key if self.oauth else "")
        self.key = "hubspot:" + hashlib.sha256(
            f"{config.api_base}\0{identity}".encode()).hexdigest()[:32]
        self._checked_host = False
        self._money: asyncio.Task[mapping.Money] | None = None
        self._stages: asyncio.Task[list[StageRecord]] | None = None
        self._owners: asyncio.Task[dict[str, UserRecord]] | None = None

    @property
    def api_calls(self) -> int:
        return self.api.api_calls

    @property
    def account_key(self) -> str:
        """The account whose budgets this client's calls spend (connectors.base.SharedAccount)."""
        return self.key

    def account_turns(self, incremental: bool) -> int:
        return SEARCHING_SYNCS if incremental else 0

    # -- HTTP -----------------------------------------------------------------

    async def _slots(self, searches: list[str] | None) -> None:
        """Before every attempt of a call, its retries too (HubSpot counts each request):
        a slot of the burst window, and for a search one of the search window, its place
        noted in `searches` to be dated when the call ends (§3: a window of exactly the
        vendor's 5 a second, dated when sent, drew 429s whenever an earlier search reached
        HubSpot later than the one a second after it)."""
        await self.api.limits.take(f"{self.key}:burst", self.burst_budget(), BURST_WINDOW)
        if searches is not None:
            searches.append(await self.api.limits.take(f"{self.key}:search",
                                                       SEARCH_RATE.calls, SEARCH_RATE.window))

    async def call(self, method: str, path: str, *, search: bool = False, **kwargs: Any) -> Any:
        """One API call within the burst (and search) budget; a refused OAuth token is
        dropped and the call retried once with a fresh one (§1)."""
        if not self._checked_host:  # before a token goes there
            await self.api.endpoints.acheck(self.config.api_base, HOSTS)
            self._checked_host = True
        for attempt in (1, 2):
            if self.oauth is not None:
                token = (await self.oauth.get(self.api)).access_token
            else:
                token = self.static or ""
            searches: list[str] | None = [] if search else None
            try:
                return await self.api.send(method, self.config.api_base + path, self.parse,
                                           headers={"Authorization": f"Bearer {token}"},
                                           before=partial(self._slots, searches), **kwargs)
            except _Unauthorized as exc:
                if self.oauth is None or attempt == 2:
                    raise AuthError(f"HubSpot refused the {'OAuth' if self.oauth else 'static'}"
                                    f" token ({exc}): reconnect the app or update the "
                                    "connection's access_token") from None
                await self.oauth.forget(Token(token))
            finally:
                if searches:
                    await self.api.limits.restamp(f"{self.key}:search", SEARCH_RATE.window,
                                                  searches)
        raise SourceError("unreachable")  # pragma: no cover

    def burst_budget(self) -> int:
        """§7: the tier's burst limit (the configured one, or the X-HubSpot-RateLimit-Max
        seen last, whichever is lower), less headroom."""
        seen = self.api.limits.memo.get(f"{self.key}:max")
        limit = min(self.config.burst_limit, seen) if isinstance(seen, int) else \
            self.config.burst_limit
        return max(1, int(limit * HEADROOM))

    def parse(self, response: httpx.Response) -> Any:
        """Classify an answer (§7) and note the rate-limit headers it carries."""
        seen = response.headers.get("X-HubSpot-RateLimit-Max", "")
        if seen.isdigit() and int(seen) > 0:
            self.api.limits.memo.put(f"{self.key}:max", int(seen), LIMIT_MEMO_TTL)
        return parse_response(response)

    # -- metadata -------------------------------------------------------------

    async def check(self) -> SourceInfo:
        """Authenticate and read the company currency (§6)."""
        money = await self.money()
        return SourceInfo(home_currency=money.home)

    def money(self) -> "asyncio.Task[mapping.Money]":
        if self._money is None:
            self._money = asyncio.ensure_future(self._read_money())
        return self._money

    async def _read_money(self) -> mapping.Money:
        """§6: the company currency and the current rate of every other currency."""
        home = str((await self.call("GET", COMPANY_CURRENCY_PATH) or {}).get("currencyCode")
                   or "USD")
        body = await self.call("GET", EXCHANGE_RATES_PATH) or {}
        rates: dict[str, Decimal] = {}
        for row in body.get("results") or []:
            if row.get("toCurrencyCode") in (None, home) and row.get("fromCurrencyCode"):
                rate = mapping.decimal(row.get("conversionRate"))
                if rate:
                    rates[str(row["fromCurrencyCode"])] = rate
        return mapping.Money(home, rates)

    def stages(self) -> "asyncio.Task[list[StageRecord]]":
        if self._stages is None:
            self._stages = asyncio.ensure_future(self._read_stages())
        return self._stages

    async def _read_stages(self) -> list[StageRecord]:
        """§5: every stage of every deal pipeline, typed by its metadata."""
        body = await self.call("GET", PIPELINES_PATH) or {}
        return [mapping.stage(p, s) for p in body.get("results") or []
                for s in p.get("stages") or [] if not s.get("archived")]

    def owners(self) -> "asyncio.Task[dict[str, UserRecord]]":
        """Every owner by owner id (§4), for the owner email and name of records."""
        if self._owners is None:
            self._owners = asyncio.ensure_future(self._read_owners())
        return self._owners

    async def _read_owners(self) -> dict[str, UserRecord]:
        """§4: active owners, then archived (deactivated) ones, 500 a page."""
        found: dict[str, UserRecord] = {}
        for archived in ("false", "true"):
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": OWNERS_LIMIT, "archived": archived}
                if after:
                    params["after"] = after
                body = await self.call("GET", OWNERS_PATH, params=params) or {}
                after = ((body.get("paging") or {}).get("next") or {}).get("after")
                found.update((u.remote_id, u) for u in map(mapping.user,
                                                            body.get("results") or []))
                if not after:
                    break
        return found

    # -- records --------------------------------------------------------------

    async def batch_read(self, object_type: str, ids: list[str], properties: tuple[str, ...],
                         history: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """§2: records by id, 100 a call (50 when asking for the `history` of properties,
        §11); ids not found are simply missing."""
        size = HISTORY_BATCH_LIMIT if history else BATCH_LIMIT
        found: list[dict[str, Any]] = []
        for start in range(0, len(ids), size):
            request: dict[str, Any] = {"inputs": [{"id": i} for i in ids[start:start + size]],
                                       "properties": list(properties)}
            if history:
                request["propertiesWithHistory"] = list(history)
            body = await self.call("POST", f"{OBJECTS}/{object_type}/batch/read", json=request)
            found += [r for r in (body or {}).get("results") or [] if isinstance(r, dict)]
        return found

    async def associated(self, from_type: str, to_type: str, ids: list[str]) -> dict[str, str]:
        """§2: each record's first associated `to_type` record (the v4 association batch
        read, up to 1,000 ids a call: a search page's 200 in one); records without one are
        missing."""
        out: dict[str, str] = {}
        path = ASSOCIATIONS.format(from_type=from_type, to_type=to_type)
        for start in range(0, len(ids), ASSOCIATION_BATCH_LIMIT):
            chunk = ids[start:start + ASSOCIATION_BATCH_LIMIT]
            body = await self.call("POST", path, json={"inputs": [{"id": i} for i in chunk]})
            for row in (body or {}).get("results") or []:
                targets = row.get("to") or []
                if targets:
                    out[str(row["from"]["id"])] = str(targets[0]["toObjectId"])
        return out


def parse_response(response: httpx.Response) -> Any:
    """§7: 429 by policy (DAILY stops the run), 5xx transient, 401 re-auth, 403 scopes,
    other errors with their category; 204 is None."""
    where = f"{response.request.method} {response.request.url.path}"
    if response.status_code == 429:
        body = _safe_json(response)
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            raise DailyLimitReached(
                f"HubSpot's daily API limit is used up ({where}): the data synced so far is "
                "kept and the next sync resumes where this one stopped once the limit resets "
                "(midnight in the account's time zone)")
        raise RateLimited(f"HubSpot rate limit {policy or 'HTTP 429'} on {where}",
                          retry_after_seconds(response) or 1.0)
    if response.status_code >= 500:
        raise TransientError(f"HubSpot answered HTTP {response.status_code} on {where}",
                             retry_after_seconds(response))
    if response.status_code == 204:
        return None
    body = json_body(response)
    if response.status_code in SUCCESS:
        return body
    error = body if isinstance(body, dict) else {}
    category = error.get("category")
    text = f"HubSpot {response.status_code} {category or ''} on {where}: " \
           f"{error.get('message') or ''}".replace("  ", " ")
    if response.status_code == 401:
        raise _Unauthorized(str(category or "HTTP 401"))
    if response.status_code == 403:
        raise ConfigError(f"{text}. Give the app the scopes docs/hubspot.md lists and "
                          "reinstall it")
    raise HubSpotError(text, response.status_code, category)


def _safe_json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
