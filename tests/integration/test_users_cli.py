"""`crmsync users ...` as a user runs it: dashboard users, their roles and one-time links."""

import re

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from core import accounts
from core.accounts import LoginRefused
from core.db import make_engine
from core.models import DashboardUser, LoginLink, Person
from tests.cli_support import in_process, user_env
from tests.integration.test_cli import crmsync

LINK = re.compile(r"^http://127\.0\.0\.1:8000/welcome/([A-Za-z0-9_-]{20,})$", re.MULTILINE)
PASSWORD = "a long enough password"


@pytest.fixture
def store(tmp_path):
    """The directory's store (made by a first command), with one person in it."""
    done = crmsync(tmp_path, "users", "list")
    assert done.returncode == 0, done.stderr
    engine = make_engine(f"sqlite:///{tmp_path / 'crmsync.db'}")
    with Session(engine) as session:
        session.add(Person(id=7, name="Ann Lee", email="ann@example.com", team="East"))
        session.commit()
    yield engine
    engine.dispose()


def token_of(output: str) -> str:
    found = LINK.search(output)
    assert found is not None, output
    return found.group(1)


def users(engine: Engine) -> dict[str, DashboardUser]:
    with Session(engine) as session:
        return {u.email: u for u in accounts.list_users(session)}


def test_add_prints_a_link_that_sets_the_password_once(tmp_path, store):
    done = crmsync(tmp_path, "users", "add", "--email", "Boss@Example.com", "--role",
                   "manager", "--name", "Di Boss", "--team", "East", "--team", "West")
    assert done.returncode == 0, done.stderr
    token = token_of(done.stdout)
    rep = crmsync(tmp_path, "users", "add", "--email", "ann@example.com", "--role", "rep")
    assert rep.returncode == 0, rep.stderr
    added = users(store)
    assert (added["boss@example.com"].role, added["boss@example.com"].teams) == (
        "manager", ["East", "West"])
    assert (added["ann@example.com"].role, added["ann@example.com"].person_id) == ("rep", 7)

    with Session(store) as session:
        user = accounts.use_link(session, token, PASSWORD)
        session.commit()
        assert accounts.authenticate(session, "boss@example.com", PASSWORD).id == user.id
        with pytest.raises(LoginRefused):
            accounts.use_link(session, token, PASSWORD)

    listed = crmsync(tmp_path, "users", "list")
    assert listed.returncode == 0, listed.stderr
    assert "boss@example.com" in listed.stdout and "ann@example.com" in listed.stdout
    assert "East, West" in listed.stdout and "not yet" in listed.stdout
    assert token not in listed.stdout
    with Session(store) as session:
        hashes = [u.password_hash for u in accounts.list_users(session) if u.password_hash]
    assert not any(h in listed.stdout for h in hashes)


@pytest.mark.parametrize("args, message", [
    (["--email", "nobody", "--role", "rep"], "is not an email address"),
    (["--email", "x@example.com", "--role", "owner"], "role must be one of admin, manager, rep"),
    (["--email", "x@example.com", "--role", "rep"], "no person has the email x@example.com"),
    (["--email", "x@example.com", "--role", "rep", "--person", "99"], "person 99 does not exist"),
    (["--email", "x@example.com", "--role", "admin", "--team", "East"], "only managers"),
])
def test_bad_users_are_refused_clearly_and_change_nothing(tmp_path, store, args, message):
    done = crmsync(tmp_path, "users", "add", *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert LINK.search(done.stdout) is None
    assert users(store) == {}


def test_invite_and_reset_print_a_fresh_link_and_the_old_one_stops(tmp_path, store):
    first = token_of(crmsync(tmp_path, "users", "add", "--email", "admin@example.com",
                             "--role", "admin").stdout)
    invite = crmsync(tmp_path, "users", "invite", "ADMIN@example.com")
    assert invite.returncode == 0, invite.stderr
    second = token_of(invite.stdout)
    assert second != first
    with Session(store) as session:
        assert accounts.link_user(session, first) is None
        accounts.use_link(session, second, PASSWORD)
        session.commit()

    reset = crmsync(tmp_path, "users", "reset", "admin@example.com")
    assert reset.returncode == 0, reset.stderr
    third = token_of(reset.stdout)
    with Session(store) as session:
        accounts.authenticate(session, "admin@example.com", PASSWORD)  # still works
        accounts.use_link(session, third, "another long password")
        session.commit()
        with pytest.raises(LoginRefused):
            accounts.authenticate(session, "admin@example.com", PASSWORD)
        session.commit()

    unknown = crmsync(tmp_path, "users", "reset", "nobody@example.com")
    assert unknown.returncode == 2
    assert "no dashboard user has the email 'nobody@example.com'" in unknown.stderr


def test_disable_signs_out_and_refuses_new_links(tmp_path, store):
    token = token_of(crmsync(tmp_path, "users", "add", "--email", "ann@example.com",
                             "--role", "rep").stdout)
    with Session(store) as session:
        user = accounts.use_link(session, token, PASSWORD)
        cookie, _ = accounts.open_session(session, user)
        session.commit()
    done = crmsync(tmp_path, "users", "disable", "ann@example.com")
    assert done.returncode == 0, done.stderr
    assert "disabled ann@example.com" in done.stdout
    with Session(store) as session:
        assert accounts.read_session(session, cookie) is None
        with pytest.raises(LoginRefused):
            accounts.authenticate(session, "ann@example.com", PASSWORD)
        session.commit()
        links = session.scalar(select(func.count()).select_from(LoginLink))
    assert links == 0
    again = crmsync(tmp_path, "users", "invite", "ann@example.com")
    assert again.returncode == 2 and "ann@example.com is disabled" in again.stderr


def test_links_use_the_public_url(tmp_path, store):
    done = in_process(["users", "add", "--email", "admin@example.com", "--role", "admin"],
                      cwd=tmp_path, env=user_env(CRMSYNC_PUBLIC_URL="https://crm.example.com/"))
    assert done.returncode == 0, done.stderr
    assert re.search(r"^https://crm\.example\.com/welcome/[A-Za-z0-9_-]{20,}$", done.stdout,
                     re.MULTILINE), done.stdout
