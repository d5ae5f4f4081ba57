"""The API on PostgreSQL (and SQLite alongside, through the `engine` fixture)."""

import csv
import io
import json
from decimal import Decimal

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import func, select
from sqlmodel import Session

from api.app import create_app
from core import store
from core.config import Settings
from core.db import session_scope
from core.errors import SchemaNotCurrent
from core.models import Deal
from core.queries import ROW_COLUMNS
from core.records import DealRecord
from tests.api_support import SECRET, ZOHO_SECRETS, add_connection, make_key, running_api, seed

ZOHO = {"provider": "zoho", "name": "Zoho", "config": {"dc": "com"}, "secrets": ZOHO_SECRETS}


@pytest.fixture
async def api(engine):
    async with running_api(engine) as api:
        yield api


async def test_connection_lifecycle(api):
    created = await api.client.post("/api/v1/connections", json=ZOHO)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert (await api.client.post("/api/v1/connections", json=ZOHO)).status_code == 409
    bad = await api.client.post("/api/v1/connections", json={**ZOHO, "name": "x",
                                                              "config": {"dc": "xx"}})
    assert bad.status_code == 422
    patched = await api.client.patch(f"/api/v1/connections/{cid}",
                                     json={"config": {"goals_module": "Targets"},
                                           "secrets": {"client_secret": SECRET + "2"}})
    assert patched.status_code == 200
    assert patched.json()["config"]["goals_module"] == "Targets"
    for response in (created, bad, patched, await api.get("/api/v1/connections")):
        assert SECRET not in response.text

    seed(api.engine, cid, deals=4)
    assert (await api.client.delete(f"/api/v1/connections/{cid}")).status_code == 204
    with Session(api.engine) as session:
        assert session.scalar(select(func.count()).select_from(Deal)) == 0


async def test_records_filters_pages_and_csv(api):
    cid = add_connection(api.engine)
    seed(api.engine, cid, deals=40)
    with session_scope(api.engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=[
            DealRecord("big", "Big", amount=Decimal("123456789012345.6789"))])
    pages, cursor = [], None
    while True:
        body = (await api.get("/api/v1/deals", params={"limit": 6, "include_deleted": "true",
                                                       **({"cursor": cursor} if cursor else {})}
                              )).json()
        pages.append(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    ids = [r["id"] for page in pages for r in page]
    assert len(ids) == 41 == len(set(ids)) and ids == sorted(ids)

    ann = await api.all_pages("/api/v1/deals", owner_email="ANN@example.com", status="won",
                              close_from="2025-01-01", close_to="2025-01-31",
                              modified_since="2025-01-01T05:00:00+01:00")
    assert [r["remote_id"] for r in ann] == ["d004", "d010", "d016", "d022", "d028"]

    response = await api.get("/api/v1/deals", params={"format": "csv"})
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    table = list(csv.DictReader(io.StringIO(response.text)))
    assert len(table) == 40 and list(table[0]) == list(ROW_COLUMNS["deals"])
    assert table[-1]["amount"] == "123456789012345.6789"
    parsed = json.loads((await api.get("/api/v1/deals", params={"limit": 1000})).text,
                        parse_float=Decimal)
    assert parsed["data"][-1]["amount"] == Decimal("123456789012345.6789")

    bad = await api.get("/api/v1/deals", params={"limit": 5000})
    assert bad.status_code == 422 and bad.json()["error"]["message"].startswith("limit: ")


async def test_sync_is_accepted_and_reported(api):
    cid = (await api.client.post("/api/v1/connections", json=ZOHO)).json()["id"]
    response = await api.client.post(f"/api/v1/connections/{cid}/sync", json={"mode": "full"})
    assert response.status_code == 202
    run_id = response.json()["run_id"]
    assert (await api.get(f"/api/v1/sync-runs/{run_id}")).json()["id"] == run_id
    await api.app.state.jobs.wait_idle()
    run = (await api.get(f"/api/v1/sync-runs/{run_id}")).json()
    assert run["status"] == "failed" and SECRET not in run["error"]


async def test_auth_and_health(api):
    read = make_key(api.engine, "read")
    headers = {"Authorization": f"Bearer {read}"}
    assert (await api.get("/api/v1/deals", headers=headers)).status_code == 200
    assert (await api.get("/api/v1/connections", headers=headers)).status_code == 403
    assert (await api.get("/api/v1/deals", headers={"Authorization": "Bearer x"})
            ).status_code == 401
    assert (await api.get("/health")).json()["database"] == "ok"


async def test_postgres_startup_builds_its_own_context(pg_url, pg_engine):
    app = create_app(Settings(database_url=pg_url, secret_key=Fernet.generate_key().decode(),
                              redis_url=None))
    async with app.router.lifespan_context(app):
        key = make_key(app.state.engine, "admin")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            created = await client.post("/api/v1/connections", json=ZOHO)
            assert created.status_code == 201


async def test_postgres_must_be_migrated_before_serving(empty_pg_url):
    app = create_app(Settings(database_url=empty_pg_url,
                              secret_key=Fernet.generate_key().decode()))
    with pytest.raises(SchemaNotCurrent, match="run `crmsync db upgrade` first"):
        async with app.router.lifespan_context(app):
            pass


async def test_sync_through_the_api_serves_the_sandbox_company(engine):
    from connectors.sandbox import generate_company
    from connectors.zoho.sandbox import create_app as zoho_sandbox

    company = generate_company(seed=11, deals=450, accounts=60)
    sandbox = httpx.ASGITransport(app=zoho_sandbox(company))
    async with running_api(engine, transport=sandbox) as api:
        created = await api.client.post("/api/v1/connections", json={
            "provider": "zoho", "name": "sandbox", "config": {"accounts_url": "http://zoho.test"},
            "secrets": {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
                        "refresh_token": "sandbox-refresh-token"}})
        cid = created.json()["id"]
        run_id = (await api.client.post(f"/api/v1/connections/{cid}/sync",
                                        json={"mode": "full"})).json()["run_id"]
        await api.app.state.jobs.wait_idle()
        run = (await api.get(f"/api/v1/sync-runs/{run_id}")).json()
        assert run["status"] == "succeeded", run
        assert run["api_calls"] > 0 and run["counts"]["deals"]["upserted"] == len(company.deals)

        deals = await api.all_pages("/api/v1/deals", connection_id=cid, limit=1000)
        assert {d["remote_id"] for d in deals} == set(company.deals)
        table = list(csv.DictReader(io.StringIO(
            (await api.get("/api/v1/deals", params={"format": "csv"})).text)))
        assert [r["remote_id"] for r in table] == [d["remote_id"] for d in deals]
        connection = (await api.get(f"/api/v1/connections/{cid}")).json()
        assert connection["last_synced_at"] and connection["home_currency"]


async def test_with_redis_syncs_are_queued_for_the_workers(pg_url, pg_engine, redis_url):
    app = create_app(Settings(database_url=pg_url, secret_key=Fernet.generate_key().decode(),
                              redis_url=redis_url))
    async with app.router.lifespan_context(app):
        key = make_key(app.state.engine, "admin")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://test",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            cid = (await client.post("/api/v1/connections", json=ZOHO)).json()["id"]
            first = await client.post(f"/api/v1/connections/{cid}/sync")
            assert first.status_code == 202
            run_id = first.json()["run_id"]
            run = (await client.get(f"/api/v1/sync-runs/{run_id}")).json()
            assert run["status"] == "queued" and run["mode"] == "incremental"
            again = await client.post(f"/api/v1/connections/{cid}/sync", json={"mode": "full"})
            assert again.json()["run_id"] == run_id  # one sync per connection at a time
        assert await app.state.jobs.redis.exists(f"arq:job:sync:{cid}")
