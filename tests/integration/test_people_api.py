"""The people routes (docs/people.md) on SQLite and PostgreSQL: lists, edits, manual mapping,
bad input as JSON 4xx that changes nothing, scopes; and migration 0006 on an old store."""

from datetime import date
from decimal import Decimal

import pytest

from core import store
from core.db import session_scope
from core.models import Connection
from core.records import DealRecord, UserRecord
from tests.api_support import make_key, running_api
from tests.shared_store import SHARED_LOOP

URL = "/api/v1/people"


async def seeded(engine):
    """The seeded store and its app: the test's own (api), or the module's (seeded_module
    in tests/conftest.py, for shared_api)."""
    with session_scope(engine) as session:
        for name, users in (("zoho", [UserRecord("z1", "Ann Lee", "ann@x.com", team="East"),
                                      UserRecord("z2", "Bob Roy", "bob@x.com")]),
                            ("fx", [UserRecord("f1", "Wu Wei", None, mobile="13800138000")])):
            connection = Connection(provider="zoho", name=name, home_currency="USD")
            session.add(connection)
            session.flush()
            store.upsert_records(session, stream="users", connection_id=connection.id,
                                 records=users)
        store.upsert_records(session, stream="deals", connection_id=2, records=[
            DealRecord("d1", "D1", amount_home=Decimal("5"), status="won",
                       close_date=date(2025, 2, 1), owner_remote_id="f1")])
    async with running_api(engine) as api:
        yield api


@pytest.fixture
async def api(engine):
    """The people and their app, the test's own."""
    async for api in seeded(engine):
        yield api


async def test_list_and_get_people_with_their_users(api):
    body = (await api.get(URL, params={"limit": 2})).json()
    assert [(p["id"], p["name"], p["email"], p["team"]) for p in body["data"]] == [
        (1, "Ann Lee", "ann@x.com", "East"), (2, "Bob Roy", "bob@x.com", None)]
    assert body["data"][0]["users"] == [{
        "id": 1, "connection_id": 1, "remote_id": "z1", "name": "Ann Lee",
        "email": "ann@x.com", "mobile": None, "active": True, "team": "East",
        "person_match": "new", "deleted": False}]
    rest = (await api.get(URL, params={"cursor": body["next_cursor"]})).json()
    assert [(p["id"], p["email"], p["mobile"]) for p in rest["data"]] == [
        (3, None, "13800138000")]
    one = await api.get(f"{URL}/3")
    assert one.status_code == 200 and one.json()["users"][0]["remote_id"] == "f1"
    csv = await api.get(URL, params={"format": "csv"})
    assert csv.text.splitlines()[0] == ("id,name,email,mobile,team,team_set_by_hand,"
                                        "created_at,updated_at,users")
    missing = await api.get(f"{URL}/99")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


async def test_unmatched_then_map_by_user_id(api):
    unmatched = (await api.get(f"{URL}/unmatched")).json()["data"]
    # Wu (Fxiaoke) may be Ann or Bob (no Fxiaoke users); they may be Wu (no Zoho user)
    assert [(u["remote_id"], u["person_id"]) for u in unmatched] == [
        ("z1", 1), ("z2", 2), ("f1", 3)]
    mapped = await api.client.post(f"{URL}/2/users", json={"user_id": 3})
    assert mapped.status_code == 200, mapped.text
    assert [(u["remote_id"], u["person_match"]) for u in mapped.json()["users"]] == [
        ("z2", "new"), ("f1", "hand")]
    assert (await api.get(f"{URL}/3")).status_code == 404  # merged into Bob
    assert (await api.get(f"{URL}/unmatched")).json()["data"] == []
    deals = (await api.get("/api/v1/deals", params={"owner_person_id": 2})).json()["data"]
    assert [d["remote_id"] for d in deals] == ["d1"]
    board = (await api.get("/api/v1/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-03-31", "group_by": "owner"})).json()["data"]
    assert [(r["person_id"], r["owner_email"], r["bookings"]) for r in board] == [
        (1, "ann@x.com", 0), (2, "bob@x.com", 5)]
    by_remote = await api.client.post(f"{URL}/1/users",
                                      json={"connection_id": 2, "remote_id": "f1"})
    assert [u["remote_id"] for u in by_remote.json()["users"]] == ["z1", "f1"]


async def test_patch_a_person(api):
    changed = await api.client.patch(f"{URL}/3", json={
        "name": " Wu W. ", "email": "Wu@X.com", "mobile": "+86 139 0000 0000", "team": "South"})
    assert changed.status_code == 200, changed.text
    person = changed.json()
    assert (person["name"], person["email"], person["mobile"], person["team"],
            person["team_set_by_hand"]) == ("Wu W.", "wu@x.com", "+8613900000000", "South",
                                            True)
    goal = await api.client.post("/api/v1/goals", json={
        "owner_email": "wu@x.com", "metric": "deals_won", "period_start": "2025-01-01",
        "period_end": "2025-03-31", "target": 2})
    assert goal.status_code == 201 and goal.json()["person_id"] == 3
    assert goal.json()["owner_name"] == "Wu W." and goal.json()["actual"] == 1


@SHARED_LOOP
@pytest.mark.parametrize("method,path,body,status,field", [
    ("patch", "/3", {"name": "  "}, 422, "name"),
    ("patch", "/3", {"email": "not-an-email"}, 422, "email"),
    ("patch", "/3", {"mobile": "12"}, 422, "mobile"),
    ("patch", "/3", {"email": "ann@x.com"}, 409, None),
    ("patch", "/3", {"nickname": "x"}, 422, "nickname"),
    ("patch", "/99", {"name": "x"}, 404, None),
    ("post", "/1/users", {}, 422, "body"),
    ("post", "/1/users", {"user_id": 3, "remote_id": "f1", "connection_id": 2}, 422, "body"),
    ("post", "/1/users", {"user_id": 99}, 422, "user_id"),
    ("post", "/1/users", {"connection_id": 2, "remote_id": "nope"}, 422, "remote_id"),
    ("post", "/99/users", {"user_id": 3}, 404, None),
    ("post", "/1/users", [1], 422, "body"),
])
async def test_bad_input_is_a_json_4xx_and_changes_nothing(shared_api, method, path, body,
                                                           status, field):
    before = (await shared_api.get(URL)).json()
    response = await getattr(shared_api.client, method)(f"{URL}{path}", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    if field is not None:
        assert any(d["field"] == field for d in error["details"]), error
    assert (await shared_api.get(URL)).json() == before


async def test_reads_need_read_changes_need_admin(api):
    read = make_key(api.engine, "read")
    write = make_key(api.engine, "write")
    headers = {"Authorization": f"Bearer {read}"}
    assert (await api.client.get(URL, headers=headers)).status_code == 200
    assert (await api.client.get(f"{URL}/unmatched", headers=headers)).status_code == 200
    for key in (read, write):
        headers = {"Authorization": f"Bearer {key}"}
        patch = await api.client.patch(f"{URL}/3", json={"name": "x"}, headers=headers)
        post = await api.client.post(f"{URL}/1/users", json={"user_id": 3}, headers=headers)
        assert (patch.status_code, post.status_code) == (403, 403)


def test_migration_0006_makes_people_of_an_old_store(tmp_path):
    from sqlalchemy import text

    from core.db import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0005")
    now = "'2025-01-01 00:00:00'"
    with engine.begin() as conn:
        for cid in (1, 2):
            conn.execute(text(
                "INSERT INTO connection (provider, name, config, secrets_encrypted, status, "
                f"created_at, updated_at) VALUES ('zoho', 'c{cid}', '{{}}', '', 'active', "
                f"{now}, {now})"))
        for cid, rid, name, email in ((1, "u1", "Ann", "ann@x.com"),
                                      (2, "v1", "Ann L", "ann@x.com"), (2, "v2", "Wu", None)):
            conn.execute(text(
                "INSERT INTO crm_user (connection_id, remote_id, first_seen_at, last_synced_at, "
                "name, email, active) VALUES (:c, :r, '2025-01-01', '2025-01-01', :n, :e, 1)"),
                {"c": cid, "r": rid, "n": name, "e": email})
        for rid, owner_id, owner_email in (("d1", "v2", None), ("d2", None, "gone@x.com"),
                                           ("d3", "v1", "ann@x.com")):
            conn.execute(text(
                "INSERT INTO deal (connection_id, remote_id, first_seen_at, last_synced_at, "
                "name, status, close_date, owner_remote_id, owner_email) VALUES (2, :r, "
                "'2025-01-01', '2025-01-01', :r, 'won', '2025-02-01', :o, :e)"),
                {"r": rid, "o": owner_id, "e": owner_email})
        conn.execute(text(
            "INSERT INTO goal (owner_email, metric, period_start, period_end, target, "
            f"live_key, created_at, updated_at) VALUES ('ann@x.com', 'bookings', '2025-01-01', "
            f"'2025-03-31', 10000, 'ann@x.com|bookings|2025-01-01|2025-03-31', {now}, {now})"))
        conn.execute(text(f"INSERT INTO rollup_month (month, built_at) VALUES (24300, {now})"))
    upgrade(engine)
    with engine.connect() as conn:
        users = conn.execute(text(
            "SELECT remote_id, person_id, person_match FROM crm_user ORDER BY id")).all()
        assert [tuple(u) for u in users] == [("u1", 1, "new"), ("v1", 1, "email"),
                                             ("v2", 2, "new")]
        deals = conn.execute(text("SELECT remote_id, owner_person_id FROM deal ORDER BY id"))
        assert [tuple(d) for d in deals] == [("d1", 2), ("d2", 3), ("d3", 1)]
        assert conn.execute(text("SELECT email FROM person WHERE id = 3")).scalar() == \
            "gone@x.com"  # an owner email nobody has: a person of its own
        assert tuple(conn.execute(text("SELECT person_id, live_key FROM goal")).one()) == (
            1, "1|bookings|2025-01-01|2025-03-31")
        assert conn.execute(text("SELECT month FROM rollup_dirty")).scalar() == 24300
    engine.dispose()
