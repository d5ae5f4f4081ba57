"""The Trends and Pipeline pages over ASGI on SQLite: their numbers against the metrics
API, the everyone / team / rep choice and its scope by role, cumulative totals, the
forecast against the goal, the deals closing in the period with links to the CRM, and
both languages. (A real browser: tests/integration/test_dashboard_pages_browser.py.)"""

import re
from collections.abc import AsyncIterator
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from api.web.pipeline import FORECAST_WIDTH, forecast_bar
from core.config import Settings
from core.db import session_scope
from core.goals.targets import GoalInput, create_goal
from tests.unit.test_dashboard_pages import (
    PASSWORD,
    Site,
    add_user,
    cell_text,
    money,
    percent,
    person_id,
    site_on,
)
from tests.unit.test_dashboard_pages import seeded_file as seeded_file  # the fixtures
from tests.unit.test_dashboard_pages import store as store

YEAR = {"period": "custom", "start": "2025-01-01", "end": "2025-12-31", "interval": "month"}
NOTHING = "–"


@pytest.fixture
async def site(store: Engine) -> AsyncIterator[Site]:
    with session_scope(store) as session:
        settings = _settings(store)
        create_goal(session, GoalInput("ann@example.com", "bookings", date(2025, 1, 1),
                                       date(2025, 1, 31), Decimal("30000")), settings)
        create_goal(session, GoalInput("ann@example.com", "bookings", date(2025, 4, 1),
                                       date(2025, 6, 30), Decimal("90000")), settings)
        create_goal(session, GoalInput("bob@example.com", "bookings", date(2025, 2, 1),
                                       date(2025, 2, 28), Decimal("20000")), settings)
    async for running in site_on(store):
        yield running


def _settings(engine: Engine) -> Settings:
    return Settings(database_url=engine.url.render_as_string(hide_password=False),
                    timezone="UTC")


def table_rows(html: str) -> list[dict[str, str]]:
    """The Trends table: one dict per period (start, end and every column's text)."""
    out = []
    for start, end, body in re.findall(
            r'<tr data-start="([\d-]+)" data-end="([\d-]+)">(.*?)</tr>', html, re.S):
        row = {"start": start, "end": end}
        row |= {c: cell_text(v) for c, v in re.findall(
            r'<td class="num (\w+)">(.*?)</td>', body, re.S)}
        out.append(row)
    return out


def amount_or_none(shown: str) -> Decimal | None:
    return None if shown == NOTHING else money(shown)


def rate_or_none(shown: str) -> Decimal | None:
    return None if shown == NOTHING else percent(shown)


async def api(site: Site, path: str, **params: Any) -> Any:
    answer = await site.client.get(f"/api/v1/metrics/{path}", params=params,
                                   headers={"Authorization": f"Bearer {site.key}"})
    assert answer.status_code == 200, answer.text
    return answer.json()


async def check_trends(site: Site, html: str, interval: str, *,
                       key: tuple[str, Any] | None = None,
                       summary_filter: dict[str, Any] | None = None) -> list[dict[str, str]]:
    """Every row of the Trends table against /metrics/timeseries (bookings, win rate; of
    the row `key` of group_by owner or team) and /metrics/summary (each period's goal)."""
    rows = table_rows(html)
    group = {} if key is None else {"group_by": "owner" if key[0] == "person_id" else "team"}
    series = {}
    for metric in ("bookings", "win_rate"):
        answer = await api(site, "timeseries", metric=metric, interval=interval,
                           start=YEAR["start"], end=YEAR["end"], **group)
        series[metric] = [r for r in answer["data"] if key is None or r[key[0]] == key[1]]
    assert [(r["start"], r["end"]) for r in rows] == [
        (s["period_start"], s["period_end"]) for s in series["bookings"]]
    running = Decimal(0)
    for row, booked, rate in zip(rows, series["bookings"], series["win_rate"], strict=True):
        assert money(row["bookings"]) == Decimal(str(booked["value"])), row
        assert rate_or_none(row["win_rate"]) == (
            None if rate["value"] is None else Decimal(str(rate["value"]))), row
        summary = await api(site, "summary", start=row["start"], end=row["end"],
                            **(summary_filter or {}))
        goal = summary["total"]["goal"] if summary_filter is None else next(
            (r["goal"] for r in summary["data"] if r[key[0]] == key[1]), None) if key else None
        assert amount_or_none(row["goal"]) == (None if goal is None else Decimal(str(goal)))
        running += money(row["bookings"])
        assert money(row["total_bookings"]) == running
    return rows


async def test_a_manager_reads_everyones_trends_by_month_and_quarter(site):
    add_user(site.engine, "boss@example.com", "manager")
    await site.sign_in("boss@example.com")
    page = await site.page("/trends", **YEAR)
    assert page.status_code == 200, page.text
    assert "<h1>Trends of Everyone: Jan 1, 2025 to Dec 31, 2025</h1>" in page.text
    rows = await check_trends(site, page.text, "month")
    assert len(rows) == 12 and [r["goal"] for r in rows[:3]] == [
        "$30,000.00", "$20,000.00", NOTHING]  # Ann's January, Bob's February
    assert rows[3]["goal"] == NOTHING  # Ann's quarter goal shows in the quarter, not April
    assert rows[0]["attainment"] == f"{percent_text(rows[0], 'bookings', 'goal')}"
    assert '<svg viewBox="0 0 640 220" role="img"' in page.text  # the charts
    assert page.text.count('<rect class="bookings"') == 12
    assert page.text.count('<line class="goal"') == 2
    quarters = await site.page("/trends", **{**YEAR, "interval": ""})  # the default
    rows = await check_trends(site, quarters.text, "quarter")
    assert [r["goal"] for r in rows] == ["$50,000.00", "$90,000.00", NOTHING, NOTHING]
    assert re.search(r"<th scope=\"row\">Q1 2025</th>", quarters.text)
    cumulative = await site.page("/trends", **{**YEAR, "interval": "quarter"}, cumulative="1")
    rows = table_rows(cumulative.text)
    assert [r["total_goal"] for r in rows] == ["$50,000.00", "$140,000.00", "$140,000.00",
                                               "$140,000.00"]
    # attainment so far while every period so far has a goal (Q3 has none)
    assert [r["total_attainment"] != NOTHING for r in rows] == [True, True, False, False]
    assert rows[1]["total_attainment"] == percent_text(rows[1], "total_bookings",
                                                       "total_goal")
    assert "Bookings and goal, cumulative since the first period" in cumulative.text


def percent_text(row: dict[str, str], numerator: str, denominator: str) -> str:
    value = money(row[numerator]) / money(row[denominator])
    return f"{value * 100:.2f}%"


async def test_a_team_and_a_rep_of_the_managers_choice(site):
    add_user(site.engine, "boss@example.com", "manager")
    await site.sign_in("boss@example.com")
    options = (await site.page("/trends", **YEAR)).text
    ann, bob = person_id(site.engine, "ann@example.com"), person_id(site.engine,
                                                                     "bob@example.com")
    assert '<option value="team:East">Team East</option>' in options
    assert f'<option value="person:{bob}">Bob Roy</option>' in options
    east = await site.page("/trends", **YEAR, show="team:East")
    assert "<h1>Trends of Team East:" in east.text
    await check_trends(site, east.text, "month", key=("team", "East"),
                       summary_filter={"group_by": "team"})
    rep = await site.page("/trends", **YEAR, show=f"person:{ann}")
    await check_trends(site, rep.text, "month", key=("person_id", ann),
                       summary_filter={"group_by": "owner"})
    for show in ("team:Nowhere", "person:999999", "person:x", "someone", f"person:{ann}0"):
        missing = await site.page("/trends", **YEAR, show=show)
        assert missing.status_code == 404, show
        assert "<h1>Not found</h1>" in missing.text


async def test_a_rep_sees_only_their_own_trends_and_pipeline(site):
    await site.sign_in("ann@example.com")
    ann, bob = person_id(site.engine, "ann@example.com"), person_id(site.engine,
                                                                     "bob@example.com")
    own = await site.page("/trends", **YEAR)
    assert own.status_code == 200 and "<h1>Trends of Ann Lee:" in own.text
    assert "Everyone" not in own.text and "team:East" not in own.text  # no other choice
    assert f'value="person:{bob}"' not in own.text
    await check_trends(site, own.text, "month", key=("person_id", ann),
                       summary_filter={"group_by": "owner"})
    for path in ("/trends", "/pipeline"):
        for show in (f"person:{bob}", "team:East", "team:West"):
            other = await site.page(path, **YEAR, show=show)
            assert other.status_code == 404, (path, show)
            assert "Bob" not in other.text
    pipeline = await site.page("/pipeline", **YEAR)
    names = re.findall(r'<td class="owner">(.*?)</td>', pipeline.text)
    assert names and set(names) == {"Ann Lee"}


def funnel_rows(html: str) -> list[tuple[str, int, Decimal, Decimal]]:
    return [(cell_text(stage), int(cell_text(count)), money(cell_text(amount)),
             money(cell_text(weighted))) for stage, count, amount, weighted in re.findall(
        r'<tr class="stage"[^>]*>\s*<th scope="row">(.*?)</th>\s*<td class="num count">(.*?)'
        r'</td>\s*<td class="num amount">(.*?)</td>\s*<td class="num weighted">(.*?)</td>',
        html, re.S)]


def figures(html: str) -> dict[str, str]:
    return {name: cell_text(value) for name, value in re.findall(
        r'<dd class="(\w+)">(.*?)</dd>', html, re.S)}


async def test_the_pipeline_page_against_the_api(site):
    add_user(site.engine, "boss@example.com", "manager")
    await site.sign_in("boss@example.com")
    page = await site.page("/pipeline", period="custom", start="2025-01-01",
                           end="2025-03-31")
    assert page.status_code == 200, page.text
    now = await api(site, "pipeline")
    assert funnel_rows(page.text) == [
        (r["stage"], r["count"], Decimal(str(r["amount"])), Decimal(str(r["weighted_amount"])))
        for r in now["data"]]
    assert "<caption>seeded · Standard</caption>" in page.text
    total = (await api(site, "summary", start="2025-01-01", end="2025-03-31"))["total"]
    shown = figures(page.text)
    for name in ("bookings", "weighted_pipeline", "forecast", "goal"):
        assert money(shown[name]) == Decimal(str(total[name])), name
    assert percent(shown["coverage"]) == (Decimal(str(total["forecast"])) / Decimal(
        str(total["goal"]))).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    # the open deals closing in the period, 25 a page, each linked to its Zoho record
    listed: list[str] = []
    url = "/pipeline?period=custom&start=2025-01-01&end=2025-03-31"
    while True:
        html = (await site.client.get(url)).text
        rows = re.findall(r'<tr data-deal="(\d+)">.*?<a class="crm" href="([^"]+)"', html, re.S)
        listed += [link for _, link in rows]
        following = re.search(r'<a href="([^"]+)" rel="next">', html)
        if following is None:
            break
        url = following.group(1).replace("&amp;", "&")
    drill = await api(site, "deals", metric="open_pipeline", start="2025-01-01",
                      end="2025-03-31", limit=1000)
    assert listed == [f"https://crm.zoho.com/crm/tab/Potentials/{d['remote_id']}"
                      for d in drill["data"]]
    assert len(listed) > 25  # more than one page


async def test_the_drill_down_links_each_deal_to_its_crm(site):
    await site.sign_in("admin@example.com")
    page = await site.page("/leaderboard/deals", metric="bookings", start="2025-01-01",
                           end="2025-01-31")
    links = re.findall(r'<a class="crm" href="([^"]+)" target="_blank" '
                       r'rel="noopener noreferrer"', page.text)
    assert links and all(re.fullmatch(r"https://crm\.zoho\.com/crm/tab/Potentials/d\d{3}", u)
                         for u in links)


async def test_both_pages_in_chinese_and_their_bad_parameters(site):
    await site.sign_in("admin@example.com")
    site.client.cookies.set("lang", "zh")
    trends = await site.page("/trends", **{**YEAR, "interval": "quarter"})
    assert "<h1>全部人员的趋势：2025年1月1日至2025年12月31日</h1>" in trends.text
    assert "2025年第1季度" in trends.text and "累计成交额" in trends.text
    pipeline = await site.page("/pipeline", **YEAR)
    assert "<h1>全部人员的商机管道</h1>" in pipeline.text and "加权金额" in pipeline.text
    assert 'aria-current="page">商机管道</a>' in pipeline.text
    site.client.cookies.set("lang", "en")
    assert (await site.page("/trends", interval="week")).status_code == 400
    assert (await site.page("/trends", period="custom", start="2025-02-01",
                            end="2025-01-01")).status_code == 400
    assert (await site.page("/pipeline", period="decade")).status_code == 400
    assert (await site.page("/pipeline", cursor="not-a-cursor")).status_code == 400
    site.client.cookies.clear()
    gone = await site.page("/trends")
    assert (gone.status_code, gone.headers["location"]) == (303, "/login?next=%2Ftrends")
    assert PASSWORD  # the users of the store have it


def test_the_forecast_bar_fits_its_box_and_marks_the_goal_in_proportion():
    bar = forecast_bar(Decimal("836.69"), Decimal("569.80"), Decimal("930"))
    assert bar["booked"] + bar["weighted"] == pytest.approx(FORECAST_WIDTH, abs=0.2)
    assert bar["goal"] == pytest.approx(FORECAST_WIDTH * 930 / (836.69 + 569.80), abs=0.1)
    short = forecast_bar(Decimal("100"), Decimal("50"), Decimal("600"))
    assert (short["booked"], short["weighted"], short["goal"]) == (100.0, 50.0, 600.0)
    assert forecast_bar(Decimal(0), Decimal(0), None)["goal"] is None
