"""Access tokens cached in the shared limits, and the httpx.Auth that sends them and gets a
new one once when the vendor says a token expired (docs/connectors.md, "Streams").

A vendor's auth subclasses `CachedTokenAuth` with its wire details: the token request's
form, how an answer becomes a token, how a token is stored and sent, and how an expired
token is recognised. The token lives in the ApiClient's SharedLimits under a key derived
from the credentials (a hash, never the secrets), so every job of a connection shares it,
across processes with Redis; one token request runs at a time under the key's lock, and
the others then read the new token. The token URL is checked against the endpoint policy
before credentials are sent, and the API host a token names before the token goes there.
"""

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from typing import Any, Generic, TypeVar

import httpx

from connectors.endpoints import EndpointPolicy
from connectors.http import ApiClient, LocalLimits, SharedLimits

T = TypeVar("T")


class CachedTokenAuth(httpx.Auth, ABC, Generic[T]):
    """Sends the cached token; on an expired-token answer gets a new one once and retries."""

    def __init__(self, token_url: str, key: str, *, token_hosts: Sequence[str],
                 api_hosts: Sequence[str], limits: SharedLimits | None = None,
                 endpoints: EndpointPolicy | None = None) -> None:
        self.token_url = token_url
        self.key = key
        self.token_hosts, self.api_hosts = tuple(token_hosts), tuple(api_hosts)
        self.limits = limits or LocalLimits()
        self.endpoints = endpoints or EndpointPolicy()

    # -- the vendor's part --------------------------------------------------------------------
    @abstractmethod
    def token_form(self) -> dict[str, str]:
        """The token request's form body (never the query string: no secrets in URLs)."""

    @abstractmethod
    def parse_token(self, response: httpx.Response) -> T:
        """The token of a token answer, or AuthError / TransientError saying why not."""

    @abstractmethod
    def load(self, value: dict[str, Any]) -> T:
        """A token from its stored form (`dump`); KeyError when the form is not one."""

    @abstractmethod
    def dump(self, token: T) -> dict[str, Any]: ...

    @abstractmethod
    def lifetime(self, token: T) -> float:
        """Seconds to keep a new token."""

    @abstractmethod
    def api_url(self, token: T) -> str:
        """Where the token is used (checked against the endpoint policy first)."""

    @abstractmethod
    def authorize(self, request: httpx.Request, token: T) -> None: ...

    @abstractmethod
    def expired(self, response: httpx.Response) -> bool:
        """Whether an answer says the token expired (a new one is worth one retry)."""

    # -- shared ---------------------------------------------------------------------------------
    async def current(self, *, fresh: bool = False) -> T | None:
        """The cached token, if any is still fresh (`fresh`: the shared one, not this
        process's copy; SharedLimits.get_token)."""
        value = await self.limits.get_token(self.key, fresh=fresh)
        try:
            return self.load(value) if value else None
        except KeyError:
            return None

    async def save(self, token: T) -> T:
        await self.limits.put_token(self.key, self.dump(token), self.lifetime(token))
        return token

    async def get(self, api: ApiClient) -> T:
        """The cached token, or a fresh one from the token endpoint (one request at a time)."""
        token = await self.current()
        if token is None:
            async with self.limits.lock(self.key):
                token = await self.current()
                if token is None:
                    await self.endpoints.acheck(self.token_url, self.token_hosts)
                    token = await self.save(await api.send(
                        "POST", self.token_url, self.parse_token, capped=False,
                        data=self.token_form()))
        await self.endpoints.acheck(self.api_url(token), self.api_hosts)
        return token

    async def token_request(self) -> httpx.Request:
        await self.endpoints.acheck(self.token_url, self.token_hosts)
        return httpx.Request("POST", self.token_url, data=self.token_form())

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.current()
        if token is None:
            async with self.limits.lock(self.key):
                token = await self.current()
                if token is None:
                    response = await _read((yield await self.token_request()))
                    token = await self.save(self.parse_token(response))
        self.authorize(request, token)
        response = await _read((yield request))
        if self.expired(response):
            async with self.limits.lock(self.key):
                current = await self.current(fresh=True)
                if current is None or self.dump(current) == self.dump(token):
                    await self.limits.drop_token(self.key, self.dump(token))
                    response = await _read((yield await self.token_request()))
                    current = await self.save(self.parse_token(response))
            self.authorize(request, current)
            yield request


async def _read(response: httpx.Response) -> httpx.Response:
    await response.aread()  # overriding async_auth_flow skips httpx's own read
    return response


def error_body(response: httpx.Response) -> Any:
    """The answer's JSON, or None when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return None
