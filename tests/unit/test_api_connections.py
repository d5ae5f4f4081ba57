"""Connections: create, validate, secrets never echoed, PATCH, DELETE, sync."""

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from core.models import Connection, Deal, SyncRun
from tests.api_support import SECRET, ZOHO_SECRETS, add_connection, running_api, seed

URL = "/api/v1/connections"
ZOHO = {"provider": "zoho", "name": "Zoho EU", "config": {"dc": "eu"}, "secrets": ZOHO_SECRETS}


@pytest.fixture
async def api(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        yield api


def no_secret(response) -> None:
    assert SECRET not in response.text
    assert ZOHO_SECRETS["refresh_token"] not in response.text


async def count_connections(api) -> int:
    with Session(api.engine) as session:
        return int(session.scalar(select(func.count()).select_from(Connection)) or 0)


async def test_create_returns_201_without_secrets(api):
    response = await api.client.post(URL, json=ZOHO)
    assert response.status_code == 201, response.text
    no_secret(response)
    body = response.json()
    assert set(body) == {"id", "provider", "name", "config", "secrets_set", "home_currency",
                         "status", "last_error", "created_at", "updated_at", "last_synced_at"}
    assert body["provider"] == "zoho" and body["name"] == "Zoho EU"
    assert body["config"]["dc"] == "eu" and body["config"]["goals_module"] == "Sales_Goals"
    assert body["secrets_set"] == ["client_id", "client_secret", "refresh_token"]
    assert body["status"] == "active" and body["created_at"].endswith("Z")
    with Session(api.engine) as session:
        stored = session.get(Connection, body["id"])
        assert stored is not None and SECRET not in stored.secrets_encrypted
        assert api.app.state.secrets.open(stored.secrets_encrypted) == ZOHO_SECRETS

    for url in (URL, f"{URL}/{body['id']}", f"{URL}?format=csv"):
        got = await api.get(url)
        assert got.status_code == 200
        no_secret(got)


@pytest.mark.parametrize(("body", "field", "words"), [
    ({**ZOHO, "provider": "nosuchcrm"}, "provider", "unknown provider 'nosuchcrm'"),
    ({**ZOHO, "config": {"dc": "mars"}}, "config.dc", "must be one of com, us, eu,"),
    ({**ZOHO, "config": {"dc": "eu", "colour": "red"}}, "config.colour", "not a known field"),
    ({**ZOHO, "config": {"sync_interval_minutes": "often"}}, "config.sync_interval_minutes",
     "integer"),
    ({**ZOHO, "secrets": {"client_id": "x", "client_secret": SECRET}},
     "secrets.refresh_token", "required"),
    ({**ZOHO, "secrets": {**ZOHO_SECRETS, "refresh_token": "   "}}, "secrets",
     "refresh_token must not be blank"),
    ({**ZOHO, "secrets": {**ZOHO_SECRETS, "client_id": 12}}, "secrets.client_id", "string"),
    ({**ZOHO, "name": ""}, "name", "at least 1"),
    ({**ZOHO, "name": None}, "name", "string"),
    ({**ZOHO, "config": "dc=eu"}, "config", "dictionary"),
    ({**ZOHO, "owner": "me"}, "owner", "not a known field"),
    ({"name": "x"}, "provider", "required"),
])
async def test_bad_settings_are_422_naming_the_field_and_change_nothing(api, body, field, words):
    response = await api.client.post(URL, json=body)
    assert response.status_code == 422, response.text
    no_secret(response)
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{field}: ")
    assert words in error["message"]
    assert {"field": field, "message": error["message"].split(": ", 1)[1]} in error["details"]
    assert await count_connections(api) == 0


@pytest.mark.parametrize(("content", "ctype"), [
    (b"{not json", "application/json"),
    (b"[1, 2]", "application/json"),
    (b"provider=zoho", "application/x-www-form-urlencoded"),
    (b"", "application/json"),
])
async def test_non_json_bodies_are_422(api, content, ctype):
    response = await api.client.post(URL, content=content, headers={"content-type": ctype})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["message"].startswith("body")
    assert await count_connections(api) == 0


async def test_duplicate_name_is_409(api):
    assert (await api.client.post(URL, json=ZOHO)).status_code == 201
    response = await api.client.post(URL, json={**ZOHO, "name": "  Zoho EU "})
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "conflict", "message": "a connection named 'Zoho EU' already exists"}
    assert await count_connections(api) == 1


async def test_patch_merges_settings_and_revalidates(api):
    created = (await api.client.post(URL, json=ZOHO)).json()
    url = f"{URL}/{created['id']}"

    response = await api.client.patch(url, json={"name": "Zoho main",
                                                 "config": {"sync_interval_minutes": 30},
                                                 "secrets": {"refresh_token": "1000.new"}})
    assert response.status_code == 200, response.text
    no_secret(response)
    body = response.json()
    assert body["name"] == "Zoho main"
    assert body["config"]["dc"] == "eu" and body["config"]["sync_interval_minutes"] == 30
    assert body["secrets_set"] == ["client_id", "client_secret", "refresh_token"]
    assert body["updated_at"] >= created["updated_at"]
    with Session(api.engine) as session:
        stored = session.get(Connection, created["id"])
        secrets = api.app.state.secrets.open(stored.secrets_encrypted)
    assert secrets == {**ZOHO_SECRETS, "refresh_token": "1000.new"}

    # null removes a key: the default comes back
    body = (await api.client.patch(url, json={"config": {"sync_interval_minutes": None}})).json()
    assert body["config"]["sync_interval_minutes"] == 15

    # removing a required secret, a bad value or an unknown field: 422 and nothing changes
    for patch in ({"secrets": {"client_secret": None}}, {"config": {"dc": "moon"}},
                  {"provider": "fxiaoke"}, {"name": ""}):
        bad = await api.client.patch(url, json=patch)
        assert bad.status_code == 422, (patch, bad.text)
        no_secret(bad)
    assert (await api.get(url)).json() == body


async def test_patch_to_a_taken_name_is_409(api):
    await api.client.post(URL, json=ZOHO)
    other = (await api.client.post(URL, json={**ZOHO, "name": "Other"})).json()
    response = await api.client.patch(f"{URL}/{other['id']}", json={"name": "Zoho EU"})
    assert response.status_code == 409
    assert (await api.get(f"{URL}/{other['id']}")).json()["name"] == "Other"


async def test_delete_removes_the_connection_and_its_rows(api):
    connection_id = add_connection(api.engine, "doomed")
    keep = add_connection(api.engine, "kept")
    seed(api.engine, connection_id, deals=5)
    seed(api.engine, keep, deals=3)
    response = await api.client.delete(f"{URL}/{connection_id}")
    assert response.status_code == 204
    assert (await api.get(f"{URL}/{connection_id}")).status_code == 404
    assert (await api.client.delete(f"{URL}/{connection_id}")).status_code == 404
    with Session(api.engine) as session:
        owners = session.scalars(select(Deal.connection_id).distinct()).all()
    assert owners == [keep]


async def test_list_connections(api):
    for i in range(3):
        await api.client.post(URL, json={**ZOHO, "name": f"Zoho {i}"})
    page = await api.get(URL, params={"limit": 2})
    assert [c["name"] for c in page.json()["data"]] == ["Zoho 0", "Zoho 1"]
    rows = await api.all_pages(URL, limit=2)
    assert [c["name"] for c in rows] == ["Zoho 0", "Zoho 1", "Zoho 2"]


async def test_unknown_connection_is_404(api):
    for method, url in (("GET", f"{URL}/42"), ("PATCH", f"{URL}/42"), ("DELETE", f"{URL}/42"),
                        ("POST", f"{URL}/42/sync"), ("GET", f"{URL}/42/sync-runs")):
        response = await api.client.request(method, url, json={} if method != "GET" else None)
        assert response.status_code == 404, (method, url)
        assert response.json()["error"] == {"code": "not_found",
                                            "message": "connection 42 does not exist"}
    assert (await api.get(f"{URL}/abc")).status_code == 422


async def test_sync_returns_202_and_the_run_is_reported(api):
    created = (await api.client.post(URL, json=ZOHO)).json()
    response = await api.client.post(f"{URL}/{created['id']}/sync", json={"mode": "full"})
    assert response.status_code == 202, response.text
    run_id = response.json()["run_id"]
    assert isinstance(run_id, int)

    run = await api.get(f"/api/v1/sync-runs/{run_id}")
    assert run.status_code == 200
    assert run.json()["connection_id"] == created["id"] and run.json()["mode"] == "full"
    assert run.json()["status"] in ("queued", "running", "failed")

    await api.app.state.jobs.wait_idle()  # the stand-in Zoho refuses the client
    run = (await api.get(f"/api/v1/sync-runs/{run_id}")).json()
    assert set(run) == {"id", "connection_id", "mode", "status", "started_at", "finished_at",
                        "counts", "api_calls", "error"}
    assert run["status"] == "failed" and "invalid_client" in run["error"]
    assert run["finished_at"].endswith("Z")
    connection = await api.get(f"{URL}/{created['id']}")
    assert connection.json()["status"] == "needs_reauth"
    no_secret(connection)

    listed = await api.get(f"{URL}/{created['id']}/sync-runs")
    assert [r["id"] for r in listed.json()["data"]] == [run_id]
    second = await api.client.post(f"{URL}/{created['id']}/sync")  # default: incremental
    assert second.status_code == 202
    await api.app.state.jobs.wait_idle()
    runs = (await api.get("/api/v1/sync-runs", params={"connection_id": created["id"]})).json()
    assert [r["mode"] for r in runs["data"]] == ["incremental", "full"]  # newest first
    failed = await api.get("/api/v1/sync-runs", params={"status": "failed", "limit": 1})
    assert len(failed.json()["data"]) == 1 and failed.json()["next_cursor"] is not None


@pytest.mark.parametrize("body", [{"mode": "sometimes"}, {"mode": "full", "x": 1}, [1]])
async def test_bad_sync_requests_are_422_and_start_nothing(api, body):
    created = (await api.client.post(URL, json=ZOHO)).json()
    response = await api.client.post(f"{URL}/{created['id']}/sync", json=body)
    assert response.status_code == 422
    with Session(api.engine) as session:
        assert session.scalar(select(func.count()).select_from(SyncRun)) == 0


async def test_sync_run_lookups(api):
    assert (await api.get("/api/v1/sync-runs/77")).status_code == 404
    response = await api.get("/api/v1/sync-runs", params={"status": "exploded"})
    assert response.status_code == 422
    assert response.json()["error"]["message"] == (
        "status: must be one of queued, running, succeeded, failed")
