"""POST /api/v1/webhooks/fxiaoke/{id}: Fxiaoke's signed, encrypted callbacks
(docs/vendors/fxiaoke.md §5), on SQLite and PostgreSQL. Good ones are stored once per
messageId and answered with the signed, encrypted "success"; a retry is acknowledged, a
replay refused; bad ones store nothing."""

import base64
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
import respx
from sqlalchemy import select

from connectors.fxiaoke import callbacks
from core.db import session_scope
from core.models import Connection, WebhookEvent
from core.security import SecretBox
from tests.api_support import running_api

AES_KEY = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
OTHER_KEY = base64.b64encode(b"fedcba9876543210fedcba9876543210").decode()
URL = "/api/v1/webhooks/fxiaoke/{}"
EVENT = {"tenantId": 691413, "eventType": "update", "apiName": "NewOpportunityObj",
         "dataId": "5f9cd4e6e4400e0001217faa", "timestamp": 1604644208525,
         "messageId": "AC11291700002A9F00000608C038697A0"}


def callback(key: str = AES_KEY, *, retry: int | None = None, nonce: str = "mi3wrpKNnq4YdIZC",
             event: dict[str, Any] | None = None, age_ms: int = 0,
             message_id: str | None = None) -> dict[str, Any]:
    event = event or EVENT
    return callbacks.build_callback(event, key, enterprise_account="gxcxkj",
                                    message_id=message_id or event["messageId"],
                                    retry_times=retry, nonce=nonce,
                                    timestamp=int(time.time() * 1000) - age_ms)


def stored(engine) -> list[WebhookEvent]:
    with session_scope(engine) as session:
        return list(session.scalars(select(WebhookEvent)))


@pytest.fixture
async def api(engine):
    async with running_api(engine) as api:
        secrets = {"app_id": "FSAID_x", "app_secret": "app-secret-never-echoed",
                   "permanent_code": "perm", "aes_key": AES_KEY}
        with session_scope(engine) as session:
            connection = Connection(provider="fxiaoke", name="fx", config={
                "current_open_user_id": "FSUID_ADMIN"},
                secrets_encrypted=api.app.state.secrets.seal(secrets))
            session.add(connection)
            session.flush()
            connection_id = int(connection.id or 0)
        api.client.headers.pop("Authorization")  # vendors send no API key
        yield api, connection_id


async def post(api, connection_id: int, body: Any) -> Any:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return await api[0].client.post(URL.format(connection_id), content=content,
                                    headers={"Content-Type": "application/json"})


async def test_a_signed_callback_is_stored_and_acknowledged_with_a_signed_success(api, engine):
    response = await post(api, api[1], callback())
    assert response.status_code == 200, response.text
    assert callbacks.read_acknowledgement(response.json(), AES_KEY) == "success"
    [event] = stored(engine)
    assert (event.connection_id, event.provider) == (api[1], "fxiaoke")
    assert event.dedupe_key == EVENT["messageId"]
    assert event.payload is not None
    assert {k: event.payload[k] for k in ("eventType", "apiName", "dataId")} == {
        "eventType": "update", "apiName": "NewOpportunityObj", "dataId": EVENT["dataId"]}
    assert AES_KEY not in orjson.dumps(event.payload).decode()


async def test_a_retry_is_acknowledged_and_stores_nothing_new(api, engine):
    assert (await post(api, api[1], callback())).status_code == 200
    for attempt in (1, 2):  # §5: the platform retries, counting retryTimes (new signature)
        retry = await post(api, api[1], callback(retry=attempt, nonce=f"n{attempt}"))
        assert retry.status_code == 200, retry.text
        assert callbacks.read_acknowledgement(retry.json(), AES_KEY) == "success"
    [event] = stored(engine)
    assert event.payload is not None and len(event.payload["_deliveries"]) == 3


@pytest.mark.parametrize("first_retry", [None, 1])
async def test_a_replayed_callback_is_409_and_stores_nothing(api, engine, first_retry):
    body = callback(retry=first_retry)
    assert (await post(api, api[1], body)).status_code == 200
    before = [(e.id, e.payload, e.status) for e in stored(engine)]
    replay = await post(api, api[1], body)  # the very same signed body again
    assert replay.status_code == 409, replay.text
    assert replay.json()["error"]["message"].startswith("this callback was received before")
    assert [(e.id, e.payload, e.status) for e in stored(engine)] == before


def _tampered() -> dict[str, Any]:
    body = callback()
    body["encryptedContent"] = callbacks.encrypt(orjson.dumps(
        {**EVENT, "dataId": "evil"}).decode(), AES_KEY)
    return body


def _signed_garbage() -> dict[str, Any]:
    body = callback()
    body["encryptedContent"] = callbacks.encrypt("not json", AES_KEY)
    body["signature"] = callbacks.callback_signature(body, AES_KEY)
    return body


# Bodies are made when a test runs (callbacks carry the current time, refused when stale).
@pytest.mark.parametrize(("make", "status"), [
    (lambda: b'{"signature": ', 400),
    (lambda: b"[]", 422),
    (lambda: {k: v for k, v in callback().items() if k != "nonce"}, 422),
    (lambda: {**callback(), "retryTimes": "1"}, 422),
    (lambda: {**callback(), "timestamp": "soon"}, 422),
    (lambda: callback(OTHER_KEY), 401),  # signed with another key (forged)
    (lambda: {**callback(), "signature": "0" * 40}, 401),
    (_tampered, 401),  # content swapped after signing
    (lambda: {**callback(retry=1), "retryTimes": 2}, 401),  # retryTimes is signed
    (_signed_garbage, 422),
])
async def test_bad_callbacks_get_a_4xx_and_store_nothing(api, engine, make, status):
    response = await post(api, api[1], make())
    assert response.status_code == status, response.text
    assert AES_KEY not in response.text and "app-secret" not in response.text
    assert stored(engine) == []


def _shifted() -> dict[str, Any]:
    """Two characters of messageId moved into enterpriseAccount: the same signature."""
    body = callback()
    return {**body, "messageId": body["messageId"][:-2],
            "enterpriseAccount": body["messageId"][-2:] + body["enterpriseAccount"]}


@pytest.mark.parametrize(("make", "message"), [
    (_shifted, "messageId inside the encrypted content differs"),
    (lambda: callback(event={k: v for k, v in EVENT.items() if k != "messageId"},
                      message_id="AC11291700002A9F00000608C038697A0"), "messageId inside"),
    (lambda: callback(age_ms=int((datetime.now(UTC) - datetime(2001, 1, 1, tzinfo=UTC))
                                 .total_seconds() * 1000)), "behind this server's clock"),
    (lambda: callback(age_ms=6 * 60 * 1000), "5 minutes either side"),
    (lambda: callback(age_ms=-6 * 60 * 1000), "ahead of this server's clock"),
])
async def test_shifted_fields_and_stale_callbacks_are_refused(api, engine, make, message):
    response = await post(api, api[1], make())
    assert response.status_code == 401, response.text
    assert message in response.json()["error"]["message"]
    assert stored(engine) == []


async def test_a_shifted_replay_of_a_stored_callback_is_409(api, engine):
    """retryTimes moved into enterpriseAccount: same signature and messageId, a replay."""
    body = callback(retry=1)
    assert (await post(api, api[1], body)).status_code == 200
    before = [(e.id, e.payload) for e in stored(engine)]
    moved = {k: v for k, v in body.items() if k != "retryTimes"}
    moved["enterpriseAccount"] = "1" + body["enterpriseAccount"]
    assert callbacks.callback_signature(moved, AES_KEY) == body["signature"]
    response = await post(api, api[1], moved)
    assert response.status_code == 409, response.text
    assert [(e.id, e.payload) for e in stored(engine)] == before


async def test_a_late_retry_with_a_fresh_timestamp_is_acknowledged(api, engine):
    """The outer timestamp is the delivery's: an event hours old, retried now, is taken."""
    old_event = {**EVENT, "timestamp": int(time.time() * 1000) - 3 * 3600 * 1000}
    assert (await post(api, api[1], callback(event=old_event, age_ms=4 * 60 * 1000))
            ).status_code == 200
    retry = await post(api, api[1], callback(event=old_event, retry=3, nonce="late"))
    assert retry.status_code == 200, retry.text
    assert callbacks.read_acknowledgement(retry.json(), AES_KEY) == "success"
    [event] = stored(engine)
    assert event.payload is not None and len(event.payload["_deliveries"]) == 2


async def test_a_connection_without_an_aes_key_refuses_callbacks(api, engine):
    with session_scope(engine) as session:
        connection = session.get(Connection, api[1])
        assert connection is not None
        connection.secrets_encrypted = api[0].app.state.secrets.seal(
            {"app_id": "a", "app_secret": "b", "permanent_code": "c"})
    api[0].app.state.webhook_known = {}
    response = await post(api, api[1], callback())
    assert response.status_code == 401 and "aes_key" in response.text
    assert stored(engine) == []


def test_the_official_demo_vector_is_accepted():
    """docs/vendors/fxiaoke.md §5 [VER]: the demo's published body and key (no database)."""
    from connectors.base import WebhookRequest, WebhookSecrets
    from connectors.fxiaoke.notifications import parse
    from tests.unit.test_fxiaoke_callbacks import DEMO_KEY, VECTOR

    intake = parse(WebhookRequest(orjson.dumps(VECTOR), {}, {}),
                   WebhookSecrets({"aes_key": DEMO_KEY}, {}), now_ms=VECTOR["timestamp"] + 1000)
    assert intake.delivery == VECTOR["signature"]
    [(key, payload)] = intake.events
    assert key == VECTOR["messageId"] == payload["messageId"]
    assert (payload["apiName"], payload["dataId"]) == ("AccountObj", "5f9cd4e6e4400e0001217faa")
    assert callbacks.read_acknowledgement(orjson.loads(intake.body), DEMO_KEY) == "success"


# ---- issue 10 item 8: a failed re-read never deletes ----------------------------------------
FX = "https://open.fxiaoke.com"


@respx.mock
async def test_a_failed_re_read_stays_pending_and_never_tombstones_a_live_deal(engine, db_url):
    from cryptography.fernet import Fernet

    from connectors.http import RetryPolicy
    from core.config import Settings
    from core.models import Deal
    from core.records import DealRecord
    from core.store import upsert_records
    from core.webhooks import store_events
    from workers.context import JobContext
    from workers.jobs import process_webhook_event

    key = Fernet.generate_key().decode()
    ctx = JobContext(settings=Settings(database_url=db_url, secret_key=key), engine=engine,
                     secrets=SecretBox(key), retry=RetryPolicy(attempts=1, initial_wait=0.001,
                                                               max_wait=0.01))
    live, purged, fine = "a" * 24, "b" * 24, "c" * 24
    with session_scope(engine) as session:
        row = Connection(provider="fxiaoke", name="f", config={"current_open_user_id": "FSUID_A"},
                         secrets_encrypted=ctx.secrets.seal({
                             "app_id": "FSAID_x", "app_secret": "s", "permanent_code": "p"}))
        session.add(row)
        session.flush()
        cid = int(row.id or 0)
        upsert_records(session, stream="deals", connection_id=cid, records=[
            DealRecord(remote_id=i, name=i, remote_modified_at=datetime(2025, 1, 1, tzinfo=UTC))
            for i in (live, purged)])
        store_events(session, connection_id=cid, provider="fxiaoke", events=[
            (f"m{i}", {"messageId": f"m{i}", "eventType": event, "apiName": "NewOpportunityObj",
                       "dataId": data_id, "timestamp": 1_750_000_000_000})
            for i, (event, data_id) in enumerate([("update", live), ("delete", purged),
                                                  ("update", fine)])])
    respx.post(f"{FX}/cgi/corpAccessToken/get/V2").respond(json={
        "errorCode": 0, "corpAccessToken": "t", "corpId": "FSCID_x", "expiresIn": 7200})
    respx.post(f"{FX}/cgi/department/list").respond(json={"errorCode": 0, "departments": []})
    respx.post(f"{FX}/cgi/user/list").respond(json={"errorCode": 0, "userList": []})
    respx.post(f"{FX}/cgi/crm/v2/object/describe").respond(json={
        "errorCode": 0, "data": {"describe": {"fields": {"name": {}}}}})

    def get(request: httpx.Request) -> httpx.Response:
        wanted = orjson.loads(request.content)["data"]["objectDataId"]
        if wanted == fine:
            return httpx.Response(200, json={"errorCode": 0, "data": {
                "_id": fine, "name": "Fine", "last_modified_time": 1_750_000_000_000}})
        # 10006: the generic parameter error of the code table, not "not found"
        return httpx.Response(200, json={"errorCode": 10006, "errorMessage": "参数错误"})

    respx.post(f"{FX}/cgi/crm/v2/data/get").mock(side_effect=get)
    assert await process_webhook_event(ctx, connection_id=cid) == 3
    with session_scope(engine) as session:
        deals = {d.remote_id: d.deleted_at for d in session.scalars(select(Deal))}
        status = {e.dedupe_key: (e.status, e.error) for e in session.scalars(
            select(WebhookEvent).where(WebhookEvent.connection_id == cid))}
    assert deals[live] is None  # a failed re-read never deletes a live deal
    assert deals[purged] is not None and deals[fine] is None  # explicit delete; the others go on
    assert status["m1"] == ("processed", None) and status["m2"] == ("processed", None)
    assert status["m0"][0] == "received" and "10006" in (status["m0"][1] or "")
