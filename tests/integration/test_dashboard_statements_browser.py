"""The statements page in a real browser (Playwright driving Debian's Chromium) against the
app on a real port: a rep reads their own statement line by line and in Chinese; a manager
reads the team's totals, opens a rep's statement and downloads the CSV export.

Screenshots go to test-output/screenshots/ (statements-*.png)."""

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet

from api.app import create_app
from connectors.sandbox.server import BackgroundServer
from core import accounts
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.security import SecretBox
from tests.incentive_support import q1_company
from tests.integration.test_dashboard_browser import (
    PASSWORD,
    PHONE,
    amount,
    new_page,
    shoot,
    sign_in,
)
from workers.context import JobContext

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Browser

Q1 = "/statements?period=2027-Q1"


@dataclass
class Site:
    url: str


def _user(engine, email: str, role: str, **kwargs) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        user = accounts.add_user(session, email=email, role=role, **kwargs)
        accounts.use_link(session, accounts.create_link(session, user), PASSWORD)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Ann (East; in two CRMs, one in EUR), Bob (East) and Cat (West) with Q1 2027 deals,
    Ann's goal, the East plan; Ann is a rep, east@ manages East."""
    url = f"sqlite:///{tmp_path_factory.mktemp('statements') / 'crmsync.db'}"
    engine = make_engine(url)
    upgrade(engine)
    q1_company(engine)
    _user(engine, "ann@example.com", "rep")
    _user(engine, "east@example.com", "manager", teams=["East"])
    secret = Fernet.generate_key().decode()
    settings = Settings(database_url=url, secret_key=secret, redis_url=None,
                        reporting_currency="USD")
    ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(secret))
    with BackgroundServer(create_app(settings, ctx=ctx)) as server:
        yield Site(server.url)
    engine.dispose()


def test_a_rep_reads_their_statement_in_both_languages(site: Site, browser: "Browser") -> None:
    page = new_page(browser)
    sign_in(page, site.url, "ann@example.com")
    page.click("nav a:has-text('Statements')")
    page.wait_for_url(re.compile(r"/statements"))
    page.fill("#period", "2027-Q1")
    page.click("form.period-form button[type=submit]")
    page.wait_for_url(re.compile(r"period=2027-Q1"))
    assert amount(page.locator("dd.payout").inner_text()) == 3000
    lines = page.locator("table.lines tbody tr")
    assert lines.count() == 4
    assert [amount(t) for t in page.locator("table.lines tbody td:last-child").all_inner_texts()
            ] == [800, 800, 900, 500]
    assert "(tier 2)" in lines.nth(1).inner_text()  # e1 crosses from tier 1 into tier 2
    assert page.locator("section.plan li").count() >= 4  # who, quota, three tiers, ...
    assert page.locator("a:has-text('CSV')").count() == 0  # the team export is for managers
    shoot(page, "statements-rep-en")
    page.click("a.lang")
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "提成明细"
    assert amount(page.locator("dd.payout").inner_text()) == 3000
    shoot(page, "statements-rep-zh")
    page.context.close()


def test_a_manager_reads_the_team_and_downloads_the_export(site: Site,
                                                           browser: "Browser") -> None:
    page = new_page(browser, accept_downloads=True)
    sign_in(page, site.url, "east@example.com")
    page.goto(site.url + Q1)
    names = page.locator("table.statements tbody th a").all_inner_texts()
    assert names == ["Ann", "Bob"]  # Cat is in West
    total = page.locator("table.statements tfoot td.payout").inner_text()
    assert amount(total) == 3000  # Bob has no quota: his tiered line pays 0
    shoot(page, "statements-manager-en")
    page.click("table.statements a:has-text('Ann')")
    page.wait_for_url(re.compile(r"person=\d+"))
    assert amount(page.locator("section.statement dd.payout").inner_text()) == 3000
    with page.expect_download() as download:
        page.click("a:has-text('CSV')")
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {r["email"] for r in rows} == {"ann@example.com", "bob@example.com"}
    assert [r["commission"] for r in rows if r["kind"] == "payout"] == ["3000.00", "0.00"]
    page.context.close()


def test_the_statement_fits_a_phone(site: Site, browser: "Browser") -> None:
    page = new_page(browser, viewport=PHONE)
    sign_in(page, site.url, "ann@example.com")
    page.goto(site.url + Q1)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], width  # wide tables scroll inside their own box
    shoot(page, "statements-rep-phone")
    page.context.close()
