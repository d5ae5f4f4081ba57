"""The Scorecards and Funnel pages over ASGI on SQLite: their numbers against the metrics
API (/metrics/scorecards, /metrics/funnel, /metrics/velocity, /metrics/forecast-accuracy),
the everyone / team / rep choice and a rep's scope, the change arrows, and Chinese.
(A real browser: tests/integration/test_dashboard_pages_browser.py.)"""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from api.web.i18n import Formats
from api.web.scorecards import COLUMNS, shown
from core.db import session_scope
from core.metrics.periods import Preset, preset_range, today
from core.records import DealRecord
from core.store import upsert_records
from tests.unit.test_dashboard_hygiene import LINK
from tests.unit.test_dashboard_pages import (
    Site,
    add_user,
    cell_text,
    person_id,
    site_on,
)
from tests.unit.test_dashboard_pages import seeded_file as seeded_file  # the fixtures
from tests.unit.test_dashboard_pages import store as store

Q1 = {"period": "custom", "start": "2025-01-01", "end": "2025-03-31"}
FEB = {"period": "custom", "start": "2025-02-01", "end": "2025-02-28"}


@pytest.fixture
async def site(store: Engine) -> AsyncIterator[Site]:
    async for running in site_on(store):
        yield running


async def api(site: Site, path: str, **params: Any) -> Any:
    answer = await site.client.get(f"/api/v1/metrics/{path}", params=params,
                                   headers={"Authorization": f"Bearer {site.key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


def card_lines(html: str) -> dict[str, dict[str, str]]:
    """data-person or data-team -> column -> the value shown, in the scorecards table."""
    out = {}
    for kind, key, body in re.findall(
            r'<tr class="(person|team)" data-\w+="([^"]*)">(.*?)</tr>', html, re.S):
        cells = {c: cell_text(v) for c, v in re.findall(
            r'<td class="num (\w+)"><span class="value">(.*?)</span>', body, re.S)}
        rank = re.search(r'<td class="num rank">(\d+)', body)
        out[f"{kind}:{key}"] = {**cells, "rank": rank.group(1) if rank else ""}
    return out


def expected(figure: dict[str, Any], name: str, lang: str = "en") -> str:
    """What the page must show for an API figure (the API's JSON numbers as decimals)."""
    as_decimal = {k: None if v is None else Decimal(str(v)) for k, v in figure.items()}
    return shown(name, as_decimal, Formats(lang), "USD").value


async def test_a_manager_reads_the_scorecards_of_everyone_and_opens_a_rep(site):
    add_user(site.engine, "boss@example.com", "manager")
    await site.sign_in("boss@example.com")
    page = await site.page("/scorecards", **FEB)
    assert page.status_code == 200, page.text
    assert "<h1>Scorecards of Everyone: Feb 1, 2025 to Feb 28, 2025</h1>" in page.text
    assert "Compared with Jan 1, 2025 to Jan 31, 2025 (the previous period)" in page.text
    result = await api(site, "scorecards", start="2025-02-01", end="2025-02-28")
    lines = card_lines(page.text)
    assert set(lines) == {f"person:{r['person_id']}" for r in result["data"]} | {
        f"team:{t['team'] or ''}" for t in result["teams"]}
    for row in result["data"]:
        line = lines[f"person:{row['person_id']}"]
        assert line["rank"] == str(row["rank"])
        assert {c: line[c] for c in COLUMNS} == {c: expected(row[c], c) for c in COLUMNS}
    for team in result["teams"]:
        line = lines[f"team:{team['team'] or ''}"]
        assert {c: line[c] for c in COLUMNS} == {c: expected(team[c], c) for c in COLUMNS}
    # the arrow says which way bookings went, and that up is good news
    ann = next(r for r in result["data"] if r["owner_email"] == "ann@example.com")
    change = Decimal(str(ann["bookings"]["change"]))
    assert change != 0
    arrow = "change up good" if change > 0 else "change down bad"
    assert re.search(rf'data-person="{ann["person_id"]}">.*?<td class="num bookings">'
                     rf'<span class="value">[^<]*</span> <span class="{arrow}"',
                     page.text, re.S)
    # a click on the rep: their own card, every figure with previous and change
    href = re.search(rf'href="(/scorecards\?[^"]*person%3A{ann["person_id"]})"', page.text)
    assert href is not None
    card = await site.client.get(href.group(1).replace("&amp;", "&"))
    assert card.status_code == 200 and "<h2 id=\"card-title\">Ann Lee</h2>" in card.text
    shown_figures = {name: [cell_text(v) for v in values] for name, *values in re.findall(
        r'<tr data-figure="(\w+)">.*?<td class="num value">(.*?)</td>\s*'
        r'<td class="num previous">(.*?)</td>', card.text, re.S)}
    assert shown_figures["bookings"] == [expected(ann["bookings"], "bookings"),
                                         expected({**ann["bookings"],
                                                   "value": ann["bookings"]["previous"]},
                                                  "bookings")]
    assert 'class="rank"' not in card.text  # alone in team East: no rank to tell


async def test_a_team_of_the_managers_choice_and_a_reps_own_card_only(site):
    await site.sign_in("east@example.com")  # manager of team East (Ann)
    ann = person_id(site.engine, "ann@example.com")
    bob = person_id(site.engine, "bob@example.com")
    east = await site.page("/scorecards", **Q1, show="team:East")
    assert east.status_code == 200
    assert set(card_lines(east.text)) == {f"person:{ann}", "team:East"}
    assert (await site.page("/scorecards", **Q1, show=f"person:{bob}")).status_code == 404
    await site.client.post("/logout", data={"csrf": await site.form_token("/scorecards")})

    await site.sign_in("ann@example.com")  # a rep
    own = await site.page("/scorecards", **Q1)
    assert own.status_code == 200 and f'data-person="{ann}"' in own.text
    assert "<h1>Scorecards of Ann Lee:" in own.text and "Bob" not in own.text
    for show in (f"person:{bob}", "team:East", "team:West", ""):
        if show:
            other = await site.page("/scorecards", **Q1, show=show)
            assert other.status_code == 404, show
            assert "Bob" not in other.text
        other = await site.page("/funnel", **Q1, show=show)
        assert other.status_code == (404 if show else 200), show
    mine = await api(site, "scorecards", start="2025-01-01", end="2025-03-31",
                     person_id=ann)
    assert cell_text(re.search(r'<tr data-figure="bookings">.*?<td class="num value">(.*?)'
                               r'</td>', own.text, re.S).group(1)) == expected(
        mine["data"][0]["bookings"], "bookings")


def stage_rows(html: str) -> list[tuple[str, str, str, str]]:
    return [(cell_text(s), cell_text(r), cell_text(c), cell_text(m)) for s, r, c, m in
            re.findall(r'<tr class="stage"[^>]*>\s*<th scope="row">(.*?)</th>\s*'
                       r'<td class="num reached">(.*?)</td>\s*<td class="num conversion">'
                       r'(.*?)</td>\s*<td class="num median_days">(.*?)</td>', html, re.S)]


async def test_the_funnel_page_against_the_api(site):
    await site.sign_in("admin@example.com")
    page = await site.page("/funnel", **Q1)
    assert page.status_code == 200, page.text
    assert "<h1>Funnel of Everyone: deals created Jan 1, 2025 to Mar 31, 2025</h1>" in page.text
    fmt = Formats("en")
    result = await api(site, "funnel", start="2025-01-01", end="2025-03-31")
    assert stage_rows(page.text) == [
        (s["stage"], fmt.number(s["reached"]),
         fmt.percent(None if s["conversion"] is None else Decimal(str(s["conversion"]))),
         fmt.number(None if s["median_days"] is None else Decimal(str(s["median_days"]))))
        for row in result["data"] for s in row["stages"]]
    assert len(re.findall(r"<tr data-cohort=", page.text)) == len(result["cohorts"])
    assert ('class="cohort-chart"' in page.text) == bool(result["cohorts"])
    speed = (await api(site, "velocity", start="2025-01-01", end="2025-03-31"))["total"]
    shown_velocity = cell_text(re.search(r'<dd class="velocity">(.*?)</dd>', page.text).group(1))
    assert shown_velocity == fmt.money(
        None if speed["velocity"] is None else Decimal(str(speed["velocity"])), "USD")
    first, last = preset_range(Preset.LAST_QUARTER, today(site.settings))
    accuracy = (await api(site, "forecast-accuracy", start=first.isoformat(),
                          end=last.isoformat(), group_by="none"))["total"]
    assert cell_text(re.search(r'<dd class="slipped_deals">(.*?)</dd>', page.text).group(1)) \
        == str(accuracy["slipped_deals"])
    zh = await site.client.get("/funnel", params=Q1, cookies={"lang": "zh"})
    assert "<h1>全部人员的漏斗：" in zh.text and "上季度的预测准确度" in zh.text
    cards = await site.client.get("/scorecards", params=Q1, cookies={"lang": "zh"})
    assert "<h1>全部人员的业绩卡：" in cards.text and "商机覆盖率" in cards.text


async def test_slipped_deals_link_to_their_crm_record(site):
    """Last quarter's slipped deals, each linked to its record in its CRM (the seeded
    connection: Zoho, which builds the address), as the other pages link deals."""
    first, last = preset_range(Preset.LAST_QUARTER, today(site.settings))
    created = datetime.combine(first - timedelta(days=10), time(), UTC)
    moved = datetime.combine(first + timedelta(days=5), time(), UTC)
    for rid in ("slip-1", "slip-2"):  # open on the first day closing in the quarter, then moved out
        for modified, close in ((created, last - timedelta(days=3)),
                                (moved, last + timedelta(days=20))):
            with session_scope(site.engine) as session:
                upsert_records(session, stream="deals", connection_id=1, records=[DealRecord(
                    remote_id=rid, name=f"Slipping {rid}", amount=Decimal(900),
                    amount_home=Decimal(900), currency="USD", stage="Lead", close_date=close,
                    remote_created_at=created, remote_modified_at=modified,
                    owner_email="ann@example.com")])
    accuracy = (await api(site, "forecast-accuracy", start=first.isoformat(),
                          end=last.isoformat(), group_by="none"))["total"]
    assert sorted(d["remote_id"] for d in accuracy["slipped"]) == ["slip-1", "slip-2"]
    await site.sign_in("admin@example.com")
    page = await site.page("/funnel", **Q1)
    linked = re.findall(r'<tr data-deal="(\d+)"><th scope="row" class="name"><a class="crm" '
                        r'href="([^"]+)" target="_blank" rel="noopener noreferrer"', page.text)
    assert sorted(linked) == sorted((str(d["deal_id"]), LINK + d["remote_id"])
                                    for d in accuracy["slipped"])


async def test_bad_periods_are_a_clear_error(site):
    await site.sign_in("admin@example.com")
    for path in ("/scorecards", "/funnel"):
        page = await site.page(path, period="custom", start="2025-03-01", end="2025-01-01")
        assert page.status_code == 400, path
        assert "Give the start and the end of the period as dates" in page.text


@pytest.mark.parametrize("name, figure, want", [
    ("bookings", {"value": Decimal("10.00"), "previous": Decimal("4.00"),
                  "change": Decimal("6.00")}, ("$10.00", "$4.00", "+$6.00", "up", True)),
    ("sales_cycle_days", {"value": Decimal("12.00"), "previous": Decimal("10.00"),
                          "change": Decimal("2.00")}, ("12", "10", "+2", "up", False)),
    ("hygiene", {"value": 1, "previous": None, "change": None}, ("1", "–", "–", "", None)),
    ("win_rate", {"value": Decimal("0.5000"), "previous": Decimal("0.7500"),
                  "change": Decimal("-0.2500")}, ("50.00%", "75.00%", "-25.00%", "down", False)),
    ("pipeline_coverage", {"value": Decimal("2.0000"), "previous": Decimal("2.0000"),
                           "change": Decimal("0.0000")}, ("2×", "2×", "0×", "flat", None)),
])
def test_a_figure_with_its_change_and_arrow(name, figure, want):
    cell = shown(name, figure, Formats("en"), "USD")
    assert (cell.value, cell.previous, cell.change, cell.direction, cell.good) == want
