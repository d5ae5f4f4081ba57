"""People (docs/people.md): one human, whatever CRMs they are in.

Every CRM user (crm_user) belongs to exactly one person. Right after a users page is
stored (core.store), each user without a person is matched automatically:

1. by email (lower-cased): the person with that email, else the person of another user
   with that email;
2. else by mobile number (normalize_mobile): the one person that has it (or whose users
   have it), provided the user has no email or that person has none (two different
   emails are two people; a person without email takes the user's);
3. else a new person of its own (name, email, mobile and team from the user), so a rep
   with neither email nor mobile still is one person.

A match is made once: syncs never move a user to another person. An admin maps a user to
another person by hand (map_user; crm_user.person_match = "hand"); a person left without
users is merged into the new one (its deals, accounts and goals move) and deleted.

Deals, accounts and activities carry owner_person_id (owner_person): the person of the owner's
crm_user (connection and owner_remote_id), else the person with the owner's email, else
the person of a user with that email. core.store sets it set-based in each page's merge
statement, creating a person for an owner email nobody has yet (ensure_owner_persons);
relink() re-sets it when users are matched or mapped, marking the rollup months dirty.

A person's team follows its CRM users' team (the most recently synced one with a team)
unless set by hand. Metrics, goals and goal pushes key on the person.

Every function takes the caller's session and never commits.
"""

import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session

from core.metrics import rollups
from core.models import Account, Activity, Deal, DealVersion, Goal, Person, User, table_of
from core.queries import Listing
from core.types import PersonMatch, utcnow

MIN_MOBILE_DIGITS = 5
PERSON_COLUMNS = ("id", "name", "email", "mobile", "team", "team_set_by_hand", "created_at",
                  "updated_at")
USER_COLUMNS = ("id", "connection_id", "remote_id", "name", "email", "mobile", "active",
                "team", "person_match", "deleted")
UNMATCHED_COLUMNS = ("id", "connection_id", "remote_id", "name", "email", "mobile", "active",
                     "team", "person_id")



PERSON, USER, DEAL, ACCOUNT, ACTIVITY, GOAL, VERSION = (
    table_of(m) for m in (Person, User, Deal, Account, Activity, Goal, DealVersion))
OWNED = ((Deal, DEAL), (Account, ACCOUNT), (Activity, ACTIVITY))


class PersonNotFound(LookupError):
    pass


class PersonError(ValueError):
    """Bad input about people; `field` names what is wrong (a 422)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class PersonConflict(PersonError):
    """The change would clash with another person or goal (a 409)."""


# ---- normalization ----------------------------------------------------------------------

_CUT = re.compile(r"[A-Za-z,;/]")  # an extension ("x12", "ext. 12") or a second number


def normalize_mobile(value: str | None) -> str | None:
    """A phone number as compared: its digits, with a leading + kept when it is
    international (written with + or 00). What follows a letter (an extension) or a comma,
    semicolon or slash (a second number) is dropped. None without at least
    MIN_MOBILE_DIGITS digits. "+86 138-0013-8000" -> "+8613800138000",
    "0086 13800138000" -> "+8613800138000", "(555) 123-4567" -> "5551234567"."""
    if not value:
        return None
    text = _CUT.split(value.strip(), maxsplit=1)[0].strip()
    digits = "".join(c for c in text if c.isdigit())
    if text.startswith("+"):
        digits = "+" + digits
    elif text.startswith("00") and len(digits) > 2:
        digits = "+" + digits[2:]
    return digits if len(digits.lstrip("+")) >= MIN_MOBILE_DIGITS else None


def normalize_email(value: str | None) -> str | None:
    text = (value or "").strip().lower()
    return text or None


# ---- deal and account owners --------------------------------------------------------------

def owner_person(source: Any) -> ColumnElement[Any]:
    """The person of the owner of each row of `source` (a deal, an account, or a load table
    of them): its crm_user's person, else the person with its owner_email, else the person
    of a live user with that email. Index lookups, correlated on the row."""
    by_user = (select(USER.c.person_id)
               .where(USER.c.connection_id == source.c.connection_id,
                      USER.c.remote_id == source.c.owner_remote_id).scalar_subquery())
    by_email = select(PERSON.c.id).where(PERSON.c.email == source.c.owner_email)
    by_user_email = (select(func.min(USER.c.person_id))
                     .where(USER.c.email == source.c.owner_email, USER.c.deleted_at.is_(None)))
    return func.coalesce(by_user, by_email.scalar_subquery(), by_user_email.scalar_subquery())


def ensure_owner_persons(session: Session, load: Table) -> None:
    """Before a page of deals, accounts or activities is merged from `load`: a person for each owner
    email that no person, user or user's person has (named by the page's owner name, if
    any)."""
    # the page's few distinct owners first, so the lookups run per owner, not per row
    session.execute(_owner_persons_insert(load, session.get_bind().dialect.name),
                    {"now": utcnow()})


@lru_cache(maxsize=32)
def _owner_persons_insert(load: Table, dialect: str) -> Any:
    """ensure_owner_persons' statement for a load table (core.store caches one per page
    shape), built once: building it took about a millisecond of CPU per page."""
    owners = (select(load.c.connection_id, load.c.owner_remote_id, load.c.owner_email,
                     func.max(load.c.owner_name).label("owner_name"))
              .where(load.c.owner_email.is_not(None))
              .group_by(load.c.connection_id, load.c.owner_remote_id, load.c.owner_email)
              .subquery())
    email = owners.c.owner_email
    unknown = and_(
        ~exists().where(PERSON.c.email == email),
        ~exists().where(USER.c.connection_id == owners.c.connection_id,
                        USER.c.remote_id == owners.c.owner_remote_id,
                        USER.c.person_id.is_not(None)),
        ~exists().where(USER.c.email == email, USER.c.deleted_at.is_(None)))
    rows = (select(func.coalesce(func.max(owners.c.owner_name), ""), email,
                   bindparam("now", type_=PERSON.c.created_at.type).label("created_at"),
                   bindparam("now", type_=PERSON.c.updated_at.type).label("updated_at"))
            .where(unknown).group_by(email)
            .order_by(email))  # two sync lanes insert in one order (core.sync.LANES)
    stmt = (pg_insert(PERSON) if dialect == "postgresql" else sqlite_insert(PERSON)).from_select(
        ["name", "email", "created_at", "updated_at"], rows)
    return stmt.on_conflict_do_nothing(index_elements=["email"])


def relink(session: Session, *, user_ids: Sequence[int] = (),
           person_ids: Sequence[int] = ()) -> None:
    """Re-set owner_person_id (owner_person) on the deals, deal versions, accounts and
    activities owned by `user_ids` (their connection and remote id) or linked to
    `person_ids`, where it changes; the rollup months of those deals and accounts become
    dirty."""
    by_connection: dict[int, list[str]] = defaultdict(list)
    if user_ids:
        for cid, rid in session.execute(select(USER.c.connection_id, USER.c.remote_id)
                                        .where(USER.c.id.in_(user_ids))):
            by_connection[int(cid)].append(str(rid))
    for model, table in OWNED:
        scopes: list[ColumnElement[bool]] = [
            and_(table.c.connection_id == cid, table.c.owner_remote_id.in_(rids))
            for cid, rids in by_connection.items()]
        if person_ids:
            scopes.append(table.c.owner_person_id.in_(person_ids))
        for scope in scopes:
            new = owner_person(table)
            where = (scope, table.c.owner_person_id.is_distinct_from(new))
            rollups.mark_rows(session, model, *where)
            session.execute(update(table).where(*where).values(owner_person_id=new))
    # deal versions follow (core.history: a rep's past pipeline moves with their person)
    by_owner = [and_(VERSION.c.connection_id == cid, VERSION.c.owner_remote_id.in_(rids))
                for cid, rids in by_connection.items()]
    if person_ids:
        by_owner.append(VERSION.c.owner_person_id.in_(person_ids))
    for scope in by_owner:
        new = owner_person(VERSION)
        session.execute(update(VERSION).where(
            scope, VERSION.c.owner_person_id.is_distinct_from(new)).values(owner_person_id=new))


# ---- matching ----------------------------------------------------------------------------

@dataclass
class _Candidate:
    person_id: int
    email: str | None


def match_users(session: Session, *, connection_id: int | None = None) -> list[int]:
    """Give every user without a person one (the module's rules); returns their ids.
    Users are matched in email order (the database's), users without email last, then in
    id order, so two users of one batch with the same email or mobile become one person.
    Email order is the order ensure_owner_persons adds persons in: a transaction adds the
    persons it makes in ascending email order, so two writers of different connections
    sharing reps may wait for each other's new persons, but never both at once (in id
    order a users page deadlocked with another connection's deals page, time and again
    when many connections of one company synced for the first time together)."""
    if connection_id is None:
        users = session.execute(_UNMATCHED.order_by(*_MATCH_ORDER)).all()
    else:
        users = session.execute(_UNMATCHED_OF, {"connection_id": connection_id}).all()
    if not users:
        return []
    by_email = _persons_by(session, "email", {u.email for u in users if u.email})
    by_mobile = _persons_by(session, "mobile", {u.mobile for u in users if u.mobile})
    assigned = []
    for user in users:
        person_id, how = _match(session, user, by_email, by_mobile)
        assigned.append({"uid": user.id, "pid": person_id, "how": how})
    session.execute(update(USER).where(USER.c.id == bindparam("uid"))
                    .values(person_id=bindparam("pid"), person_match=bindparam("how")),
                    assigned)
    return [int(u.id) for u in users]


_UNMATCHED = select(USER.c.id, USER.c.name, USER.c.email, USER.c.mobile,
                    USER.c.team).where(USER.c.person_id.is_(None))
_MATCH_ORDER = (USER.c.email.is_(None), USER.c.email, USER.c.id)
_UNMATCHED_OF = _UNMATCHED.where(
    USER.c.connection_id == bindparam("connection_id")).order_by(*_MATCH_ORDER)


def _persons_by(session: Session, column: str, values: set[str]) -> dict[str, set[int]]:
    """value -> the persons that have it, or whose live users have it."""
    out: dict[str, set[int]] = defaultdict(set)
    if not values:
        return out
    queries: list[Select[Any]] = [
        select(PERSON.c[column], PERSON.c.id).where(PERSON.c[column].in_(values)),
        select(USER.c[column], USER.c.person_id).where(
            USER.c[column].in_(values), USER.c.person_id.is_not(None),
            USER.c.deleted_at.is_(None))]
    for query in queries:
        for value, pid in session.execute(query):
            out[str(value)].add(int(pid))
    return out


def _match(session: Session, user: Any, by_email: dict[str, set[int]],
           by_mobile: dict[str, set[int]]) -> tuple[int, PersonMatch]:
    if user.email and by_email.get(user.email):
        return min(by_email[user.email]), PersonMatch.EMAIL
    candidates = by_mobile.get(user.mobile or "", set())
    if user.mobile and len(candidates) == 1:
        person_id = next(iter(candidates))
        email = session.execute(select(PERSON.c.email).where(
            PERSON.c.id == person_id)).scalar_one()
        if user.email is None or email is None:
            if user.email is not None:  # the person gains the user's email
                session.execute(update(PERSON).where(
                    PERSON.c.id == person_id, PERSON.c.email.is_(None),
                    ~exists().where(PERSON.c.email == user.email)).values(email=user.email))
                by_email[user.email].add(person_id)
            return person_id, PersonMatch.MOBILE
    person_id, how = _new_person(session, user)
    if user.email:
        by_email[user.email].add(person_id)
    if user.mobile:
        by_mobile[user.mobile].add(person_id)
    return person_id, how


def _new_person(session: Session, user: Any) -> tuple[int, PersonMatch]:
    """A person made from `user`; (email) the one a concurrent writer made first."""
    now = utcnow()
    stmt = _insert(session, PERSON).values(
        name=user.name or user.email or "", email=user.email, mobile=user.mobile,
        team=user.team, team_set_by_hand=False, created_at=now, updated_at=now)
    if user.email is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["email"])
    created = session.execute(stmt.returning(PERSON.c.id)).scalar()
    if created is not None:
        return int(created), PersonMatch.NEW
    return int(session.execute(select(PERSON.c.id).where(
        PERSON.c.email == user.email)).scalar_one()), PersonMatch.EMAIL


def refresh_teams(session: Session, person_ids: Select[Any] | Sequence[int]) -> None:
    """A person's team (unless set by hand): the team of its live user with a team that
    was synced last."""
    session.execute(_teams_update(PERSON.c.id.in_(person_ids)), {"now": utcnow()})


def _teams_update(which: ColumnElement[bool]) -> Any:
    """refresh_teams' statement for the persons `which` selects."""
    team = (select(USER.c.team)
            .where(USER.c.person_id == PERSON.c.id, USER.c.deleted_at.is_(None),
                   USER.c.team.is_not(None))
            .order_by(USER.c.last_synced_at.desc(), USER.c.id.desc())
            .limit(1).scalar_subquery())
    return (update(PERSON)
            .where(which, PERSON.c.team_set_by_hand.is_(False),
                   PERSON.c.team.is_distinct_from(team))
            .values(team=team, updated_at=bindparam("now", type_=PERSON.c.updated_at.type)))


_PAGE_TEAMS = _teams_update(PERSON.c.id.in_(select(USER.c.person_id).where(
    USER.c.connection_id == bindparam("connection_id"),
    USER.c.remote_id.in_(bindparam("remote_ids", expanding=True)))))
"""after_users_page's refresh_teams, built once (every sync's users page runs it)."""


def after_users_page(session: Session, *, connection_id: int,
                     remote_ids: Iterable[str]) -> None:
    """What core.store does after it stored a page of users: match the new users, re-set
    the owners of their deals and accounts, and refresh the teams of the page's people."""
    matched = match_users(session, connection_id=connection_id)
    if matched:
        relink(session, user_ids=matched)
    session.execute(_PAGE_TEAMS, {"connection_id": connection_id,
                                  "remote_ids": list(remote_ids), "now": utcnow()})


# ---- reads -------------------------------------------------------------------------------

def people_listing(*, person_id: int | None = None,
                   people: Collection[int] | None = None) -> Listing:
    """People, oldest first (rows: PERSON_COLUMNS; add their users with with_users); of
    `people` only, unless None."""
    stmt: Select[Any] = select(*(PERSON.c[c] for c in PERSON_COLUMNS))
    if person_id is not None:
        stmt = stmt.where(PERSON.c.id == person_id)
    if people is not None:
        stmt = stmt.where(PERSON.c.id.in_(sorted(people)))
    return Listing(stmt, PERSON.c.id, lambda row: dict(row._mapping))


def with_users(session: Session, people: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """`people` rows, each with "users": its CRM users (tombstoned ones too, as deleted)."""
    ids = [int(p["id"]) for p in people]
    users: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if ids:
        columns = [USER.c[c] for c in USER_COLUMNS if c != "deleted"]
        stmt = (select(USER.c.person_id, *columns, USER.c.deleted_at)
                .where(USER.c.person_id.in_(ids)).order_by(USER.c.connection_id, USER.c.id))
        for row in session.execute(stmt):
            values = dict(zip(USER_COLUMNS[:-1], row[1:-1], strict=True))
            users[int(row.person_id)].append({**values, "deleted": row.deleted_at is not None})
    return [{**p, "users": users.get(int(p["id"]), [])} for p in people]


def get_person(session: Session, person_id: int) -> dict[str, Any]:
    row = session.execute(people_listing(person_id=person_id).stmt).first()
    if row is None:
        raise PersonNotFound(f"person {person_id} does not exist")
    return with_users(session, [dict(row._mapping)])[0]


def unmatched_listing(people: Collection[int] | None = None) -> Listing:
    """Live CRM users that no automatic rule matched to anyone and no admin mapped: alone
    in a person of their own, while some other person has no user on their connection
    (and so may be them). Of `people` only (their own person), unless None."""
    other = USER.alias("other")
    candidate = USER.alias("candidate")
    alone = ~exists().where(other.c.person_id == USER.c.person_id, other.c.id != USER.c.id)
    somebody = exists().where(
        PERSON.c.id != USER.c.person_id,
        ~exists().where(candidate.c.person_id == PERSON.c.id,
                        candidate.c.connection_id == USER.c.connection_id
                        ).correlate(PERSON, USER))
    stmt: Select[Any] = select(*(USER.c[c] for c in UNMATCHED_COLUMNS)).where(
        USER.c.deleted_at.is_(None), USER.c.person_match == PersonMatch.NEW, alone, somebody)
    if people is not None:
        stmt = stmt.where(USER.c.person_id.in_(sorted(people)))
    return Listing(stmt, USER.c.id, lambda row: dict(row._mapping))


def resolve(session: Session, *, person_id: int | None = None, email: str | None = None,
            people: Collection[int] | None = None) -> int | None:
    """The person named by id or by email (the person with that email, else the person of a
    live user with it). None when neither is given; PersonError when they name nobody or
    two different people. With `people` (not None) anyone else is nobody."""
    found: int | None = None
    if person_id is not None:
        if session.get(Person, person_id) is None or (people is not None
                                                      and person_id not in people):
            raise PersonError("person_id", f"person {person_id} does not exist")
        found = person_id
    address = normalize_email(email)
    if address is not None:
        by_email = person_of_email(session, address)
        if by_email is None or (people is not None and by_email not in people):
            raise PersonError("owner_email", f"{address} is not the email of any person or "
                              "synced user; sync first, or give person_id")
        if found is not None and by_email != found:
            raise PersonError("owner_email", f"{address} is not the email of person "
                              f"{found}; give one of person_id and owner_email")
        found = by_email
    return found


def person_of_email_expr(email: str) -> ColumnElement[Any]:
    """SQL: the person with `email` (lower-cased), else the person of a live user with it."""
    by_user = select(func.min(USER.c.person_id)).where(USER.c.email == email,
                                                       USER.c.deleted_at.is_(None))
    return func.coalesce(select(PERSON.c.id).where(PERSON.c.email == email).scalar_subquery(),
                         by_user.scalar_subquery())


def person_of_email(session: Session, email: str) -> int | None:
    pid = session.execute(select(person_of_email_expr(email))).scalar()
    return None if pid is None else int(pid)


def labels(session: Session, person_ids: Iterable[Any]) -> dict[int, tuple[str | None, str]]:
    """person id -> (email, name)."""
    wanted = {int(p) for p in person_ids if p is not None}
    if not wanted:
        return {}
    stmt = select(PERSON.c.id, PERSON.c.email, PERSON.c.name).where(PERSON.c.id.in_(wanted))
    return {int(pid): (email, name) for pid, email, name in session.execute(stmt)}


def teams(session: Session, person_ids: Iterable[Any]) -> dict[int, str | None]:
    """person id -> team (None: no team)."""
    wanted = {int(p) for p in person_ids if p is not None}
    if not wanted:
        return {}
    stmt = select(PERSON.c.id, PERSON.c.team).where(PERSON.c.id.in_(wanted))
    return {int(pid): team for pid, team in session.execute(stmt)}


def team_members(team: str | None) -> Select[Any]:
    """SQL: the ids of the people of `team` (None: the people without a team)."""
    return select(PERSON.c.id).where(
        PERSON.c.team.is_(None) if team is None else PERSON.c.team == team)


# ---- changes by hand -----------------------------------------------------------------------

EDITABLE = ("name", "email", "mobile", "team")


def update_person(session: Session, person_id: int, changes: dict[str, Any]) -> None:
    """Set name, email, mobile or team (team None: back to the CRM's team). PersonError
    for a bad value, PersonConflict when another person has the email."""
    person = session.get(Person, person_id)
    if person is None:
        raise PersonNotFound(f"person {person_id} does not exist")
    unknown = [k for k in changes if k not in EDITABLE]
    if unknown:
        raise PersonError(unknown[0], "is not a field of a person")
    if "name" in changes:
        name = str(changes["name"] or "").strip()
        if not name:
            raise PersonError("name", "must not be empty")
        person.name = name
    if "email" in changes:
        email = normalize_email(changes["email"])
        if email is not None and not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
            raise PersonError("email", "must be an email address (or null)")
        other = session.execute(select(PERSON.c.id).where(
            PERSON.c.email == email, PERSON.c.id != person_id)).scalar()
        if email is not None and other is not None:
            raise PersonConflict("email", f"person {other} has this email; map that "
                                 "person's users to this one instead")
        person.email = email
    if "mobile" in changes:
        given = str(changes["mobile"] or "").strip()
        mobile = normalize_mobile(given)
        if given and mobile is None:
            raise PersonError("mobile", f"must be a phone number with at least "
                              f"{MIN_MOBILE_DIGITS} digits (or null)")
        person.mobile = mobile
    if "team" in changes:
        team = str(changes["team"] or "").strip() or None
        person.team, person.team_set_by_hand = team, team is not None
    person.updated_at = utcnow()
    session.add(person)
    session.flush()
    if "team" in changes and person.team is None:
        refresh_teams(session, [person_id])
        session.expire(person)


def find_user(session: Session, *, user_id: int | None = None,
              connection_id: int | None = None, remote_id: str | None = None) -> User:
    """A CRM user by id, or by connection and remote id; PersonError when there is none."""
    if user_id is not None:
        user = session.get(User, user_id)
        if user is None:
            raise PersonError("user_id", f"CRM user {user_id} does not exist")
        return user
    if connection_id is None or not remote_id:
        raise PersonError("user_id", "give user_id, or connection_id and remote_id")
    found: User | None = session.execute(select(User).where(
        USER.c.connection_id == connection_id, USER.c.remote_id == remote_id)).scalar()
    if found is None:
        raise PersonError("remote_id", f"connection {connection_id} has no user {remote_id}")
    return found


def map_user(session: Session, person_id: int, *, user_id: int | None = None,
             connection_id: int | None = None, remote_id: str | None = None) -> None:
    """Make a CRM user (find_user) one of the person's users, by hand (syncs keep it).
    PersonNotFound for an unknown person, PersonError for an unknown user. The user's old
    person, when it has no users left, is merged into this one: its deals, accounts and
    goals move here, this person takes its email and mobile where it has none, and it is
    deleted. PersonConflict (nothing changed) when a goal of the old person has the metric
    and period of a live goal of this one."""
    if session.get(Person, person_id) is None:
        raise PersonNotFound(f"person {person_id} does not exist")
    user = find_user(session, user_id=user_id, connection_id=connection_id,
                     remote_id=remote_id)
    old = user.person_id
    user_id = int(user.id or 0)
    left = session.execute(select(func.count()).where(
        USER.c.person_id == old, USER.c.id != user_id)).scalar_one() if old else 0
    merging = old is not None and old != person_id and left == 0
    if merging:
        _check_goals(session, int(old or 0), person_id)
    session.execute(update(USER).where(USER.c.id == user_id).values(
        person_id=person_id, person_match=PersonMatch.HAND))
    session.expire(user)
    relink(session, user_ids=[user_id])
    if merging:
        _merge(session, int(old or 0), person_id)
    refresh_teams(session, [person_id] if merging or old is None else [person_id, old])


def _check_goals(session: Session, source: int, target: int) -> None:
    theirs = GOAL.alias("theirs")
    clash = session.execute(
        select(GOAL.c.id, theirs.c.id)
        .join(theirs, and_(theirs.c.person_id == target, theirs.c.metric == GOAL.c.metric,
                           theirs.c.period_start == GOAL.c.period_start,
                           theirs.c.period_end == GOAL.c.period_end,
                           theirs.c.deleted_at.is_(None)))
        .where(GOAL.c.person_id == source, GOAL.c.deleted_at.is_(None))).first()
    if clash is not None:
        raise PersonConflict("user_id", (
            f"the user's person {source} is left without users and would be merged into "
            f"person {target}, but its goal {clash[0]} has the metric and period of goal "
            f"{clash[1]}; delete or change one of them first"))


def _merge(session: Session, source: int, target: int) -> None:
    """Move what points at person `source` to `target`, then delete `source`."""
    goals = session.execute(select(Goal).where(GOAL.c.person_id == source)).scalars().all()
    now = utcnow()
    for goal in goals:
        goal.person_id = target
        if goal.live_key is not None:
            goal.live_key = Goal.live_key_of(target, goal.metric, goal.period_start,
                                             goal.period_end)
        goal.updated_at = now
        session.add(goal)
    session.flush()
    for model, table in OWNED:
        where = table.c.owner_person_id == source
        rollups.mark_rows(session, model, where)
        session.execute(update(table).where(where).values(owner_person_id=target))
    session.execute(update(VERSION).where(VERSION.c.owner_person_id == source)
                    .values(owner_person_id=target))
    gone = session.get(Person, source)
    kept = session.get(Person, target)
    assert gone is not None and kept is not None
    email, mobile = gone.email, gone.mobile
    session.delete(gone)
    session.flush()
    if kept.email is None and email is not None:
        kept.email = email
    if kept.mobile is None and mobile is not None:
        kept.mobile = mobile
    kept.updated_at = now
    session.add(kept)
    session.flush()


def _insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    return pg_insert(table) if dialect == "postgresql" else sqlite_insert(table)


__all__ = [
    "PersonConflict",
    "PersonError",
    "PersonNotFound",
    "after_users_page",
    "ensure_owner_persons",
    "find_user",
    "get_person",
    "labels",
    "map_user",
    "match_users",
    "normalize_mobile",
    "owner_person",
    "people_listing",
    "person_of_email",
    "person_of_email_expr",
    "refresh_teams",
    "relink",
    "resolve",
    "unmatched_listing",
    "update_person",
    "with_users",
]
