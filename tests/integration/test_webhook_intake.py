"""POST /api/v1/webhooks/{provider}/{connection_id}: every intake rule, on SQLite and PostgreSQL.

Bad callbacks get a 4xx and store nothing; good ones are stored (once per dedupe key)
before the 200.
"""

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from sqlalchemy import func, select

from core import webhooks
from core.db import session_scope
from core.models import Connection, WebhookEvent
from tests.api_support import add_connection, running_api

URL = "/api/v1/webhooks/zoho/{}"
TOKEN = "k" * 43


def notification(**changes: Any) -> dict[str, Any]:
    return {"server_time": 1718117126473, "query_params": {}, "module": "Deals",
            "resource_uri": "https://www.zohoapis.com/crm/v2/Deals", "ids": ["5725767000003000064"],
            "affected_fields": [], "operation": "update", "channel_id": "1000000068001",
            "token": TOKEN, **changes}


def stored(engine) -> list[WebhookEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(WebhookEvent)))


@pytest.fixture
async def api(engine):
    async with running_api(engine) as api:
        connection_id = add_connection(engine)
        with session_scope(engine) as session:
            webhooks.save_channel(session, api.app.state.secrets, connection_id=connection_id,
                                  channel_id="1000000068001", token=TOKEN, events=["Deals.all"],
                                  notify_url="http://x", expires_at=datetime.now(UTC)
                                  + timedelta(days=7))
        api.client.headers.pop("Authorization")  # vendors send no API key
        yield api, connection_id


async def test_a_notification_is_stored_once_and_answered_200(api, engine):
    client, connection_id = api[0].client, api[1]
    for _ in range(3):  # a vendor redelivering the same notification
        response = await client.post(URL.format(connection_id), json=notification())
        assert response.status_code == 200, response.text
    assert response.json() == {"status": "ok"}
    [event] = stored(engine)
    assert (event.connection_id, event.provider) == (connection_id, "zoho")
    assert event.payload is not None and event.payload["ids"] == ["5725767000003000064"]
    assert TOKEN not in orjson.dumps(event.payload).decode()
    other = await client.post(URL.format(connection_id), json=notification(server_time=1))
    assert other.status_code == 200
    assert len(stored(engine)) == 2


@pytest.mark.parametrize(("body", "status", "code"), [
    (b'{"channel_id": "1000000068001", "token": ', 400, "bad_request"),
    (b"[]", 422, "validation_error"),
    (orjson.dumps(notification(ids=None)), 422, "validation_error"),
    (orjson.dumps(notification(token="wrong")), 401, "unauthorized"),
    (orjson.dumps(notification(token=None)), 401, "unauthorized"),
    (orjson.dumps(notification(channel_id="1000000068009")), 401, "unauthorized"),
])
async def test_bad_bodies_get_a_4xx_and_store_nothing(api, engine, body, status, code):
    client, connection_id = api[0].client, api[1]
    response = await client.post(URL.format(connection_id), content=body,
                                 headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert TOKEN not in response.text
    assert stored(engine) == []


async def test_an_oversized_body_is_413(api, engine):
    client, connection_id = api[0].client, api[1]
    big = orjson.dumps(notification(ids=["1" * 100] * 11_000))
    assert len(big) > webhooks.MAX_BODY
    response = await client.post(URL.format(connection_id), content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"

    async def chunks():  # no Content-Length: counted while reading
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    response = await client.post(URL.format(connection_id), content=chunks())
    assert response.status_code == 413
    assert stored(engine) == []


async def test_unknown_connection_and_wrong_provider_are_404(api, engine):
    client, connection_id = api[0].client, api[1]
    body = orjson.dumps(notification())
    for url in (URL.format(connection_id + 99), f"/api/v1/webhooks/fxiaoke/{connection_id}",
                f"/api/v1/webhooks/nosuchcrm/{connection_id}"):
        response = await client.post(url, content=body)
        assert response.status_code == 404, (url, response.text)
        assert response.json()["error"]["code"] == "not_found"
    with session_scope(engine) as session:  # a connection of the same id, other provider
        row = session.get(Connection, connection_id)
        assert row is not None
        row.provider = "fxiaoke"
    api[0].app.state.webhook_known = {}  # no route changes a provider: read the row afresh
    response = await client.post(URL.format(connection_id), content=body)
    assert response.status_code == 404
    assert (await client.post("/api/v1/webhooks/zoho/abc", content=body)).status_code == 422
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(WebhookEvent)) == 0


async def test_a_channel_subscribed_after_the_first_callback_is_accepted_at_once(api, engine):
    client, connection_id = api[0].client, api[1]
    assert (await client.post(URL.format(connection_id), json=notification())).status_code == 200
    with session_scope(engine) as session:  # renew_channels subscribed a new channel
        webhooks.save_channel(session, api[0].app.state.secrets, connection_id=connection_id,
                              channel_id="1000000068002", token="fresh-token",
                              events=["Deals.all"], notify_url="http://x",
                              expires_at=datetime.now(UTC) + timedelta(days=7))
    fresh = notification(channel_id="1000000068002", token="fresh-token")
    assert (await client.post(URL.format(connection_id), json=fresh)).status_code == 200
    wrong = notification(channel_id="1000000068002", token=TOKEN)
    assert (await client.post(URL.format(connection_id), json=wrong)).status_code == 401
    assert len(stored(engine)) == 2
