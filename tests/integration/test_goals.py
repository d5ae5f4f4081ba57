"""Goals: CRUD, validation, CSV import, actual/attainment and the leaderboard, through the API
on SQLite and PostgreSQL (fixture `engine`). Expected numbers are computed by hand below."""

from datetime import date, timedelta
from decimal import Decimal

import pytest

from core import store
from core.db import session_scope
from core.models import Connection, Goal
from core.records import DealRecord, Deletion, UserRecord
from core.types import utcnow
from tests.api_support import make_key, running_api
from tests.shared_store import SHARED_LOOP

URL = "/api/v1/goals"
Q1 = {"period_start": "2025-01-01", "period_end": "2025-03-31"}


def won(rid: str, owner: str, amount: str, day: date, status: str = "won") -> DealRecord:
    return DealRecord(rid, rid, amount_home=Decimal(amount), status=status, close_date=day,
                      owner_email=owner)


def seed(engine) -> None:
    """us (USD): ann won 1000.00 + 500.50 in Q1, 99 on Apr 1, lost 700; bob won 300 and a
    deleted 5000; cy and dee (inactive) sold nothing. eu (EUR at 1.5 USD): ann won 100 EUR."""
    with session_scope(engine) as session:
        us = Connection(provider="zoho", name="us", home_currency="USD")
        eu = Connection(provider="zoho", name="eu", home_currency="EUR")
        session.add_all([us, eu])
        session.flush()
        store.upsert_records(session, stream="users", connection_id=us.id, records=[
            UserRecord("u1", "Ann Lee", "Ann@X.com"), UserRecord("u2", "Bob Roy", "bob@x.com"),
            UserRecord("u3", "Cy Doe", "cy@x.com"),
            UserRecord("u4", "Dee Fay", "dee@x.com", active=False)])
        store.upsert_records(session, stream="deals", connection_id=us.id, records=[
            won("d1", "ann@x.com", "1000.00", date(2025, 2, 1)),
            won("d2", "ann@x.com", "500.50", date(2025, 3, 31)),
            won("d3", "ann@x.com", "99", date(2025, 4, 1)),
            won("d4", "ann@x.com", "700", date(2025, 2, 2), status="lost"),
            won("d5", "bob@x.com", "300", date(2025, 1, 1)),
            won("d6", "bob@x.com", "5000", date(2025, 1, 2))])
        store.apply_deletions(session, connection_id=us.id, deletions=[
            Deletion("deals", "d6", utcnow())])
        store.upsert_records(session, stream="deals", connection_id=eu.id, records=[
            won("e1", "ANN@x.com", "100", date(2025, 1, 15))])


async def seeded(engine):
    """The seeded store and its app: the test's own (api), or the module's (seeded_module
    in tests/conftest.py, for shared_api)."""
    seed(engine)
    async with running_api(engine) as api:
        put = await api.client.put("/api/v1/fx-rates/EUR", json={"rate_to_reporting": "1.5"})
        assert put.status_code == 200, put.text
        yield api


@pytest.fixture
async def api(engine):
    """A seeded store and its app, the test's own."""
    async for api in seeded(engine):
        yield api


async def create(api, **body):
    return await api.client.post(URL, json={"metric": "bookings", **Q1, **body})


def field_error(response, field: str, text: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert any(d["field"] == field and text in d["message"] for d in error["details"]), error


async def test_create_get_list_with_actual_and_attainment(api):
    response = await create(api, owner_email=" ANN@x.com ", target="2000")
    assert response.status_code == 201, response.text
    goal = response.json()
    assert goal["owner_email"] == "ann@x.com" and goal["owner_name"] == "Ann Lee"
    assert (goal["metric"], goal["period_start"], goal["period_end"]) == (
        "bookings", "2025-01-01", "2025-03-31")
    assert (goal["target"], goal["currency"], goal["push"]) == (2000, "USD", [])
    # 1000.00 + 500.50 + 100 EUR x 1.5 = 1650.50; / 2000 = 0.82525 -> 0.8253 (half up)
    assert goal["actual"] == 1650.5 and goal["attainment"] == 0.8253
    assert '"actual":1650.50' in response.text and '"target":2000.00' in response.text

    deals = await create(api, owner_email="ann@x.com", metric="deals_won", target=4)
    assert deals.status_code == 201, deals.text
    assert (deals.json()["actual"], deals.json()["attainment"], deals.json()["currency"]) == (
        3, 0.75, None)  # d1, d2, e1; lost, deleted and April deals do not count
    company = await create(api, owner_email=None, target="5000")
    assert company.json()["actual"] == 1950.5 and company.json()["attainment"] == 0.3901
    bob = await create(api, owner_email="bob@x.com", target="1200.00", currency="usd")
    assert bob.json()["attainment"] == 0.25 and bob.json()["currency"] == "USD"

    got = await api.get(f"{URL}/{goal['id']}")
    assert got.status_code == 200 and got.json() == goal
    rows = await api.all_pages(URL, limit=2)
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows) and len(rows) == 4
    only = (await api.get(URL, params={"owner_email": "ANN@X.COM", "metric": "deals_won"})).json()
    assert [r["id"] for r in only["data"]] == [deals.json()["id"]]
    firm = (await api.get(URL, params={"company": "true"})).json()["data"]
    assert [r["id"] for r in firm] == [company.json()["id"]]
    assert (await api.get(URL, params={"start": "2025-02-01"})).json()["data"] == []
    assert len((await api.get(URL, params={"start": "2025-01-01", "end": "2025-03-31"})
                ).json()["data"]) == 4
    csv = await api.get(URL, params={"format": "csv"})
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.splitlines()
    assert lines[0].startswith(
        "id,person_id,owner_email,owner_name,metric,period_start,period_end,target")
    assert len(lines) == 5 and ",1650.50,0.8253," in lines[1]


@SHARED_LOOP
@pytest.mark.parametrize("body,field,text", [
    ({"owner_email": "nobody@x.com"}, "owner_email", "is not the email of any person"),
    ({"person_id": 999}, "person_id", "person 999 does not exist"),
    ({"person_id": 1, "owner_email": "bob@x.com"}, "owner_email",
     "is not the email of person 1"),
    ({"period_end": "2024-12-31"}, "period_end", "must not be before period_start"),
    ({"period_end": "2040-01-01"}, "period_end", "must not exceed 10 years"),
    ({"target": 0}, "target", "must be a positive number"),
    ({"target": "-5"}, "target", "must be a positive number"),
    ({"target": "10.005"}, "target", "at most 2 decimal places"),
    ({"target": "1e29"}, "target", "must be below 10000000000000"),
    ({"metric": "revenue"}, "metric", "must be one of bookings, deals_won"),
    ({"metric": "deals_won", "target": "2.5"}, "target", "whole numbers"),
    ({"metric": "deals_won", "currency": "USD"}, "currency", "take no currency"),
    ({"currency": "EUR"}, "currency", "reporting currency USD"),
    ({"period_start": "2025-02-30"}, "period_start", "valid date"),
    ({"target": None}, "target", ""),
    ({"colour": "red"}, "colour", "is not a known field"),
])
async def test_bad_goals_are_422s_naming_the_field_and_change_nothing(shared_api, body, field,
                                                                     text):
    response = await create(shared_api, **{"owner_email": "ann@x.com", "target": 100, **body})
    field_error(response, field, text)
    assert (await shared_api.get(URL)).json()["data"] == []


async def test_a_duplicate_live_goal_is_a_409_and_deleting_frees_the_period(api):
    first = await create(api, owner_email="bob@x.com", target=100)
    again = await create(api, owner_email="BOB@x.com", target=200)
    assert again.status_code == 409, again.text
    error = again.json()["error"]
    assert error["code"] == "conflict" and f"goal {first.json()['id']}" in error["message"]
    other_metric = await create(api, owner_email="bob@x.com", metric="deals_won", target=2)
    assert other_metric.status_code == 201
    company = [await create(api, target=1000), await create(api, target=2000)]
    assert [r.status_code for r in company] == [201, 409]

    assert (await api.client.delete(f"{URL}/{first.json()['id']}")).status_code == 204
    assert (await api.get(f"{URL}/{first.json()['id']}")).status_code == 404
    assert (await api.client.delete(f"{URL}/{first.json()['id']}")).status_code == 404
    assert (await create(api, owner_email="bob@x.com", target=300)).status_code == 201
    with session_scope(api.engine) as session:  # the deleted goal stays until pushed
        assert session.get(Goal, first.json()["id"]).deleted_at is not None


async def test_patch_revalidates_the_whole_goal(api):
    goal = (await create(api, owner_email="ann@x.com", target=2000)).json()
    other = (await create(api, owner_email="bob@x.com", target=100)).json()
    url = f"{URL}/{goal['id']}"
    changed = await api.client.patch(url, json={"target": "1650.50"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["attainment"] == 1 and changed.json()["updated_at"] > goal[
        "updated_at"]
    field_error(await api.client.patch(url, json={"period_end": "2024-01-01"}), "period_end",
                "must not be before")
    field_error(await api.client.patch(url, json={"metric": None}), "metric", "must not be null")
    conflict = await api.client.patch(url, json={"owner_email": "bob@x.com"})
    assert conflict.status_code == 409 and f"goal {other['id']}" in conflict.text
    to_company = await api.client.patch(url, json={"owner_email": None})
    assert to_company.status_code == 200 and to_company.json()["owner_email"] is None
    assert (await api.client.patch(f"{URL}/999999", json={"target": 1})).status_code == 404
    assert (await api.get(url)).json()["target"] == 1650.5


async def test_scopes_read_reads_write_writes(api):
    read = {"Authorization": f"Bearer {make_key(api.engine, 'read')}"}
    write = {"Authorization": f"Bearer {make_key(api.engine, 'write')}"}
    body = {"owner_email": "ann@x.com", "metric": "bookings", **Q1, "target": 1}
    assert (await api.client.post(URL, json=body, headers=read)).status_code == 403
    assert (await api.client.post(URL, json=body, headers=write)).status_code == 201
    assert (await api.client.get(URL, headers=read)).status_code == 200
    assert (await api.client.get(URL, headers={"Authorization": "Bearer nope"})
            ).status_code == 401


GOOD_CSV = (
    "owner_email,metric,period_start,period_end,target\n"
    "ann@x.com,bookings,2025-01-01,2025-03-31,2000\n"
    "BOB@x.com,bookings,2025-01-01,2025-03-31,\"1,200.00\"\n"
    ",bookings,2025-01-01,2025-03-31,5000\n"
    "ann@x.com,deals_won,2025-01-01,2025-03-31,4\n"
)


async def test_import_csv_creates_then_updates_and_accepts_multipart(api):
    response = await api.client.post(f"{URL}/import", content=GOOD_CSV.encode(),
                                      headers={"Content-Type": "text/csv"})
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in ("created", "updated", "unchanged")} == {
        "created": 4, "updated": 0, "unchanged": 0}
    rows = {(r["owner_email"], r["metric"]): r for r in (await api.get(URL)).json()["data"]}
    assert rows[("bob@x.com", "bookings")]["target"] == 1200
    assert rows[(None, "bookings")]["attainment"] == 0.3901

    changed = GOOD_CSV.replace(",2000\n", ",2500\n")
    again = await api.client.post(f"{URL}/import",
                                  files={"file": ("q1.csv", ("\ufeff" + changed).encode(),
                                                  "text/csv")})
    assert again.status_code == 200, again.text
    assert {k: again.json()[k] for k in ("created", "updated", "unchanged")} == {
        "created": 0, "updated": 1, "unchanged": 3}
    assert len((await api.get(URL)).json()["data"]) == 4


@SHARED_LOOP
async def test_import_reports_every_bad_line_and_writes_nothing(shared_api):
    text = (
        "owner_email,metric,period_start,period_end,target\n"          # 1
        "ann@x.com,bookings,2025-01-01,2025-03-31,2000\n"              # 2 good
        "nobody@x.com,bookings,2025-01-01,2025-03-31,10\n"             # 3 owner
        "bob@x.com,bookings,2025-03-31,2025-01-01,10\n"                # 4 period
        "bob@x.com,bookings,2025-01-01,2025-03-31,0\n"                 # 5 target
        "bob@x.com,revenue,2025-01-01,2025-03-31,10\n"                 # 6 metric
        "ann@x.com,bookings,2025-01-01,2025-03-31,3000\n"              # 7 repeats 2
        "bob@x.com,bookings,31/01/2025,2025-03-31,ten\n"               # 8 date, number
        "bob@x.com,bookings,2025-01-01,2025-02-28,1e40\n"              # 9 too big
        "\n"                                                           # 10 blank
        "bob@x.com,bookings,2025-01-01\n"                              # 11 short
    )
    response = await shared_api.client.post(f"{URL}/import", content=text,
                                             headers={"Content-Type": "text/csv; charset=utf-8"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error" and "nothing was imported" in error["message"]
    found = {(r["line"], r["field"]) for r in error["rows"]}
    assert found == {(3, "owner_email"), (4, "period_end"), (5, "target"), (6, "metric"),
                     (7, "period_start"), (8, "period_start"), (8, "target"), (9, "target"),
                     (11, "row")}
    assert "line 2" in next(r["message"] for r in error["rows"] if r["line"] == 7)
    assert (await shared_api.get(URL)).json()["data"] == []


@SHARED_LOOP
@pytest.mark.parametrize("content,headers,status,text", [
    ("owner,metric\nx,y\n", {"Content-Type": "text/csv"}, 422, "missing owner_email"),
    ("", {"Content-Type": "text/csv"}, 422, "the file is empty"),
    ("owner_email,metric,period_start,period_end,target,colour\n", {"Content-Type": "text/csv"},
     422, "unknown colour"),
    ("a,b", {"Content-Type": "application/json"}, 415, "Content-Type: text/csv"),
    (b"\xff\xfeo\x00", {"Content-Type": "text/csv"}, 422, "not UTF-8"),
])
async def test_import_bad_files(shared_api, content, headers, status, text):
    body = content if isinstance(content, bytes) else content.encode()
    response = await shared_api.client.post(f"{URL}/import", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert text in response.text
    if status == 422 and "rows" in response.json()["error"]:
        assert response.json()["error"]["rows"][0]["line"] == 1


@SHARED_LOOP
async def test_import_multipart_without_the_file_field(shared_api):
    response = await shared_api.client.post(f"{URL}/import",
                                            files={"other": ("x.csv", b"a", "text/csv")})
    assert response.status_code == 422 and "`file`" in response.text


LEADERBOARD = "/api/v1/metrics/summary"


async def test_leaderboard_goal_and_attainment(api):
    for owner, target in (("ann@x.com", "2000"), ("bob@x.com", "1200"), ("dee@x.com", "10")):
        assert (await create(api, owner_email=owner, target=target)).status_code == 201
    # deals_won goals and goals reaching outside the range do not count
    await create(api, owner_email="ann@x.com", metric="deals_won", target=3)
    await create(api, owner_email="ann@x.com", period_end="2025-06-30", target=3000)
    await create(api, owner_email="cy@x.com", period_start="2025-04-01",
                 period_end="2025-06-30", target=500)
    params = {"start": "2025-01-01", "end": "2025-03-31"}
    response = await api.get(LEADERBOARD, params={**params, "group_by": "owner",
                                                  "sort": "-attainment"})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = [(r["owner_email"], r["bookings"], r["goal"], r["attainment"]) for r in body["data"]]
    assert rows == [("ann@x.com", 1650.5, 2000, 0.8253), ("bob@x.com", 300, 1200, 0.25),
                    ("dee@x.com", 0, 10, 0), ("cy@x.com", 0, None, None)]
    # no company goal: the total's goal is the sum of the owners' goals in range
    assert (body["total"]["goal"], body["total"]["attainment"]) == (3210, 0.6076)
    await create(api, target="4000")  # a company-wide goal takes over the total
    none = (await api.get(LEADERBOARD, params=params)).json()
    assert none["data"][0]["goal"] == 4000 and none["total"]["attainment"] == 0.4876
    half = (await api.get(LEADERBOARD, params={"start": "2025-01-01", "end": "2025-06-30",
                                               "group_by": "owner"})).json()
    assert {r["owner_email"]: r["goal"] for r in half["data"]} == {
        "ann@x.com": 5000, "bob@x.com": 1200, "cy@x.com": 500, "dee@x.com": 10}
    by_connection = (await api.get(LEADERBOARD, params={**params, "group_by": "connection"})
                     ).json()
    assert {r["goal"] for r in by_connection["data"]} == {None}


def test_target_and_period_edges_in_core(engine):
    from core.config import Settings
    from core.goals import targets as goals

    seed(engine)
    settings = Settings(database_url="sqlite://", reporting_currency="USD")
    with session_scope(engine) as session:
        goal = goals.create_goal(session, goals.GoalInput(
            "ann@x.com", "bookings", date(2025, 1, 1), date(2025, 1, 1), Decimal("0.01")),
            settings)
        assert goal.target == Decimal("0.01") and goal.period_end - goal.period_start == \
            timedelta(0)
        with pytest.raises(goals.GoalError, match="must be below"):
            goals.create_goal(session, goals.GoalInput(
                "bob@x.com", "bookings", date(2025, 1, 1), date(2025, 1, 2),
                Decimal("1e13")), settings)
        targets = goals.goal_targets(session, start=date(2025, 1, 1), end=date(2025, 1, 1))
        assert targets.by_owner == {goal.person_id: Decimal("0.01")}
        assert targets.company is None
    assert goals.attainment(Decimal(1), None) is None
    assert goals.attainment(Decimal(1), Decimal(0)) is None
    assert goals.attainment(Decimal(2), Decimal(3)) == Decimal("0.6667")


async def test_a_goal_of_a_rep_the_crm_no_longer_lists_can_still_be_edited(api, engine):
    """The rep's person stays when the CRM deletes the rep: goals keep working."""
    from sqlalchemy import update

    from core.models import User

    goal = (await create(api, owner_email="bob@x.com", target=100)).json()
    with session_scope(engine) as session:
        session.execute(update(User).where(User.email == "bob@x.com").values(
            deleted_at=utcnow()))
    changed = await api.client.patch(f"{URL}/{goal['id']}", json={"target": 150})
    assert changed.status_code == 200, changed.text
    another = await create(api, owner_email="bob@x.com", target=1, metric="deals_won")
    assert another.status_code == 201, another.text
    assert another.json()["person_id"] == goal["person_id"]


@SHARED_LOOP
async def test_the_import_body_is_described_in_openapi(shared_api):
    spec = (await shared_api.get("/openapi.json")).json()
    body = spec["paths"]["/api/v1/goals/import"]["post"]["requestBody"]["content"]
    assert set(body) == {"text/csv", "multipart/form-data"}
