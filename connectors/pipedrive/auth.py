"""Pipedrive credentials: the API token, or OAuth 2 with the refresh-token grant
(docs/vendors/pipedrive.md §1).

- API token: every call carries `x-api-token` (a header, never the `api_token` query
  parameter, so the token stays out of URLs and logs) and goes to the company domain.
- OAuth: `POST {oauth}/oauth/token` with the client in HTTP Basic and
  `grant_type=refresh_token`; the answer's `api_domain` is where calls go, with
  `Authorization: Bearer`. The access token is cached in the job context's SharedLimits
  (per process, or with Redis for every process) under a hash of the token URL, client and
  refresh token; one refresh runs at a time; a 401 drops the token, refreshes once and
  retries the call.
"""

import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, SharedLimits, json_body
from connectors.pipedrive.wire import VENDOR_HOSTS, basic_header
from core.errors import AuthError, TransientError

EXPIRY_MARGIN = 60.0  # seconds before expiry at which a token is refreshed


@dataclass(frozen=True)
class Token:
    access_token: str
    api_domain: str
    lifetime: float = 0.0  # seconds it stays usable (cache TTL)

    def dump(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "api_domain": self.api_domain}


def parse_token(response: httpx.Response) -> Token:
    """A token answer (§1), or AuthError naming what to fix (never echoing a secret)."""
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(f"Pipedrive OAuth server answered HTTP {response.status_code}")
    body = json_body(response)
    if not isinstance(body, dict) or response.status_code != 200 or \
            not body.get("access_token") or not body.get("api_domain"):
        error = body.get("error") if isinstance(body, dict) else None
        hint = {"invalid_client": "check client_id and client_secret",
                "invalid_grant": "the refresh token was revoked or expired; authorize the app "
                                 "again and update the connection's refresh_token"}.get(
            str(error), "check the OAuth app's credentials")
        raise AuthError(f"Pipedrive refused the token request (HTTP {response.status_code}"
                        f"{f', {error}' if error else ''}): {hint}")
    ttl = float(body.get("expires_in") or 3600)
    margin = EXPIRY_MARGIN if ttl > 2 * EXPIRY_MARGIN else ttl / 2
    return Token(str(body["access_token"]), str(body["api_domain"]).rstrip("/"), ttl - margin)


class OAuthTokens:
    """The connection's access token (§1), cached in `limits`, refreshed one at a time."""

    def __init__(self, token_url: str, client_id: str, client_secret: str, refresh_token: str,
                 limits: SharedLimits, endpoints: EndpointPolicy) -> None:
        self.token_url = token_url
        self.limits, self.endpoints = limits, endpoints
        self._basic = basic_header(client_id, client_secret)
        self._form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        digest = hashlib.sha256(f"{token_url}\0{client_id}\0{refresh_token}".encode())
        self.key = f"pipedrive:{digest.hexdigest()}"

    async def current(self) -> Token | None:
        value = await self.limits.get_token(self.key)
        try:
            return Token(str(value["access_token"]), str(value["api_domain"])) if value else None
        except KeyError:
            return None

    async def get(self, api: ApiClient) -> Token:
        """The cached token, or a fresh one; its api_domain is checked before use."""
        token = await self.current()
        if token is None:
            async with self.limits.lock(self.key):
                token = await self.current()
                if token is None:
                    token = await self._refresh(api)
        await self.endpoints.acheck(token.api_domain, VENDOR_HOSTS)
        return token

    async def renew(self, api: ApiClient, stale: Token) -> Token:
        """After a 401: drop `stale` and refresh, unless another task already did."""
        async with self.limits.lock(self.key):
            current = await self.current()
            if current is not None and current.access_token != stale.access_token:
                return current
            await self.limits.drop_token(self.key, stale.dump())
            return await self._refresh(api)

    async def _refresh(self, api: ApiClient) -> Token:
        await self.endpoints.acheck(self.token_url, VENDOR_HOSTS)
        # Form body and Basic header: no secret ever goes into a URL (§1).
        token = await api.send("POST", self.token_url, parse_token, capped=False,
                               data=self._form, headers={"Authorization": self._basic})
        await self.limits.put_token(self.key, token.dump(), token.lifetime)
        return token


class ApiTokenAuth(httpx.Auth):
    """§1: the API token in the `x-api-token` header."""

    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["x-api-token"] = self._token
        yield request


class BearerAuth(httpx.Auth):
    """§1: an OAuth access token; a 401 renews it once and retries the call."""

    def __init__(self, tokens: OAuthTokens, api: ApiClient, token: Token) -> None:
        self.tokens, self.api, self.token = tokens, api, token

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["Authorization"] = f"Bearer {self.token.access_token}"
        response = yield request
        if response.status_code == 401:
            await response.aread()
            fresh = await self.tokens.renew(self.api, self.token)
            if fresh.api_domain != self.token.api_domain:
                raise AuthError("Pipedrive moved the company to another api_domain during a "
                                "call; run the sync again")
            request.headers["Authorization"] = f"Bearer {fresh.access_token}"
            yield request
