"""Pipedrive webhooks end to end (docs/vendors/pipedrive.md §5), under both runners: a new
connection gets its webhook created through Pipedrive's API with generated Basic
credentials (stored encrypted), the sandbox's deliveries reach the store within seconds,
forged or credential-less calls are refused and store nothing, a repeated delivery is
stored once, and deleting the connection removes the webhook from Pipedrive."""

import base64
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from connectors.pipedrive.sandbox import create_app as create_sandbox
from connectors.pipedrive.sandbox.state import PipedriveState
from connectors.pipedrive.wire import basic_header, read_basic
from connectors.sandbox import generate_company
from core.db import session_scope
from core.models import Deal, NotificationChannel, WebhookEvent
from tests.integration.test_channels_on_create import (
    channels,
    eventually,
    live_api,
    run_finished,
)
from tests.integration.test_pipedrive_goals_e2e import BURST, PLAN_BURST
from tests.integration.test_webhook_e2e import setup  # noqa: F401 (fixture)

SECRETS = {"api_token": "sandbox-api-token"}


def events(engine: Engine) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def deal_row(engine: Engine, remote_id: str) -> Deal | None:
    with session_scope(engine) as session:
        row = session.scalars(select(Deal).where(Deal.remote_id == remote_id)).first()  # type: ignore[arg-type]
        if row is not None:
            session.expunge(row)
        return row


async def test_webhook_lifecycle_auth_and_edits_within_seconds(setup):  # noqa: F811
    _, engine, db_url, redis_url = setup
    company = generate_company(seed=8, deals=80, accounts=20)
    sandbox_app = create_sandbox(company, webhook_retry_delays=(0.2, 0.5),
                                 burst_limit=PLAN_BURST)
    state: PipedriveState = sandbox_app.state.pipedrive
    async with live_api(engine, db_url, redis_url, sandbox_app) as (sandbox, client, api_port):
        response = await client.post("/api/v1/connections", json={
            "provider": "pipedrive", "name": "pipedrive",
            "config": {"api_url": sandbox.url, "oauth_url": sandbox.url,
                       "burst_limit": BURST},
            "secrets": SECRETS})
        assert response.status_code == 201, response.text
        connection_id = response.json()["id"]

        [channel] = await eventually(lambda: channels(engine), 10, "a stored channel")
        url = f"http://127.0.0.1:{api_port}/api/v1/webhooks/pipedrive/{connection_id}"
        assert channel.notify_url == url
        [hook] = state.webhooks.values()  # created through Pipedrive's API (§5)
        assert (str(hook.id), hook.subscription_url, hook.version) == (
            channel.channel_id, url, "2.0")
        assert hook.http_auth_user and hook.http_auth_password
        assert hook.http_auth_password not in channel.token_encrypted  # sealed

        response = await client.post(f"/api/v1/connections/{connection_id}/sync",
                                     json={"mode": "full"})
        assert response.status_code == 202, response.text
        run_id = response.json()["run_id"]

        await eventually(lambda: run_finished(engine, run_id), 90, "the first sync")
        ids = sorted(company.deals)
        async with httpx.AsyncClient(base_url=sandbox.url, timeout=10) as crm:
            edit = await crm.patch(f"/_sandbox/deals/{ids[0]}",
                                   json={"amount": 4242.5, "stage": "Closed Won"})
            assert edit.status_code < 300, edit.text
            gone = await crm.delete(f"/_sandbox/deals/{ids[1]}")
            assert gone.status_code < 300, gone.text

        def edited() -> Any:
            row = deal_row(engine, ids[0])
            return row is not None and row.amount == 4242.5 and row.status == "won"

        await eventually(edited, 10, "the edit in the store")
        await eventually(lambda: (row := deal_row(engine, ids[1])) is not None
                         and row.deleted_at is not None, 10, "the deletion")

        # a delivery as Pipedrive sends it, with and without the right credentials
        body: dict[str, Any] = {"meta": {"action": "change", "entity": "deal",
                                         "entity_id": ids[2], "id": "replayed-event",
                                         "timestamp": "2026-05-15T18:00:00.000Z"},
                                "data": {"id": int(ids[2])}, "previous": {}}
        right = (hook.http_auth_user, hook.http_auth_password)
        async with httpx.AsyncClient(timeout=10) as pipedrive:
            before = events(engine)
            for auth in ((right[0], "wrong"), ("intruder", right[1]), None):
                refused = await pipedrive.post(url, json=body, auth=auth)
                assert refused.status_code == 401, refused.text
                assert hook.http_auth_password not in refused.text
            assert events(engine) == before  # nothing stored
            for _ in range(2):  # Pipedrive retries: stored once
                accepted = await pipedrive.post(url, json=body, auth=right)
                assert accepted.status_code < 300, accepted.text
            assert events(engine) == before + 1
        delivered = [d for d in state.deliveries if d["status"] == "delivered"]
        assert len(delivered) >= 2 and all(d["attempts"] == 1 for d in delivered)

        response = await client.delete(f"/api/v1/connections/{connection_id}")
        assert response.status_code == 204, response.text
    assert state.webhooks == {}  # removed from Pipedrive with the connection
    with session_scope(engine) as session:
        assert session.scalars(select(NotificationChannel)).all() == []


def test_basic_header_is_what_pipedrive_sends():
    header = basic_header("crmsync-ab", "p:w")
    assert header == "Basic " + base64.b64encode(b"crmsync-ab:p:w").decode()
    assert read_basic(header) == ("crmsync-ab", "p:w")
    assert read_basic("Basic !!!") is None
