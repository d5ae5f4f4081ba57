"""Zoho OAuth: refresh-token grant, a token cache, and an httpx.Auth that retries once.

docs/vendors/zoho.md §1: `POST {accounts-server}/oauth/v2/token` (grant_type=refresh_token)
returns access_token, api_domain and expires_in (seconds; legacy responses put
milliseconds in expires_in and seconds in expires_in_sec). Failures come back
as HTTP 200 with an `error` key (invalid_code, invalid_client); the token
endpoint's throttle is HTTP 400 "Access Denied ... too many requests". Every
API call then goes to the returned api_domain with `Authorization:
Zoho-oauthtoken <token>`; an expired token answers 401 INVALID_TOKEN.
"""

import hashlib
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, LocalLimits, SharedLimits, json_body
from core.errors import AuthError, RateLimited, TransientError

ACCOUNTS_SERVERS = {  # docs/vendors/zoho.md §1, per-DC hosts
    "com": "https://accounts.zoho.com",
    "eu": "https://accounts.zoho.eu",
    "in": "https://accounts.zoho.in",
    "com.au": "https://accounts.zoho.com.au",
    "jp": "https://accounts.zoho.jp",
    "com.cn": "https://accounts.zoho.com.cn",
    "ca": "https://accounts.zohocloud.ca",
    "sa": "https://accounts.zoho.sa",
    "uk": "https://accounts.zoho.uk",  # https://www.zoho.com/accounts/protocol/oauth/multi-dc.html
    # https://www.zoho.com/workdrive/developer/docs/api/v1/getting-started-multi-dc-support.html
    "ae": "https://accounts.zoho.ae",
}
# Where credentials and tokens may go (connectors/endpoints.py): the accounts servers
# above, and the API domains of every data centre (docs/vendors/zoho.md §1: www., sandbox.,
# developer. and content.zohoapis.{dc}; the bare zohoapis.{dc} answers too).
ACCOUNTS_HOSTS = tuple(str(httpx.URL(url).host) for url in ACCOUNTS_SERVERS.values())
API_HOSTS = tuple(host for tld in ("com", "eu", "in", "com.au", "jp", "com.cn", "ca", "sa",
                                   "uk", "ae")
                  for host in (f"zohoapis.{tld}", f"*.zohoapis.{tld}"))
EXPIRY_MARGIN = 60.0  # seconds before expiry at which a token is refreshed


@dataclass(frozen=True)
class Token:
    access_token: str
    api_domain: str
    lifetime: float = 0.0  # seconds it stays usable from when it was issued (cache TTL)

    def dump(self) -> dict[str, Any]:
        return {"access_token": self.access_token, "api_domain": self.api_domain}


# Tokens outlive one sync run: a refresh token may mint at most 10 access tokens per
# 10 minutes and the token endpoint throttles bursts (docs/vendors/zoho.md §1), so they are cached
# in the job context's SharedLimits: per process (LocalLimits), or with Redis for every
# process at once.


def parse_token_response(response: httpx.Response) -> Token:
    """Read a token response, or raise AuthError / RateLimited with a clear message."""
    if response.status_code >= 500:
        raise TransientError(f"Zoho accounts server answered HTTP {response.status_code}")
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError("Zoho accounts server sent an unexpected body")
    error = body.get("error")
    if error:
        description = str(body.get("error_description", ""))
        if "too many requests" in description.lower() or error == "Access Denied":
            raise RateLimited("Zoho accounts server: too many token requests", retry_after=60)
        if error == "invalid_code":
            raise AuthError(
                "Zoho rejected the refresh token (invalid_code): it was revoked or mistyped; "
                "generate a new refresh token and update the connection's secrets"
            )
        if error == "invalid_client":
            raise AuthError(
                "Zoho rejected the client (invalid_client): check client_id, client_secret "
                "and that `dc` names the data centre where the client was registered"
            )
        raise AuthError(f"Zoho token request failed: {error}")
    if "access_token" not in body or response.status_code != 200:
        raise AuthError(f"Zoho token request failed with HTTP {response.status_code}")
    if "expires_in_sec" in body:
        ttl = float(body["expires_in_sec"])
    else:
        ttl = float(body.get("expires_in", 3600))
        if ttl > 86_400:  # legacy: milliseconds
            ttl /= 1000
    return Token(
        access_token=str(body["access_token"]),
        api_domain=str(body.get("api_domain") or "https://www.zohoapis.com").rstrip("/"),
        lifetime=ttl - EXPIRY_MARGIN,
    )


class ZohoAuth(httpx.Auth):
    """Adds the Zoho-oauthtoken header; on 401 INVALID_TOKEN refreshes once and retries.

    The token lives in `limits` under a hash of the token URL, client and refresh token
    (never the secrets themselves); one refresh runs at a time under its lock, and the
    others then read the new token (across processes with RedisLimits). `endpoints`
    checks the token URL before every token request and the token's api_domain before
    it is used (get), so credentials and tokens only reach allowed hosts.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, refresh_token: str,
        limits: SharedLimits | None = None, endpoints: EndpointPolicy | None = None,
    ) -> None:
        self.token_url = token_url
        self.endpoints = endpoints or EndpointPolicy()
        self.form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }
        self.limits = limits or LocalLimits()
        digest = hashlib.sha256(f"{token_url}\0{client_id}\0{refresh_token}".encode())
        self._key = f"zoho:{digest.hexdigest()}"

    async def current(self) -> Token | None:
        """The cached token, if any is still fresh."""
        value = await self.limits.get_token(self._key)
        try:
            return Token(str(value["access_token"]), str(value["api_domain"])) if value else None
        except KeyError:
            return None

    async def save(self, token: Token) -> Token:
        await self.limits.put_token(self._key, token.dump(), token.lifetime)
        return token

    async def get(self, api: ApiClient) -> Token:
        """The cached token, or a fresh one from the token endpoint (one refresh at a time)."""
        token = await self.current()
        if token is None:
            async with self.limits.lock(self._key):
                token = await self.current()
                if token is None:
                    await self.endpoints.acheck(self.token_url, ACCOUNTS_HOSTS)
                    token = await self.save(await api.send(
                        "POST", self.token_url, parse_token_response, capped=False,
                        data=self.form))
        await self.endpoints.acheck(token.api_domain, API_HOSTS)  # before the token goes there
        return token

    async def refresh_request(self) -> httpx.Request:
        # Form body, not the query string: secrets must never appear in URLs or logs.
        await self.endpoints.acheck(self.token_url, ACCOUNTS_HOSTS)
        return httpx.Request("POST", self.token_url, data=self.form)

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.current()
        if token is None:
            async with self.limits.lock(self._key):
                token = await self.current()
                if token is None:
                    response = await _read((yield await self.refresh_request()))
                    token = await self.save(parse_token_response(response))
        request.headers["Authorization"] = f"Zoho-oauthtoken {token.access_token}"
        response = await _read((yield request))
        if response.status_code == 401 and _error_code(response) == "INVALID_TOKEN":
            async with self.limits.lock(self._key):
                current = await self.current()
                if current is None or current.access_token == token.access_token:
                    await self.limits.drop_token(self._key, token.dump())
                    response = await _read((yield await self.refresh_request()))
                    current = await self.save(parse_token_response(response))
            request.headers["Authorization"] = f"Zoho-oauthtoken {current.access_token}"
            yield request


async def _read(response: httpx.Response) -> httpx.Response:
    await response.aread()  # overriding async_auth_flow skips httpx's own read
    return response


def _error_code(response: httpx.Response) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None
