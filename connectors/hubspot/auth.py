"""HubSpot credentials (docs/vendors/hubspot.md §1): a static token (private app or
single-account app) or OAuth, refreshed by `expires_in` before it runs out (HubSpot: a
401 is not a reliable sign of expiry), on the current token endpoint with the legacy one
as fallback. Tokens are cached in the job context's SharedLimits (per process, or with
Redis for every process), under a hash of the client and refresh token, never the
secrets themselves."""

import hashlib
from dataclasses import dataclass

import httpx

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, LocalLimits, SharedLimits, json_body
from connectors.hubspot.wire import HOSTS, LEGACY_TOKEN_PATH, TOKEN_PATH
from core.errors import AuthError, TransientError

EXPIRY_MARGIN = 120.0  # seconds before expires_in runs out at which a token is refreshed
RFC6749 = {  # §1: what each error means for the connection
    "invalid_grant": "the refresh token was revoked, expired or mistyped (the app was "
                     "uninstalled, or the token belongs to another app)",
    "invalid_client": "the client id or client secret is wrong",
    "unauthorized_client": "this app may not use the refresh-token grant",
    "invalid_request": "the token request was malformed (check redirect_uri)",
    "invalid_scope": "the app asks for scopes the account did not grant",
}


@dataclass(frozen=True)
class Token:
    access_token: str
    lifetime: float = 0.0  # seconds it is used from now (expires_in minus the margin)


class _NotServed(Exception):
    """The current token endpoint answered 404: try the legacy one (§1)."""


def parse_token_response(response: httpx.Response) -> Token:
    """A token answer (§1), or AuthError naming what to do (RFC 6749 errors)."""
    if response.status_code == 404:
        raise _NotServed
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientError(f"HubSpot token endpoint answered HTTP {response.status_code}")
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError("HubSpot token endpoint sent an unexpected body")
    error = body.get("error")
    if error or response.status_code != 200:
        status = body.get("status") or f"HTTP {response.status_code}"
        meaning = RFC6749.get(str(error), str(body.get("error_description") or "refused"))
        raise AuthError(f"HubSpot refused the OAuth refresh ({error or 'error'}, {status}): "
                        f"{meaning}. Reconnect the app and update the connection's secrets "
                        "(client_id, client_secret, refresh_token)")
    token = body.get("access_token") or body.get("accessToken")  # §1: camelCase in the reference
    expires = body.get("expires_in") or body.get("expiresIn") or 1800
    if not token:
        raise AuthError("HubSpot's token answer holds no access_token")
    return Token(str(token), max(0.0, float(expires) - EXPIRY_MARGIN))


class OAuthTokens:
    """Bearer tokens from the refresh grant, refreshed by expiry (one refresh at a time,
    across processes with RedisLimits); the client drops a token HubSpot refuses (401)
    and retries once with a fresh one."""

    def __init__(self, base_url: str, client_id: str, client_secret: str, refresh_token: str,
                 redirect_uri: str | None = None, limits: SharedLimits | None = None,
                 endpoints: EndpointPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits or LocalLimits()
        self.endpoints = endpoints or EndpointPolicy()
        self.form = {"grant_type": "refresh_token", "client_id": client_id,
                     "client_secret": client_secret, "refresh_token": refresh_token}
        if redirect_uri:
            self.form["redirect_uri"] = redirect_uri
        digest = hashlib.sha256(f"{base_url}\0{client_id}\0{refresh_token}".encode())
        self.key = f"hubspot:{digest.hexdigest()}"

    async def current(self) -> Token | None:
        value = await self.limits.get_token(self.key)
        return Token(str(value["access_token"])) if value and "access_token" in value else None

    async def get(self, api: ApiClient) -> Token:
        """The cached token, or a fresh one (current endpoint, then the legacy one)."""
        token = await self.current()
        if token is not None:
            return token
        async with self.limits.lock(self.key):
            token = await self.current()
            if token is None:
                token = await self._refresh(api)
        return token

    async def _refresh(self, api: ApiClient) -> Token:
        for path in (TOKEN_PATH, LEGACY_TOKEN_PATH):
            url = self.base_url + path
            await self.endpoints.acheck(url, HOSTS)  # form body: secrets never in URLs
            try:
                token = await api.send("POST", url, parse_token_response, capped=False,
                                       data=self.form)
            except _NotServed:
                continue
            await self.limits.put_token(self.key, {"access_token": token.access_token},
                                        token.lifetime)
            return token
        raise AuthError("HubSpot serves neither OAuth token endpoint at "
                        f"{self.base_url}: check base_url")

    async def forget(self, token: Token) -> None:
        await self.limits.drop_token(self.key, {"access_token": token.access_token})

