"""The dashboard in a real browser (Playwright driving Debian's Chromium: its headless shell)
against the app on a real port, on the store `crmsync demo --no-serve` fills (two CRMs,
goals for this quarter): signing in through a one-time link and the form, the leaderboard
against the API, the drill-down, a rep's scope, the language switch and a phone screen.

Screenshots of every page in both languages go to test-output/screenshots/. The browser
is the test process's Chromium (`browser`, tests/integration/conftest.py)."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from api.app import create_app
from connectors.sandbox.server import BackgroundServer
from core import accounts
from core.config import Settings
from core.db import make_engine, session_scope
from core.metrics.periods import Preset, preset_range, today
from core.security import SecretBox
from tests.api_support import make_key
from tests.integration.conftest import DemoStore
from tests.integration.test_cli import crmsync
from workers.context import JobContext

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Browser, Page

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
PASSWORD = "a long enough password"
LINK = re.compile(r"^http://127\.0\.0\.1:8000(/welcome/[A-Za-z0-9_-]+)$", re.MULTILINE)
DEMO_LINK = re.compile(
    r"^  (manager|rep) ?(.*?) \([^)]*\): http://127\.0\.0\.1:\d+(/welcome/\S+)$", re.MULTILINE)
PHONE = {"width": 390, "height": 844}


@dataclass
class Dashboard:
    url: str
    engine: Engine
    directory: Path
    api: httpx.Client  # the API with a read key
    start: str  # this quarter, the leaderboard's default period
    end: str
    rep_person: int  # a rep of the home CRM only, with bookings this quarter
    rep_email: str
    demo_links: dict[str, tuple[str, str]]  # the demo's: manager, rep -> (who, link path)

    def summary(self, group_by: str) -> dict[str, Any]:
        answer = self.api.get("/api/v1/metrics/summary", params={
            "start": self.start, "end": self.end, "group_by": group_by,
            "activities": "true"})  # the leaderboard's activities column
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    def link(self, *args: str) -> str:
        """`crmsync users ...` on the demo's store; the one-time link it prints, on this
        server."""
        done = crmsync(self.directory, "users", *args)
        assert done.returncode == 0, done.stderr
        found = LINK.search(done.stdout)
        assert found is not None, done.stdout
        return self.url + found.group(1)


def _home_crm_rep(api: httpx.Client, start: str, end: str) -> tuple[int, str]:
    """A person with bookings this quarter whose deals are all in the first connection
    (its home currency is the reporting currency, so its amounts add up as shown)."""
    home = 1  # the demo's first CRM, whose currency the metrics report in
    board = api.get("/api/v1/metrics/summary", params={
        "start": start, "end": end, "group_by": "owner", "sort": "-bookings"}).json()
    for row in board["data"]:
        if row["person_id"] is None or not row["bookings"] or not row["owner_email"]:
            continue
        deals = api.get("/api/v1/metrics/deals", params={
            "metric": "bookings", "start": start, "end": end, "person_id": row["person_id"],
            "limit": 1000}).json()["data"]
        if {d["connection_id"] for d in deals} == {home}:
            return row["person_id"], row["owner_email"]
    raise AssertionError("the demo has no rep of the home CRM alone with bookings")


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory,
              demo_store: DemoStore) -> Iterator[Dashboard]:
    """The store `crmsync demo --no-serve` filled (a copy of demo_store, this module's own)
    behind the app on a real port."""
    directory = demo_store.copy_to(tmp_path_factory.mktemp("dashboard"))
    out = demo_store.stdout
    assert re.search(r"^dashboard: http://127\.0\.0\.1:\d+/ ", out, re.MULTILINE)
    demo_links = {role: (who, path) for role, who, path in DEMO_LINK.findall(out)}
    assert set(demo_links) == {"manager", "rep"}, out
    url = f"sqlite:///{directory / 'crmsync.db'}"
    engine = make_engine(url)
    secret = Fernet.generate_key().decode()
    settings = Settings(database_url=url, secret_key=secret, redis_url=None)
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(secret))
    start, end = (d.isoformat() for d in preset_range(
        Preset.THIS_QUARTER, today(settings), settings.fiscal_year_start_month))
    with BackgroundServer(create_app(settings, ctx=ctx)) as server, httpx.Client(
            base_url=server.url, timeout=30,
            headers={"Authorization": f"Bearer {make_key(engine, 'read')}"}) as api:
        person, email = _home_crm_rep(api, start, end)
        yield Dashboard(server.url, engine, directory, api, start, end, person, email,
                        demo_links)
    engine.dispose()


def new_page(browser: "Browser", lang: str = "en", **options: Any) -> "Page":
    context = browser.new_context(locale="zh-CN" if lang == "zh" else "en-US", **options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def shoot(page: "Page", name: str, *, full_page: bool = True) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)


def set_password(page: "Page", link: str, password: str = PASSWORD) -> None:
    page.goto(link)
    page.fill("#password", password)
    page.fill("#confirm", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/leaderboard"))


def sign_in(page: "Page", url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{url}/login")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/leaderboard"))


def amount(text: str) -> Decimal:
    """A figure as shown in English ($1,234.50, 66.67%, 19.5) as a number."""
    digits = re.sub(r"[^\d.\-]", "", text)
    value = Decimal(digits)
    return value / 100 if text.strip().endswith("%") else value


def shown_rows(page: "Page") -> dict[str, dict[str, str]]:
    """The leaderboard's rows: "person:<id>", "team:<label>" or "total" -> column -> text."""
    rows = page.eval_on_selector_all("table.board tr.person, table.board tr.team, "
                                     "table.board tr.total", """rows => rows.map(r => ({
        kind: r.className, person: r.dataset.person || null,
        label: r.querySelector('th').innerText.trim(),
        cells: Object.fromEntries([...r.querySelectorAll('td')].map(
            td => [td.classList[1], td.innerText.trim()]))}))""")
    out = {}
    for row in rows:
        key = {"person": f"person:{row['person']}", "team": f"team:{row['label']}",
               "total": "total"}[row["kind"]]
        out[key] = row["cells"]
    return out


def check_row(shown: dict[str, str], expected: dict[str, Any], where: str) -> None:
    for column in ("bookings", "goal", "attainment", "win_rate", "open_pipeline",
                   "sales_cycle_days", "activities"):
        want = expected[column]
        if want is None:
            assert shown[column] == "–", (where, column)
        else:
            assert amount(shown[column]) == Decimal(str(want)), (where, column, shown[column])


def test_a_manager_signs_in_reads_the_leaderboard_and_drills_down(dashboard, browser):
    link = dashboard.link("add", "--email", "mia@acme-demo.com", "--role", "manager",
                          "--name", "Mia Manager")
    page = new_page(browser)
    page.goto(link)
    assert page.locator("h1").inner_text() == "Set your password"
    shoot(page, "welcome-en")
    set_password(page, link)
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/login"))
    assert "You are signed out." in page.content()
    page.fill("#email", "mia@acme-demo.com")
    page.fill("#password", "not the password")
    page.click("form.stack button[type=submit]")
    assert page.locator("p.error").inner_text() == "Wrong email or password."
    shoot(page, "login-en")
    page.fill("#password", PASSWORD)
    page.click("form.stack button[type=submit]")
    page.wait_for_url(re.compile(r"/leaderboard"))

    # the leaderboard: this quarter by default, every number as the API gives it
    heading = page.locator("h1").inner_text()
    assert re.fullmatch(r"Leaderboard: \w{3} \d{1,2}, \d{4} to \w{3} \d{1,2}, \d{4}", heading)
    rows = shown_rows(page)
    owners, teams = dashboard.summary("owner"), dashboard.summary("team")
    people = [r for r in owners["data"] if r["person_id"] is not None]
    assert {k for k in rows if k.startswith("person:")} == {
        f"person:{r['person_id']}" for r in people}
    for row in people:
        check_row(rows[f"person:{row['person_id']}"], row, row["owner_name"])
    for row in teams["data"]:
        label = f"Team {row['team']}" if row["team"] is not None else "No team"
        check_row(rows[f"team:{label}"], row, label)
    check_row(rows["total"], owners["total"], "total")
    assert any(r["goal"] is not None for r in people)  # the demo's goals are on the board
    assert owners["total"]["activities"] > 0  # the demo's CRMs have calls and meetings
    bar = page.locator("tr.person td.attainment svg.bar").first
    assert bar.get_attribute("aria-hidden") == "true"  # the percentage is the text beside it
    shoot(page, "leaderboard-en")

    # sorting by a column, by its link
    page.click("thead th.win_rate a")
    page.wait_for_url(re.compile(r"sort=-win_rate"))
    assert page.locator("thead th.win_rate").get_attribute("aria-sort") == "descending"

    # the drill-down: the deals behind a rep's bookings add up to the figure
    page.goto(f"{dashboard.url}/leaderboard")
    figure = shown_rows(page)[f"person:{dashboard.rep_person}"]["bookings"]
    page.click(f"tr.person[data-person='{dashboard.rep_person}'] td.bookings a")
    page.wait_for_url(re.compile(r"/leaderboard/deals\?metric=bookings"))
    total = Decimal(0)
    while True:
        for cell in page.locator("td.amount-home").all_inner_texts():
            total += amount(cell)
        following = page.locator("a[rel=next]")
        if following.count() == 0:
            break
        following.click()
        page.wait_for_load_state()
    assert total > 0 and total.quantize(Decimal("0.01")) == amount(figure)
    shoot(page, "deals-en")
    page.context.close()


def test_the_demos_rep_sees_only_their_own_row_and_not_others_deals(dashboard, browser):
    name, path = dashboard.demo_links["rep"]
    page = new_page(browser)
    set_password(page, dashboard.url + path)
    rows = shown_rows(page)
    [mine] = [r for r in dashboard.summary("owner")["data"] if r["owner_name"] == name]
    assert list(rows) == [f"person:{mine['person_id']}"]
    check_row(rows[f"person:{mine['person_id']}"], mine, name)
    other = next(r["person_id"] for r in dashboard.summary("owner")["data"]
                 if r["person_id"] not in (None, mine["person_id"]))
    response = page.goto(f"{dashboard.url}/leaderboard/deals?metric=bookings&person={other}"
                         f"&start={dashboard.start}&end={dashboard.end}")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "Not found"
    assert page.locator("td.amount-home").count() == 0
    shoot(page, "not-found-en")
    page.context.close()


def test_a_rep_added_on_the_command_line_sees_their_own_deals(dashboard, browser):
    link = dashboard.link("add", "--email", dashboard.rep_email, "--role", "rep")
    page = new_page(browser)
    set_password(page, link)
    assert list(shown_rows(page)) == [f"person:{dashboard.rep_person}"]
    page.click(f"tr.person[data-person='{dashboard.rep_person}'] td.bookings a")
    page.wait_for_url(re.compile(r"/leaderboard/deals"))
    assert page.locator("td.amount-home").count() > 0
    page.context.close()


def test_the_language_switch_turns_every_page_chinese(dashboard, browser):
    link = dashboard.url + dashboard.demo_links["manager"][1]
    page = new_page(browser)
    page.goto(f"{dashboard.url}/login")
    page.click("a.lang")  # English -> 中文, remembered in a cookie
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "登录"
    assert page.locator("html").get_attribute("lang") == "zh-Hans"
    shoot(page, "login-zh")
    page.goto(link)
    assert page.locator("h1").inner_text() == "设置密码"
    shoot(page, "welcome-zh")
    set_password(page, link)
    heading = page.locator("h1").inner_text()
    assert re.fullmatch(r"排行榜：\d{4}年\d{1,2}月\d{1,2}日至\d{4}年\d{1,2}月\d{1,2}日", heading)
    headings = page.locator("table.board thead th").all_inner_texts()
    assert [h.strip(" ▲▼") for h in headings] == [
        "销售", "成交额", "目标", "达成率", "赢单率", "在途商机", "销售周期（天）", "销售活动",
        "规范问题"]
    assert page.locator("tfoot th").inner_text() == "合计"
    assert "US$" in page.locator("tfoot td.bookings").inner_text()
    shoot(page, "leaderboard-zh")
    page.click(f"tr.person[data-person='{dashboard.rep_person}'] td.bookings a")
    page.wait_for_url(re.compile(r"/leaderboard/deals"))
    assert page.locator("h1").inner_text().startswith("成交额：")
    close_date = page.locator("td.close-date").first.inner_text()
    assert re.fullmatch(r"\d{4}年\d{1,2}月\d{1,2}日", close_date)
    shoot(page, "deals-zh")
    response = page.goto(f"{dashboard.url}/leaderboard/deals?metric=bookings&person=999999"
                         f"&start={dashboard.start}&end={dashboard.end}")
    assert response is not None and response.status == 404
    assert page.locator("h1").inner_text() == "未找到"
    shoot(page, "not-found-zh")
    page.click("a.lang")  # and back
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "Not found"
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_phone_screen_shows_the_pages_without_sideways_scrolling(dashboard, browser, lang):
    email = f"phone-{lang}@acme-demo.com"
    with session_scope(dashboard.engine) as session:
        user = accounts.add_user(session, email=email, role="manager")
        link = f"{dashboard.url}/welcome/{accounts.create_link(session, user)}"
    page = new_page(browser, lang, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                    has_touch=True)
    set_password(page, link)

    def fits() -> None:
        widths = page.evaluate("[document.documentElement.scrollWidth, "
                               "document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2] == PHONE["width"], (page.url, widths)

    fits()
    table = page.locator("div.table-scroll")
    assert table.evaluate("e => e.scrollWidth > e.clientWidth")  # the table scrolls itself
    shoot(page, f"leaderboard-phone-{lang}", full_page=False)  # the screen
    page.click(f"tr.person[data-person='{dashboard.rep_person}'] td.bookings a")
    page.wait_for_url(re.compile(r"/leaderboard/deals"))
    fits()
    shoot(page, f"deals-phone-{lang}", full_page=False)  # the screen
    page.context.clear_cookies()
    page.goto(f"{dashboard.url}/login")
    fits()
    shoot(page, f"login-phone-{lang}", full_page=False)  # the screen
    page.context.close()
