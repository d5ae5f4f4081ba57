"""Sales hygiene (core.hygiene, docs/evaluation.md#hygiene) on SQLite and PostgreSQL: each
rule on hand-built deals, with the counts worked out by hand below; thresholds and rules
switched off by the settings; bad settings change nothing; people, connection and team
limits; the counts (and the open pipeline by stage) read the live open deals from the
partial index ix_deal_open alone."""

import csv
import io
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine, event, select, text
from sqlmodel import Session

from core import store
from core.config import Settings
from core.db import session_scope
from core.hygiene import HygieneError, add_up, hygiene_counts, hygiene_items, rules, set_rule
from core.metrics.definitions import pipeline
from core.models import HygieneRule, User
from core.queries import fetch_page
from core.records import DealRecord, Deletion, StageRecord, UserRecord
from core.types import utcnow
from tests.api_support import add_connection, running_api
from tests.cli_support import in_process, user_env

SETTINGS = Settings(timezone="Asia/Shanghai")  # UTC+8: the stale cut-off is 16:00 UTC
TODAY = date(2026, 6, 15)
RECENT = datetime(2026, 6, 14, 9, tzinfo=UTC)
USERS = [UserRecord("u1", "Ann Lee", "ann@example.com", team="East"),
         UserRecord("u2", "Bob Roy", "bob@example.com", active=False, team="West"),
         UserRecord("u3", "Cat Wu", "cat@example.com", team="East")]
STAGES = [StageRecord("s1", "Qualify", "open", pipeline="P", sort_order=1,
                      probability=Decimal("20")),
          StageRecord("s2", "Won", "won", pipeline="P", sort_order=2, probability=Decimal(100))]
CLEAN = DealRecord("x", "x", amount=Decimal("100.50"), currency="EUR", stage="Qualify",
                   stage_remote_id="s1", probability=Decimal("20"),
                   close_date=date(2026, 7, 1), remote_created_at=datetime(2026, 1, 1, tzinfo=UTC),
                   remote_modified_at=RECENT, owner_remote_id="u1", owner_email="ann@example.com",
                   owner_name="Ann Lee", account_remote_id="a1", account_name="Acme")
BOB = {"owner_remote_id": "u2", "owner_email": "bob@example.com", "owner_name": "Bob Roy"}
CAT = {"owner_remote_id": "u3", "owner_email": "cat@example.com", "owner_name": "Cat Wu"}
DEALS: dict[str, dict[str, Any]] = {
    "d01": {},  # clean
    # 30 days before 2026-06-15 is 2026-05-16, which starts at 2026-05-15 16:00 UTC
    "d02": {"remote_modified_at": datetime(2026, 5, 15, 15, 59, 59, tzinfo=UTC)},  # stale
    "d03": {"remote_modified_at": datetime(2026, 5, 15, 16, tzinfo=UTC)},  # not stale
    "d04": {"close_date": date(2026, 6, 14)},  # past_close
    "d05": {"close_date": TODAY},  # closes today: not past
    "d06": {"amount": None},  # no_amount
    "d07": {"amount": Decimal(0)},  # no_amount
    "d08": {"close_date": None},  # no_close_date (and not past_close)
    "d09": {"account_remote_id": None, "account_name": None},  # no_account
    "d10": {"owner_remote_id": None, "owner_email": None, "owner_name": None},  # no_owner
    "d11": BOB,  # inactive_owner
    "d12": {"probability": Decimal("31")},  # 11 points off the stage's 20: mismatch
    "d13": {"probability": Decimal("30")},  # 10 points: not more than the tolerance
    # Bob's: inactive_owner, no_amount, past_close, stale
    "d14": {**BOB, "amount": None, "close_date": date(2026, 1, 1),
            "remote_modified_at": datetime(2026, 1, 2, tzinfo=UTC)},
    "d15": {"status": "won", "stage": "Won", "stage_remote_id": "s2", "amount": None,
            "close_date": date(2026, 1, 1)},  # won: never checked
    "d16": {"amount": None},  # tombstoned below: never checked
    "d17": {**CAT, "probability": Decimal("5")},  # 15 points under: mismatch
}
ZERO = dict.fromkeys(("stale", "past_close", "no_amount", "no_close_date", "no_account",
                      "no_owner", "inactive_owner", "probability_mismatch"), 0)


def load(engine: Engine, name: str = "crm") -> tuple[int, dict[str, int]]:
    """The deals above in a connection; returns it and the people's ids by user."""
    connection_id = add_connection(engine, name)
    deals = [replace(CLEAN, remote_id=key, name=f"Deal {key}", **changes)
             for key, changes in DEALS.items()]
    with session_scope(engine) as session:
        for stream, records in (("users", USERS), ("stages", STAGES), ("deals", deals)):
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records)
        store.apply_deletions(session, connection_id=connection_id, deletions=[
            Deletion("deals", "d16", datetime(2026, 6, 14, 12, tzinfo=UTC))])
        people = {u.remote_id: int(u.person_id or 0) for u in session.execute(
            select(User).where(User.connection_id == connection_id)).scalars()}
    return connection_id, people


def counts(engine: Engine, **kwargs: Any) -> dict[int | None, dict[str, int]]:
    with session_scope(engine) as session:
        return hygiene_counts(session, settings=SETTINGS, today=TODAY, **kwargs)


def items(engine: Engine, **kwargs: Any) -> list[tuple[str, list[str]]]:
    with session_scope(engine) as session:
        rows, _ = fetch_page(session, hygiene_items(session, settings=SETTINGS, today=TODAY,
                                                    **kwargs), after=None, limit=100)
    return [(r["remote_id"], r["rules"]) for r in rows]


def test_each_rule_counts_the_deals_that_break_it(engine: Engine) -> None:
    _, people = load(engine)
    ann, bob, cat = people["u1"], people["u2"], people["u3"]
    assert counts(engine) == {
        ann: {**ZERO, "stale": 1, "past_close": 1, "no_amount": 2, "no_close_date": 1,
              "no_account": 1, "probability_mismatch": 1, "total": 7},
        bob: {**ZERO, "stale": 1, "past_close": 1, "no_amount": 1, "inactive_owner": 2,
              "total": 2},
        cat: {**ZERO, "probability_mismatch": 1, "total": 1},
        None: {**ZERO, "no_owner": 1, "total": 1},
    }
    assert add_up(counts(engine).values())["total"] == 11
    assert items(engine) == [
        ("d02", ["stale"]), ("d04", ["past_close"]), ("d06", ["no_amount"]),
        ("d07", ["no_amount"]), ("d08", ["no_close_date"]), ("d09", ["no_account"]),
        ("d10", ["no_owner"]), ("d11", ["inactive_owner"]), ("d12", ["probability_mismatch"]),
        ("d14", ["stale", "past_close", "no_amount", "inactive_owner"]),
        ("d17", ["probability_mismatch"])]


def test_items_of_a_rule_an_owner_and_a_team(engine: Engine) -> None:
    _, people = load(engine)
    assert items(engine, rule="no_amount") == [  # with every rule each deal breaks
        ("d06", ["no_amount"]), ("d07", ["no_amount"]),
        ("d14", ["stale", "past_close", "no_amount", "inactive_owner"])]
    assert items(engine, owner_person_id=people["u2"]) == [
        ("d11", ["inactive_owner"]),
        ("d14", ["stale", "past_close", "no_amount", "inactive_owner"])]
    east = items(engine, team="East")  # Ann and Cat
    assert [key for key, _ in east] == ["d02", "d04", "d06", "d07", "d08", "d09", "d12", "d17"]
    with session_scope(engine) as session:
        row = fetch_page(session, hygiene_items(session, settings=SETTINGS, today=TODAY,
                                                rule="probability_mismatch"),
                         after=None, limit=1)[0][0]
    assert (row["probability"], row["stage_probability"]) == (Decimal(31), Decimal(20))
    assert (row["amount"], row["stage"], row["owner_name"]) == (
        Decimal("100.50"), "Qualify", "Ann Lee")
    with pytest.raises(HygieneError, match="no hygiene rule 'tidy'; the rules are stale"):
        items(engine, rule="tidy")


def test_people_and_connection_limits(engine: Engine) -> None:
    first, people = load(engine)
    other = add_connection(engine, "other")
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=other, records=[
            replace(CLEAN, remote_id="o1", name="Other", close_date=None)])
    ann = people["u1"]
    assert counts(engine, people={ann}) == {ann: {**ZERO, "stale": 1, "past_close": 1,
        "no_amount": 2, "no_close_date": 2, "no_account": 1, "probability_mismatch": 1,
        "total": 8}}  # the other connection's deal is Ann's too (same email)
    assert counts(engine, people={ann}, connection_id=other) == {
        ann: {**ZERO, "no_close_date": 1, "total": 1}}
    assert counts(engine, people=set()) == {}
    assert sum(c["total"] for c in counts(engine, connection_id=first).values()) == 11


def test_an_inactive_owner_is_a_user_of_the_deals_connection(engine: Engine) -> None:
    first, people = load(engine)
    other = add_connection(engine, "other")
    dan = UserRecord("u4", "Dan Fox", "dan@example.com")
    with session_scope(engine) as session:
        store.upsert_records(session, stream="users", connection_id=other, records=[dan])
        seen = utcnow()  # a full read that sees Cat (inactive here) and not Dan: removed
        store.upsert_records(session, stream="users", connection_id=other, records=[
            replace(USERS[2], active=False)])
        store.tombstone_unseen(session, stream="users", connection_id=other, since=seen,
                               now=utcnow())
        store.upsert_records(session, stream="deals", connection_id=other, records=[
            replace(CLEAN, remote_id="o1", owner_remote_id="u4", owner_email=dan.email),
            replace(CLEAN, remote_id="o2", **CAT)])
        removed = session.execute(select(User.person_id, User.deleted_at).where(
            User.connection_id == other, User.remote_id == "u4")).one()
    assert removed.deleted_at is not None
    cat = people["u3"]
    assert counts(engine, connection_id=other) == {
        removed.person_id: {**ZERO, "inactive_owner": 1, "total": 1},
        cat: {**ZERO, "inactive_owner": 1, "total": 1}}
    # Cat is active in the first connection: her deal there breaks only its own rule
    assert counts(engine, connection_id=first)[cat] == {
        **ZERO, "probability_mismatch": 1, "total": 1}


def test_settings_change_thresholds_and_switch_rules_off(engine: Engine) -> None:
    _, people = load(engine)
    ann, bob, cat = people["u1"], people["u2"], people["u3"]
    with session_scope(engine) as session:
        assert set_rule(session, "stale", {"threshold": 60}).threshold == 60
        set_rule(session, "no_amount", {"enabled": False})
        set_rule(session, "probability_mismatch", {"threshold": 15})
    result = counts(engine)
    keys = {*ZERO} - {"no_amount"}
    assert result[ann] == {**dict.fromkeys(keys, 0), "past_close": 1, "no_close_date": 1,
                           "no_account": 1, "total": 3}  # d02 fresh enough, d12 and d17 near
    assert result[bob] == {**dict.fromkeys(keys, 0), "stale": 1, "past_close": 1,
                           "inactive_owner": 2, "total": 2}
    assert cat not in result
    assert items(engine, rule="no_amount") == []  # switched off: lists nothing
    with session_scope(engine) as session:
        set_rule(session, "stale", {"threshold": None})  # back to the default
        set_rule(session, "no_amount", {"enabled": True})
        states = {r.key: (r.enabled, r.threshold) for r in rules(session)}
    assert states["stale"] == (True, 30) and states["no_amount"] == (True, None)
    assert states["probability_mismatch"] == (True, 15)
    assert counts(engine)[ann]["stale"] == 1


@pytest.mark.parametrize(("key", "changes", "message"), [
    ("tidy", {"enabled": False}, "no hygiene rule 'tidy'; the rules are stale, past_close"),
    ("stale", {"threshold": 0}, "whole number of days from 1 to 3650, not 0"),
    ("stale", {"threshold": 3651}, "from 1 to 3650, not 3651"),
    ("stale", {"threshold": "30"}, "whole number of days"),
    ("probability_mismatch", {"threshold": True}, "whole number of points from 0 to 100"),
    ("past_close", {"threshold": 3}, "rule past_close takes no threshold"),
    ("stale", {"enabled": "yes"}, "enabled must be true or false"),
    ("stale", {"days": 3}, "no setting days"),
])
def test_bad_settings_change_nothing(sqlite_engine: Engine, key: str, changes: dict[str, Any],
                                     message: str) -> None:
    with session_scope(sqlite_engine) as session:
        set_rule(session, "stale", {"threshold": 45})
    with session_scope(sqlite_engine) as session, pytest.raises(HygieneError, match=message):
        set_rule(session, key, changes)
    with session_scope(sqlite_engine) as session:
        stored = [(r.key, r.enabled, r.threshold)
                  for r in session.execute(select(HygieneRule)).scalars()]
    assert stored == [("stale", True, 45)]


async def test_api_lists_items_with_crm_links_pages_and_csv(engine: Engine) -> None:
    _, people = load(engine)
    link = "https://crm.zoho.com/crm/tab/Potentials/{}"  # the connection's dc com, no org
    async with running_api(engine) as api:
        first = (await api.get("/api/v1/hygiene", params={"rule": "no_amount", "limit": 2})
                 ).json()
        assert [(r["remote_id"], r["url"]) for r in first["data"]] == [
            ("d06", link.format("d06")), ("d07", link.format("d07"))]
        rest = (await api.get("/api/v1/hygiene", params={
            "rule": "no_amount", "limit": 2, "cursor": first["next_cursor"]})).json()
        assert [r["remote_id"] for r in rest["data"]] == ["d14"] and rest["next_cursor"] is None
        assert rest["data"][0]["rules"][-2:] == ["no_amount", "inactive_owner"]
        exported = await api.get("/api/v1/hygiene", params={"rule": "no_amount",
                                                            "format": "csv"})
        lines = list(csv.DictReader(io.StringIO(exported.text)))
        assert [(r["remote_id"], r["amount"], r["url"]) for r in lines] == [
            ("d06", "", link.format("d06")), ("d07", "0", link.format("d07")),
            ("d14", "", link.format("d14"))]
        summary = (await api.get("/api/v1/hygiene/summary", params={"team": "West"})).json()
        assert [(r["owner_name"], r["counts"]["inactive_owner"]) for r in summary["data"]] \
            == [("Bob Roy", 2)]
        changed = await api.client.put("/api/v1/hygiene/rules/stale", json={"threshold": 0})
        assert changed.status_code == 422
        assert changed.json()["error"]["message"] == (
            "the threshold of stale must be a whole number of days from 1 to 3650, not 0")
        unknown = await api.get("/api/v1/hygiene", params={"rule": "tidy"})
        assert unknown.status_code == 422 and "the rules are stale" in unknown.text
    assert people["u2"] in {r["person_id"] for r in summary["data"]}


def test_the_command_line_lists_counts_and_sets_rules(engine: Engine, tmp_path: Any) -> None:
    _, people = load(engine)
    env = user_env(CRMSYNC_DATABASE_URL=engine.url.render_as_string(hide_password=False),
                   CRMSYNC_SECRET_KEY=Fernet.generate_key().decode())

    def run(*args: str) -> Any:
        return in_process(("hygiene", *args), cwd=tmp_path, env=env)

    listed = run("list", "--rule", "no_amount")
    assert listed.returncode == 0, listed.stderr
    assert re.findall(r"Deal (d\d+)", listed.stdout) == ["d06", "d07", "d14"]
    assert "https://crm.zoho.com/crm/tab/Potentials/d06" in listed.stdout
    summary = run("summary", "--team", "West")
    assert summary.returncode == 0, summary.stderr
    assert "Bob Roy" in summary.stdout and "Ann Lee" not in summary.stdout
    changed = run("set", "stale", "--threshold", "90", "--off")
    assert (changed.returncode, changed.stdout.strip()) == (0, "stale: off, threshold 90 days")
    shown = run("rules")
    assert re.search(r"stale\s+│\s+no\s+│\s+90 days\s+│\s+30 days", shown.stdout), shown.stdout
    for args, message in ((("set", "tidy", "--on"), "no hygiene rule 'tidy'"),
                          (("set", "stale", "--threshold", "0"), "from 1 to 3650, not 0"),
                          (("list", "--rule", "tidy"), "no hygiene rule 'tidy'"),
                          (("set", "stale"), "give --on, --off, --threshold or --default")):
        bad = run(*args)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    with session_scope(engine) as session:
        stale = rules(session)[0]
    assert (stale.key, stale.enabled, stale.threshold) == ("stale", False, 90)
    assert counts(engine)[people["u2"]]["total"] == 2  # Bob's deals break other rules too


@contextmanager
def statements(engine: Engine) -> Iterator[list[tuple[str, Any]]]:
    """The statements (SQL and parameters as sent to the driver) run on `engine` inside."""
    seen: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", grab)


def deal_plans(engine: Engine, run: Callable[[Session], object]) -> list[str]:
    """The plans of the statements over the deal table that `run` executes. On PostgreSQL
    with sequential and bitmap scans off: the handful of rows here would make a scan of the
    table cheapest, while the question is whether the index can serve the query at all."""
    with session_scope(engine) as session, statements(engine) as seen:
        run(session)
    postgres = engine.dialect.name == "postgresql"
    if postgres:
        # The suite's databases are emptied by DELETE, so the deal table and its indexes keep
        # the pages of earlier tests' thousands of deals: with 15 rows in 300 pages of index
        # the planner's choice between indexes is arbitrary. Rewritten (VACUUM FULL) and
        # with the visibility map a live store's autovacuum keeps (VACUUM), as on a store.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.exec_driver_sql("VACUUM FULL deal")
            connection.exec_driver_sql("VACUUM ANALYZE deal")
    out = []
    with engine.begin() as connection:
        if postgres:
            connection.execute(text("SET LOCAL enable_seqscan = off"))
            connection.execute(text("SET LOCAL enable_bitmapscan = off"))
        for sql, parameters in seen:
            if "FROM deal" in sql:
                explain = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
                rows = connection.exec_driver_sql(explain + sql, parameters).all()
                out.append("\n".join(str(row[-1]) for row in rows))
    return out


def test_counts_and_the_open_pipeline_read_only_the_open_deals_index(engine: Engine) -> None:
    _, people = load(engine)
    used = ("Index Only Scan using ix_deal_open on deal" if engine.dialect.name == "postgresql"
            else "deal USING COVERING INDEX ix_deal_open")
    east = {people["u1"], people["u3"]}
    for run in (lambda s: hygiene_counts(s, settings=SETTINGS, today=TODAY),
                lambda s: hygiene_counts(s, settings=SETTINGS, today=TODAY, people=east),
                lambda s: pipeline(s, settings=SETTINGS),
                lambda s: pipeline(s, settings=SETTINGS, people=east)):
        plans = deal_plans(engine, run)
        assert len(plans) == 1 and used in plans[0], plans
