"""POST /webhooks/{provider}/{connection_id}: CRM callbacks (docs/webhooks.md).

Authenticated by the vendor's own scheme (the connector verifies), not by API keys.
Bad callbacks get a 4xx and store nothing; good ones are stored before the answer
and processed by a job. The route is declared here for the OpenAPI document; the calls
are served by api.webhook_path, in front of FastAPI's routing, through `intake`.
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from math import ceil
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import JobQueue
from api.errors import ApiError, ErrorBody
from api.listing import Id
from connectors.base import (
    WebhookIntake,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.registry import UnknownProvider, get_connector
from core import webhooks
from core.db import session_scope

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
KNOWN_TTL = 10.0  # seconds a connection's channels and secrets are cached for verifying
RELOAD_EVERY = 1.0  # seconds: a connection's secrets are read and decrypted at most this often
MAX_CACHED = 10_000  # connections (and unknown ids) cached per API process
WRITE_BATCH = 500  # events of concurrent callbacks stored in one transaction
REJECTIONS_EVERY = 1.0  # seconds between writes of the refused callbacks' counts
log = logging.getLogger("crmsync.webhooks")


@router.post(
    "/{provider}/{connection_id}",
    summary="A CRM vendor's callback",
    responses={
        200: {"description": "The acknowledgement the vendor expects (its own JSON)."},
        **{status: {"model": ErrorBody, "description": text} for status, text in (
            (400, "malformed body"), (401, "not verified"),
            (404, "no such connection for this provider"),
            (409, "a replayed callback (vendors that sign each delivery)"),
            (413, "body over 1 MB"),
            (429, "over the connection's callbacks per second (Retry-After)"))}},
)
async def receive_webhook(provider: str, connection_id: Id, request: Request) -> Response:
    """Declared for the OpenAPI document: api.webhook_path serves these calls in front of
    FastAPI's routing, through the same `intake`."""
    return await intake(request, provider, connection_id)


async def intake(request: Request, provider: str, connection_id: int) -> Response:
    """A callback's answer: verified, stored, processing queued. Raises ApiError (the
    API's JSON errors) for a callback that is refused."""
    body = await _read_body(request)
    state = request.app.state
    wire = WebhookRequest(body=body, headers=dict(request.headers),
                          query=dict(request.query_params), method=request.method,
                          url=_called_url(state.settings.public_url, request))
    try:
        intake = await _verify(state, provider, connection_id, wire)
    except _Refused as exc:
        _rejections(state).count(connection_id, exc.error)
        raise exc.error from None
    if intake.delivery is None:
        await _writer(state).store(connection_id, provider, intake.events)
    elif not await run_in_threadpool(_store_delivery, state, connection_id, provider, intake):
        replay = ApiError(409, "this callback was received before (a replay); nothing was stored")
        _rejections(state).count(connection_id, replay)
        raise replay
    jobs: JobQueue = state.jobs
    await jobs.enqueue_webhooks(connection_id)
    return Response(intake.body, media_type=intake.content_type)


def _called_url(public_url: str | None, request: Request) -> str:
    """The URL the vendor called: behind a proxy the public URL's scheme and host."""
    if not public_url:
        return str(request.url)
    query = request.url.query
    return public_url.rstrip("/") + request.url.path + (f"?{query}" if query else "")


async def _read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > webhooks.MAX_BODY:
        raise _too_large()
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > webhooks.MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def _verify(state: Any, provider: str, connection_id: int,
                  wire: WebhookRequest) -> WebhookIntake:
    """The connector's verdict on a callback, against the connection's channels and secrets.

    They are cached for KNOWN_TTL seconds. A callback the cache refuses (a new channel,
    new secrets, a new connection?) is checked once more against a reload, but a
    connection is reloaded (read and decrypted) at most once per RELOAD_EVERY seconds:
    refused callbacks wait for the next reload (a second at most) and share it, so a
    storm of forged callbacks costs one reload a second."""
    try:
        cls = _receiver(get_connector(provider))
    except UnknownProvider:
        raise _not_found(provider, connection_id) from None
    if cls is None:
        raise ApiError(404, f"provider {provider!r} does not take webhooks")
    started = time.monotonic()
    known = await _known(state, connection_id)
    if known.provider != provider and known.loaded_at < started:
        known = await _known(state, connection_id, newer_than=known)
    if known.provider != provider:
        raise _not_found(provider, connection_id)
    await _admit(state, connection_id)
    try:
        return cls.parse_webhook(wire, known.secrets)
    except WebhookRejected as exc:
        rejected = exc
    if known.loaded_at < started:  # checked against an older load: once more
        known = await _known(state, connection_id, newer_than=known)
        if known.provider != provider:
            raise _not_found(provider, connection_id)
        try:
            return cls.parse_webhook(wire, known.secrets)
        except WebhookRejected as exc:
            rejected = exc
    raise _Refused(ApiError(rejected.status, str(rejected))) from None


def _too_large() -> ApiError:
    return ApiError(413, f"the body is over {webhooks.MAX_BODY} bytes")


def _not_found(provider: str, connection_id: int) -> ApiError:
    return ApiError(404, f"there is no {provider} connection {connection_id}")


_RECEIVERS: dict[type, bool] = {}


def _receiver(cls: Any) -> WebhookReceiver | None:
    """The connector class if it takes webhooks, else None. (isinstance on a runtime
    Protocol inspects its members each time: its verdict is kept per class.)"""
    takes = _RECEIVERS.get(cls)
    if takes is None:
        takes = _RECEIVERS[cls] = isinstance(cls, WebhookReceiver)
    return cls if takes else None


class _Refused(Exception):
    """A callback of a known connection that its connector refused (counted)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(str(error))
        self.error = error


class _Rejections:
    """Refused callbacks counted for the Operations page (core.webhooks.record_rejection):
    in memory, written at once and then at most every REJECTIONS_EVERY seconds, so a storm
    of forged callbacks costs a write a second, not one each."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.pending: dict[int, tuple[int, int, str]] = {}  # id -> count, status, reason
        self.task: asyncio.Task[None] | None = None

    def count(self, connection_id: int, error: ApiError) -> None:
        count = self.pending.get(connection_id, (0, 0, ""))[0] + 1
        self.pending[connection_id] = (count, error.status_code, str(error.detail))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, {}
            await run_in_threadpool(self._write, batch)
            await asyncio.sleep(REJECTIONS_EVERY)

    def _write(self, batch: dict[int, tuple[int, int, str]]) -> None:
        for connection_id, (count, status, reason) in batch.items():
            try:
                with session_scope(self.state.engine) as session:
                    webhooks.record_rejection(session, connection_id=connection_id,
                                              status=status, reason=reason, count=count)
            except IntegrityError:  # the connection was deleted meanwhile
                continue
            except Exception:  # counting must not break the intake
                log.exception("could not count refused callbacks of connection %s",
                              connection_id)


def _rejections(state: Any) -> _Rejections:
    counter: _Rejections | None = getattr(state, "webhook_rejections", None)
    if counter is None:
        counter = state.webhook_rejections = _Rejections(state)
    return counter


async def _known(state: Any, connection_id: int, newer_than: "_Known | None" = None) -> "_Known":
    """The cached channels and secrets (loaded within KNOWN_TTL), or with `newer_than`
    a load newer than that one. A connection is loaded at most once per RELOAD_EVERY
    seconds, and concurrent callers share one load."""
    cached = _cache(state).get(connection_id)
    now = time.monotonic()
    if cached is not None and (cached.loaded_at > newer_than.loaded_at if newer_than
                               else now - cached.loaded_at <= KNOWN_TTL):
        return cached
    loads: dict[int, asyncio.Future[_Known]] = _per_process(state, "webhook_loads")
    loading = loads.get(connection_id)
    if loading is None:
        delay = 0.0 if cached is None else max(0.0, cached.loaded_at + RELOAD_EVERY - now)
        loading = loads[connection_id] = asyncio.ensure_future(
            _reload(state, connection_id, delay))
    return await asyncio.shield(loading)


async def _reload(state: Any, connection_id: int, delay: float) -> "_Known":
    try:
        await asyncio.sleep(delay)
        known = await run_in_threadpool(_load, state, connection_id)
        cache = _cache(state)
        if connection_id not in cache and len(cache) >= MAX_CACHED:
            _prune(cache)
        cache[connection_id] = known
        return known
    finally:
        _per_process(state, "webhook_loads").pop(connection_id, None)


def _prune(cache: "dict[int, _Known]") -> None:
    """Room in a full cache: expired entries first, then misses, then everything."""
    now = time.monotonic()
    for drop in (lambda k: now - k.loaded_at > KNOWN_TTL, lambda k: k.provider is None):
        for connection_id in [c for c, k in cache.items() if drop(k)]:
            del cache[connection_id]
        if len(cache) < MAX_CACHED:
            return
    cache.clear()


async def _admit(state: Any, connection_id: int) -> None:
    """429 with Retry-After when the connection is over CRMSYNC_WEBHOOK_RATE_PER_SECOND in
    this API process: a token bucket per connection, in memory (no Redis round trip on
    the intake path; with N API replicas a connection may send N times the rate)."""
    rate: int = state.settings.webhook_rate_per_second
    buckets: dict[int, tuple[float, float]] = _per_process(state, "webhook_buckets")
    now = time.monotonic()
    tokens, at = buckets.get(connection_id, (float(rate), now))
    tokens = min(float(rate), tokens + (now - at) * rate)
    buckets[connection_id] = (tokens - 1 if tokens >= 1 else tokens, now)
    if tokens < 1:
        wait = (1 - tokens) / rate
        raise ApiError(429, f"connection {connection_id} is over its {rate} callbacks per "
                            "second; retry later", headers={"Retry-After": str(ceil(wait))})


def _cache(state: Any) -> "dict[int, _Known]":
    return _per_process(state, "webhook_known")


def _per_process(state: Any, name: str) -> dict[Any, Any]:
    """A dict kept on the app's state (this API process), made on first use."""
    value: dict[Any, Any] | None = getattr(state, name, None)
    if value is None:
        value = {}
        setattr(state, name, value)
    return value


@dataclass(frozen=True, slots=True)
class _Known:
    """What callbacks of a connection are verified against (provider None: no such
    connection), cached for KNOWN_TTL seconds and reloaded at most every RELOAD_EVERY."""

    provider: str | None
    secrets: WebhookSecrets
    loaded_at: float


def _load(state: Any, connection_id: int) -> _Known:
    """One read of the connection and its channels (dated before it: what was committed
    before that moment is in it)."""
    at = time.monotonic()
    with session_scope(state.engine) as session:
        found = webhooks.verification_secrets(session, state.secrets,
                                              connection_id=connection_id)
    if found is None:
        return _Known(None, WebhookSecrets({}, {}), at)
    provider, secrets, channels = found
    return _Known(provider, WebhookSecrets(secrets=secrets, channels=channels), at)


def _store_delivery(state: Any, connection_id: int, provider: str,
                    intake: WebhookIntake) -> bool:
    """A fingerprinted delivery (WebhookIntake.delivery): False when it is a replay."""
    assert intake.delivery is not None
    try:
        with session_scope(state.engine) as session:
            return webhooks.store_delivery(session, connection_id=connection_id,
                                           provider=provider, events=intake.events,
                                           delivery=intake.delivery)
    except IntegrityError:  # the connection was deleted since it was cached
        _cache(state).pop(connection_id, None)
        raise _not_found(provider, connection_id) from None


Item = tuple[int, str, list[tuple[str, dict[str, Any]]], "asyncio.Future[None]"]


class _Writer:
    """Stores the events of concurrent callbacks in one transaction: one commit answers
    many requests, and each answer still waits for its events to be committed."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.pending: list[Item] = []
        self.task: asyncio.Task[None] | None = None

    async def store(self, connection_id: int, provider: str,
                    events: list[tuple[str, dict[str, Any]]]) -> None:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((connection_id, provider, events, future))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending[:WRITE_BATCH], self.pending[WRITE_BATCH:]
            try:
                await run_in_threadpool(self._write, batch)
                outcomes: list[BaseException | None] = [None] * len(batch)
            except IntegrityError:  # a connection was deleted: find whose events those were
                outcomes = [await run_in_threadpool(self._write_alone, item) for item in batch]
            except Exception as exc:
                outcomes = [exc] * len(batch)
            for (_, _, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the client went away
                    continue
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)

    def _write(self, batch: list[Item]) -> None:
        with session_scope(self.state.engine) as session:
            webhooks.store_batch(session, [(connection_id, provider, events)
                                           for connection_id, provider, events, _ in batch])

    def _write_alone(self, item: Item) -> BaseException | None:
        try:
            self._write([item])
        except IntegrityError:  # the connection was deleted since it was cached
            _cache(self.state).pop(item[0], None)
            return _not_found(item[1], item[0])
        except Exception as exc:
            return exc
        return None


def _writer(state: Any) -> _Writer:
    writer: _Writer | None = getattr(state, "webhook_writer", None)
    if writer is None:
        writer = state.webhook_writer = _Writer(state)
    return writer
