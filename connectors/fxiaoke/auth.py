"""Fxiaoke corpAccessToken: the legacy body-style token every SDK uses (fxiaoke.md §1.1).

`POST {base}/cgi/corpAccessToken/get/V2 {appId, appSecret, permanentCode}` answers
HTTP 200 with errorCode 0, corpAccessToken, corpId and expiresIn (seconds, at most
7200). The official demo caches the token until expiresIn - 180 s; 20016 means the
token is gone or expired: drop it and fetch a new one. The token endpoint allows
10 calls a minute and no concurrent calls (§1.2), so one token is cached per process
and shared by every job of the connection, and only one request for it runs at once.
"""

import asyncio
import hashlib
import time
import weakref
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

EXPIRY_MARGIN = 180.0  # §1.1: the official demo refreshes 180 s before expiry


@dataclass(frozen=True)
class Token:
    value: str
    corp_id: str
    expires_at: float  # time.monotonic()

    @property
    def fresh(self) -> bool:
        return time.monotonic() < self.expires_at


# Per process: every job of a connection in this process shares one token (see docs).
_CACHE: dict[str, Token] = {}
_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]]" = (
    weakref.WeakKeyDictionary())


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
    return Token(str(body["corpAccessToken"]), str(body.get("corpId") or ""),
                 time.monotonic() + ttl - margin)


def _code(body: dict[str, Any]) -> int | None:
    try:
        return int(body.get("errorCode"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class TokenManager:
    """The connection's cached token; fetches one at a time, refreshes on demand."""

    def __init__(self, base_url: str, app_id: str, app_secret: str, permanent_code: str) -> None:
        self.url = f"{base_url}{TOKEN_PATH}"
        self._body = {"appId": app_id, "appSecret": app_secret, "permanentCode": permanent_code}
        digest = hashlib.sha256(f"{app_id}\0{permanent_code}\0{app_secret}".encode()).hexdigest()
        self.key = f"{base_url}|{digest}"

    def _lock(self) -> asyncio.Lock:
        locks = _LOCKS.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(self.key, asyncio.Lock())

    async def get(self, api: ApiClient) -> Token:
        token = _CACHE.get(self.key)
        if token is not None and token.fresh:
            return token
        async with self._lock():  # §1.2: no concurrent token calls
            token = _CACHE.get(self.key)
            if token is None or not token.fresh:
                token = await api.send("POST", self.url, parse_token, json=self._body)
                _CACHE[self.key] = token
        return token

    def forget(self, token: Token) -> None:
        """Drop `token` after a 20016, unless another task already replaced it."""
        if _CACHE.get(self.key) == token:
            del _CACHE[self.key]


def clear_cache() -> None:
    _CACHE.clear()


__all__ = ["Token", "TokenManager", "clear_cache", "parse_token"]
