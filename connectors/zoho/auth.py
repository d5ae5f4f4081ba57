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
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.endpoints import EndpointPolicy
from connectors.http import SharedLimits, json_body
from connectors.tokens import CachedTokenAuth, error_body
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


class ZohoAuth(CachedTokenAuth[Token]):
    """Adds the Zoho-oauthtoken header; on 401 INVALID_TOKEN refreshes once and retries
    (connectors.tokens.CachedTokenAuth).

    The token lives in `limits` under a hash of the token URL, client and refresh token
    (never the secrets themselves). `endpoints` checks the token URL before every token
    request and the token's api_domain before it is used, so credentials and tokens only
    reach allowed hosts.
    """

    def __init__(
        self, token_url: str, client_id: str, client_secret: str, refresh_token: str,
        limits: SharedLimits | None = None, endpoints: EndpointPolicy | None = None,
    ) -> None:
        digest = hashlib.sha256(f"{token_url}\0{client_id}\0{refresh_token}".encode())
        super().__init__(token_url, f"zoho:{digest.hexdigest()}", token_hosts=ACCOUNTS_HOSTS,
                         api_hosts=API_HOSTS, limits=limits, endpoints=endpoints)
        self.form = {
            "grant_type": "refresh_token",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
        }

    def token_form(self) -> dict[str, str]:
        return self.form

    def parse_token(self, response: httpx.Response) -> Token:
        return parse_token_response(response)

    def load(self, value: dict[str, Any]) -> Token:
        return Token(str(value["access_token"]), str(value["api_domain"]))

    def dump(self, token: Token) -> dict[str, Any]:
        return token.dump()

    def lifetime(self, token: Token) -> float:
        return token.lifetime

    def api_url(self, token: Token) -> str:
        return token.api_domain

    def authorize(self, request: httpx.Request, token: Token) -> None:
        request.headers["Authorization"] = f"Zoho-oauthtoken {token.access_token}"

    def expired(self, response: httpx.Response) -> bool:
        if response.status_code != 401:
            return False
        body = error_body(response)
        return isinstance(body, dict) and body.get("code") == "INVALID_TOKEN"
