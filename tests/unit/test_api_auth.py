"""API keys: bearer auth, scopes, key management, open routes."""

import httpx
import pytest
from sqlmodel import Session, select

from core.models import ApiKey
from tests.api_support import make_key, running_api


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        yield api


def unauthenticated(api) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://test")


@pytest.mark.parametrize("header", [None, "Bearer csk_wrong", "Basic dXNlcjpwYXNz", "Bearer", ""])
async def test_missing_or_wrong_key_is_401_with_challenge(api, header):
    headers = {"Authorization": header} if header is not None else {}
    async with unauthenticated(api) as client:
        for url in ("/api/v1/deals", "/api/v1/connections", "/api/v1/api-keys"):
            response = await client.get(url, headers=headers)
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == "unauthorized"


async def test_revoked_key_is_401(api):
    key = make_key(api.engine, "admin", revoked=True)
    response = await api.get("/api/v1/deals", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 401


@pytest.mark.parametrize(("scopes", "url", "status"), [
    ("read", "/api/v1/deals", 200),
    ("read", "/api/v1/connections", 403),
    ("read", "/api/v1/api-keys", 403),
    ("read", "/api/v1/sync-runs", 403),
    ("write", "/api/v1/users", 200),
    ("write", "/api/v1/connections", 403),
    ("admin", "/api/v1/stages", 200),
    ("admin", "/api/v1/api-keys", 200),
])
async def test_scopes_admin_implies_write_implies_read(api, scopes, url, status):
    key = make_key(api.engine, scopes)
    response = await api.get(url, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["error"] == {
            "code": "forbidden", "message": "this API key lacks the 'admin' scope"}


async def test_last_used_at_is_written_at_most_once_a_minute(api):
    key = make_key(api.engine, "read")
    headers = {"Authorization": f"Bearer {key}"}

    def last_used():
        with Session(api.engine) as session:
            row = session.exec(select(ApiKey).where(ApiKey.prefix == key[:12])).one()
            return row.last_used_at

    assert last_used() is None
    await api.get("/api/v1/deals", headers=headers)
    first = last_used()
    assert first is not None
    await api.get("/api/v1/deals", headers=headers)
    assert last_used() == first


async def test_open_routes_need_no_key(api):
    async with unauthenticated(api) as client:
        health = await client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok", "redis": "not configured",
                                 "worker": {"status": "in-process"}}
        assert (await client.get("/docs")).status_code == 200
        spec = (await client.get("/openapi.json")).json()
        assert "/api/v1/deals" in spec["paths"]


async def test_create_list_and_revoke_keys(api):
    created = await api.client.post("/api/v1/api-keys", json={"name": "grafana",
                                                             "scopes": ["read"]})
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("csk_") and body["scopes"] == ["read"] and body["revoked_at"] is None
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.get("/api/v1/deals", headers=headers)).status_code == 200

    listed = await api.get("/api/v1/api-keys")
    assert listed.status_code == 200
    assert key not in listed.text and "key_hash" not in listed.text
    rows = {row["name"]: row for row in listed.json()["data"]}
    assert rows["grafana"]["prefix"] == key[:12]
    assert set(rows["grafana"]) == {"id", "name", "prefix", "scopes", "created_at",
                                    "last_used_at", "revoked_at"}

    revoked = await api.client.delete(f"/api/v1/api-keys/{body['id']}")
    assert revoked.status_code == 204
    assert (await api.get("/api/v1/deals", headers=headers)).status_code == 401
    again = await api.client.delete(f"/api/v1/api-keys/{body['id']}")
    assert again.status_code == 204
    assert (await api.client.delete("/api/v1/api-keys/999")).status_code == 404


@pytest.mark.parametrize("body", [
    {"name": "x", "scopes": ["superuser"]},
    {"name": "x", "scopes": []},
    {"name": "", "scopes": ["read"]},
    {"scopes": ["read"]},
    {"name": "x", "scopes": "read", "extra": 1},
])
async def test_bad_key_requests_are_422_and_create_nothing(api, body):
    before = (await api.get("/api/v1/api-keys")).json()["data"]
    response = await api.client.post("/api/v1/api-keys", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"
    assert (await api.get("/api/v1/api-keys")).json()["data"] == before


async def test_a_write_key_cannot_create_keys(api):
    key = make_key(api.engine, "write")
    response = await api.client.post("/api/v1/api-keys", json={"name": "x"},
                                     headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 403
