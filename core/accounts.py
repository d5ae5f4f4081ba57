"""Dashboard users (docs/dashboard.md): who may sign in, with which role, and what they
may see.

- Roles: admin (everything), manager (the people of their teams, or everyone when they
  have no team list), rep (only their own person: deals, numbers, goals). A rep must be
  linked to a person; a manager may be too (a selling manager sees their own numbers
  as one of their team).
- Passwords are hashed with Argon2id (argon2-cffi); a user without a password signs in
  only after setting one through a one-time link (an invitation or a reset, printed by
  the command line: no mail server needed). A link works once, for LINK_TTL.
- A sign-in opens a session: the browser's cookie holds a random token of which only the
  sha256 is stored, with a CSRF token for the forms and for the API calls the dashboard
  makes with the cookie. Sessions last SESSION_TTL.
- Failed sign-ins are counted per email: after MAX_FAILURES within FAILURE_WINDOW the
  email is refused (TooManyAttempts, with the seconds to wait) whatever the password, so
  guessing is slow in every process of a deployment.

Every function takes the caller's session and never commits.
"""

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlmodel import Session

from core.models import DashboardUser, LoginFailure, LoginLink, Person, WebSession, table_of
from core.people import normalize_email
from core.types import as_utc, utcnow

LINK_TTL = timedelta(days=3)
SESSION_TTL = timedelta(days=14)
MAX_FAILURES = 5
FAILURE_WINDOW = timedelta(minutes=15)
MIN_PASSWORD = 10
MAX_PASSWORD = 1024  # Argon2 hashes any length; a cap keeps a request cheap

PASSWORDS = PasswordHasher()
"""Argon2id with argon2-cffi's defaults (the RFC 9106 low-memory profile). Read at each
call: the test suite swaps in argon2's CHEAPEST profile (tests/conftest.py); a hash made
with other parameters is redone at the next sign-in."""


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    """The hash checked when nobody has the email (so timing does not tell who exists):
    made on first use, not on import (an Argon2 hash costs a command's start 0.2 s)."""
    return hasher.hash("not a password of anyone")


class Role(StrEnum):
    ADMIN = "admin"
    MANAGER = "manager"
    REP = "rep"


class LinkPurpose(StrEnum):
    INVITE = "invite"
    RESET = "reset"


class AccountError(ValueError):
    """Bad input for a dashboard user (the message says what to change)."""


class LoginRefused(Exception):
    """Wrong email or password, a disabled user, or one without a password yet. The
    message never says which."""

    def __init__(self) -> None:
        super().__init__("wrong email or password")


class TooManyAttempts(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many failed sign-ins; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Viewer:
    """What a signed-in user may see. `people` is None for everyone, else the ids of the
    persons whose deals, numbers and goals are visible."""

    user_id: int
    email: str
    name: str
    role: Role
    person_id: int | None
    people: frozenset[int] | None

    def sees(self, person_id: int | None) -> bool:
        return self.people is None or (person_id is not None and person_id in self.people)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


USERS, LINKS, SESSIONS, FAILURES, PEOPLE = map(
    table_of, (DashboardUser, LoginLink, WebSession, LoginFailure, Person))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# -- users -------------------------------------------------------------------------------


def add_user(session: Session, *, email: str, role: Role | str, name: str = "",
             person_id: int | None = None, teams: Collection[str] | None = None) -> DashboardUser:
    """A new dashboard user (no password yet: send them an invitation link). A rep without
    `person_id` is linked to the person with the same email."""
    address = normalize_email(email)
    if not address or "@" not in address:
        raise AccountError(f"{email!r} is not an email address")
    try:
        role = Role(role)
    except ValueError:
        raise AccountError(f"role must be one of {', '.join(Role)}, not {role!r}") from None
    if _by_email(session, address) is not None:
        raise AccountError(f"a dashboard user with email {address} exists already")
    if person_id is None and role == Role.REP:
        person_id = session.execute(select(PEOPLE.c.id).where(
            PEOPLE.c.email == address)).scalar_one_or_none()
        if person_id is None:
            raise AccountError(f"no person has the email {address}: give the rep's person "
                               "(crmsync people list) or use the email of their CRM user")
    if person_id is not None and session.get(Person, person_id) is None:
        raise AccountError(f"person {person_id} does not exist")
    if teams is not None and role != Role.MANAGER:
        raise AccountError("only managers have teams")
    user = DashboardUser(email=address, name=name.strip(), role=role.value,
                         person_id=person_id,
                         teams=sorted({t.strip() for t in teams if t.strip()})
                         if teams is not None else None)
    session.add(user)
    session.flush()
    return user


def _by_email(session: Session, address: str) -> DashboardUser | None:
    user: DashboardUser | None = session.execute(select(DashboardUser).where(
        USERS.c.email == address)).scalar_one_or_none()
    return user


def find_user(session: Session, email: str) -> DashboardUser:
    address = normalize_email(email) or ""
    user = _by_email(session, address)
    if user is None:
        raise AccountError(f"no dashboard user has the email {address or email!r}")
    return user


def list_users(session: Session) -> list[DashboardUser]:
    return list(session.execute(select(DashboardUser).order_by(
        USERS.c.email)).scalars())


def disable_user(session: Session, user: DashboardUser) -> None:
    """The user can no longer sign in; their sessions and links end now."""
    user.disabled_at = utcnow()
    user.updated_at = utcnow()
    session.execute(delete(WebSession).where(SESSIONS.c.user_id == user.id))
    session.execute(delete(LoginLink).where(LINKS.c.user_id == user.id))
    session.flush()


def viewer_of(session: Session, user: DashboardUser) -> Viewer:
    """The user's scope: everyone (admins, managers without teams), their teams' people
    (and their own person), or a rep's own person."""
    assert user.id is not None
    role = Role(user.role)
    people: frozenset[int] | None = None
    if role == Role.REP:
        people = frozenset({user.person_id} if user.person_id is not None else ())
    elif role == Role.MANAGER and user.teams is not None:
        ids = session.execute(select(PEOPLE.c.id).where(
            PEOPLE.c.team.in_(user.teams))).scalars().all()
        people = frozenset(ids) | ({user.person_id} if user.person_id is not None else set())
    return Viewer(user.id, user.email, user.name, role, user.person_id, people)


# -- one-time links ----------------------------------------------------------------------


def create_link(session: Session, user: DashboardUser,
                purpose: LinkPurpose | str = LinkPurpose.INVITE) -> str:
    """A one-time token that lets its holder set `user`'s password (returned once; only
    its sha256 is stored). Earlier unused links of the user stop working."""
    assert user.id is not None
    if user.disabled_at is not None:
        raise AccountError(f"{user.email} is disabled")
    session.execute(delete(LoginLink).where(LINKS.c.user_id == user.id,
                                            LINKS.c.used_at.is_(None)))
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(LoginLink(user_id=user.id, token_hash=_digest(token),
                          purpose=LinkPurpose(purpose).value, created_at=now,
                          expires_at=now + LINK_TTL))
    session.flush()
    return token


def link_user(session: Session, token: str) -> DashboardUser | None:
    """The user an unused, unexpired link is for, or None."""
    link = _link(session, token)
    return None if link is None else session.get(DashboardUser, link.user_id)


def _link(session: Session, token: str) -> LoginLink | None:
    if not token or len(token) > 100:
        return None
    link = session.execute(select(LoginLink).where(
        LINKS.c.token_hash == _digest(token))).scalar_one_or_none()
    if link is None or link.used_at is not None or as_utc(link.expires_at) <= utcnow():
        return None
    user = session.get(DashboardUser, link.user_id)
    return None if user is None or user.disabled_at is not None else link


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"a password has at most {MAX_PASSWORD} characters")


def use_link(session: Session, token: str, password: str) -> DashboardUser:
    """Set the password through a link (which then stops working); every other session of
    the user ends. AccountError for a bad password, LoginRefused for a dead link."""
    check_password(password)
    link = _link(session, token)
    if link is None:
        raise LoginRefused
    user = session.get(DashboardUser, link.user_id)
    assert user is not None
    link.used_at = utcnow()
    user.password_hash = PASSWORDS.hash(password)
    user.updated_at = utcnow()
    session.execute(delete(WebSession).where(SESSIONS.c.user_id == user.id))
    session.flush()
    return user


# -- signing in --------------------------------------------------------------------------


def _failures(session: Session, email: str, now: datetime) -> tuple[int, datetime | None]:
    count, first = session.execute(
        select(func.count(), func.min(FAILURES.c.at)).where(
            FAILURES.c.email == email, FAILURES.c.at > now - FAILURE_WINDOW)).one()
    return int(count), (as_utc(first) if first is not None else None)


def authenticate(session: Session, email: str, password: str, *,
                 address: str = "") -> DashboardUser:
    """The user with this email and password. TooManyAttempts when the email failed
    MAX_FAILURES times within FAILURE_WINDOW; LoginRefused otherwise (a failure is
    recorded: the caller must commit even then)."""
    address_email = (normalize_email(email) or "")[:320]
    now = utcnow()
    count, first = _failures(session, address_email, now)
    if count >= MAX_FAILURES and first is not None:
        wait = first + FAILURE_WINDOW - now
        raise TooManyAttempts(max(1, int(wait.total_seconds()) + 1))
    user = _by_email(session, address_email)
    ok = False
    try:  # a hash is checked even without a user, so timing does not tell who exists
        ok = PASSWORDS.verify(user.password_hash if user and user.password_hash
                              else _dummy_hash(PASSWORDS), password[:MAX_PASSWORD])
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or user is None or user.password_hash is None or user.disabled_at is not None:
        session.add(LoginFailure(email=address_email, address=address[:64], at=now))
        session.execute(delete(LoginFailure).where(
            FAILURES.c.at < now - FAILURE_WINDOW))
        session.flush()
        raise LoginRefused
    session.execute(delete(LoginFailure).where(
        FAILURES.c.email == address_email))
    if PASSWORDS.check_needs_rehash(user.password_hash):
        user.password_hash = PASSWORDS.hash(password)
    user.last_login_at = now
    session.flush()
    return user


def open_session(session: Session, user: DashboardUser) -> tuple[str, str]:
    """(cookie token, CSRF token) of a new session of `user`."""
    assert user.id is not None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(user_id=user.id, token_hash=_digest(token), csrf_token=csrf,
                           created_at=now, expires_at=now + SESSION_TTL))
    session.execute(delete(WebSession).where(SESSIONS.c.expires_at < now))
    session.flush()
    return token, csrf


@dataclass(frozen=True)
class SignedIn:
    viewer: Viewer
    csrf_token: str


def read_session(session: Session, token: str | None) -> SignedIn | None:
    """The viewer of a live session cookie, or None (none, unknown, expired, disabled)."""
    if not token or len(token) > 100:
        return None
    row = session.execute(select(WebSession).where(
        SESSIONS.c.token_hash == _digest(token))).scalar_one_or_none()
    if row is None or as_utc(row.expires_at) <= utcnow():
        return None
    user = session.get(DashboardUser, row.user_id)
    if user is None or user.disabled_at is not None:
        return None
    return SignedIn(viewer_of(session, user), row.csrf_token)


def close_session(session: Session, token: str | None) -> None:
    if token:
        session.execute(delete(WebSession).where(
            SESSIONS.c.token_hash == _digest(token)))


def public_user(user: DashboardUser) -> dict[str, Any]:
    return {"id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "person_id": user.person_id, "teams": user.teams,
            "has_password": user.password_hash is not None,
            "disabled": user.disabled_at is not None,
            "last_login_at": user.last_login_at}


__all__ = [
    "FAILURE_WINDOW",
    "LINK_TTL",
    "MAX_FAILURES",
    "SESSION_TTL",
    "AccountError",
    "LinkPurpose",
    "LoginRefused",
    "Role",
    "SignedIn",
    "TooManyAttempts",
    "Viewer",
    "add_user",
    "authenticate",
    "check_password",
    "close_session",
    "create_link",
    "disable_user",
    "find_user",
    "link_user",
    "list_users",
    "open_session",
    "public_user",
    "read_session",
    "use_link",
    "viewer_of",
]
