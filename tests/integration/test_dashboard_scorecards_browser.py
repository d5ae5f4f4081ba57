"""The Scorecards and Funnel pages in a real browser (Playwright driving Debian's Chromium)
on the store `crmsync demo --no-serve` fills: a manager's numbers against the API, a
click from the team table to a rep's own card, a rep's scope also by URL, both
languages and a phone screen. Screenshots go to test-output/screenshots/.

The demo's store behind the app on a real port is the fixture of
tests/integration/test_dashboard_browser.py; the browser, the test process's Chromium
(tests/integration/conftest.py)."""

import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from api.web.i18n import Formats
from api.web.scorecards import COLUMNS, shown
from core.metrics.scorecard import FIGURES
from tests.integration import test_dashboard_browser as shared
from tests.integration.test_dashboard_browser import (
    PHONE,
    Dashboard,
    new_page,
    set_password,
    shoot,
)

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Page

dashboard = shared.dashboard  # the fixture: the demo's store behind the app


def api(dashboard: Dashboard, path: str, **params: Any) -> Any:
    answer = dashboard.api.get(f"/api/v1/metrics/{path}", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def expected(figure: dict[str, Any], name: str, currency: str, lang: str = "en") -> str:
    """The text the page shows for an API figure (its value)."""
    exact = {k: None if v is None else Decimal(str(v)) for k, v in figure.items()}
    return shown(name, exact, Formats(lang), currency).value


def table(page: "Page") -> dict[str, dict[str, str]]:
    """"person:<id>" / "team:<name>" -> column -> the value shown (and the rank)."""
    rows = page.eval_on_selector_all("table.scorecards tr.person, table.scorecards tr.team",
                                     """rows => rows.map(r => [
        r.className + ':' + (r.dataset.person ?? r.dataset.team),
        Object.fromEntries([...r.querySelectorAll('td')].filter(td => td.classList[1]).map(
            td => [td.classList[1], (td.querySelector('.value') ?? td).innerText.trim()]))])""")
    return dict(rows)


def check_table(dashboard: Dashboard, page: "Page", lang: str = "en") -> dict[str, Any]:
    """Every rep's and team's line of this quarter against /metrics/scorecards."""
    result = api(dashboard, "scorecards", start=dashboard.start, end=dashboard.end)
    lines = table(page)
    currency = result["currency"]
    assert set(lines) == {f"person:{r['person_id']}" for r in result["data"]} | {
        f"team:{t['team'] or ''}" for t in result["teams"]}
    for row in result["data"]:
        line = lines[f"person:{row['person_id']}"]
        assert line["rank"].split()[0] == str(row["rank"]), row["owner_email"]
        assert {c: line[c] for c in COLUMNS} == {
            c: expected(row[c], c, currency, lang) for c in COLUMNS}, row["owner_email"]
    for team in result["teams"]:
        line = lines[f"team:{team['team'] or ''}"]
        assert {c: line[c] for c in COLUMNS} == {
            c: expected(team[c], c, currency, lang) for c in COLUMNS}, team["team"]
    return result


def check_card(dashboard: Dashboard, page: "Page", person: int) -> None:
    """A rep's own card: every figure's value and previous value against the API."""
    result = api(dashboard, "scorecards", start=dashboard.start, end=dashboard.end,
                 person_id=person)
    [row] = result["data"]
    shown_rows = dict(page.eval_on_selector_all("table.card-figures tr[data-figure]", """
        rows => rows.map(r => [r.dataset.figure, [r.querySelector('td.value').innerText.trim(),
                                                  r.querySelector('td.previous').innerText.trim()]])
    """))
    assert list(shown_rows) == list(FIGURES)
    for name in FIGURES:
        previous = {**row[name], "value": row[name]["previous"]}
        assert shown_rows[name] == [expected(row[name], name, result["currency"]),
                                    expected(previous, name, result["currency"])], name


def check_funnel(dashboard: Dashboard, page: "Page") -> None:
    """Reached per stage against /metrics/funnel of this quarter, and velocity."""
    result = api(dashboard, "funnel", start=dashboard.start, end=dashboard.end)
    reached = page.eval_on_selector_all("table.stages tr.stage", """rows => rows.map(r => [
        r.dataset.stage, r.querySelector('td.reached').innerText.trim()])""")
    fmt = Formats("en")
    assert reached == [[s["stage"], fmt.number(s["reached"])]
                       for row in result["data"] for s in row["stages"]]
    assert reached, "the demo created no deal this quarter"
    speed = api(dashboard, "velocity", start=dashboard.start, end=dashboard.end)
    velocity = speed["total"]["velocity"]
    assert page.locator("dd.velocity").inner_text() == fmt.money(
        None if velocity is None else Decimal(str(velocity)), speed["currency"])


def test_a_manager_reviews_the_team_scorecards_and_the_funnel(dashboard, browser):
    link = dashboard.link("add", "--email", "sam@acme-demo.com", "--role", "manager",
                          "--name", "Sam Scorecards")
    page = new_page(browser)
    set_password(page, link)
    page.click("nav a[href='/scorecards']")
    page.wait_for_url(re.compile(r"/scorecards$"))
    assert page.locator("h1").inner_text().startswith("Scorecards of Everyone: ")
    result = check_table(dashboard, page)
    assert page.locator("table.scorecards .change").count() > 0  # arrows against last quarter
    shoot(page, "scorecards-en")
    # one team, chosen in the form
    team = next(t["team"] for t in result["teams"] if t["team"] is not None)
    page.select_option("#show", f"team:{team}")
    page.click("form.period button[type=submit]")
    page.wait_for_url(re.compile(r"show=team"))
    assert set(table(page)) == {f"person:{r['person_id']}" for r in result["data"]
                                if r["team"] == team} | {f"team:{team}"}
    # a click on a rep opens their card
    reps = [r for r in result["data"] if r["team"] == team]
    rep = reps[0]
    page.click(f"tr.person[data-person='{rep['person_id']}'] th a")
    page.wait_for_url(re.compile(rf"show=person%3A{rep['person_id']}"))
    assert page.locator("#card-title").inner_text() == (rep["owner_name"] or rep["owner_email"])
    check_card(dashboard, page, rep["person_id"])
    assert page.locator("p.rank").inner_text().startswith(
        f"Rank {rep['rank']} of {len(reps)} in team {team} by bookings")
    shoot(page, "scorecard-rep-en")

    page.click("nav a[href='/funnel']")
    page.wait_for_url(re.compile(r"/funnel$"))
    assert page.locator("h1").inner_text().startswith("Funnel of Everyone: deals created ")
    check_funnel(dashboard, page)
    assert page.locator("#accuracy-title").inner_text().startswith(
        "Last quarter's forecast accuracy, ")
    shoot(page, "funnel-en")
    page.context.close()


def test_a_rep_sees_only_their_own_card_also_by_url(dashboard, browser):
    link = dashboard.link("add", "--email", dashboard.rep_email, "--role", "rep")
    page = new_page(browser)
    set_password(page, link)
    page.goto(f"{dashboard.url}/scorecards")
    assert page.locator("#show option").count() == 1  # themselves only
    assert page.locator("section.scorecard").get_attribute("data-person") == str(
        dashboard.rep_person)
    check_card(dashboard, page, dashboard.rep_person)
    everyone = api(dashboard, "scorecards", start=dashboard.start, end=dashboard.end)
    other = next(r["person_id"] for r in everyone["data"]
                 if r["person_id"] != dashboard.rep_person)
    team = next(t["team"] for t in everyone["teams"] if t["team"] is not None)
    for path in ("/scorecards", "/funnel"):
        for show in (f"person:{other}", f"team:{team}"):
            response = page.goto(f"{dashboard.url}{path}?show={show}")
            assert response is not None and response.status == 404, (path, show)
            assert page.locator("h1").inner_text() == "Not found"
    page.context.close()


def test_both_pages_in_chinese(dashboard, browser):
    link = dashboard.link("add", "--email", "zhao@acme-demo.com", "--role", "manager")
    page = new_page(browser, "zh")
    set_password(page, link)
    page.click("nav a[href='/scorecards']")
    page.wait_for_url(re.compile(r"/scorecards"))
    assert re.fullmatch(r"全部人员的业绩卡：\d{4}年\d{1,2}月1日至\d{4}年\d{1,2}月\d{1,2}日",
                        page.locator("h1").inner_text())
    check_table(dashboard, page, "zh")
    shoot(page, "scorecards-zh")
    page.click("nav a[href='/funnel']")
    page.wait_for_url(re.compile(r"/funnel"))
    assert page.locator("#stages-title").inner_text() == "到达各阶段的商机"
    shoot(page, "funnel-zh")
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_both_pages_fit_a_phone_screen(dashboard, browser, lang):
    link = dashboard.link("add", "--email", f"phone-cards-{lang}@acme-demo.com", "--role",
                          "manager")
    page = new_page(browser, lang, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                    has_touch=True)
    set_password(page, link)
    for path in ("/scorecards", "/funnel", f"/scorecards?show=person:{dashboard.rep_person}"):
        page.goto(f"{dashboard.url}{path}")
        widths = page.evaluate("[document.documentElement.scrollWidth, "
                               "document.body.scrollWidth, window.innerWidth]")
        assert max(widths[:2]) <= widths[2] == PHONE["width"], (path, widths)
        if "person" in path:  # the rep's card fits: its figures do not scroll sideways either
            card = page.locator("section.scorecard div.table-scroll").evaluate(
                "e => [e.scrollWidth, e.clientWidth]")
            assert card[0] <= card[1], (path, card)
        name = "scorecard-rep" if "person" in path else path.strip("/")
        shoot(page, f"{name}-phone-{lang}", full_page=False)
    page.context.close()
