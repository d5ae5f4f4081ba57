"""The Hygiene page and the leaderboard's hygiene column in a real browser (Playwright
driving Debian's Chromium) on the store `crmsync demo --no-serve` fills: a manager goes
from a rep's count on the leaderboard to their list, the counts against the API, the rule
filter, the links to the CRM's records, a rep's scope also by URL, Chinese and a phone
screen. Screenshots go to test-output/screenshots/ (hygiene-*.png).

The demo's store behind the app on a real port is the fixture of
tests/integration/test_dashboard_browser.py; the browser, the test process's Chromium
(tests/integration/conftest.py)."""

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.integration import test_dashboard_browser as shared
from tests.integration.test_dashboard_browser import (
    PHONE,
    Dashboard,
    new_page,
    set_password,
    shoot,
    shown_rows,
)

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Page

dashboard = shared.dashboard  # the fixture: the demo's store behind the app


def summary(dashboard: Dashboard, **params: Any) -> dict[str, Any]:
    answer = dashboard.api.get("/api/v1/hygiene/summary", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def items(dashboard: Dashboard, **params: Any) -> list[dict[str, Any]]:
    answer = dashboard.api.get("/api/v1/hygiene", params={"limit": 50, **params})
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()["data"]
    return rows


def rule_counts(page: "Page") -> dict[str, int]:
    """The counts at the top: "all" and each rule's key -> the number shown."""
    pairs = page.eval_on_selector_all("ul.rule-counts li", """items => items.map(li => [
        li.dataset.rule || 'all', li.querySelector('.count').innerText.trim()])""")
    return {key: int(text.replace(",", "")) for key, text in pairs}


def listed(page: "Page") -> list[tuple[int, list[str], str | None]]:
    """The deals listed: (id, rules shown, CRM link)."""
    rows: list[tuple[int, list[str], str | None]] = page.eval_on_selector_all(
        "table.hygiene-deals tr[data-deal]", """rows => rows.map(r => [
        Number(r.dataset.deal), [...r.querySelectorAll('.badge')].map(b => b.dataset.rule),
        r.querySelector('a.crm')?.getAttribute('href') ?? null])""")
    return [(i, rules, link) for i, rules, link in rows]


def check_links(rows: list[tuple[int, list[str], str | None]],
                expected: list[dict[str, Any]]) -> None:
    """Each deal links where its connector says (the API's `url`: HubSpot, Salesforce and
    Pipedrive build theirs, Fxiaoke none); Zoho's (the demo's first CRM) to its sandbox's
    record page."""
    by_id = {d["id"]: d for d in expected}
    assert [i for i, _, _ in rows] == [d["id"] for d in expected]
    for deal_id, rules, link in rows:
        deal = by_id[deal_id]
        assert rules == deal["rules"]
        assert link == deal["url"]
        if deal["connection_id"] == 1:
            assert re.fullmatch(rf"http://127\.0\.0\.1:\d+/crm/org\d+/tab/Potentials/"
                                rf"{deal['remote_id']}", link or ""), link


def test_a_manager_goes_from_the_leaderboard_to_a_reps_hygiene_list(dashboard, browser):
    link = dashboard.link("add", "--email", "hana@acme-demo.com", "--role", "manager",
                          "--name", "Hana Hygiene")
    page = new_page(browser)
    set_password(page, link)
    everyone = summary(dashboard)
    assert everyone["total"]["total"] > 0, "the demo's store has no hygiene issue to show"
    shown = shown_rows(page)
    assert int(shown["total"]["hygiene"].replace(",", "")) == everyone["total"]["total"]
    worst = everyone["data"][0]  # most issues first
    assert worst["person_id"] is not None
    if f"person:{worst['person_id']}" in shown:
        assert int(shown[f"person:{worst['person_id']}"]["hygiene"]) == worst["total"]
    page.click("table.board tfoot td.hygiene a")
    page.wait_for_url(re.compile(r"/hygiene$"))
    assert page.locator("h1").inner_text() == "Sales hygiene of Everyone"
    counts = rule_counts(page)
    assert counts == {"all": everyone["total"]["total"], **everyone["total"]["counts"]}
    check_links(listed(page), items(dashboard))
    shoot(page, "hygiene-en", full_page=False)
    page.locator("#deals tr[data-deal]").nth(12).scroll_into_view_if_needed()
    shoot(page, "hygiene-deals-en", full_page=False)
    # a rep's list, from their name in the per-rep table
    page.click(f"table.hygiene-reps tr[data-person='{worst['person_id']}'] th a")
    page.wait_for_url(re.compile(rf"show=person%3A{worst['person_id']}"))
    assert rule_counts(page) == {"all": worst["total"], **worst["counts"]}
    check_links(listed(page), items(dashboard, owner_person_id=worst["person_id"]))
    # one rule of that rep, chosen in the form
    rule = next(k for k, n in worst["counts"].items() if n)
    page.select_option("#rule", rule)
    page.click("form.period button[type=submit]")
    page.wait_for_url(re.compile(rf"rule={rule}"))
    rows = listed(page)
    assert rows and all(rule in rules for _, rules, _ in rows)
    assert len(rows) == min(worst["counts"][rule], 50)
    page.context.close()


def test_a_rep_sees_only_their_own_hygiene_also_by_url(dashboard, browser):
    link = dashboard.link("add", "--email", dashboard.rep_email, "--role", "rep")
    page = new_page(browser)
    set_password(page, link)
    page.goto(f"{dashboard.url}/hygiene")
    own = summary(dashboard)  # the API key sees everyone: pick the rep's row
    mine = next((r for r in own["data"] if r["person_id"] == dashboard.rep_person), None)
    counts = rule_counts(page)
    assert counts["all"] == (mine["total"] if mine else 0)
    people = page.eval_on_selector_all("table.hygiene-reps tr[data-person]",
                                       "rows => rows.map(r => Number(r.dataset.person))")
    assert set(people) <= {dashboard.rep_person}
    assert page.locator("table.hygiene-reps tr.total").count() == 0
    other = next(r["person_id"] for r in own["data"]
                 if r["person_id"] not in (None, dashboard.rep_person))
    response = page.goto(f"{dashboard.url}/hygiene?show=person:{other}")
    assert response is not None and response.status == 404
    assert page.locator("table").count() == 0
    page.context.close()


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_page_in_both_languages_fits_a_phone(dashboard, browser, lang):
    link = dashboard.link("add", "--email", f"phone-hygiene-{lang}@acme-demo.com", "--role",
                          "manager")
    page = new_page(browser, lang, viewport=PHONE, device_scale_factor=2, is_mobile=True,
                    has_touch=True)
    set_password(page, link)
    page.goto(f"{dashboard.url}/hygiene")
    heading = page.locator("h1").inner_text()
    assert heading == ("全部人员的商机规范检查" if lang == "zh" else "Sales hygiene of Everyone")
    widths = page.evaluate("[document.documentElement.scrollWidth, "
                           "document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= widths[2] == PHONE["width"], widths
    shoot(page, f"hygiene-phone-{lang}", full_page=False)
    if lang == "zh":
        page.set_viewport_size({"width": 1280, "height": 900})
        shoot(page, "hygiene-zh", full_page=False)
    page.context.close()
