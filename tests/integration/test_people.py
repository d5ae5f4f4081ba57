"""People (core.people, docs/people.md) on SQLite and PostgreSQL: CRM users matched to
people by email, then by mobile, else a person of their own; deals and accounts owned by
people; manual mapping that syncs keep; the leaderboard, goals and goal push on people."""

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select, text

from core import people, store
from core.config import Settings
from core.db import session_scope
from core.goals.push import plan_push
from core.goals.targets import GoalError, GoalInput, create_goal, goal_rows
from core.metrics import rollups
from core.metrics.definitions import drill_down, summary
from core.models import Connection, DealVersion, Person, RollupDirty
from core.queries import fetch_page
from core.records import DealRecord, UserRecord

SETTINGS = Settings(timezone="UTC", reporting_currency="CNY")
Q1 = {"start": date(2025, 1, 1), "end": date(2025, 3, 31)}


def won(rid: str, owner_id: str, amount: str, day: date = date(2025, 2, 1),
        owner_email: str | None = None) -> DealRecord:
    return DealRecord(rid, rid, amount_home=Decimal(amount), status="won", close_date=day,
                      owner_remote_id=owner_id, owner_email=owner_email)


def connection(engine, name: str) -> int:
    with session_scope(engine) as session:
        row = Connection(provider="zoho" if name == "zoho" else "fxiaoke", name=name,
                         home_currency="CNY")
        session.add(row)
        session.flush()
        return int(row.id or 0)


def users(engine, cid: int, *records: UserRecord) -> None:
    with session_scope(engine) as session:
        store.upsert_records(session, stream="users", connection_id=cid, records=list(records))


def deals(engine, cid: int, *records: DealRecord) -> None:
    with session_scope(engine) as session:
        store.upsert_records(session, stream="deals", connection_id=cid, records=list(records))


def person(engine, cid: int, remote_id: str) -> tuple[int, str]:
    with engine.connect() as conn:
        pid, how = conn.execute(text(
            "SELECT person_id, person_match FROM crm_user WHERE connection_id = :c "
            "AND remote_id = :r"), {"c": cid, "r": remote_id}).one()
    return int(pid), str(how)


def board(engine, **params) -> list[tuple]:
    with session_scope(engine) as session:
        result = summary(session, **{**Q1, "group_by": "owner", **params}, settings=SETTINGS)
    return [(r["person_id"], r["owner_email"], r["owner_name"], r["bookings"])
            for r in result["data"]]


@pytest.fixture
def crms(engine):
    """Zoho: Ann and Bob (email and mobile). Fxiaoke: Ann again (her email in capitals),
    Bob without email but with his mobile written another way, Wu with neither."""
    zoho, fx = connection(engine, "zoho"), connection(engine, "fxiaoke")
    users(engine, zoho,
          UserRecord("z1", "Ann Lee", "ann@x.com", team="East", mobile="+86 138-0013-8000"),
          UserRecord("z2", "Bob Roy", "bob@x.com", team="West", mobile="+1 (555) 010-9999"))
    users(engine, fx,
          UserRecord("f1", "安 Ann", "ANN@X.COM", team="华东"),
          UserRecord("f2", "Bob R", None, mobile="0015550109999"),
          UserRecord("f3", "Wu Wei", None, team="华南"))
    deals(engine, zoho, won("zd1", "z1", "100.00"), won("zd2", "z2", "10.00"))
    deals(engine, fx, won("fd1", "f1", "1.50"), won("fd2", "f2", "20.00"),
          won("fd3", "f3", "7.00"))
    return engine, zoho, fx


def test_matching_by_email_then_mobile_else_a_person_of_their_own(crms):
    engine, zoho, fx = crms
    ann, how = person(engine, zoho, "z1")
    assert how == "new"
    assert person(engine, fx, "f1") == (ann, "email")  # ANN@X.COM: case does not matter
    bob, _ = person(engine, zoho, "z2")
    assert person(engine, fx, "f2") == (bob, "mobile")  # 001 555... is +1 555...
    wu, how = person(engine, fx, "f3")
    assert how == "new" and wu not in (ann, bob)
    with session_scope(engine) as session:
        assert session.get(Person, ann).mobile == "+8613800138000"
        assert session.scalar(select(func.count()).select_from(Person)) == 3


def test_one_leaderboard_row_per_person(crms):
    engine, zoho, fx = crms
    ann, bob, wu = (person(engine, c, r)[0] for c, r in ((zoho, "z1"), (zoho, "z2"),
                                                          (fx, "f3")))
    assert board(engine) == [
        (ann, "ann@x.com", "Ann Lee", Decimal("101.50")),  # Zoho and Fxiaoke, same email
        (bob, "bob@x.com", "Bob Roy", Decimal("30.00")),  # Fxiaoke without email: mobile
        (wu, None, "Wu Wei", Decimal("7.00"))]  # neither: a row of their own
    assert board(engine, connection_id=fx) == [
        (ann, "ann@x.com", "Ann Lee", Decimal("1.50")), (bob, "bob@x.com", "Bob Roy",
                                                        Decimal("20.00")),
        (wu, None, "Wu Wei", Decimal("7.00"))]
    with session_scope(engine) as session:
        for pid, expected in ((bob, ["fd2", "zd2"]), (wu, ["fd3"])):
            rows, _ = fetch_page(session, drill_down("bookings", **Q1, person_id=pid),
                                 after=None, limit=100)
            assert sorted(r["remote_id"] for r in rows) == expected
            assert {r["owner_person_id"] for r in rows} == {pid}
        by_email, _ = fetch_page(session, drill_down("bookings", **Q1,
                                                     owner_email="BOB@x.com"),
                                 after=None, limit=100)
        assert sorted(r["remote_id"] for r in by_email) == ["fd2", "zd2"]


def test_deals_stored_before_their_owner_get_the_person_with_the_users(engine):
    fx = connection(engine, "fx")
    deals(engine, fx, won("d1", "f9", "5"), won("d2", "f9", "6", day=date(2025, 3, 3)))
    assert [row[1:] for row in board(engine)] == [(None, None, Decimal("11.00"))]
    with session_scope(engine) as session:
        session.execute(text("DELETE FROM rollup_dirty"))  # a refresh happened meanwhile
    users(engine, fx, UserRecord("f9", "Zhao", None, mobile="13800138000"))
    pid, _ = person(engine, fx, "f9")
    assert board(engine) == [(pid, None, "Zhao", Decimal("11.00"))]
    with session_scope(engine) as session:  # both months must be read from the deals again
        months = set(session.scalars(select(RollupDirty.month)))
    assert months == {rollups.month_of(date(2025, 2, 1)), rollups.month_of(date(2025, 3, 1))}


def test_a_manual_mapping_survives_a_resync_and_merges_the_lone_person(crms):
    engine, zoho, fx = crms
    rollups.refresh(engine)  # rollups built by person: the mapping must make them stale
    ann, _ = person(engine, zoho, "z1")
    wu, _ = person(engine, fx, "f3")
    with session_scope(engine) as session:
        goal = create_goal(session, GoalInput(None, "bookings", date(2025, 1, 1),
                                              date(2025, 3, 31), Decimal("50"),
                                              person_id=wu), SETTINGS)
        people.map_user(session, ann, connection_id=fx, remote_id="f3")  # Wu is Ann
    assert person(engine, fx, "f3") == (ann, "hand")
    with session_scope(engine) as session:
        assert session.get(Person, wu) is None  # left without users: merged into Ann
        assert session.execute(select(DealVersion.owner_person_id).where(
            DealVersion.deal_remote_id == "fd3")).scalars().all() == [ann]  # its history too
        assert goal_rows(session, [goal], SETTINGS)[0]["person_id"] == ann  # the goal moved
    expected = [(ann, "ann@x.com", "Ann Lee", Decimal("108.50"))]
    assert board(engine)[:1] == expected and len(board(engine)) == 2
    users(engine, fx, UserRecord("f3", "Wu Wei", None, team="华南"))  # the next sync
    deals(engine, fx, won("fd3", "f3", "7.00"), won("fd4", "f3", "3.00"))
    assert person(engine, fx, "f3") == (ann, "hand")
    rollups.refresh(engine)
    assert board(engine)[:1] == [(ann, "ann@x.com", "Ann Lee", Decimal("111.50"))]


def test_mapping_refuses_a_merge_whose_goals_clash_and_changes_nothing(crms):
    engine, zoho, fx = crms
    ann, _ = person(engine, zoho, "z1")
    wu, _ = person(engine, fx, "f3")
    with session_scope(engine) as session:
        for pid in (ann, wu):
            create_goal(session, GoalInput(None, "bookings", date(2025, 1, 1),
                                           date(2025, 3, 31), Decimal("50"), person_id=pid),
                        SETTINGS)
    with session_scope(engine) as session, pytest.raises(people.PersonConflict,
                                                         match="has the metric and period"):
        people.map_user(session, ann, connection_id=fx, remote_id="f3")
    assert person(engine, fx, "f3") == (wu, "new")


def test_team_from_the_crm_unless_set_by_hand(crms):
    engine, zoho, _ = crms
    ann, _ = person(engine, zoho, "z1")
    bob, _ = person(engine, zoho, "z2")
    with session_scope(engine) as session:
        assert session.get(Person, ann).team == "华东"  # its user synced last
        assert session.get(Person, bob).team == "West"  # f2 has no team
        people.update_person(session, bob, {"team": "Key accounts"})
    users(engine, zoho, UserRecord("z2", "Bob Roy", "bob@x.com", team="North"))
    with session_scope(engine) as session:
        bob_row = session.get(Person, bob)
        assert (bob_row.team, bob_row.team_set_by_hand) == ("Key accounts", True)
        people.update_person(session, bob, {"team": None})  # back to the CRM's
        assert session.get(Person, bob).team == "North"


def unmatched(engine) -> list[tuple[int, str]]:
    with session_scope(engine) as session:
        rows, _ = fetch_page(session, people.unmatched_listing(), after=None, limit=100)
    return [(r["connection_id"], r["remote_id"]) for r in rows]


def test_unmatched_lists_users_alone_in_their_person_while_someone_may_be_them(crms):
    engine, zoho, fx = crms
    assert unmatched(engine) == []  # Wu matched nobody, but everyone else is in Fxiaoke
    users(engine, zoho, UserRecord("z3", "W. Wei", "wei@x.com"))  # not in Fxiaoke
    assert unmatched(engine) == [(fx, "f3"), (zoho, "z3")]  # each may be the other
    with session_scope(engine) as session:
        people.map_user(session, person(engine, zoho, "z3")[0], connection_id=fx,
                        remote_id="f3")
    assert unmatched(engine) == []


def test_a_goal_of_a_person_without_email_is_pushed_to_their_crm_user(crms):
    engine, zoho, fx = crms
    wu, _ = person(engine, fx, "f3")
    bob, _ = person(engine, zoho, "z2")
    with session_scope(engine) as session:
        goal = create_goal(session, GoalInput(None, "bookings", date(2025, 4, 1),
                                              date(2025, 6, 30), Decimal("900"),
                                              person_id=wu), SETTINGS)
        by_email = create_goal(session, GoalInput("bob@x.com", "bookings", date(2025, 4, 1),
                                                  date(2025, 6, 30), Decimal("800")), SETTINGS)
        assert by_email.person_id == bob
        plan = plan_push(session, fx, SETTINGS)
        sent = {g.goal_id: (g.owner_remote_id, g.owner_name, g.owner_email)
                for g in plan.goals}
        assert sent == {goal.id: ("f3", "Wu Wei", None),
                        by_email.id: ("f2", "Bob R", "bob@x.com")}  # matched by mobile
        skipped = {r.goal_id: r.error for r in plan_push(session, zoho, SETTINGS).decided}
        assert skipped == {goal.id: "Wu Wei is not a user of this CRM"}


def test_goals_name_people_by_id_or_email_and_422_otherwise(crms):
    engine, zoho, _ = crms
    ann, _ = person(engine, zoho, "z1")
    with session_scope(engine) as session:
        for given, field in (({"owner_email": "nobody@x.com"}, "owner_email"),
                             ({"person_id": 999}, "person_id"),
                             ({"owner_email": "bob@x.com", "person_id": ann}, "owner_email")):
            data = GoalInput(given.get("owner_email"), "bookings", date(2025, 4, 1),
                             date(2025, 6, 30), Decimal("1"), person_id=given.get("person_id"))
            with pytest.raises(GoalError) as caught:
                create_goal(session, data, SETTINGS)
            assert caught.value.details[0]["field"] == field
        goal = create_goal(session, GoalInput("Ann@X.com", "bookings", date(2025, 4, 1),
                                              date(2025, 6, 30), Decimal("1")), SETTINGS)
        assert goal.person_id == ann


@pytest.mark.parametrize("given,expected", [
    ("+86 138-0013-8000", "+8613800138000"), ("0086 13800138000", "+8613800138000"),
    ("(555) 010-9999 ext. 12", "5550109999"), ("138 0013 8000; 139 0000 0000", "13800138000"),
    ("  ", None), ("1234", None), (None, None), ("+1 555 0100 x7", "+15550100"),
])
def test_normalize_mobile(given, expected):
    assert people.normalize_mobile(given) == expected
