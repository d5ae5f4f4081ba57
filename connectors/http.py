"""The one place an httpx.AsyncClient is built, and the retry policy every call uses.

Transient failures (HTTP 429 and 5xx, timeouts, dropped connections, truncated
bodies) retry with exponential backoff and jitter, honouring Retry-After where
the vendor sends it. A per-connection semaphore caps requests in flight.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from core.errors import RateLimited, SourceError, TransientError
from core.types import utcnow

T = TypeVar("T")
USER_AGENT = "crmsync/0.1 (+https://github.com/crmsync/crmsync)"


def build_client(
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    auth: httpx.Auth | None = None,
    timeout: float = 30.0,
    max_connections: int = 20,
) -> httpx.AsyncClient:
    """Build an AsyncClient with explicit timeouts, pool limits and our user agent."""
    return httpx.AsyncClient(
        transport=transport,
        auth=auth,
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    initial_wait: float = 0.5
    max_wait: float = 60.0


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - utcnow()).total_seconds())
    except (TypeError, ValueError):
        return None


def raise_for_transient(response: httpx.Response) -> None:
    """The generic part of classifying a response: 429 and 5xx are transient."""
    if response.status_code == 429:
        raise RateLimited(
            f"HTTP 429 from {response.request.url.host}", retry_after_seconds(response)
        )
    if response.status_code >= 500:
        raise TransientError(
            f"HTTP {response.status_code} from {response.request.url.host}",
            retry_after_seconds(response),
        )


def json_body(response: httpx.Response) -> Any:
    """The JSON body; a truncated or garbled body is transient (the call is retried)."""
    try:
        return orjson.loads(response.content)
    except ValueError as exc:
        raise TransientError(
            f"unreadable JSON body from {response.request.url.host} "
            f"(HTTP {response.status_code}, {len(response.content)} bytes)"
        ) from exc


class ApiClient:
    """A connection's HTTP session: shared client, in-flight cap, retries, call count.

    One ApiClient serves every stream of one sync run, so the cap holds for the
    connection as a whole. `api_calls` counts every request sent, token calls
    and retries included.
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_in_flight: int = 5,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()
        self.api_calls = 0
        self._slots = asyncio.Semaphore(max_in_flight)
        client.event_hooks.setdefault("request", []).append(self._count)

    async def _count(self, request: httpx.Request) -> None:
        self.api_calls += 1

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.retry.max_wait)
        backoff = wait_exponential_jitter(
            initial=self.retry.initial_wait, max=self.retry.max_wait, jitter=self.retry.initial_wait
        )
        return float(backoff(state))

    async def send(
        self,
        method: str,
        url: str,
        parse: Callable[[httpx.Response], T],
        **kwargs: Any,
    ) -> T:
        """Send a request and parse its response, retrying transient failures.

        `parse` raises TransientError to retry, another SourceError to stop.
        """
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.retry.attempts),
            wait=self._wait,
            retry=retry_if_exception_type((TransientError, httpx.TransportError)),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._slots:
                        response = await self.client.request(method, url, **kwargs)
                    return parse(response)
        except httpx.TransportError as exc:
            raise TransientError(
                f"{type(exc).__name__} calling {httpx.URL(url).host} "
                f"after {self.retry.attempts} attempts"
            ) from exc
        raise SourceError("unreachable")  # pragma: no cover
