"""Dashboard users (core.accounts): roles, one-time links, passwords, sign-in throttling,
sessions and what each role may see."""

from datetime import timedelta

import pytest
from argon2 import extract_parameters, profiles
from sqlmodel import Session

from core import accounts
from core.accounts import AccountError, LoginRefused, Role, TooManyAttempts
from core.models import DashboardUser, LoginLink, Person, WebSession
from tests.conftest import CHEAPEST_PASSWORDS, PASSWORDS

PASSWORD = "correct horse battery"


@pytest.fixture
def db(sqlite_engine):
    with Session(sqlite_engine) as session:
        session.add_all([
            Person(id=1, name="Ana Rep", email="ana@example.com", team="North"),
            Person(id=2, name="Bo Rep", email="bo@example.com", team="North"),
            Person(id=3, name="Cy Rep", email="cy@example.com", team="South"),
            Person(id=4, name="Di Boss", email="di@example.com", team="North"),
        ])
        session.commit()
        yield session


def with_password(db: Session, email: str, role: Role, **kwargs) -> DashboardUser:
    user = accounts.add_user(db, email=email, role=role, **kwargs)
    accounts.use_link(db, accounts.create_link(db, user), PASSWORD)
    return user


@pytest.mark.parametrize("kwargs, message", [
    ({"email": "nobody", "role": "rep"}, "not an email address"),
    ({"email": "x@example.com", "role": "owner"}, "role must be one of admin, manager, rep"),
    ({"email": "x@example.com", "role": "rep"}, "no person has the email x@example.com"),
    ({"email": "x@example.com", "role": "rep", "person_id": 99}, "person 99 does not exist"),
    ({"email": "x@example.com", "role": "admin", "teams": ["North"]}, "only managers"),
])
def test_bad_users_are_refused_with_a_reason(db, kwargs, message):
    with pytest.raises(AccountError, match=message):
        accounts.add_user(db, **kwargs)
    assert accounts.list_users(db) == []


def test_a_rep_is_linked_to_the_person_of_their_email_and_emails_are_unique(db):
    user = accounts.add_user(db, email=" Ana@Example.com ", role="rep")
    assert (user.email, user.person_id, user.password_hash) == ("ana@example.com", 1, None)
    with pytest.raises(AccountError, match="exists already"):
        accounts.add_user(db, email="ANA@example.com", role="manager")


def test_an_invitation_sets_the_password_once(db):
    user = accounts.add_user(db, email="ana@example.com", role="rep")
    token = accounts.create_link(db, user)
    assert accounts.link_user(db, token) is user
    with pytest.raises(AccountError, match="at least 10 characters"):
        accounts.use_link(db, token, "short")
    accounts.use_link(db, token, PASSWORD)  # the refused attempt did not spend the link
    assert user.password_hash and user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    with pytest.raises(LoginRefused):
        accounts.use_link(db, token, "another long password")
    assert accounts.link_user(db, token) is None
    assert accounts.authenticate(db, "ana@example.com", PASSWORD) is user


def test_a_new_link_replaces_the_old_and_links_expire(db):
    user = accounts.add_user(db, email="di@example.com", role="manager")
    old = accounts.create_link(db, user)
    new = accounts.create_link(db, user, "reset")
    assert accounts.link_user(db, old) is None and accounts.link_user(db, new) is user
    link = db.query(LoginLink).one()
    link.expires_at = link.created_at - timedelta(seconds=1)
    db.flush()
    with pytest.raises(LoginRefused):
        accounts.use_link(db, new, PASSWORD)


def test_sign_in_refuses_wrong_passwords_and_unknown_or_unready_users_alike(db):
    with_password(db, "ana@example.com", Role.REP)
    accounts.add_user(db, email="bo@example.com", role="rep")  # invited, no password yet
    for email, password in [("ana@example.com", "wrong password!"),
                            ("nobody@example.com", PASSWORD), ("bo@example.com", PASSWORD)]:
        with pytest.raises(LoginRefused) as refused:
            accounts.authenticate(db, email, password)
        assert str(refused.value) == "wrong email or password"


def test_five_failures_lock_the_email_for_the_window_even_with_the_right_password(db):
    user = with_password(db, "ana@example.com", Role.REP)
    for _ in range(accounts.MAX_FAILURES):
        with pytest.raises(LoginRefused):
            accounts.authenticate(db, "ana@example.com", "wrong password!", address="10.0.0.1")
    with pytest.raises(TooManyAttempts) as locked:
        accounts.authenticate(db, "ana@example.com", PASSWORD)
    assert 0 < locked.value.retry_after <= accounts.FAILURE_WINDOW.total_seconds() + 1
    with_password(db, "bo@example.com", Role.REP)  # other emails are not locked
    assert accounts.authenticate(db, "bo@example.com", PASSWORD).email == "bo@example.com"
    assert user.last_login_at is None  # the locked sign-in did not happen


def test_a_success_forgets_earlier_failures(db):
    with_password(db, "ana@example.com", Role.REP)
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(LoginRefused):
            accounts.authenticate(db, "ana@example.com", "wrong password!")
    accounts.authenticate(db, "ana@example.com", PASSWORD)
    for _ in range(accounts.MAX_FAILURES - 1):
        with pytest.raises(LoginRefused):
            accounts.authenticate(db, "ana@example.com", "wrong password!")
    assert accounts.authenticate(db, "ana@example.com", PASSWORD).email == "ana@example.com"


def test_sessions_open_read_close_and_end_with_the_user(db):
    user = with_password(db, "di@example.com", Role.MANAGER, teams=["North"])
    token, csrf = accounts.open_session(db, user)
    signed = accounts.read_session(db, token)
    assert signed is not None and signed.csrf_token == csrf
    assert signed.viewer.role == Role.MANAGER and signed.viewer.email == "di@example.com"
    assert token not in {s.token_hash for s in db.query(WebSession)}  # only the digest
    assert accounts.read_session(db, "forged") is None and accounts.read_session(db, None) is None
    accounts.close_session(db, token)
    assert accounts.read_session(db, token) is None
    token, _ = accounts.open_session(db, user)
    accounts.disable_user(db, user)
    assert accounts.read_session(db, token) is None
    with pytest.raises(LoginRefused):
        accounts.authenticate(db, "di@example.com", PASSWORD)


def test_an_expired_session_is_gone(db):
    user = with_password(db, "ana@example.com", Role.REP)
    token, _ = accounts.open_session(db, user)
    row = db.query(WebSession).one()
    row.expires_at = row.created_at - timedelta(seconds=1)
    db.flush()
    assert accounts.read_session(db, token) is None


def test_what_each_role_sees(db):
    admin = accounts.add_user(db, email="root@example.com", role="admin")
    everyone = accounts.add_user(db, email="vp@example.com", role="manager")
    north = accounts.add_user(db, email="di@example.com", role="manager", person_id=4,
                              teams=["North"])
    rep = accounts.add_user(db, email="bo@example.com", role="rep")
    assert accounts.viewer_of(db, admin).people is None
    assert accounts.viewer_of(db, everyone).people is None
    assert accounts.viewer_of(db, north).people == {1, 2, 4}
    seen = accounts.viewer_of(db, rep)
    assert seen.people == {2} and seen.sees(2) and not seen.sees(1) and not seen.sees(None)


def test_passwords_are_hashed_with_argon2id_at_rfc_9106_low_memory_and_upgraded(db, monkeypatch):
    """The suite hashes with CHEAPEST (tests/conftest.py); crmsync with these parameters. A
    hash made with others (here the suite's) is redone at the next sign-in."""
    assert PASSWORDS is not CHEAPEST_PASSWORDS
    assert extract_parameters(PASSWORDS.hash("x")) == profiles.RFC_9106_LOW_MEMORY
    user = with_password(db, "ana@example.com", Role.REP)
    cheap = user.password_hash
    assert cheap and extract_parameters(cheap) == profiles.CHEAPEST
    monkeypatch.setattr(accounts, "PASSWORDS", PASSWORDS)
    with pytest.raises(LoginRefused):
        accounts.authenticate(db, "ana@example.com", "a wrong password")
    assert user.password_hash == cheap  # a failure changes nothing
    with pytest.raises(LoginRefused):
        accounts.authenticate(db, "nobody@example.com", PASSWORD)
    assert accounts.authenticate(db, "ana@example.com", PASSWORD) is user
    assert user.password_hash and user.password_hash != cheap
    assert extract_parameters(user.password_hash) == profiles.RFC_9106_LOW_MEMORY
    assert accounts.authenticate(db, "ana@example.com", PASSWORD) is user
