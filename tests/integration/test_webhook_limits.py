"""Webhook intake under load: a storm of forged callbacks reads and decrypts a connection's
secrets at most once a second, and each connection is held to
CRMSYNC_WEBHOOK_RATE_PER_SECOND (429 with Retry-After, then it recovers), per API
process."""

import asyncio
import time
from collections.abc import AsyncIterator
from itertools import pairwise
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from api.routes import webhooks as webhook_routes
from core.db import session_scope
from core.models import Connection, WebhookEvent
from tests.api_support import Api, running_api
from tests.integration.test_fxiaoke_webhooks import AES_KEY, EVENT, OTHER_KEY, callback

URL = "/api/v1/webhooks/fxiaoke/{}"


def add_fxiaoke(api: Api, name: str = "fx") -> int:
    secrets = {"app_id": "FSAID_x", "app_secret": "app-secret", "permanent_code": "perm",
               "aes_key": AES_KEY}
    with session_scope(api.engine) as session:
        connection = Connection(provider="fxiaoke", name=name, config={
            "current_open_user_id": "FSUID_ADMIN"},
            secrets_encrypted=api.app.state.secrets.seal(secrets))
        session.add(connection)
        session.flush()
        return int(connection.id or 0)


def message(n: int, **kwargs: Any) -> dict[str, Any]:
    return callback(event={**EVENT, "messageId": f"MSG{n:06d}"}, nonce=f"n{n}", **kwargs)


async def post(api: Api, connection_id: int, body: dict[str, Any]) -> Any:
    return await api.client.post(URL.format(connection_id), content=orjson.dumps(body),
                                 headers={"Content-Type": "application/json"})


def stored(api: Api) -> list[str]:
    with session_scope(api.engine) as session:
        return [e.dedupe_key for e in session.scalars(select(WebhookEvent))]


@pytest.fixture
async def api(engine) -> AsyncIterator[Api]:
    async with running_api(engine) as api:
        api.client.headers.pop("Authorization")  # vendors send no API key
        yield api


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The intake's clock, moved by the test alone (`clock[0] += seconds`): on a busy
    machine, slow requests would refill a bucket while the test fills it."""
    now = [time.monotonic()]
    monkeypatch.setattr(webhook_routes, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def rate(api: Api, per_second: int) -> None:
    state = api.app.state
    state.settings = state.settings.model_copy(update={"webhook_rate_per_second": per_second})


async def test_a_forged_storm_decrypts_at_most_once_a_second(api, monkeypatch):
    connection_id = add_fxiaoke(api)
    box = api.app.state.secrets
    opened: list[float] = []
    real_open = box.open
    monkeypatch.setattr(box, "open", lambda token: opened.append(time.monotonic())
                        or real_open(token))
    assert (await post(api, connection_id, message(0))).status_code == 200
    assert len(opened) == 1
    start = time.monotonic()
    storm: list[asyncio.Task[Any]] = []
    for wave in range(25):  # 500 forged callbacks (another key) over 2.5 s
        storm += [asyncio.create_task(post(api, connection_id, message(1000 + 20 * wave + i,
                                                                        key=OTHER_KEY)))
                  for i in range(20)]
        await asyncio.sleep(0.1)
    good = await post(api, connection_id, message(1))  # the vendor, during the storm
    answers = await asyncio.gather(*storm)
    elapsed = time.monotonic() - start
    assert good.status_code == 200, good.text
    assert {a.status_code for a in answers} == {401}
    assert all("signature" in a.json()["error"]["message"] for a in answers)
    reloads = opened[1:]
    assert 1 <= len(reloads) <= elapsed + 1, (len(reloads), elapsed)
    assert all(b - a >= 0.95 for a, b in pairwise(reloads)), reloads
    assert sorted(stored(api)) == ["MSG000000", "MSG000001"]
    with session_scope(api.engine) as session:  # the app's aesKey is regenerated:
        row = session.get(Connection, connection_id)  # still picked up within a second
        assert row is not None
        row.secrets_encrypted = box.seal(
            {"app_id": "FSAID_x", "app_secret": "s", "permanent_code": "p",
             "aes_key": OTHER_KEY})
    start = time.monotonic()
    response = await post(api, connection_id, message(2, key=OTHER_KEY))
    assert response.status_code == 200, response.text
    assert time.monotonic() - start < 1.5


async def test_over_the_rate_a_connection_gets_429_and_then_recovers(api, clock):
    rate(api, 5)
    connection_id, other = add_fxiaoke(api), add_fxiaoke(api, "other")
    for n in range(5):
        assert (await post(api, connection_id, message(n))).status_code == 200
    refused = await post(api, connection_id, message(5))
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert "5 callbacks per second" in refused.json()["error"]["message"]
    assert AES_KEY not in refused.text
    assert "MSG000005" not in stored(api)
    assert (await post(api, other, message(100))).status_code == 200  # per connection
    clock[0] += float(refused.headers["Retry-After"])
    retried = await post(api, connection_id, message(5))  # the vendor retries
    assert retried.status_code == 200, retried.text
    assert "MSG000005" in stored(api)


async def test_each_api_process_keeps_its_own_bucket(engine, clock):
    """The intake rate costs no round trip: a bucket per connection in each API process
    (with N replicas a connection may send N times the rate; docs/webhooks.md)."""
    async with running_api(engine) as first, running_api(engine) as second:
        for api in (first, second):
            api.client.headers.pop("Authorization")
            rate(api, 2)
        second.app.state.secrets = second.app.state.ctx.secrets = first.app.state.secrets
        connection_id = add_fxiaoke(first)
        for n, api in enumerate((first, first, second, second)):
            assert (await post(api, connection_id, message(n))).status_code == 200
        for n, api in enumerate((first, second), start=4):
            refused = await post(api, connection_id, message(n))
            assert refused.status_code == 429, refused.text
