"""The webhook intake's thin path (api/webhook_path.py), driven directly: every refusal and
every success answers as the declared FastAPI route answers (status, JSON error, headers),
stores what the route stores, counts what the route counts, and everything else goes on
to FastAPI's stack."""

import asyncio
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from starlette.types import Receive, Scope, Send

from api.routes import webhooks as webhook_routes
from api.webhook_path import WebhookPath
from core import webhooks
from core.db import session_scope
from core.models import WebhookEvent, WebhookRejection
from tests.api_support import Api
from tests.integration import test_webhook_intake as intake
from tests.integration.test_api_hardening import BIG, HUGE, JUST_OVER
from tests.integration.test_webhook_intake import TOKEN, notification
from tests.integration.test_webhook_limits import add_fxiaoke, message

ZOHO = "/api/v1/webhooks/zoho/{}"
FXIAOKE = "/api/v1/webhooks/fxiaoke/{}"


class Paths:
    """Clients on the thin path alone (FastAPI behind it must not be reached) and on
    FastAPI's own stack alone (the declared route), both on one running app."""

    def __init__(self, api: Api, connection_id: int) -> None:
        self.api, self.connection_id = api, connection_id
        self.reached_fastapi: list[str] = []

        async def fastapi_not_expected(scope: Scope, receive: Receive, send: Send) -> None:
            self.reached_fastapi.append(scope["path"])
            await fastapi_stack(scope, receive, send)

        app = api.app
        fastapi_stack = FastAPI.build_middleware_stack(app)
        self.thin = client(app, WebhookPath(fastapi_not_expected))
        self.route = client(app, fastapi_stack)

    def stored(self) -> list[WebhookEvent]:
        with session_scope(self.api.engine) as session:
            return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def client(app: FastAPI, asgi: Any) -> httpx.AsyncClient:
    async def with_app(scope: Scope, receive: Receive, send: Send) -> None:
        scope["app"] = app  # as Starlette.__call__ sets it before the middleware stack
        await asgi(scope, receive, send)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=with_app),
                             base_url="http://test")


api = intake.api  # the running app with a Zoho connection and its channel (a fixture)


@pytest.fixture
async def paths(api: tuple[Api, int], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Paths]:
    # A refused callback waits for the connection's next reload (a second at most), and the
    # refusals' counts are written a second apart: both paths answer the same either way,
    # so this module does not wait a second for them (test_webhook_limits.py holds the
    # reloads to their pace).
    monkeypatch.setattr(webhook_routes, "RELOAD_EVERY", 0.05)
    monkeypatch.setattr(webhook_routes, "REJECTIONS_EVERY", 0.05)
    paths = Paths(*api)
    async with paths.thin, paths.route:
        yield paths


def same_answer(thin: httpx.Response, route: httpx.Response) -> None:
    assert (thin.status_code, thin.content) == (route.status_code, route.content), (
        thin.text, route.text)
    assert ({k: v for k, v in thin.headers.items() if k != "date"}
            == {k: v for k, v in route.headers.items() if k != "date"})


async def test_a_notification_is_stored_once_and_answered_as_the_route_answers(paths):
    url = ZOHO.format(paths.connection_id)
    thin = await paths.thin.post(url, json=notification())
    assert thin.status_code == 200 and thin.json() == {"status": "ok"}
    [event] = paths.stored()
    assert (event.connection_id, event.provider) == (paths.connection_id, "zoho")
    assert TOKEN not in orjson.dumps(event.payload).decode()
    same_answer(await paths.thin.post(url, json=notification()),  # a redelivery
                await paths.route.post(url, json=notification()))
    assert len(paths.stored()) == 1
    assert (await paths.thin.post(url, json=notification(server_time=1))).status_code == 200
    assert len(paths.stored()) == 2
    assert paths.reached_fastapi == []


REFUSED = [  # (path, body, headers, status, code)
    ("zoho/{id}", b'{"channel_id": "1000000068001", "token": ', {}, 400, "bad_request"),
    ("zoho/{id}", b"[]", {}, 422, "validation_error"),
    ("zoho/{id}", orjson.dumps(notification(ids=None)), {}, 422, "validation_error"),
    ("zoho/{id}", orjson.dumps(notification(token="wrong")), {}, 401, "unauthorized"),
    ("zoho/{id}", orjson.dumps(notification(token=None)), {}, 401, "unauthorized"),
    ("zoho/{id}", orjson.dumps(notification(channel_id="9")), {}, 401, "unauthorized"),
    ("zoho/{other}", orjson.dumps(notification()), {}, 404, "not_found"),
    ("fxiaoke/{id}", orjson.dumps(notification()), {}, 404, "not_found"),
    ("nosuchcrm/{id}", orjson.dumps(notification()), {}, 404, "not_found"),
    ("salesforce/{id}", orjson.dumps(notification()), {}, 404, "not_found"),  # no webhooks
    ("zoho/abc", orjson.dumps(notification()), {}, 422, "validation_error"),
    ("zoho/0", orjson.dumps(notification()), {}, 422, "validation_error"),
    ("zoho/" + JUST_OVER, b"{}", {}, 422, "validation_error"),
    ("zoho/" + BIG, b"{}", {}, 422, "validation_error"),
    ("zoho/" + HUGE, b"{}", {}, 422, "validation_error"),
    ("zoho/{id}", b"{}", {"content-length": str(webhooks.MAX_BODY + 1)}, 413,
     "payload_too_large"),
]


@pytest.mark.parametrize(("path", "body", "headers", "status", "code"), REFUSED)
async def test_each_refusal_answers_as_the_route_and_stores_nothing(paths, path, body, headers,
                                                                   status, code):
    url = "/api/v1/webhooks/" + path.format(id=paths.connection_id,
                                            other=paths.connection_id + 99)
    sent = {"content": body, "headers": {"Content-Type": "application/json", **headers}}
    if "content-length" in headers:  # a declared length over the cap: refused unread
        sent["content"] = body + b" " * webhooks.MAX_BODY
        del sent["headers"]["content-length"]
    thin = await paths.thin.post(url, **sent)
    assert thin.status_code == status, thin.text
    assert thin.json()["error"]["code"] == code
    assert TOKEN not in thin.text
    for value in (BIG, HUGE, JUST_OVER):  # never echoed
        assert value not in thin.text
    same_answer(thin, await paths.route.post(url, **sent))
    assert paths.stored() == []
    assert paths.reached_fastapi == []


async def test_a_chunked_body_over_the_cap_is_413_while_it_is_read(paths):
    big = orjson.dumps(notification(ids=["1" * 100] * 11_000))
    assert len(big) > webhooks.MAX_BODY

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while reading
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    url = ZOHO.format(paths.connection_id)
    thin = await paths.thin.post(url, content=chunks())
    assert thin.status_code == 413
    assert thin.json()["error"]["code"] == "payload_too_large"
    same_answer(thin, await paths.route.post(url, content=chunks()))
    assert paths.stored() == []


async def test_refused_callbacks_of_a_known_connection_are_counted(paths):
    url = ZOHO.format(paths.connection_id)
    for _ in range(3):
        assert (await paths.thin.post(url, json=notification(token="forged"))).status_code == 401
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # written at once, then every REJECTIONS_EVERY
        with session_scope(paths.api.engine) as session:
            row = session.scalars(select(WebhookRejection)).first()
            if row is not None and row.count == 3:
                break
        await asyncio.sleep(0.1)
    assert row is not None and (row.connection_id, row.count, row.last_status) == (
        paths.connection_id, 3, 401)
    assert TOKEN not in (row.last_reason or "")


async def test_a_replayed_delivery_is_409_and_counted(paths):
    fx = add_fxiaoke(paths.api)
    url, body = FXIAOKE.format(fx), orjson.dumps(message(1))
    first = await paths.thin.post(url, content=body)
    assert first.status_code == 200, first.text
    replay = await paths.thin.post(url, content=body)
    assert replay.status_code == 409
    assert replay.json()["error"]["code"] == "conflict"
    same_answer(replay, await paths.route.post(url, content=body))
    assert [e.connection_id for e in paths.stored()] == [fx]


async def test_over_the_rate_is_429_with_retry_after(paths, monkeypatch):
    now = [time.monotonic()]  # the intake's clock, moved by the test alone
    monkeypatch.setattr(webhook_routes, "time", SimpleNamespace(monotonic=lambda: now[0]))
    state = paths.api.app.state
    state.settings = state.settings.model_copy(update={"webhook_rate_per_second": 2})
    url = ZOHO.format(paths.connection_id)
    answers = [await paths.thin.post(url, json=notification(server_time=n)) for n in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].headers["retry-after"] == "1"
    assert answers[2].json()["error"]["code"] == "too_many_requests"
    same_answer(answers[2], await paths.route.post(url, json=notification(server_time=9)))
    now[0] += 1.0
    assert (await paths.thin.post(url, json=notification(server_time=3))).status_code == 200
    assert len(paths.stored()) == 3


async def test_everything_else_goes_to_fastapi(paths):
    url = ZOHO.format(paths.connection_id)
    assert (await paths.thin.get(url)).status_code == 405  # the route takes POST only
    assert (await paths.thin.post(url + "/passed", json={})).status_code == 404
    assert (await paths.thin.get("/health")).status_code == 200
    assert paths.reached_fastapi == [url, url + "/passed", "/health"]


async def test_the_app_serves_callbacks_through_the_thin_path(paths):
    api = paths.api
    await api.client.get("/health")  # the middleware stack is built on the first call
    assert isinstance(api.app.middleware_stack, WebhookPath)
    assert api.app.untraced  # no OpenTelemetry: callbacks are taken before FastAPI.__call__
    fastapi_stack = api.app.middleware_stack.app

    async def unreachable(scope: Scope, receive: Receive, send: Send) -> None:
        raise AssertionError(f"FastAPI reached for {scope['method']} {scope['path']}")

    api.app.middleware_stack.app = unreachable
    try:
        answer = await api.client.post(ZOHO.format(paths.connection_id), json=notification())
    finally:
        api.app.middleware_stack.app = fastapi_stack
    assert answer.status_code == 200, answer.text
    assert len(paths.stored()) == 1


def test_the_openapi_document_still_describes_the_webhook_operation(paths):
    spec = paths.api.app.openapi()
    described = spec["paths"]["/api/v1/webhooks/{provider}/{connection_id}"]
    assert list(described) == ["post"]
    assert described["post"]["summary"] == "A CRM vendor's callback"
    assert {"200", "400", "401", "404", "409", "413", "429"} <= set(described["post"]["responses"])
    assert [p["name"] for p in described["post"]["parameters"]] == ["provider", "connection_id"]
