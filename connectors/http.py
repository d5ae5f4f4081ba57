"""The one place an httpx.AsyncClient is built, and the retry policy every call uses.

Transient failures (HTTP 429 and 5xx, timeouts, dropped connections, truncated
bodies) retry with exponential backoff and jitter, honouring Retry-After where
the vendor sends it. A per-connection cap limits requests in flight.

Per-process vendor state (the in-flight cap, per-interface call rates, access tokens,
metadata caches) lives in one SharedLimits object held by the job context: LocalLimits
keeps it in this process (embedded mode); with Redis, workers.limits.RedisLimits shares
the budgets and tokens between every process. Nothing of it is a module global.
"""

import asyncio
import ssl
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any, Protocol, TypeVar

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from connectors.endpoints import EndpointPolicy
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
    keepalive: float = 5.0,
) -> httpx.AsyncClient:
    """Build an AsyncClient with explicit timeouts, pool limits and our user agent;
    `keepalive`: seconds an idle connection is kept (ClientPool's clients: KEEPALIVE_SECONDS)."""
    return httpx.AsyncClient(
        transport=transport,
        auth=auth,
        verify=tls_context(),
        timeout=httpx.Timeout(timeout, connect=10.0),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10,
                            keepalive_expiry=keepalive),
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
    )


KEEPALIVE_SECONDS = 30.0
"""How long a pooled client keeps an idle connection to the CRM (httpx's default is 5 s):
the next job of the connection within it sends on the same TCP and TLS session."""


class ClientPool:
    """This process's idle HTTP clients, per key (a connection and the version of its
    settings), for the next job of that key: it reuses the client's open connections to the
    CRM (no new TCP and TLS handshake per webhook job) instead of building a client each time.

    A client serves one job at a time (`lease`): two jobs of a connection at once get two
    clients, so nothing of one job (its request hooks, `ApiClient.api_calls`) reaches the
    other, and clients of different keys share nothing. A client comes back emptied: no
    cookies, no event hooks (credentials travel with each request's auth, never in a
    client). At most `max_idle` clients wait, `per_key` per key, the least recently used
    closed first; a client idle for `idle_for` seconds (its connections' keep-alive,
    KEEPALIVE_SECONDS: they are closed by then) is closed when the next one comes back, so
    its sockets do not stay open; a client whose job failed is closed, not kept. `aclose`
    (the process's shutdown) closes the idle clients of the running event loop;
    `max_idle=0` keeps none.

    The bound is above the connections a worker serves within a keep-alive (one client
    each, mostly): with fewer (256 until 2026-12-06) a deployment of 300 connections
    evicted clients its next jobs wanted, and each such job opened new connections."""

    def __init__(self, max_idle: int = 512, per_key: int = 2,
                 idle_for: float = KEEPALIVE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_idle, self.per_key, self.idle_for, self.clock = (
            max_idle, per_key, idle_for, clock)
        self._idle: dict[asyncio.AbstractEventLoop, _Idle] = {}

    def _loop_idle(self) -> "_Idle":
        for loop in [loop for loop in self._idle if loop.is_closed()]:
            del self._idle[loop]  # an ended event loop's clients are unusable: dropped
        return self._idle.setdefault(asyncio.get_running_loop(), _Idle())

    def idle(self, key: Hashable) -> int:
        """Clients of `key` waiting for a job in this event loop."""
        return len(self._loop_idle().by_key.get(key, ()))

    @asynccontextmanager
    async def lease(self, key: Hashable,
                    build: Callable[[], httpx.AsyncClient]) -> AsyncIterator[httpx.AsyncClient]:
        """An idle client of `key`, else a new one from `build`; kept for the next job of
        `key` when the block ends without an error."""
        idle = self._loop_idle()
        client = idle.take(key) or build()
        keep = False
        try:
            yield client
            keep = self.max_idle > 0 and not client.is_closed
        finally:
            client.cookies.clear()
            client.event_hooks = {"request": [], "response": []}
            closing = self._keep(idle, key, client) if keep else [client]
            for extra in closing:
                await extra.aclose()

    def _keep(self, idle: "_Idle", key: Hashable,
              client: httpx.AsyncClient) -> list[httpx.AsyncClient]:
        """Keep `client`; the clients to close: over `per_key`, idle too long, over
        `max_idle` (the least recently used keys first)."""
        now = self.clock()
        closing = idle.put(key, client, now, self.per_key)
        by_key = idle.by_key
        while by_key:
            oldest = next(iter(by_key))
            waiting = by_key[oldest]
            if idle.count > self.max_idle:
                closing.append(idle.drop(oldest, 1)[0])
            elif waiting[-1][1] < now - self.idle_for:  # its newest too: all of it expired
                closing.extend(idle.drop(oldest, len(waiting)))
            else:
                break
        return closing

    async def aclose(self) -> None:
        """Close this event loop's idle clients (the process's shutdown)."""
        idle = self._idle.pop(asyncio.get_running_loop(), _Idle())
        for waiting in idle.by_key.values():
            for client, _ in waiting:
                await client.aclose()


class _Idle:
    """One event loop's idle clients: per key, oldest first, with when each came back; keys
    in the order they last had one back (least recently used first)."""

    def __init__(self) -> None:
        self.by_key: OrderedDict[Hashable, list[tuple[httpx.AsyncClient, float]]] = OrderedDict()
        self.count = 0

    def take(self, key: Hashable) -> httpx.AsyncClient | None:
        waiting = self.by_key.get(key)
        if not waiting:
            return None
        client, _ = waiting.pop()
        self.count -= 1
        if not waiting:
            del self.by_key[key]
        return client

    def put(self, key: Hashable, client: httpx.AsyncClient, now: float,
            per_key: int) -> list[httpx.AsyncClient]:
        """Keep `client` under `key`; returns the key's oldest beyond `per_key`."""
        waiting = self.by_key.setdefault(key, [])
        self.by_key.move_to_end(key)
        waiting.append((client, now))
        self.count += 1
        return self.drop(key, len(waiting) - per_key) if len(waiting) > per_key else []

    def drop(self, key: Hashable, n: int) -> list[httpx.AsyncClient]:
        """The `n` oldest clients of `key`, out of the pool."""
        waiting = self.by_key[key]
        dropped = [client for client, _ in waiting[:n]]
        del waiting[:n]
        self.count -= len(dropped)
        if not waiting:
            del self.by_key[key]
        return dropped


@cache
def tls_context() -> ssl.SSLContext:
    """httpx's default certificate verification (certifi's CAs, or SSL_CERT_FILE or
    SSL_CERT_DIR), built once a process and shared by every client (an SSLContext is safe
    to share): building it loads the CA bundle, 20-70 ms of CPU, and each sync, backfill
    and webhook batch builds a client (docs/benchmarks.md, many connections)."""
    return httpx.create_ssl_context()


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


class Memo:
    """A small cache of values that expire (vendor metadata: field lists, stages), kept in
    this process; keys never contain secrets."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, Any]] = {}

    def get(self, key: str) -> Any:
        """The value stored under `key`, or None when there is none or it expired."""
        expiry, value = self._values.get(key, (0.0, None))
        return value if time.monotonic() < expiry else None

    def put(self, key: str, value: Any, ttl: float) -> None:
        self._values[key] = (time.monotonic() + ttl, value)


WAITING_ANSWERED = 10
"""At most this many members waiting for a turn does SharedLimits.leave answer (a caller
calls in the first it finds still waiting)."""


class SharedLimits(Protocol):
    """The vendor state shared by every ApiClient of a connection: budgets and tokens in
    this process (LocalLimits) or, with Redis, across processes (workers.limits.RedisLimits),
    and `memo`, this process's metadata cache.

    Keys are derived from a connection's identity and never contain secrets; token
    values are small JSON-able dicts (RedisLimits stores them encrypted)."""

    memo: Memo

    def slot(self, key: str, limit: int) -> AbstractAsyncContextManager[None]:
        """Hold one of `limit` concurrent slots of `key` (waits for a free one)."""
        ...

    async def take(self, key: str, limit: int, window: float) -> str:
        """Wait until one more call fits `limit` calls per sliding `window` seconds; the
        call's place in the window (for `restamp`)."""
        ...

    async def restamp(self, key: str, window: float, places: Sequence[str]) -> None:
        """Date `places` of `key`'s `window` now, when their calls have ended. A vendor counts
        the calls it receives, each a network delay after we took its place: dated at the
        end instead, a place keeps the next calls a whole window behind the vendor's
        receipt, whatever the delays (a window equal to the vendor's drew 429s whenever an
        earlier call arrived later than the one a window after it)."""
        ...

    async def admit(self, key: str, limit: int, member: str, ticket: int, lease: float,
                    pace: float) -> tuple[int, float]:
        """A turn of `key` for `member`, at most `limit` held at a time and the lowest
        `ticket`s first, without waiting: (0, 0.0) when `member` has one (taken now, or
        renewed); else `member` takes its place in the line, and the answer is its place
        (1: next) and the seconds after which to ask again, `pace` for each round of
        `limit` turns ahead of it, at most `lease` / 2. A turn ends with `leave`, or
        `lease` seconds after its last admit (a killed process); a place in the line
        `pace` seconds after it was due back (one that comes back late may find later
        tickets taking the turns it was kept, then is first again)."""
        ...

    async def leave(self, key: str, member: str) -> list[str]:
        """Give back `member`'s turn of `key` (or its place in the line), and answer the
        members that were told to come back later and have not had a turn since (even
        those whose place ended: they came back late), lowest tickets first, at most
        WAITING_ANSWERED: the ones to call in now a turn is free."""
        ...

    def lock(self, key: str) -> AbstractAsyncContextManager[None]:
        """A short exclusive lock, e.g. so only one process refreshes a token."""
        ...

    async def get_token(self, key: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The cached token of `key`, or None. A process may keep its own copy of a shared
        token for a while (RedisLimits); `fresh` reads the shared one (after the vendor
        refused a token: another process may have replaced it already)."""
        ...

    async def put_token(self, key: str, value: dict[str, Any], ttl: float) -> None:
        """Cache `value` for `ttl` seconds (nothing is cached when ttl <= 0)."""
        ...

    async def drop_token(self, key: str, value: dict[str, Any]) -> None:
        """Forget the cached token if it is still `value` (not one another task put since)."""
        ...

    async def aclose(self) -> None:
        """Release this event loop's connections (process shutdown)."""
        ...


class LocalLimits:
    """SharedLimits within one process (the embedded mode, and the default)."""

    def __init__(self) -> None:
        self.memo = Memo()
        self.tokens: dict[str, tuple[float, dict[str, Any]]] = {}  # key -> (expiry, value)
        self.recent: dict[str, deque[float]] = {}  # key -> monotonic times of recent calls
        self.turns: dict[str, dict[str, float]] = {}  # key -> member -> lease end
        self.lines: dict[str, dict[str, tuple[int, float]]] = {}  # member -> (ticket, end)
        self.waiting: dict[str, dict[str, int]] = {}  # key -> member sent back -> ticket
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Any, Any]] = (
            weakref.WeakKeyDictionary())

    def _per_loop(self) -> dict[Any, Any]:  # asyncio primitives belong to one event loop
        return self._loops.setdefault(asyncio.get_running_loop(), {})

    @asynccontextmanager
    async def slot(self, key: str, limit: int) -> AsyncIterator[None]:
        semaphore = self._per_loop().setdefault(("slot", key, limit), asyncio.Semaphore(limit))
        async with semaphore:
            yield

    async def take(self, key: str, limit: int, window: float) -> str:
        recent = self.recent.setdefault(key, deque())
        while True:
            now = time.monotonic()
            while recent and recent[0] <= now - window:
                recent.popleft()
            if len(recent) < limit:
                recent.append(now)
                return repr(now)  # equal times are interchangeable places
            await asyncio.sleep(max(0.01, recent[0] + window - now))

    async def restamp(self, key: str, window: float, places: Sequence[str]) -> None:
        recent = self.recent.setdefault(key, deque())
        for place in places:
            with suppress(ValueError):  # already out of the window
                recent.remove(float(place))
            recent.append(time.monotonic())  # the latest time: the deque stays in order

    async def admit(self, key: str, limit: int, member: str, ticket: int, lease: float,
                    pace: float) -> tuple[int, float]:
        now = time.monotonic()
        turns = self.turns.setdefault(key, {})
        line = self.lines.setdefault(key, {})
        for gone in [m for m, end in turns.items() if end <= now]:
            del turns[gone]
        for gone in [m for m, (_, end) in line.items() if end <= now]:
            del line[gone]
        ahead = sum(1 for waiting, _ in line.values() if waiting < ticket)
        waiting = self.waiting.setdefault(key, {})
        if member in turns or limit - len(turns) > ahead:
            turns[member] = now + lease
            line.pop(member, None)
            waiting.pop(member, None)
            return 0, 0.0
        wait = min(lease / 2, pace * -(-(ahead + 1) // limit))
        line[member] = (ticket, now + wait + pace)
        waiting[member] = ticket
        return ahead + 1, wait

    async def leave(self, key: str, member: str) -> list[str]:
        self.turns.get(key, {}).pop(member, None)
        self.lines.get(key, {}).pop(member, None)
        waiting = self.waiting.get(key, {})
        waiting.pop(member, None)
        return sorted(waiting, key=waiting.__getitem__)[:WAITING_ANSWERED]

    @asynccontextmanager
    async def lock(self, key: str) -> AsyncIterator[None]:
        async with self._per_loop().setdefault(("lock", key), asyncio.Lock()):
            yield

    async def get_token(self, key: str, *, fresh: bool = False) -> dict[str, Any] | None:
        expiry, value = self.tokens.get(key, (0.0, None))
        return value if value is not None and time.monotonic() < expiry else None

    async def put_token(self, key: str, value: dict[str, Any], ttl: float) -> None:
        if ttl > 0:
            self.tokens[key] = (time.monotonic() + ttl, value)

    async def drop_token(self, key: str, value: dict[str, Any]) -> None:
        if key in self.tokens and self.tokens[key][1] == value:
            del self.tokens[key]

    async def aclose(self) -> None:
        pass


class ApiClient:
    """A connection's HTTP session: shared client, in-flight cap, retries, call count.

    The in-flight cap is held in `limits` under `key` (the connection): every
    ApiClient of the connection shares it, across processes with RedisLimits.
    Without a key the cap is this ApiClient's own; without `limits` (a one-off check, a
    test) so are the budgets and tokens. `api_calls` counts every
    request sent, token calls and retries included. `endpoints` is where the connector
    may send credentials (connectors/endpoints.py; the vendors' own hosts by default).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        max_in_flight: int = 5,
        retry: RetryPolicy | None = None,
        limits: SharedLimits | None = None,
        key: str | None = None,
        endpoints: EndpointPolicy | None = None,
    ) -> None:
        self.client = client
        self.endpoints = endpoints or EndpointPolicy()
        self.retry = retry or RetryPolicy()
        self.api_calls = 0
        self.limits: SharedLimits = limits or LocalLimits()
        self.max_in_flight = max_in_flight
        self.key = f"inflight:{key}" if key else ""
        self._own = asyncio.Semaphore(max_in_flight)  # used when there is no key
        client.event_hooks.setdefault("request", []).append(self._count)

    def _slot(self) -> AbstractAsyncContextManager[Any]:
        return self.limits.slot(self.key, self.max_in_flight) if self.key else self._own

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
        *,
        capped: bool = True,
        before: Callable[[], Awaitable[None]] | None = None,
        **kwargs: Any,
    ) -> T:
        """Send a request and parse its response, retrying transient failures.

        `parse` raises TransientError to retry, another SourceError to stop.
        `capped=False` (token endpoints, outside the vendor's API concurrency) skips
        the in-flight cap, so a token refresh never waits for requests that wait for it.
        `before` is awaited before every attempt: a connector's rate window takes its
        slot there, since the vendor counts a retried request like any other (a retry of
        a 429 outside the window drew more 429s).
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
                    if before is not None:
                        await before()
                    if capped:
                        async with self._slot():
                            response = await self.client.request(method, url, **kwargs)
                    else:
                        response = await self.client.request(method, url, **kwargs)
                    return parse(response)
        except httpx.TransportError as exc:
            raise TransientError(
                f"{type(exc).__name__} calling {httpx.URL(url).host} "
                f"after {self.retry.attempts} attempts"
            ) from exc
        raise SourceError("unreachable")  # pragma: no cover
