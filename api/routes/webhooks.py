"""POST /webhooks/{provider}/{connection_id}: CRM callbacks (docs/webhooks.md).

Authenticated by the vendor's own scheme (the connector verifies), not by API keys.
Bad callbacks get a 4xx and store nothing; good ones are stored before the answer
and processed by a job.
"""

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from api.deps import JobQueue
from api.errors import ApiError
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
from core.models import Connection

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
KNOWN_TTL = 10.0  # seconds a connection's channels and secrets are cached for verifying
WRITE_BATCH = 500  # events of concurrent callbacks stored in one transaction


@router.post(
    "/{provider}/{connection_id}",
    summary="A CRM vendor's callback",
    responses={400: {"description": "malformed body"}, 401: {"description": "not verified"},
               404: {"description": "no such connection for this provider"},
               409: {"description": "a replayed callback (vendors that sign each delivery)"},
               413: {"description": "body over 1 MB"}},
)
async def receive_webhook(provider: str, connection_id: Id, request: Request) -> Response:
    body = await _read_body(request)
    wire = WebhookRequest(body=body, headers=dict(request.headers),
                          query=dict(request.query_params))
    state = request.app.state
    intake = await _verify(state, provider, connection_id, wire)
    if intake.delivery is None:
        await _writer(state).store(connection_id, provider, intake.events)
    elif not await run_in_threadpool(_store_delivery, state, connection_id, provider, intake):
        raise ApiError(409, "this callback was received before (a replay); nothing was stored")
    jobs: JobQueue = state.jobs
    await jobs.enqueue_webhooks(connection_id)
    return Response(intake.body, media_type=intake.content_type)


async def _read_body(request: Request) -> bytes:
    too_large = ApiError(413, f"the body is over {webhooks.MAX_BODY} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > webhooks.MAX_BODY:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > webhooks.MAX_BODY:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _verify(state: Any, provider: str, connection_id: int,
                  wire: WebhookRequest) -> WebhookIntake:
    """The connector's verdict on a callback, against the connection's channels and secrets."""
    not_found = ApiError(404, f"there is no {provider} connection {connection_id}")
    try:
        cls = get_connector(provider)
    except UnknownProvider:
        raise not_found from None
    if not isinstance(cls, WebhookReceiver):
        raise ApiError(404, f"provider {provider!r} does not take webhooks")
    cache = _cache(state)
    known = cache.get(connection_id)
    fresh = known is None or time.monotonic() - known.loaded_at > KNOWN_TTL
    if fresh:
        known = cache[connection_id] = await run_in_threadpool(_load, state, connection_id)
    assert known is not None
    if known.provider != provider:
        cache.pop(connection_id, None)  # misses are not cached
        raise not_found
    try:
        return cls.parse_webhook(wire, known.secrets)
    except WebhookRejected as exc:
        if fresh:
            raise ApiError(exc.status, str(exc)) from None
        cache.pop(connection_id, None)  # a new channel or new secrets? check once more
        return await _verify(state, provider, connection_id, wire)


def _cache(state: Any) -> "dict[int, _Known]":
    cache: dict[int, _Known] | None = getattr(state, "webhook_known", None)
    if cache is None:
        cache = state.webhook_known = {}
    return cache


@dataclass(frozen=True, slots=True)
class _Known:
    """What callbacks of a connection are verified against, cached for KNOWN_TTL seconds
    (a callback that fails against the cache is checked again against the database)."""

    provider: str | None
    secrets: WebhookSecrets
    loaded_at: float


def _load(state: Any, connection_id: int) -> _Known:
    with session_scope(state.engine) as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            return _Known(None, WebhookSecrets({}, {}), time.monotonic())
        known = WebhookSecrets(
            secrets=state.secrets.open(connection.secrets_encrypted),
            channels=webhooks.channel_tokens(session, state.secrets, connection_id=connection_id))
        return _Known(connection.provider, known, time.monotonic())


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
        raise ApiError(404, f"there is no {provider} connection {connection_id}") from None


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
        groups: dict[tuple[int, str], list[tuple[str, dict[str, Any]]]] = {}
        for connection_id, provider, events, _ in batch:
            groups.setdefault((connection_id, provider), []).extend(events)
        with session_scope(self.state.engine) as session:
            for (connection_id, provider), events in groups.items():
                webhooks.store_events(session, connection_id=connection_id, provider=provider,
                                      events=events)

    def _write_alone(self, item: Item) -> BaseException | None:
        try:
            self._write([item])
        except IntegrityError:  # the connection was deleted since it was cached
            _cache(self.state).pop(item[0], None)
            return ApiError(404, f"there is no {item[1]} connection {item[0]}")
        except Exception as exc:
            return exc
        return None


def _writer(state: Any) -> _Writer:
    writer: _Writer | None = getattr(state, "webhook_writer", None)
    if writer is None:
        writer = state.webhook_writer = _Writer(state)
    return writer
