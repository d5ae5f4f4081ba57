"""core.db.retrying_deadlocks on a real PostgreSQL deadlock: two writers adding the same
persons (unique emails) in opposite orders, as a users page of one connection and a deals
page of another sharing reps do (core.people). PostgreSQL aborts one; it runs again and both
land."""

import threading
from collections import Counter

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from core.db import retrying_deadlocks, session_scope

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
