# ruff: noqa: F811 - the fixtures site and store are imported, and taken by name
"""The Goals and Operations pages over ASGI on SQLite: the grid saved through core.goals (all
cells or none, per-cell errors), attainment on the leaderboard, the split helper's exact
rule, the sheet import, roles (a rep reads only their own goals; only admins see
operations), sync now, webhook rejections counted, API keys made and revoked."""

import asyncio
import re
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from html import unescape
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from api.web.goals import parse_span
from core import history
from core.config import Settings
from core.db import session_scope
from core.goals.split import split
from core.models import ApiKey, Goal, SyncRun
from core.store import set_state
from tests.api_support import make_key
from tests.unit.test_dashboard_pages import (  # noqa: F401 - fixtures seeded_file, site, store
    Site,
    board_rows,
    person_id,
    seeded_file,
    site,
    store,
)

Q1 = "q-2025-01"
MONTHS = ("2025-01", "2025-02", "2025-03")
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def signed_in(site: Site, email: str) -> str:
    """Sign in; the session's CSRF token (from the goals page's forms)."""
    answer = await site.sign_in(email)
    assert answer.status_code == 303, answer.text
    page = await site.page("/goals", span=Q1)
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def goals_of(engine: Engine) -> dict[tuple[int | None, str], Decimal]:
    with Session(engine) as session:
        rows = session.execute(select(Goal).where(Goal.deleted_at.is_(None))).scalars()
        return {(g.person_id, f"{g.period_start:%Y-%m}"): g.target for g in rows}


def cell(pid: int, month: str) -> str:
    return f"g-{pid}-{month}"


def cell_errors(html: str) -> dict[str, str]:
    return {name: unescape(message) for name, message in re.findall(
        r'<span class="cell-error" id="(g-[\d-]+)-error">(.*?)</span>', html)}


def inputs(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in re.findall(
        r'<input type="text" inputmode="decimal" name="([\w-]+)" (?:id="[\w-]+" )?'
        r'value="([^"]*)"', html)}


@pytest.fixture
async def manager(site: Site) -> AsyncIterator[tuple[Site, str, int]]:
    """The manager of team East (Ann) signed in: the site, the CSRF token, Ann's id."""
    csrf = await signed_in(site, "east@example.com")
    yield site, csrf, person_id(site.engine, "ann@example.com")


async def save(site: Site, csrf: str, cells: dict[str, str], **extra: str) -> httpx.Response:
    return await site.client.post("/goals", data={
        "csrf": csrf, "span": Q1, "metric": "bookings", "action": "save", **cells, **extra})


async def test_a_manager_sets_goals_and_the_leaderboard_shows_attainment(manager: Any) -> None:
    site, csrf, ann = manager
    before = board_rows((await site.page("/leaderboard", period="custom",
                                         start="2025-01-01", end="2025-03-31")).text)
    assert before["Ann Lee"]["goal"] == "–"
    answer = await save(site, csrf, {cell(ann, m): "10,000" for m in MONTHS})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/goals?span={Q1}&metric=bookings&saved=3"
    assert goals_of(site.engine) == {(ann, m): Decimal("10000.00") for m in MONTHS}
    after = board_rows((await site.page("/leaderboard", period="custom",
                                        start="2025-01-01", end="2025-03-31")).text)
    assert after["Ann Lee"]["goal"] == "$30,000.00"
    api = (await site.client.get("/api/v1/metrics/summary", params={
        "start": "2025-01-01", "end": "2025-03-31", "group_by": "owner"})).json()
    ann_row = next(r for r in api["data"] if r["person_id"] == ann)
    assert after["Ann Lee"]["attainment"] == f"{Decimal(str(ann_row['attainment'])):.2%}"
    page = await site.page("/goals", span=Q1, saved="3")
    assert "Saved: 3 goal(s) changed." in page.text
    assert inputs(page.text)[cell(ann, "2025-01")] == "10000.00"
    # clearing a cell removes its goal; an unchanged cell changes nothing
    answer = await save(site, csrf, {cell(ann, "2025-01"): "", cell(ann, "2025-02"): "10000"})
    assert answer.headers["location"].endswith("saved=1")
    assert set(goals_of(site.engine)) == {(ann, "2025-02"), (ann, "2025-03")}


async def test_any_bad_cell_saves_nothing_and_each_says_why(manager: Any) -> None:
    site, csrf, ann = manager
    answer = await save(site, csrf, {cell(ann, "2025-01"): "5000",
                                     cell(ann, "2025-02"): "lots",
                                     cell(ann, "2025-03"): "-4"})
    assert answer.status_code == 422
    assert cell_errors(answer.text) == {cell(ann, "2025-02"): "Not a number.",
                                        cell(ann, "2025-03"): "Must be more than zero."}
    assert "Nothing was saved: 2 cell(s) need fixing." in answer.text
    assert inputs(answer.text)[cell(ann, "2025-02")] == "lots"  # as typed
    assert goals_of(site.engine) == {}
    site.client.cookies.set("lang", "zh")
    answer = await save(site, csrf, {cell(ann, "2025-01"): "1.005"})
    assert cell_errors(answer.text) == {cell(ann, "2025-01"): "最多两位小数。"}
    deals = await site.client.post("/goals", data={
        "csrf": csrf, "span": Q1, "metric": "deals_won", cell(ann, "2025-01"): "2.5"})
    assert cell_errors(deals.text) == {cell(ann, "2025-01"): "赢单数必须是整数。"}
    assert goals_of(site.engine) == {}


async def test_the_grid_refuses_other_teams_forged_forms_and_reps(site: Site) -> None:
    csrf = await signed_in(site, "east@example.com")
    bob = person_id(site.engine, "bob@example.com")  # team West
    page = await site.page("/goals", span=Q1)
    assert cell(bob, "2025-01") not in page.text
    answer = await save(site, csrf, {cell(bob, "2025-01"): "100"})
    assert answer.status_code == 404
    forged = await save(site, "forged", {})
    assert forged.status_code == 403
    assert (await site.page("/operations")).status_code == 403
    assert goals_of(site.engine) == {}


async def test_a_rep_reads_their_own_goals_only(site: Site) -> None:
    admin_csrf = await signed_in(site, "admin@example.com")
    ann, bob = (person_id(site.engine, f"{n}@example.com") for n in ("ann", "bob"))
    await save(site, admin_csrf, {cell(ann, "2025-01"): "700", cell(bob, "2025-01"): "900"})
    assert len(goals_of(site.engine)) == 2
    await site.client.post("/logout", data={"csrf": admin_csrf})
    csrf = await signed_in(site, "ann@example.com")
    page = await site.page("/goals", span=Q1)
    assert page.status_code == 200
    assert 'name="g-' not in page.text and "Save goals" not in page.text  # read only
    assert '<span class="target">700.00</span>' in page.text
    assert f'data-person="{bob}"' not in page.text and "900.00" not in page.text
    assert (await save(site, csrf, {cell(ann, "2025-01"): "1"})).status_code == 403
    for path in ("/goals/push", "/goals/import"):
        assert (await site.client.post(path, data={"csrf": csrf})).status_code == 403
    assert (await site.page("/operations")).status_code == 403
    assert goals_of(site.engine)[(ann, "2025-01")] == Decimal("700.00")


def test_split_is_exact_with_the_rest_on_the_last_month() -> None:
    cent = Decimal("0.01")
    assert split(Decimal("100000"), [Decimal(1)] * 3, cent) == [
        Decimal("33333.33"), Decimal("33333.33"), Decimal("33333.34")]
    assert split(Decimal("10"), [Decimal(1)] * 3, Decimal(1)) == [3, 3, 4]
    shares = split(Decimal("1000"), [Decimal("1"), Decimal("2"), Decimal("0")], cent)
    assert shares == [Decimal("333.33"), Decimal("666.67"), None]  # a zero month: no goal
    assert split(Decimal("90"), [Decimal(0)] * 3, cent) == [Decimal(30)] * 3  # no history
    odd = split(Decimal("12345.67"), [Decimal("3.3"), Decimal("1.1"), Decimal("7")], cent)
    assert sum(s or 0 for s in odd) == Decimal("12345.67")


async def test_the_split_helper_fills_the_months_and_saves_nothing(manager: Any) -> None:
    site, csrf, ann = manager
    answer = await save(site, csrf, {f"split-{ann}": "100,000"}, action="split", rule="even")
    assert answer.status_code == 200
    assert [inputs(answer.text)[cell(ann, m)] for m in MONTHS] == [
        "33333.33", "33333.33", "33333.34"]
    assert goals_of(site.engine) == {}
    # like last year: Q1 2026 in proportion to Q1 2025's bookings, from the metrics API
    series = (await site.client.get("/api/v1/metrics/timeseries", params={
        "metric": "bookings", "interval": "month", "start": "2025-01-01",
        "end": "2025-03-31", "group_by": "owner"})).json()
    weights = [Decimal(str(r["value"])) for r in series["data"] if r["person_id"] == ann]
    assert len(weights) == 3 and sum(weights) > 0
    answer = await site.client.post("/goals", data={
        "csrf": csrf, "span": "q-2026-01", "metric": "bookings", "action": "split",
        "rule": "last-year", f"split-{ann}": "90000"})
    got = [inputs(answer.text)[cell(ann, m)] for m in ("2026-01", "2026-02", "2026-03")]
    expected = split(Decimal(90000), weights, Decimal("0.01"))
    assert got == [format(e, "f") if e else "" for e in expected]
    bad = await save(site, csrf, {f"split-{ann}": "zero"}, action="split")
    assert bad.status_code == 422 and "Not a number." in bad.text


async def test_an_import_with_an_error_imports_nothing_and_a_good_one_imports(
        manager: Any) -> None:
    site, csrf, ann = manager
    sheet = ("owner_email,metric,period_start,period_end,target\n"
             "ann@example.com,bookings,2025-01-01,2025-01-31,5000\n"
             "ann@example.com,bookings,2025-02-01,2025-02-28,oops\n"
             "bob@example.com,bookings,2025-03-01,2025-03-31,10\n")
    form = {"csrf": csrf, "span": Q1, "metric": "bookings"}
    bad = await site.client.post("/goals/import", data=form,
                                 files={"file": ("goals.csv", sheet.encode(), "text/csv")})
    assert bad.status_code == 422
    assert "Nothing was imported: 2 line(s) of the file are wrong." in bad.text
    lines = re.findall(r'<tr><td class="num">(\d+)</td><td><code>(\w+)</code>', bad.text)
    assert lines == [("3", "target"), ("4", "owner_email")]
    assert goals_of(site.engine) == {}
    good = sheet.rsplit("\n", 3)[0] + "\n"  # the first row only
    answer = await site.client.post("/goals/import", data=form,
                                    files={"file": ("goals.csv", good.encode(), "text/csv")})
    assert answer.status_code == 303
    assert answer.headers["location"].endswith("imported=1-0-0")
    assert goals_of(site.engine) == {(ann, "2025-01"): Decimal("5000.00")}
    page = await site.client.get(answer.headers["location"])
    assert "Imported: 1 new, 0 changed, 0 unchanged." in page.text
    empty = await site.client.post("/goals/import", data=form)
    assert empty.status_code == 422 and "Choose a file to import." in empty.text


async def test_push_status_per_goal_and_connection(manager: Any) -> None:
    """The seeded connection's CRM refuses every client (tests.api_support): each goal is
    pending before the push and failed, with the reason, after it."""
    site, csrf, ann = manager
    await save(site, csrf, {cell(ann, "2025-01"): "100"})
    page = await site.page("/goals", span=Q1)
    assert re.findall(r'<td class="push (\w+)">', page.text) == ["pending"]
    answer = await site.client.post("/goals/push", data={
        "csrf": csrf, "span": Q1, "metric": "bookings"})
    assert answer.status_code == 303, answer.text
    page = await site.client.get(answer.headers["location"])
    states = re.findall(r'<td class="push (\w+)">.*?</td>', page.text, re.S)
    assert states in (["failed"], ["pushed"], ["skipped"])
    listed = (await site.client.get("/api/v1/goals")).json()["data"]
    push = listed[0]["push"][0]
    shown = {"error": "failed", "skipped": "skipped"}.get(push["status"], "pushed")
    assert states == [shown]
    if push["error"]:
        assert unescape(push["error"]) in unescape(page.text)


def test_spans_are_fiscal_quarters_and_years() -> None:
    settings = Settings(database_url="sqlite://", secret_key="x" * 44,
                        fiscal_year_start_month=4)
    assert parse_span("q-2025-04", settings).months[-1].month == 6  # type: ignore[union-attr]
    assert parse_span("q-2025-05", settings) is None
    assert len(parse_span("y-2025-04", settings).months) == 12  # type: ignore[union-attr]
    assert parse_span("y-2025-01", settings) is None
    assert parse_span("nonsense", settings) is None


# ---- operations -----------------------------------------------------------------------------

async def admin_csrf(site: Site) -> str:
    await site.sign_in("admin@example.com")
    page = await site.page("/operations")
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


async def test_operations_is_for_admins_only(site: Site) -> None:
    assert (await site.page("/operations")).headers["location"].startswith("/login")
    await site.sign_in("east@example.com")
    refused = await site.page("/operations")
    assert refused.status_code == 403
    assert "Only admins see the operations page." in refused.text
    assert 'href="/operations"' not in (await site.page("/goals")).text  # not in the menu
    answer = await site.client.post("/operations/sync", data={"connection_id": "1"})
    assert answer.status_code == 403
    answer = await site.client.post("/operations/backfill", data={"connection_id": "1"})
    assert answer.status_code == 403


async def test_sync_now_queues_the_run_that_the_page_shows(site: Site) -> None:
    csrf = await admin_csrf(site)
    page = await site.page("/operations")
    assert 'data-connection="1"' in page.text and "zoho" in page.text
    answer = await site.client.post("/operations/sync", data={"csrf": csrf,
                                                             "connection_id": "1"})
    assert answer.status_code == 303
    run_id = int(answer.headers["location"].split("run=")[1])
    await site.app.state.jobs.wait_idle()
    with Session(site.engine) as session:
        run = session.get(SyncRun, run_id)
        assert run is not None and run.connection_id == 1
        status = str(run.status)
    page = await site.client.get(answer.headers["location"])
    assert f"Sync run {run_id} is queued" in page.text
    assert f'data-run="{run_id}"' in page.text
    row = re.search(rf'<tr data-run="{run_id}">.*?</tr>', page.text, re.S)
    assert row is not None and f'badge {status}' in row.group(0)
    assert (await site.client.post("/operations/sync", data={
        "csrf": csrf, "connection_id": "999"})).status_code == 404
    assert (await site.client.post("/operations/sync", data={
        "csrf": "forged", "connection_id": "1"})).status_code == 403


async def test_backfill_button_queues_the_stage_history_backfill(site: Site) -> None:
    csrf = await admin_csrf(site)
    page = await site.page("/operations")
    row = re.search(r'<tr data-backfill="1">.*?</tr>', page.text, re.S)
    assert row is not None  # zoho keeps stage history
    assert "not run yet" in row.group(0) and "Backfill stage history" in row.group(0)
    answer = await site.client.post("/operations/backfill", data={"csrf": csrf,
                                                                 "connection_id": "1"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/operations?backfill=1"
    await site.app.state.jobs.wait_idle()  # the stand-in CRM refuses: the backfill stops
    page = await site.client.get(answer.headers["location"])
    assert "backfill of" in page.text and "is queued" in page.text
    row = re.search(r'<tr data-backfill="1">.*?</tr>', page.text, re.S)
    assert row is not None and "badge stopped" in row.group(0)
    assert "invalid connection settings: client_id: Field required" in row.group(0)
    assert "input_value" not in row.group(0)  # never the settings given (secrets)
    assert (await site.client.post("/operations/backfill", data={
        "csrf": csrf, "connection_id": "999"})).status_code == 404
    assert (await site.client.post("/operations/backfill", data={
        "csrf": "forged", "connection_id": "1"})).status_code == 403
    site.client.cookies.set("lang", "zh")
    assert "回填阶段历史" in (await site.page("/operations")).text


async def test_a_backfill_whose_worker_was_killed_shows_what_the_api_shows(site: Site) -> None:
    """A worker killed (SIGKILL) mid-backfill leaves a start without an end in its state;
    the runner runs nothing: the API says not running, and so does the page (stopped)."""
    await site.sign_in("admin@example.com")
    with session_scope(site.engine) as session:  # what the killed worker left
        set_state(session, connection_id=1, stream=history.BACKFILL_STREAM, state={
            "started_at": "2026-12-01T09:00:00+00:00", "finished_at": None,
            "last_error": None, "finished": False, "after_id": 0})
    api = await site.client.get("/api/v1/connections/1/stage-history",
                                headers={"Authorization": f"Bearer {make_key(site.engine)}"})
    assert api.status_code == 200, api.text
    assert api.json()["running"] is False and api.json()["finished_at"] is None
    page = await site.page("/operations")
    row = re.search(r'<tr data-backfill="1">.*?</tr>', page.text, re.S)
    assert row is not None
    assert "badge stopped" in row.group(0) and "badge running" not in row.group(0)
    assert "Dec 1, 2026" in row.group(0)  # when it started


async def test_refused_webhooks_are_counted(site: Site) -> None:
    csrf = await admin_csrf(site)
    assert csrf
    for _ in range(2):
        forged = await site.client.post("/api/v1/webhooks/zoho/1", json={
            "channel_id": "nope", "token": "wrong", "module": "Deals", "operation": "insert",
            "ids": ["1"], "server_time": 1})
        assert forged.status_code == 401
    # counted in memory, written at once and then at most once a second
    deadline = time.monotonic() + 10
    while True:
        page = await site.page("/operations")
        row = re.search(r'<table class="ops webhooks">.*?<tr data-connection="1">(.*?)</tr>',
                        page.text, re.S)
        assert row is not None
        if re.search(r'class="num rejected">2<', row.group(1)) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert re.search(r'class="num rejected">2<', row.group(1))
    assert re.search(r'class="num accepted">0<', row.group(1))
    assert "401: unknown channel_id or wrong token" in row.group(1)
    assert "wrong" not in row.group(1).replace("wrong token", "")  # the sent token is not shown


async def test_an_admin_creates_a_key_once_and_revokes_it(site: Site) -> None:
    csrf = await admin_csrf(site)
    made = await site.client.post("/operations/keys", data={
        "csrf": csrf, "name": "BI tool", "scopes": ["read"]})
    assert made.status_code == 201
    key = re.search(r'<code id="new-key">(csk_[\w-]+)</code>', made.text)
    assert key is not None
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app),
                                 base_url="http://test") as bi:
        headers = {"Authorization": f"Bearer {key.group(1)}"}
        assert (await bi.get("/api/v1/deals", headers=headers)).status_code == 200
        page = await site.page("/operations")
        assert key.group(1) not in page.text  # shown once
        assert key.group(1)[:12] in page.text  # its prefix
        with Session(site.engine) as session:
            key_id = session.scalar(select(ApiKey.id).where(ApiKey.name == "BI tool"))
        revoked = await site.client.post(f"/operations/keys/{key_id}/revoke",
                                         data={"csrf": csrf})
        assert revoked.status_code == 303
        assert (await bi.get("/api/v1/deals", headers=headers)).status_code == 401
    bad = await site.client.post("/operations/keys", data={"csrf": csrf, "name": " "})
    assert bad.status_code == 422 and "Give the key a name" in bad.text
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(ApiKey).where(
            ApiKey.name == " ")) == 0


async def test_the_pages_speak_chinese(site: Site) -> None:
    await site.sign_in("admin@example.com")
    site.client.cookies.set("lang", "zh")
    goals = await site.page("/goals", span=Q1)
    assert "成交额目标" in goals.text and "2025年1月" in goals.text
    ops = await site.page("/operations")
    assert "API 密钥" in ops.text and "立即同步" in ops.text


async def test_a_quarter_goal_shows_beside_the_months_and_can_be_deleted(manager: Any) -> None:
    """The leaderboard adds every goal inside its period: the grid shows a quarter's goal
    too (in the total), and ticking it deletes it on save."""
    site, csrf, ann = manager
    made = await site.client.post("/api/v1/goals", headers={"X-CSRF-Token": csrf}, json={
        "person_id": ann, "metric": "bookings", "period_start": "2025-01-01",
        "period_end": "2025-03-31", "target": 9000})
    assert made.status_code == 201, made.text
    goal_id = made.json()["id"]
    await save(site, csrf, {cell(ann, "2025-01"): "1000"})
    page = await site.page("/goals", span=Q1)
    other = re.search(rf'<span class="other" data-goal="{goal_id}">(.*?)</span>', page.text,
                      re.S)
    assert other is not None and "$9,000.00" in other.group(1)
    total = re.search(rf'data-person="{ann}".*?<td class="num total">(.*?)</td>', page.text,
                      re.S)
    assert total is not None and total.group(1) == "$10,000.00"
    board = board_rows((await site.page("/leaderboard", period="custom", start="2025-01-01",
                                        end="2025-03-31")).text)
    assert board["Ann Lee"]["goal"] == "$10,000.00"
    answer = await save(site, csrf, {f"del-{goal_id}": "1"})
    assert answer.headers["location"].endswith("saved=1")
    assert goals_of(site.engine) == {(ann, "2025-01"): Decimal("1000.00")}
    forged = await save(site, csrf, {"del-999999": "1"})
    assert forged.status_code == 404
