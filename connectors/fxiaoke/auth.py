"""Fxiaoke corpAccessToken: the legacy body-style token every SDK uses
(docs/vendors/fxiaoke.md §1.1).

`POST {base}/cgi/corpAccessToken/get/V2 {appId, appSecret, permanentCode}` answers
HTTP 200 with errorCode 0, corpAccessToken, corpId and expiresIn (seconds, at most
7200). The official demo caches the token until expiresIn - 180 s; 20016 means the
token is gone or expired: drop it and fetch a new one. The token endpoint allows
10 calls a minute and no concurrent calls (§1.2), so one token is cached and shared by
every job of the connection (per process, or with Redis by every process: SharedLimits),
and only one request for it runs at once (under the limits' lock).
"""

import hashlib
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.fxiaoke.wire import (
    BUSY_CODES,
    CALL_LIMIT,
    NO_QUOTA,
    OK,
    PER_SECOND_LIMIT,
    PERMISSION_CODES,
    TOKEN_PATH,
)
from connectors.http import ApiClient, json_body, raise_for_transient
from core.errors import AuthError, ConfigError, RateLimited, TransientError

# docs/vendors/fxiaoke.md §1.2: the open API hosts of every Fxiaoke cloud. Credentials and tokens go
# nowhere else unless the operator allows it (connectors/endpoints.py).
HOSTS = ("open.fxiaoke.com", "open-hwcloud.fxiaoke.com", "open-ale.fxiaoke.com",
         "open-hws.fxiaoke.com", "open-ksc.sharecrm.com", "open-na.sharecrm.com")
EXPIRY_MARGIN = 180.0  # §1.1: the official demo refreshes 180 s before expiry


@dataclass(frozen=True)
class Token:
    value: str
    corp_id: str
    lifetime: float = 0.0  # seconds it stays usable from when it was issued (cache TTL)

    def dump(self) -> dict[str, Any]:
        return {"value": self.value, "corp_id": self.corp_id}


def parse_token(response: httpx.Response) -> Token:
    """Read a token response; AuthError for rejected credentials (never echoing them)."""
    raise_for_transient(response)
    body = json_body(response)
    if not isinstance(body, dict):
        raise TransientError("Fxiaoke token endpoint sent an unexpected body")
    code = _code(body)
    message = str(body.get("errorMessage") or "")
    if code in BUSY_CODES:
        raise TransientError(f"Fxiaoke token endpoint is busy (errorCode {code})")
    if code in (CALL_LIMIT, PER_SECOND_LIMIT):
        raise RateLimited(f"Fxiaoke token endpoint throttled the call (errorCode {code})", 6.0)
    if code == NO_QUOTA:
        raise ConfigError("Fxiaoke: the tenant has no Open API quota (errorCode 30003)")
    if code != OK or not body.get("corpAccessToken"):
        hint = "check app_id, app_secret and permanent_code"
        if code in PERMISSION_CODES:
            hint = "the app is not authorized by this tenant; re-authorize it in Fxiaoke"
        raise AuthError(f"Fxiaoke refused the token request (errorCode {code}: {message}); {hint}")
    ttl = float(body.get("expiresIn") or 7200)
    margin = EXPIRY_MARGIN if ttl > 2 * EXPIRY_MARGIN else ttl / 2
    return Token(str(body["corpAccessToken"]), str(body.get("corpId") or ""), ttl - margin)


def _code(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("errorCode"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class TokenManager:
    """The connection's cached token (in the ApiClient's SharedLimits, under a hash of the
    credentials and host); fetches one at a time, refreshes on demand."""

    def __init__(self, base_url: str, app_id: str, app_secret: str, permanent_code: str) -> None:
        self.url = f"{base_url}{TOKEN_PATH}"
        self._body = {"appId": app_id, "appSecret": app_secret, "permanentCode": permanent_code}
        digest = hashlib.sha256(
            f"{base_url}\0{app_id}\0{permanent_code}\0{app_secret}".encode()).hexdigest()
        self.key = f"fxiaoke:{digest}"

    async def _cached(self, api: ApiClient) -> Token | None:
        value = await api.limits.get_token(self.key)
        try:
            return Token(str(value["value"]), str(value["corp_id"])) if value else None
        except KeyError:
            return None

    async def get(self, api: ApiClient) -> Token:
        """The token, fetched when needed; the host is checked first (every data call goes
        through here, so the token never reaches a host that is not allowed either)."""
        await api.endpoints.acheck(self.url, HOSTS)
        token = await self._cached(api)
        if token is not None:
            return token
        async with api.limits.lock(self.key):  # §1.2: no concurrent token calls
            token = await self._cached(api)
            if token is None:
                token = await api.send("POST", self.url, parse_token, json=self._body)
                await api.limits.put_token(self.key, token.dump(), token.lifetime)
        return token

    async def forget(self, api: ApiClient, token: Token) -> None:
        """Drop `token` after a 20016, unless another task already replaced it."""
        await api.limits.drop_token(self.key, token.dump())


__all__ = ["Token", "TokenManager", "parse_token"]
