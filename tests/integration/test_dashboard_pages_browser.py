"""The Trends and Pipeline pages in a real browser (Playwright driving Debian's Chromium)
on the store `crmsync demo --no-serve` fills: a manager's and a rep's numbers against the
API, a rep's scope also by URL, the links to the CRM's records, both languages and a phone
screen. Screenshots of both pages in English and Chinese go to test-output/screenshots/.

The demo's store behind the app on a real port is the fixture of
tests/integration/test_dashboard_browser.py; the browser, the test process's Chromium
(tests/integration/conftest.py)."""

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import select

from connectors import registry
from core.config import Settings
from core.db import session_scope
from core.metrics.periods import Preset, preset_range, today
from core.models import Connection
from tests.integration import test_dashboard_browser as shared
from tests.integration.test_dashboard_browser import (
    PHONE,
    Dashboard,
    amount,
    new_page,
    set_password,
    shoot,
)

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Page

NOTHING = "–"
dashboard = shared.dashboard  # the fixture: the demo's store behind the app


def number(text: str) -> Decimal | None:
    return None if text.strip() == NOTHING else amount(text)


def api(dashboard: Dashboard, path: str, **params: Any) -> Any:
    answer = dashboard.api.get(f"/api/v1/metrics/{path}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def this_year(dashboard: Dashboard) -> tuple[str, str]:
    """The Trends page's default period (the app runs with the default settings)."""
    settings = Settings()
    first, last = preset_range(Preset.THIS_YEAR, today(settings),
                               settings.fiscal_year_start_month)
    return first.isoformat(), last.isoformat()


def trend_rows(page: "Page") -> list[dict[str, str]]:
    rows: list[dict[str, str]] = page.eval_on_selector_all(
        "table.trends tbody tr", """rows => rows.map(r => Object.assign(
            {start: r.dataset.start, end: r.dataset.end},
            Object.fromEntries([...r.querySelectorAll('td')].map(
                td => [td.classList[1], td.innerText.trim()]))))""")
    return rows


def check_trends(dashboard: Dashboard, page: "Page", *, group: tuple[str, Any] | None = None,
                 interval: str = "quarter") -> list[dict[str, str]]:
    """The Trends table (this year, by quarter unless said) against /metrics/timeseries
    (bookings, win rate) and each period's goal against /metrics/summary."""
    start, end = this_year(dashboard)
    by = {} if group is None else {"group_by": "team" if group[0] == "team" else "owner"}
    rows = trend_rows(page)
    series = {m: [r for r in api(dashboard, "timeseries", metric=m, interval=interval,
                                 start=start, end=end, **by)["data"]
                  if group is None or r[group[0]] == group[1]]
              for m in ("bookings", "win_rate")}
    assert [(r["start"], r["end"]) for r in rows] == [
        (s["period_start"], s["period_end"]) for s in series["bookings"]]
    for row, booked, rate in zip(rows, series["bookings"], series["win_rate"], strict=True):
        assert number(row["bookings"]) == Decimal(str(booked["value"])), row
        want = rate["value"]
        assert number(row["win_rate"]) == (None if want is None else Decimal(str(want))), row
        summary = api(dashboard, "summary", start=row["start"], end=row["end"], **by)
        goal = summary["total"]["goal"] if group is None else next(
            (r["goal"] for r in summary["data"] if r[group[0]] == group[1]), None)
        assert number(row["goal"]) == (None if goal is None else Decimal(str(goal))), row
    return rows


def check_pipeline(dashboard: Dashboard, page: "Page", people: set[int] | None = None) -> None:
    """The funnel against /metrics/pipeline (the manager sees everyone), the forecast
    against the quarter's summary, and the deals closing this quarter with their links."""
    funnel = page.eval_on_selector_all("table.funnel tr.stage", """rows => rows.map(r => [
        r.querySelector('th').innerText.trim(), r.querySelector('td.count').innerText.trim(),
        r.querySelector('td.amount').innerText.trim(),
        r.querySelector('td.weighted').innerText.trim()])""")
    now = api(dashboard, "pipeline")["data"]
    assert [(s, int(c), amount(a), amount(w)) for s, c, a, w in funnel] == [
        (r["stage"] or "(no stage)", r["count"], Decimal(str(r["amount"])),
         Decimal(str(r["weighted_amount"]))) for r in now]
    total = api(dashboard, "summary", start=dashboard.start, end=dashboard.end)["total"]
    for name in ("bookings", "weighted_pipeline", "forecast", "goal"):
        shown = page.locator(f"dl.figures dd.{name}").inner_text()
        assert number(shown) == (None if total[name] is None else Decimal(str(total[name])))
    closing = api(dashboard, "deals", metric="open_pipeline", start=dashboard.start,
                  end=dashboard.end, limit=25)["data"]
    ids = page.eval_on_selector_all("table.closing tr[data-deal]",
                                    "rows => rows.map(r => Number(r.dataset.deal))")
    assert ids == [d["id"] for d in closing]
    links = dict(page.eval_on_selector_all("table.closing tr[data-deal]", """rows => rows.map(
        r => [Number(r.dataset.deal), r.querySelector('a.crm')?.getAttribute('href')])"""))
    zoho = [d for d in closing if d["connection_id"] == 1]  # the demo's first CRM: Zoho
    assert zoho, "no deal of the Zoho sandbox closes this quarter"
    for deal in zoho:  # its sandbox's record page: /crm/<org>/tab/Potentials/<remote id>
        assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/crm/org\d+/tab/Potentials/"
                            rf"{deal['remote_id']}", links[deal["id"]] or "")
    # every other CRM's deals link where its connector builds one (the links capability),
    # on its sandbox's host; the others have none
    with session_scope(dashboard.engine) as session:
        connections = {int(c.id or 0): c for c in session.scalars(select(Connection))}
    linked = set()
    for deal in closing:
        connection = connections[deal["connection_id"]]
        want = registry.deal_url(connection.provider, dict(connection.config or {}),
                                 deal["remote_id"])
        assert links[deal["id"]] == want, (connection.provider, deal)
        if want:
            assert want.startswith("http://127.0.0.1:")
            linked.add(connection.provider)
    assert "zoho" in linked, linked


def test_a_manager_reads_trends_and_pipeline_against_the_api(dashboard, browser):
    link = dashboard.link("add", "--email", "tess@acme-demo.com", "--role", "manager",
                          "--name", "Tess Trends")
    page = new_page(browser)
    set_password(page, link)
    page.click("nav a[href='/trends']")
    page.wait_for_url(re.compile(r"/trends$"))
    assert page.locator("h1").inner_text().startswith("Trends of Everyone: ")
    rows = check_trends(dashboard, page)  # by quarter: the demo's goals are this quarter's
    assert len(rows) == 4 and page.locator("svg.bookings-chart rect.bookings").count() == 4
    assert any(r["goal"] != NOTHING for r in rows)
    assert page.locator("svg.bookings-chart line.goal").count() >= 1
    shoot(page, "trends-en")
    page.select_option("#interval", "month")
    page.click("form.period button[type=submit]")
    page.wait_for_url(re.compile(r"interval=month"))
    assert len(check_trends(dashboard, page, interval="month")) == 12
    # one team, chosen in the form
    team = next(r["team"] for r in api(dashboard, "summary", start=dashboard.start,
                                       end=dashboard.end, group_by="team")["data"]
                if r["team"] is not None)
    page.select_option("#show", f"team:{team}")
    page.click("form.period button[type=submit]")
    page.wait_for_url(re.compile(r"show=team"))
    assert page.locator("h1").inner_text().startswith(f"Trends of Team {team}: ")
    check_trends(dashboard, page, group=("team", team), interval="month")
    page.check("input[name=cumulative]")
    page.click("form.period button[type=submit]")
    page.wait_for_url(re.compile(r"cumulative=1"))
    running = Decimal(0)
    for row in trend_rows(page):
        running += amount(row["bookings"])
        assert amount(row["total_bookings"]) == running

    page.click("nav a[href='/pipeline']")
    page.wait_for_url(re.compile(r"/pipeline$"))
    assert page.locator("h1").inner_text() == "Pipeline of Everyone"
    check_pipeline(dashboard, page)
    shoot(page, "pipeline-en")
    page.context.close()


def test_a_rep_sees_only_their_own_trends_and_pipeline_also_by_url(dashboard, browser):
    link = dashboard.link("add", "--email", dashboard.rep_email, "--role", "rep")
    page = new_page(browser)
    set_password(page, link)
    page.goto(f"{dashboard.url}/trends")
    options = page.locator("#show option").all_inner_texts()
    assert len(options) == 1  # themselves only
    check_trends(dashboard, page, group=("person_id", dashboard.rep_person))
    other = next(r["person_id"] for r in api(dashboard, "summary", start=dashboard.start,
                                             end=dashboard.end, group_by="owner")["data"]
                 if r["person_id"] not in (None, dashboard.rep_person))
    team = next(r["team"] for r in api(dashboard, "summary", start=dashboard.start,
                                       end=dashboard.end, group_by="team")["data"]
                if r["team"] is not None)
    for path in ("/trends", "/pipeline"):
        for show in (f"person:{other}", f"team:{team}"):
            response = page.goto(f"{dashboard.url}{path}?show={show}")
            assert response is not None and response.status == 404, (path, show)
            assert page.locator("h1").inner_text() == "Not found"
            assert page.locator("table").count() == 0
    page.goto(f"{dashboard.url}/pipeline")
    owners = set(page.locator("table.closing td.owner").all_inner_texts())
    mine = api(dashboard, "summary", start=dashboard.start, end=dashboard.end,
               group_by="owner")["data"]
    name = next(r["owner_name"] for r in mine if r["person_id"] == dashboard.rep_person)
    assert owners <= {name}
    rep_total = next(r for r in mine if r["person_id"] == dashboard.rep_person)
    shown = page.locator("dl.figures dd.bookings").inner_text()
    assert amount(shown) == Decimal(str(rep_total["bookings"]))
    page.context.close()


def test_both_pages_in_chinese(dashboard, browser):
    link = dashboard.link("add", "--email", "zhou@acme-demo.com", "--role", "manager")
    page = new_page(browser, "zh")
    set_password(page, link)
    page.click("nav a[href='/trends']")
    page.wait_for_url(re.compile(r"/trends"))
    assert re.fullmatch(r"全部人员的趋势：\d{4}年1月1日至\d{4}年12月31日",
                        page.locator("h1").inner_text())
    assert page.locator("table.trends thead th").all_inner_texts() == [
        "期间", "成交额", "目标", "达成率", "赢单率", "累计成交额", "累计目标", "累计达成率"]
    assert re.fullmatch(r"\d{4}年第1季度",
                        page.locator("table.trends tbody th").first.inner_text())
    check_trends(dashboard, page)
    shoot(page, "trends-zh")
    page.click("nav a[href='/pipeline']")
    page.wait_for_url(re.compile(r"/pipeline"))
    assert page.locator("h1").inner_text() == "全部人员的商机管道"
    assert page.locator("#funnel-title").inner_text() == "当前在途商机（按阶段）"
    assert "US$" in page.locator("dl.figures dd.forecast").inner_text()
    check_pipeline(dashboard, page)
    shoot(page, "pipeline-zh")
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_both_pages_fit_a_phone_screen(dashboard, browser, lang):
    link = dashboard.link("add", "--email", f"phone-pages-{lang}@acme-demo.com", "--role",
                          "manager")
    page = new_page(browser, lang, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                    has_touch=True)
    set_password(page, link)
    for path in ("/trends", "/pipeline"):
        page.goto(f"{dashboard.url}{path}")
        widths = page.evaluate("[document.documentElement.scrollWidth, "
                               "document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2] == PHONE["width"], (path, widths)
        chart = page.locator("svg").first.bounding_box()
        assert chart is not None and chart["width"] <= PHONE["width"]
        shoot(page, f"{path.strip('/')}-phone-{lang}", full_page=False)
    page.context.close()
