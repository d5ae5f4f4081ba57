"""Metrics limited to some people (a dashboard user's scope) and grouped by team.

Two connections (USD, and EUR at 1.2 USD); people Ann and Bob in team North, Cat in
South, Dan in no team; a deal and an account without an owner. Every scoped number must
equal the unscoped number of the same people, from the rows and from the rollups alike.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP
from decimal import Decimal as D
from typing import Any

import pytest
from sqlalchemy import text

from core import store
from core.config import Settings
from core.db import session_scope
from core.goals.targets import GoalInput, create_goal, goal_targets
from core.metrics import rollups
from core.metrics.currency import set_rate
from core.metrics.definitions import drill_down, pipeline, summary, timeseries
from core.models import Connection
from core.people import update_person
from core.queries import fetch_page
from core.records import AccountRecord, DealRecord, StageRecord, UserRecord
from tests.shared_store import read_only

SETTINGS = Settings(timezone="UTC", reporting_currency="USD")
Q1 = {"start": date(2025, 1, 1), "end": date(2025, 3, 31)}
EUR = D("1.2")


@dataclass(frozen=True)
class Row:
    """A deal of the dataset, as the test's plain-Python recomputation reads it."""

    rid: str
    eu: bool
    owner: str | None
    status: str
    amount: str
    close: date
    created: date | None = None
    probability: str | None = None


DEALS = [
    Row("N1", False, "ann@x.com", "won", "1000.00", date(2025, 1, 20), date(2025, 1, 10)),
    Row("N2", False, "ann@x.com", "lost", "400", date(2025, 2, 3)),
    Row("N3", True, "ann@x.com", "won", "250.50", date(2025, 3, 15), date(2025, 2, 1)),
    Row("N4", False, "bob@x.com", "won", "99.99", date(2025, 2, 28), date(2025, 2, 20)),
    Row("N5", True, "bob@x.com", "open", "500", date(2025, 3, 30), probability="40"),
    Row("N6", False, "bob@x.com", "lost", "10", date(2025, 1, 2)),
    Row("S1", False, "cat@x.com", "won", "777.77", date(2025, 2, 14), date(2025, 1, 1)),
    Row("S2", False, "cat@x.com", "open", "300", date(2025, 1, 31), probability="15"),
    Row("X1", True, "dan@x.com", "won", "60", date(2025, 3, 1)),
    Row("X2", False, "dan@x.com", "lost", "60", date(2025, 3, 2)),
    Row("Z1", False, None, "won", "5000", date(2025, 2, 10)),  # no owner: no person
    Row("L1", False, "ann@x.com", "won", "123", date(2025, 4, 1)),  # after the quarter
]
TEAM = {"ann@x.com": "North", "bob@x.com": "North", "cat@x.com": "South",
        "dan@x.com": None, None: None}
STAGES = {"won": "s-won", "lost": "s-lost", "open": "s-open"}


def _deal(row: Row) -> DealRecord:
    created = (datetime(row.created.year, row.created.month, row.created.day, 12, tzinfo=UTC)
               if row.created else None)
    return DealRecord(row.rid, row.rid, amount=D(row.amount), amount_home=D(row.amount),
                      status=row.status, stage=row.status, stage_remote_id=STAGES[row.status],
                      close_date=row.close, owner_email=row.owner,
                      owner_name=row.owner.split("@")[0].title() if row.owner else "Nobody",
                      probability=D(row.probability) if row.probability else None,
                      remote_created_at=created)


def _account(rid: str, owner: str | None, day: int) -> AccountRecord:
    return AccountRecord(rid, rid, owner_email=owner,
                         remote_created_at=datetime(2025, 2, day, 12, tzinfo=UTC))


@dataclass
class Data:
    engine: Any
    ids: dict[str | None, int]  # email -> person id

    def of(self, *emails: str) -> frozenset[int]:
        return frozenset(self.ids[e] for e in emails)


@pytest.fixture
def metrics_engine(sqlite_engine: Any) -> Any:
    """A store of a test's own (tests/integration runs these tests on PostgreSQL too)."""
    return sqlite_engine


@pytest.fixture(scope="module")
def metrics_stores(module_sqlite_stores: Any) -> Any:
    """Fresh stores for the dataset the module's reading tests share (PostgreSQL's in
    tests/integration)."""
    return module_sqlite_stores


def seeded(engine: Any, read_from: str) -> Data:
    """The dataset, read from the deals themselves or (after a refresh) the rollups."""
    with session_scope(engine) as session:
        us = Connection(provider="zoho", name="us", home_currency="USD")
        eu = Connection(provider="zoho", name="eu", home_currency="EUR")
        session.add_all([us, eu])
        session.flush()
        c1, c2 = int(us.id or 0), int(eu.id or 0)
        set_rate(session, "EUR", EUR)
        for cid in (c1, c2):
            store.upsert_records(session, stream="users", connection_id=cid, records=[
                UserRecord(f"u-{e}", e.split("@")[0].title(), e, team=TEAM[e])
                for e in ("ann@x.com", "bob@x.com", "cat@x.com", "dan@x.com")])
            store.upsert_records(session, stream="stages", connection_id=cid, records=[
                StageRecord("s-open", "Open", "open", sort_order=1),
                StageRecord("s-won", "Won", "won", sort_order=2),
                StageRecord("s-lost", "Lost", "lost", sort_order=3)])
            store.upsert_records(session, stream="deals", connection_id=cid, records=[
                _deal(r) for r in DEALS if r.eu == (cid == c2)])
        store.upsert_records(session, stream="accounts", connection_id=c1, records=[
            _account("A1", "ann@x.com", 1), _account("A2", "cat@x.com", 2),
            _account("A3", None, 3), _account("A4", "dan@x.com", 4)])
        rows = session.execute(text("SELECT email, id FROM person")).all()
        ids: dict[str | None, int] = {email: int(pid) for email, pid in rows}
        for email, target in (("ann@x.com", "2000"), ("bob@x.com", "500"),
                              ("cat@x.com", "1000"), (None, "9000")):
            create_goal(session, GoalInput(email, "bookings", date(2025, 1, 1),
                                           date(2025, 3, 31), D(target)), SETTINGS)
    if read_from == "rollups":
        assert rollups.refresh(engine) > 0
    return Data(engine, ids)


@pytest.fixture(scope="module", params=["rows", "rollups"])
def shared_data(request: pytest.FixtureRequest, metrics_stores: Any) -> Data:
    """The dataset seeded once per module and way of reading it, on a fresh store."""
    return seeded(metrics_stores(), request.param)


@pytest.fixture
def data(shared_data: Data) -> Iterator[Data]:
    """The shared dataset, for a test that only reads: it fails if it wrote to it."""
    with read_only(shared_data.engine):
        yield shared_data


@pytest.fixture(params=["rows", "rollups"])
def own_data(request: pytest.FixtureRequest, metrics_engine: Any) -> Data:
    """The dataset on a store of the test's own, for a test that writes."""
    return seeded(metrics_engine, request.param)


def run(data: Data, **params: Any) -> dict[str, Any]:
    with session_scope(data.engine) as session:
        return summary(session, settings=SETTINGS, **{**Q1, "group_by": "owner", **params})


def drill(data: Data, metric: str = "forecast", **params: Any) -> list[str]:
    with session_scope(data.engine) as session:
        listing = drill_down(metric, **{**Q1, **params})  # type: ignore[arg-type]
        rows, after = fetch_page(session, listing, after=None, limit=1000)
    assert after is None
    return sorted(r["remote_id"] for r in rows)


SCOPES = [(), ("ann@x.com",), ("ann@x.com", "bob@x.com"), ("cat@x.com", "dan@x.com")]
RANGES = [Q1, {"start": date(2025, 1, 15), "end": date(2025, 3, 14)}]


@pytest.mark.parametrize("emails", SCOPES)
@pytest.mark.parametrize("period", RANGES)
def test_a_scoped_summary_has_the_unscoped_rows_of_those_people(data, emails, period):
    people = data.of(*emails)
    everyone = run(data, **period)
    scoped = run(data, people=people, **period)
    assert scoped["data"] == [r for r in everyone["data"] if r["person_id"] in people]
    for row in scoped["data"]:  # each person alone: their row is the total
        assert run(data, people={row["person_id"]}, **period)["total"] == \
            {k: v for k, v in row.items() if k not in ("person_id", "owner_email",
                                                     "owner_name")}
    total = run(data, people=people, group_by="none", **period)["total"]
    assert total == scoped["total"]
    goals = [r["goal"] for r in scoped["data"] if r["goal"] is not None]
    assert total["goal"] == (sum(goals, D(0)) if goals else None)  # no company goal
    assert total["deals_won"] == sum(r["deals_won"] for r in scoped["data"])
    assert run(data, people=people, group_by="connection", **period)["total"] == total


def test_the_unscoped_total_counts_deals_of_no_owner_and_the_company_goal(data):
    everyone = run(data, group_by="none")["total"]
    all_people = run(data, group_by="none", people=set(data.ids.values()))["total"]
    assert everyone["goal"] == D("9000.00") and all_people["goal"] == D("3500.00")
    assert everyone["bookings"] - all_people["bookings"] == D("5000.00")  # Z1
    assert everyone["new_accounts"] - all_people["new_accounts"] == 1  # A3
    with session_scope(data.engine) as session:
        assert goal_targets(session, start=Q1["start"], end=Q1["end"],
                            people=data.of("ann@x.com")).total() == D("2000")


def recompute(rows: list[Row]) -> dict[str, Any]:
    """The deal metrics of `rows` (in Q1), in plain Python."""
    def usd(r: Row) -> D:
        return D(r.amount) * (EUR if r.eu else 1)

    def rnd(value: D, places: int) -> D:
        return value.quantize(D(1).scaleb(-places), rounding=ROUND_HALF_UP)

    rows = [r for r in rows if Q1["start"] <= r.close <= Q1["end"]]
    won = [r for r in rows if r.status == "won"]
    lost = [r for r in rows if r.status == "lost"]
    open_ = [r for r in rows if r.status == "open"]
    bookings = sum((usd(r) for r in won), D(0))
    weighted = sum((usd(r) * D(r.probability or 0) / 100 for r in open_), D(0))
    days = [(r.close - r.created).days for r in won if r.created]
    return {
        "bookings": rnd(bookings, 2), "deals_won": len(won), "deals_lost": len(lost),
        "win_rate": rnd(D(len(won)) / (len(won) + len(lost)), 4) if won or lost else None,
        "avg_deal_size": rnd(bookings / len(won), 2) if won else None,
        "sales_cycle_days": rnd(D(sum(days)) / len(days), 2) if days else None,
        "open_pipeline": rnd(sum((usd(r) for r in open_), D(0)), 2),
        "weighted_pipeline": rnd(weighted, 2), "forecast": rnd(bookings + weighted, 2)}


def test_team_rows_are_recomputed_from_the_teams_deals(data):
    result = run(data, group_by="team")
    assert [r["team"] for r in result["data"]] == ["North", "South", None]
    goals = {"North": D("2500.00"), "South": D("1000.00"), None: None}
    accounts = {"North": 1, "South": 1, None: 2}  # A4 (Dan) and A3 (no owner)
    for row in result["data"]:
        team = row["team"]
        expected = recompute([r for r in DEALS if TEAM[r.owner] == team])
        assert {k: row[k] for k in expected} == expected, team
        assert (row["goal"], row["new_accounts"]) == (goals[team], accounts[team])
    north = recompute([r for r in DEALS if TEAM[r.owner] == "North"])
    ann, bob = (recompute([r for r in DEALS if r.owner == e]) for e in ("ann@x.com",
                                                                       "bob@x.com"))
    assert north["win_rate"] == D("0.6000") != ann["win_rate"] + bob["win_rate"]
    assert result["total"] == run(data, group_by="none")["total"]


def test_team_rows_of_a_scope_and_their_sort(data):
    result = run(data, group_by="team", people=data.of("bob@x.com", "dan@x.com"))
    assert [r["team"] for r in result["data"]] == ["North", None]
    north, none = result["data"]
    assert north["bookings"] == recompute([r for r in DEALS if r.owner == "bob@x.com"])[
        "bookings"]
    assert none["bookings"] == D("72.00")  # X1 only: 60 EUR, not Z1 (no owner)
    assert (north["goal"], none["goal"]) == (D("500.00"), None)


def test_drill_down_by_team_lists_exactly_the_teams_deals(data):
    for metric in ("forecast", "win_rate", "open_pipeline"):  # won+open, won+lost, open
        statuses = {"forecast": ("won", "open"), "win_rate": ("won", "lost"),
                    "open_pipeline": ("open",)}[metric]
        for team in ("North", "South"):
            assert drill(data, metric, team=team) == sorted(
                r.rid for r in DEALS if TEAM[r.owner] == team and r.status in statuses
                and r.close <= Q1["end"])
    assert drill(data, "bookings", team="South") == ["S1"]
    assert drill(data, team="Nowhere") == []
    assert drill(data, team="North", people=data.of("bob@x.com")) == ["N4", "N5"]
    assert drill(data, "win_rate", people=data.of("ann@x.com")) == ["N1", "N2", "N3"]
    assert drill(data, people=frozenset()) == []
    # asking for someone outside the scope gives nothing
    assert drill(data, owner_email="cat@x.com", people=data.of("ann@x.com")) == []
    assert drill(data, person_id=data.ids["cat@x.com"], people=data.of("ann@x.com")) == []
    assert drill(data, team="South", people=data.of("ann@x.com")) == []


def test_pipeline_and_timeseries_of_a_scope(data):
    with session_scope(data.engine) as session:
        everyone = pipeline(session, settings=SETTINGS)
        bob = pipeline(session, settings=SETTINGS, people=data.of("bob@x.com"))
        nobody = pipeline(session, settings=SETTINGS, people=frozenset())
    assert sum(r["count"] for r in everyone["data"]) == 2
    assert [(r["count"], r["amount"]) for r in bob["data"] if r["count"]] == [
        (1, D("600.00"))]  # N5: 500 EUR
    assert len(bob["data"]) == len(everyone["data"])  # every open stage keeps its row
    assert all(r["count"] == 0 for r in nobody["data"])
    people = data.of("ann@x.com", "cat@x.com")
    with session_scope(data.engine) as session:
        for group_by in ("owner", "none"):
            scoped = timeseries(session, metric="bookings", interval="month",
                                group_by=group_by, settings=SETTINGS, people=people, **Q1)
            expected = []
            for month in (1, 2, 3):
                one = summary(session, settings=SETTINGS, group_by=group_by, people=people,
                              start=date(2025, month, 1),
                              end=date(2025, month, [31, 28, 31][month - 1]))
                expected += [(row.get("person_id"), row["bookings"]) for row in one["data"]]
            assert [(r.get("person_id"), r["value"]) for r in scoped["data"]] == expected
            if group_by == "owner":
                assert {r["person_id"] for r in scoped["data"]} == people



def test_a_team_series_follows_a_team_set_after_the_rollups_were_built(own_data: Data) -> None:
    """A series by team is grouped by the team in SQL, joining each row's owner person as
    it is now: a team set by hand after a refresh moves the person's deals, rollups or not."""
    data = own_data
    with session_scope(data.engine) as session:
        update_person(session, data.ids["bob@x.com"], {"team": "South"})
    with session_scope(data.engine) as session:
        series = timeseries(session, metric="bookings", interval="quarter", group_by="team",
                            settings=SETTINGS, **Q1)
        teams = summary(session, settings=SETTINGS, group_by="team", **Q1)
    values = {r["team"]: r["value"] for r in series["data"]}
    assert values == {r["team"]: r["bookings"] for r in teams["data"]}
    assert values["South"] == D("877.76")  # cat's S1 777.77 + bob's N4 99.99
    assert values["North"] == D("1300.60")  # ann's N1 1000.00 + N3 250.50 EUR x 1.2


@pytest.mark.parametrize("interval", ["month", "quarter"])
def test_timeseries_by_team_equals_the_team_summary_of_each_period(data, interval):
    """group_by=team: one row per period and team (summary's team order), each the
    summary's team row of that period, for every series metric, scoped or not."""
    from core.metrics.definitions import SERIES_METRICS

    months = [(date(2025, m, 1), date(2025, m, [31, 28, 31][m - 1])) for m in (1, 2, 3)]
    periods = months if interval == "month" else [(Q1["start"], Q1["end"])]
    with session_scope(data.engine) as session:
        for people, names in ((None, ["North", "South", None]),
                              (data.of("bob@x.com", "dan@x.com"), ["North", None])):
            for metric in SERIES_METRICS:
                series = timeseries(session, metric=metric, interval=interval,
                                    group_by="team", settings=SETTINGS, people=people, **Q1)
                assert series["group_by"] == "team"
                expected = []
                for first, last in periods:
                    one = summary(session, settings=SETTINGS, group_by="team", people=people,
                                  start=first, end=last)
                    teams = {r["team"]: r[metric] for r in one["data"]}
                    assert list(teams) == names
                    expected += [(first, last, team, teams[team]) for team in names]
                assert [(r["period_start"], r["period_end"], r["team"], r["value"])
                        for r in series["data"]] == expected, metric
        quarter = timeseries(session, metric="win_rate", interval="quarter",
                             group_by="team", settings=SETTINGS, **Q1)
    north = recompute([r for r in DEALS if TEAM[r.owner] == "North"])["win_rate"]
    assert [r["value"] for r in quarter["data"] if r["team"] == "North"] == [north]
