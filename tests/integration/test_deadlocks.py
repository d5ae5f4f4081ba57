"""core.db.retrying_deadlocks on a real PostgreSQL deadlock: two writers adding the same
persons (unique emails) in opposite orders, as a users page of one connection and a deals
page of another sharing reps do (core.people). PostgreSQL aborts one; it runs again and both
land."""

import threading
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, text
from sqlalchemy.exc import IntegrityError

from core import store
from core.db import retrying_deadlocks, session_scope
from core.models import Deal, Person, User
from core.records import DealRecord, UserRecord
from tests.integration.test_first_sync_pages import add_connection_named

T0 = datetime(2025, 1, 1, tzinfo=UTC)
ADD = text("INSERT INTO person (name, email, created_at, updated_at, team_set_by_hand) "
           "VALUES (:e, :e, now(), now(), false) ON CONFLICT (email) DO NOTHING")


def test_the_victim_of_a_deadlock_runs_again_and_both_writers_land(pg_engine: Engine) -> None:
    first_added = {"a": threading.Event(), "b": threading.Event()}
    attempts: Counter[str] = Counter()
    retried: Counter[str] = Counter()
    errors: list[BaseException] = []

    def writer(mine: str, theirs: str) -> None:
        def transaction() -> None:
            attempts[mine] += 1
            with session_scope(pg_engine) as session:
                session.execute(ADD, {"e": f"{mine}@deadlock.example"})
                first_added[mine].set()
                assert first_added[theirs].wait(10)
                session.execute(ADD, {"e": f"{theirs}@deadlock.example"})

        try:
            retrying_deadlocks(transaction, on_retry=lambda: retried.update([mine]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sum(retried.values()) == 1 and sum(attempts.values()) == 3  # one victim, once
    with session_scope(pg_engine) as session:
        emails = set(session.scalars(text(
            "SELECT email FROM person WHERE email LIKE '%@deadlock.example'")))
    assert emails == {"a@deadlock.example", "b@deadlock.example"}


def test_other_errors_are_not_run_again(pg_engine: Engine) -> None:
    calls = []

    def transaction() -> None:
        calls.append(1)
        with session_scope(pg_engine) as session:
            session.execute(text("INSERT INTO person (name, email, created_at, updated_at, "
                                 "team_set_by_hand) VALUES ('x', 'dup@deadlock.example', "
                                 "now(), now(), false)"))

    retrying_deadlocks(transaction)
    with pytest.raises(IntegrityError):
        retrying_deadlocks(transaction)
    assert len(calls) == 2


def test_a_users_page_and_another_connections_deals_page_add_shared_persons_in_one_order(
        pg_engine: Engine) -> None:
    # A company's two connections share reps. The users page of one lists them in the
    # CRM's order (here z..a, so their ids run that way); the deals page of the other adds
    # its owners' persons in email order. The users page pauses after its first person
    # (the deals page starts meanwhile and waits for it): matched in id order it would add
    # z first, the deals page a..y, then each wait for the other (a deadlock). Matched in
    # email order both take them in one order: one waits, then both land, no retry.
    emails = [f"{c}@shared.example" for c in "abcdefghij"]
    users_conn, deals_conn = (add_connection_named(pg_engine, name)
                               for name in ("users", "deals"))
    first_person = threading.Event()
    users_thread: list[int] = []
    errors: list[BaseException] = []

    def after(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if threading.get_ident() in users_thread and statement.startswith("INSERT INTO person") \
                and not first_person.is_set():
            first_person.set()
            time.sleep(0.5)  # the deals page starts and waits for this person

    def write(stream: str, connection_id: int, records: list[Any]) -> None:
        try:
            with session_scope(pg_engine) as session:
                store.upsert_records(session, stream=stream, connection_id=connection_id,
                                     records=records)
        except BaseException as exc:
            errors.append(exc)

    def users() -> None:
        users_thread.append(threading.get_ident())
        write("users", users_conn, [UserRecord(remote_id=email, name=email, email=email)
                                    for email in reversed(emails)])

    def deals() -> None:
        assert first_person.wait(10)
        write("deals", deals_conn, [
            DealRecord(remote_id=str(i), name=f"D{i}", amount=Decimal(1), stage="Won",
                       remote_modified_at=T0, owner_remote_id=email, owner_email=email, raw={})
            for i, email in enumerate(emails)])

    event.listen(pg_engine, "after_cursor_execute", after)
    try:
        threads = [threading.Thread(target=target) for target in (users, deals)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    finally:
        event.remove(pg_engine, "after_cursor_execute", after)
    assert not errors, errors
    with session_scope(pg_engine) as session:
        persons: dict[str, int] = dict(
            session.execute(select(Person.email, Person.id)).all())  # type: ignore[arg-type]
        assert sorted(persons) == emails
        linked = [tuple(row) for row in session.execute(select(User.email, User.person_id))]
        assert sorted(linked) == sorted(persons.items())
        owners = [tuple(row) for row in session.execute(
            select(Deal.owner_email, Deal.owner_person_id))]
        assert sorted(owners) == sorted(persons.items())

