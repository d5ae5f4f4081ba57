"""The dashboard's pages over ASGI on SQLite: signing in and out, one-time links, CSRF, the
headers of every page, the leaderboard against the metrics API, scopes by role, the
drill-down, sorting, periods and languages."""

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from html import unescape
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from api.app import create_app
from api.web.leaderboard import PAGE_SIZE
from api.web.render import ASSETS_URL, TEMPLATES, PageRoute
from core import accounts
from core.accounts import MAX_FAILURES, SESSION_TTL
from core.config import Settings
from core.db import make_engine, session_scope
from core.logs import redact
from core.metrics import definitions as metrics
from core.models import Connection, LoginFailure, Person, WebSession
from core.security import SecretBox
from tests.api_support import DASHBOARD_PAGES, add_connection, make_key, seed, seed_activities
from tests.conftest import migrated_sqlite
from workers.context import JobContext

PASSWORD = "correct horse battery"
Q1 = {"period": "custom", "start": "2025-01-01", "end": "2025-03-31"}
YEAR = {"period": "custom", "start": "2025-01-01", "end": "2025-12-31"}  # every deal
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass
class Site:
    engine: Engine
    settings: Settings
    client: httpx.AsyncClient
    key: str
    app: FastAPI

    async def form_token(self, path: str = "/login") -> str:
        page = await self.client.get(path)
        found = CSRF.search(page.text)
        assert found is not None, page.text
        return found.group(1)

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        token = await self.form_token()
        return await self.client.post("/login", data={
            "email": email, "password": password, "csrf": token})

    async def page(self, path: str, **params: Any) -> httpx.Response:
        return await self.client.get(path, params=params)


def add_user(engine: Engine, email: str, role: str, **kwargs: Any) -> str:
    """A user with PASSWORD; returns nothing useful but the email."""
    with session_scope(engine) as session:
        user = accounts.add_user(session, email=email, role=role, **kwargs)
        accounts.use_link(session, accounts.create_link(session, user), PASSWORD)
    return email


def person_id(engine: Engine, email: str) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(Person.id).where(Person.email == email)) or 0)


async def site_on(engine: Engine, base_url: str = "http://test") -> AsyncIterator[Site]:
    secret = Fernet.generate_key().decode()
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(database_url=url, secret_key=secret, redis_url=None)
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(secret))
    app = create_app(settings, ctx=ctx)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=base_url) as client:
        yield Site(engine, settings, client, make_key(engine, "read"), app)


@pytest.fixture(scope="module")
def seeded_file(module_sqlite_engine: Engine) -> Path:
    """Two reps (Ann, team East; Bob, team West) with 330 deals in Q1 2025, in USD, and
    three users: seeded once per module (about 0.15 s of CPU), copied by `store`."""
    engine = module_sqlite_engine
    connection = add_connection(engine)
    seed(engine, connection, deals=330)
    with session_scope(engine) as session:
        row = session.get(Connection, connection)
        assert row is not None
        row.home_currency = "USD"
    add_user(engine, "admin@example.com", "admin", name="Ada Admin")
    add_user(engine, "ann@example.com", "rep")
    add_user(engine, "east@example.com", "manager", teams=["East"])
    with engine.connect() as conn:  # everything in the main file, no -wal beside it
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return Path(engine.url.database or "")


@pytest.fixture
def store(seeded_file: Path, tmp_path: Path) -> Iterator[Engine]:
    """This test's own store: a copy of seeded_file."""
    engine = make_engine(migrated_sqlite(seeded_file, tmp_path))
    yield engine
    engine.dispose()


@pytest.fixture
async def site(store: Engine) -> AsyncIterator[Site]:
    async for running in site_on(store):
        yield running


def cell_text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html)).strip()


def board_rows(html: str) -> dict[str, dict[str, str]]:
    """label -> column -> the text shown, for every row of the leaderboard."""
    rows = {}
    for row in re.findall(r'<tr class="(?:person|team|total)".*?</tr>', html, re.S):
        label = cell_text(re.search(r"<th[^>]*>(.*?)</th>", row, re.S).group(1))
        rows[label] = {column: cell_text(value) for column, value in re.findall(
            r'<td class="num (\w+)">(.*?)</td>', row, re.S)}
    return rows


def money(shown: str) -> Decimal:
    return Decimal(shown.replace("$", "").replace(",", ""))


def percent(shown: str) -> Decimal:
    return Decimal(shown.rstrip("%").replace(",", "")) / 100


# -- signing in -------------------------------------------------------------------------


async def test_the_pages_are_the_ones_the_route_tests_leave_to_this_file(site):
    pages = {(m, r.path) for r in iter_route_contexts(site.app.routes)
             if isinstance(r.original_route, PageRoute) for m in r.methods or ()
             if m != "HEAD"}
    assert pages | {("MOUNT", ASSETS_URL)} == DASHBOARD_PAGES
    assert not any(path.startswith("/api/") for _, path in pages)



async def test_pages_need_signing_in_and_carry_the_security_headers(site):
    home = await site.page("/")
    assert (home.status_code, home.headers["location"]) == (303, "/login")
    board = await site.page("/leaderboard", period="this-month")
    assert board.status_code == 303
    assert board.headers["location"] == "/login?next=%2Fleaderboard%3Fperiod%3Dthis-month"
    deals = await site.page("/leaderboard/deals", metric="bookings")
    assert deals.status_code == 303 and deals.headers["location"].startswith("/login?next=")
    for response in (home, board, deals, await site.page("/login"),
                     await site.page("/welcome/nonsense")):
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["cache-control"] == "no-store"
    assert (await site.page("/welcome/nonsense")).status_code == 410


async def test_signing_in_sets_a_safe_session_cookie_and_goes_where_asked(site):
    token = await site.form_token()
    done = await site.client.post("/login", data={
        "email": " Ann@Example.com ", "password": PASSWORD, "csrf": token,
        "next": "/leaderboard?period=last-month"})
    assert done.status_code == 303
    assert done.headers["location"] == "/leaderboard?period=last-month"
    cookie = done.headers["set-cookie"]
    assert cookie.startswith("crmsync_session=")
    for flag in ("HttpOnly", "Path=/", "SameSite=lax",
                 f"Max-Age={int(SESSION_TTL.total_seconds())}"):
        assert flag in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the HTTPS test
    assert (await site.page("/")).headers["location"] == "/leaderboard"
    again = await site.page("/login", next="/leaderboard/deals")
    assert (again.status_code, again.headers["location"]) == (303, "/leaderboard/deals")


async def test_the_session_cookie_is_secure_over_https(store):
    async for site in site_on(store, "https://dash.example"):
        done = await site.sign_in("ann@example.com")
        assert done.status_code == 303
        assert "Secure" in done.headers["set-cookie"]


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/",
                                    "/\\evil.example", "leaderboard"])
async def test_signing_in_never_leaves_the_site(site, target):
    token = await site.form_token()
    done = await site.client.post("/login", data={
        "email": "ann@example.com", "password": PASSWORD, "csrf": token, "next": target})
    assert (done.status_code, done.headers["location"]) == (303, "/leaderboard")


async def test_a_wrong_password_says_so_and_records_a_failure(site):
    done = await site.sign_in("ann@example.com", "not the password")
    assert done.status_code == 401
    assert "Wrong email or password." in done.text
    assert "set-cookie" not in done.headers or "crmsync_session" not in done.headers[
        "set-cookie"]
    assert "not the password" not in done.text
    assert 'value="ann@example.com"' in done.text  # the email stays filled in
    unknown = await site.sign_in("nobody@example.com")
    assert unknown.status_code == 401 and "Wrong email or password." in unknown.text
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 2


async def test_too_many_failures_show_the_wait(site):
    for _ in range(MAX_FAILURES):
        assert (await site.sign_in("ann@example.com", "wrong password!")).status_code == 401
    throttled = await site.sign_in("ann@example.com")  # even the right password now
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) > 0
    assert re.search(r"Try again in \d+ minutes\.", throttled.text)
    assert "crmsync_session" not in throttled.headers.get("set-cookie", "")


async def test_a_login_post_without_its_form_token_is_refused_and_changes_nothing(site):
    for data in ({"email": "ann@example.com", "password": PASSWORD},
                 {"email": "ann@example.com", "password": "wrong", "csrf": "forged"}):
        site.client.cookies.clear()
        done = await site.client.post("/login", data=data)
        assert done.status_code == 403
        assert "The form had expired" in done.text
        assert "crmsync_session" not in done.headers.get("set-cookie", "")
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0


async def test_signing_out_needs_the_session_token(site):
    await site.sign_in("ann@example.com")
    refused = await site.client.post("/logout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await site.page("/leaderboard", **Q1)).status_code == 200  # still signed in
    board = await site.page("/leaderboard", **Q1)
    token = CSRF.search(board.text).group(1)
    done = await site.client.post("/logout", data={"csrf": token})
    assert (done.status_code, done.headers["location"]) == (303, "/login?signed-out=1")
    assert 'crmsync_session=""' in done.headers["set-cookie"] or \
        "Max-Age=0" in done.headers["set-cookie"]
    with Session(site.engine) as session:
        assert session.scalar(select(func.count()).select_from(WebSession)) == 0
    assert "You are signed out." in (await site.page("/login", **{"signed-out": "1"})).text


async def test_a_one_time_link_sets_the_password_once_and_signs_in(site):
    with session_scope(site.engine) as session:
        user = accounts.add_user(session, email="new@example.com", role="manager")
        link = accounts.create_link(session, user)
    page = await site.page(f"/welcome/{link}")
    assert page.status_code == 200 and "new@example.com" in page.text
    assert (await site.page(f"/welcome/{link}")).status_code == 200  # looking spends nothing
    token = CSRF.search(page.text).group(1)
    for data, message in (
            ({"password": "short", "confirm": "short"}, "at least 10 characters"),
            ({"password": PASSWORD, "confirm": PASSWORD + "!"}, "The two passwords differ."),
            ({"password": "x" * 1025, "confirm": "x" * 1025}, "at most 1024 characters")):
        refused = await site.client.post(f"/welcome/{link}", data={**data, "csrf": token})
        assert refused.status_code == 400 and message in refused.text
    forged = await site.client.post(f"/welcome/{link}", data={
        "password": PASSWORD, "confirm": PASSWORD})
    assert forged.status_code == 403
    with Session(site.engine) as session:
        assert accounts.link_user(session, link) is not None  # nothing spent so far
    done = await site.client.post(f"/welcome/{link}", data={
        "password": PASSWORD, "confirm": PASSWORD, "csrf": token})
    assert (done.status_code, done.headers["location"]) == (303, "/leaderboard")
    assert "crmsync_session=" in done.headers["set-cookie"]
    assert (await site.page("/leaderboard", **Q1)).status_code == 200
    spent = await site.page(f"/welcome/{link}")
    assert spent.status_code == 410 and "expired or has been used" in spent.text
    site.client.cookies.clear()
    assert (await site.sign_in("new@example.com")).status_code == 303


@pytest.mark.parametrize("line, masked", [
    ('"GET /welcome/AbC-12_xyz HTTP/1.1" 200', '"GET /welcome/*** HTTP/1.1" 200'),
    ('"GET /language?set=zh&next=%2Fwelcome%2FAbC-12_xyz HTTP/1.1" 303',
     '"GET /language?set=zh&next=%2Fwelcome%2F*** HTTP/1.1" 303'),
    ('"GET /language?next=%2fwelcome%2fAbC HTTP/1.1"',
     '"GET /language?next=%2fwelcome%2f*** HTTP/1.1"'),
])
def test_one_time_links_are_masked_in_logs(line, masked):
    assert redact(line) == masked


# -- the leaderboard --------------------------------------------------------------------


async def test_the_leaderboard_shows_the_apis_numbers_with_team_subtotals(site):
    await site.sign_in("admin@example.com")
    page = await site.page("/leaderboard", **Q1)
    assert page.status_code == 200, page.text
    rows = board_rows(page.text)
    auth = {"Authorization": f"Bearer {site.key}"}
    api = {}
    for group_by in ("owner", "team"):
        answer = await site.client.get("/api/v1/metrics/summary", headers=auth, params={
            "start": Q1["start"], "end": Q1["end"], "group_by": group_by})
        assert answer.status_code == 200, answer.text
        api[group_by] = answer.json()
    expected = {r["owner_name"]: r for r in api["owner"]["data"]}
    expected |= {f"Team {r['team']}": r for r in api["team"]["data"]}
    expected["Total"] = api["owner"]["total"]
    assert set(rows) == set(expected)
    for label, shown in rows.items():
        want = expected[label]
        assert money(shown["bookings"]) == Decimal(str(want["bookings"])), label
        assert money(shown["open_pipeline"]) == Decimal(str(want["open_pipeline"])), label
        assert percent(shown["win_rate"]) == Decimal(str(want["win_rate"])), label
        assert Decimal(shown["sales_cycle_days"]) == Decimal(str(want["sales_cycle_days"]))
        assert shown["goal"] == shown["attainment"] == "–"  # no goals set
    assert "Jan 1, 2025 to Mar 31, 2025" in page.text
    assert "Amounts in USD." in page.text
    # team East holds Ann, team West Bob: each team's rows follow its subtotal
    order = list(rows)
    assert order == ["Team East", "Ann Lee", "Team West", "Bob Roy", "Total"] or \
        order == ["Team West", "Bob Roy", "Team East", "Ann Lee", "Total"]


async def test_the_leaderboard_counts_each_reps_activities_in_both_languages(site):
    with session_scope(site.engine) as session:
        connection_id = int(session.scalar(select(func.min(Connection.id))) or 0)
    seed_activities(site.engine, connection_id)  # January: Ann 6 that count, Bob 3
    await site.sign_in("admin@example.com")
    page = await site.page("/leaderboard", **Q1, sort="-activities")
    rows = board_rows(page.text)
    shown = {label: row["activities"] for label, row in rows.items()}
    assert shown == {"Team East": "6", "Ann Lee": "6", "Team West": "3", "Bob Roy": "3",
                     "Total": "9"}
    assert list(rows)[:2] == ["Team East", "Ann Lee"]  # most activities first
    assert ">Activities" in page.text
    chinese = await site.client.get("/leaderboard", params=Q1,
                                    headers={"Accept-Language": "zh-CN"})
    assert ">销售活动" in chinese.text


async def test_sorting_is_by_links_and_bad_parameters_get_a_page_saying_so(site):
    await site.sign_in("admin@example.com")
    ascending = board_rows((await site.page("/leaderboard", **Q1, sort="bookings")).text)
    descending = board_rows((await site.page("/leaderboard", **Q1, sort="-bookings")).text)
    down = list(descending)
    assert down[0].startswith("Team ") and down[-1] == "Total"
    assert list(ascending) == [*down[2:4], *down[0:2], "Total"]  # team blocks swap
    first, second = (money(descending[label]["bookings"]) for label in down[0:3:2])
    assert first >= second
    page = (await site.page("/leaderboard", **Q1, sort="-win_rate")).text
    assert 'aria-sort="descending"' in page
    assert "sort=win_rate" in unescape(page)  # the next click reverses
    for params in ({**Q1, "sort": "password"}, {**Q1, "start": "2025-13-01"},
                   {**Q1, "start": "2025-04-01"}, {"period": "next-century"},
                   {"period": "custom", "start": "2000-01-01", "end": "2025-01-01"}):
        bad = await site.page("/leaderboard", **params)
        assert bad.status_code == 400, params
        assert 'role="alert"' in bad.text
        assert "Traceback" not in bad.text


@pytest.mark.parametrize("preset", ["this-month", "last-month", "this-quarter",
                                    "last-quarter", "this-year", "last-year"])
async def test_every_preset_period_renders(site, preset):
    await site.sign_in("east@example.com")
    page = await site.page("/leaderboard", period=preset)
    assert page.status_code == 200, page.text
    assert f'<option value="{preset}" selected>' in page.text


async def test_a_rep_sees_only_their_own_row_and_deals(site):
    await site.sign_in("ann@example.com")
    rows = board_rows((await site.page("/leaderboard", **Q1)).text)
    assert list(rows) == ["Ann Lee"]  # no team or total rows: they would be Ann's again
    ann, bob = person_id(site.engine, "ann@example.com"), person_id(site.engine,
                                                                     "bob@example.com")
    own = await site.page("/leaderboard/deals", metric="bookings", person=ann,
                          start=Q1["start"], end=Q1["end"])
    assert own.status_code == 200
    for person in (bob, 999999, "x", "-1", "1e3"):
        other = await site.page("/leaderboard/deals", metric="bookings", person=person,
                                start=Q1["start"], end=Q1["end"])
        assert other.status_code == 404, person
        assert "Not found" in other.text and "Bob" not in other.text
    ann_deals = set(await all_deal_ids(site, "bookings", ann))
    assert ann_deals
    everyone = await site.page("/leaderboard/deals", metric="bookings", start=Q1["start"],
                               end=Q1["end"])  # no person: still only Ann's deals
    listed = set(re.findall(r'data-deal="(\d+)"', everyone.text))
    assert listed and listed <= ann_deals
    west = await site.page("/leaderboard/deals", metric="bookings", team="West",
                           start=Q1["start"], end=Q1["end"])  # Bob's team: none of his
    assert west.status_code == 200 and "data-deal=" not in west.text


async def all_deal_ids(site: Site, metric: str, person: int,
                       period: dict[str, str] = Q1) -> list[str]:
    ids: list[str] = []
    url: str | None = "/leaderboard/deals?" + str(httpx.QueryParams(
        {"metric": metric, "person": person, "start": period["start"],
         "end": period["end"]}))
    while url:
        page = await site.client.get(url)
        assert page.status_code == 200, page.text
        ids += re.findall(r'data-deal="(\d+)"', page.text)
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = unescape(found.group(1)) if found else None
    return ids


async def test_a_manager_sees_their_teams_people_only(site):
    await site.sign_in("east@example.com")
    rows = board_rows((await site.page("/leaderboard", **Q1)).text)
    assert list(rows) == ["Team East", "Ann Lee", "Total"]
    assert rows["Total"] == rows["Ann Lee"] == rows["Team East"]
    bob = person_id(site.engine, "bob@example.com")
    assert (await site.page("/leaderboard/deals", metric="bookings", person=bob,
                            start=Q1["start"], end=Q1["end"])).status_code == 404


async def test_the_drill_down_lists_the_deals_behind_a_number_page_by_page(site):
    await site.sign_in("admin@example.com")
    ann = person_id(site.engine, "ann@example.com")
    page = await site.page("/leaderboard/deals", metric="bookings", person=ann, **YEAR)
    assert page.status_code == 200
    assert page.text.count("data-deal=") == PAGE_SIZE
    assert "Bookings: Ann Lee" in page.text and "Closed Won" in page.text
    ids = await all_deal_ids(site, "bookings", ann, YEAR)
    with session_scope(site.engine) as session:
        listing = metrics.drill_down(metrics.DrillMetric.BOOKINGS, start=date(2025, 1, 1),
                                     end=date(2025, 12, 31), person_id=ann)
        expected = [str(r[0]) for r in session.execute(listing.stmt.order_by(
            listing.key))]
    assert ids == expected and len(ids) > PAGE_SIZE
    bad = await site.page("/leaderboard/deals", metric="bookings", person=ann, **YEAR,
                          cursor="not-a-cursor")
    assert bad.status_code == 400 and "does not exist" in bad.text
    assert (await site.page("/leaderboard/deals", metric="goal", **YEAR)).status_code == 400


async def test_the_drill_down_amounts_add_up_to_the_leaderboards_figure(site):
    await site.sign_in("admin@example.com")
    board = board_rows((await site.page("/leaderboard", **YEAR)).text)
    ann = person_id(site.engine, "ann@example.com")
    total = Decimal(0)
    url: str | None = f"/leaderboard/deals?metric=bookings&person={ann}&start=" \
        f"{YEAR['start']}&end={YEAR['end']}"
    while url:
        page = await site.client.get(url)
        total += sum((money(cell_text(v)) for v in re.findall(
            r'<td class="num amount-home">(.*?)</td>', page.text, re.S)), Decimal(0))
        found = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = unescape(found.group(1)) if found else None
    assert total.quantize(Decimal("0.01")) == money(board["Ann Lee"]["bookings"])


# -- languages --------------------------------------------------------------------------


async def test_the_language_follows_the_browser_then_the_switch(site):
    await site.sign_in("admin@example.com")
    chinese = await site.client.get("/leaderboard", params=Q1,
                                    headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert '<html lang="zh-Hans">' in chinese.text
    assert "排行榜：2025年1月1日至2025年3月31日" in chinese.text
    assert "团队：East" in chinese.text and "合计" in chinese.text
    assert "US$" in chinese.text
    english = await site.client.get("/leaderboard", params=Q1,
                                    headers={"Accept-Language": "fr-FR,en;q=0.5"})
    assert '<html lang="en">' in english.text and "Leaderboard: Jan 1, 2025" in english.text
    switch = await site.page("/language", set="zh", next="/leaderboard?period=last-month")
    assert (switch.status_code, switch.headers["location"]) == (
        303, "/leaderboard?period=last-month")
    assert "lang=zh" in switch.headers["set-cookie"]
    after = await site.client.get("/leaderboard", params=Q1,
                                  headers={"Accept-Language": "en"})  # the cookie wins
    assert '<html lang="zh-Hans">' in after.text
    assert 'href="/language?set=en&amp;next=%2Fleaderboard%3F' in after.text
    away = await site.page("/language", set="en", next="https://evil.example/")
    assert away.headers["location"] == "/leaderboard"
    ignored = await site.page("/language", set="fr")
    assert "set-cookie" not in ignored.headers


def test_every_table_is_the_shared_macro() -> None:
    """A table's markup (its scrolling region, its heading row) is written once, in the
    data_table macro (macros.html); the pages call it."""
    pages = [p for p in TEMPLATES.glob("*.html") if p.name != "macros.html"]
    assert len(pages) > 10
    written = {p.name for p in pages
               if re.search(r'<thead|<table|class="table-scroll"', p.read_text())}
    assert written == set()
    assert {p.name for p in pages if "data_table(" in p.read_text()} >= {
        "deals.html", "funnel.html", "goals.html", "hygiene.html", "leaderboard.html",
        "operations.html", "pipeline.html", "scorecards.html", "statements.html",
        "trends.html"}
