"""The statements page over ASGI on SQLite: a rep sees their own statement line by line,
a manager their team with totals and export links, the plan in readable form; figures as
the API answers them; both languages."""

import re
from collections.abc import AsyncIterator
from datetime import date
from html import unescape

import pytest
from sqlalchemy import Engine

from tests.incentive_support import AE_PLAN, apply, deal, q1_company, upsert
from tests.unit.test_dashboard_pages import Site, add_user, site_on


@pytest.fixture
async def site(sqlite_engine: Engine) -> AsyncIterator[Site]:
    c = q1_company(sqlite_engine)
    upsert(sqlite_engine, c.crm_a, "deals", [deal("o1", "30000", date(2027, 3, 25),
                                                  status="open")])
    apply(sqlite_engine, AE_PLAN.replace("ae-2027", "west").replace("team: East",
                                                                   "team: West"))
    add_user(sqlite_engine, "ann@example.com", "rep")
    add_user(sqlite_engine, "east@example.com", "manager", teams=["East"])
    async for running in site_on(sqlite_engine):
        yield running


def texts(html: str, pattern: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in re.findall(pattern, html, re.S)]


async def test_a_rep_sees_their_statement_line_by_line(site: Site) -> None:
    await site.sign_in("ann@example.com")
    page = await site.page("/statements", period="2027-Q1")
    assert page.status_code == 200
    html = page.text
    assert texts(html, r'<dd class="payout">(.*?)</dd>') == ["$3,000.00"]
    rows = texts(html, r'<tr class="line-(?:deal|spiff)">(.*?)</tr>')
    assert len(rows) == 4 and "€20,000.00" in rows[1]  # e1's own currency beside it
    assert "$10,000.00 at 2.00% (tier 1); $12,000.00 at 5.00% (tier 2)" in rows[1]
    assert "SPIFF: new logo" in rows[3]
    assert "Bob" not in html and "Cat" not in html and "/api/v1/statements?" not in html
    assert "From 50.00% to 100.00% of quota: 5.00% of bookings" in html
    # winning o1: 20,000 x 5 % up to quota, 10,000 x 8 % above
    assert texts(html, r'<td class="num gain">(.*?)</td>') == ["+$1,800.00"]
    assert 'aria-current="page">Statements' in html


async def test_a_manager_sees_the_team_with_totals_and_exports(site: Site) -> None:
    await site.sign_in("east@example.com")
    html = (await site.page("/statements", period="2027-Q1")).text
    assert texts(html, r"<tr data-person=\"\d+\">\s*<th[^>]*>(.*?)</th>") == ["Ann", "Bob"]
    assert texts(html, r'<td class="num payout">(.*?)</td>') == [
        "$3,000.00", "$0.00", "$3,000.00"]  # Bob has no quota: his tiered line pays 0
    assert 'href="/api/v1/statements?period=2027-Q1&amp;format=csv"' in html
    exported = await site.client.get("/api/v1/statements",
                                     params={"period": "2027-Q1", "format": "csv"})
    assert exported.status_code == 200 and "cat@example.com" not in exported.text
    bob = re.search(r'href="(/statements\?period=2027-Q1&amp;person=\d+)"[^>]*>Bob', html)
    assert bob is not None
    detail = (await site.client.get(unescape(bob.group(1)))).text
    assert "No quota for this period" in detail


async def test_bad_periods_and_chinese(site: Site) -> None:
    await site.sign_in("ann@example.com")
    bad = await site.page("/statements", period="2027-Q7")
    assert bad.status_code == 400 and "2027-Q1" in bad.text
    site.client.cookies.set("lang", "zh")
    zh = (await site.page("/statements", period="2027-Q1")).text
    assert "提成明细" in zh and "实发金额" in zh
    empty = (await site.page("/statements", period="2026-Q1")).text
    assert "没有提成明细" in empty


async def test_signing_in_is_needed(site: Site) -> None:
    page = await site.page("/statements")
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
