"""What the Trends and Pipeline pages show numbers of: everyone the signed-in user may see,
one team of them, or one rep (the `show` selector: "", "team:<name>" or "person:<id>"),
and the links from the deals they list to their records in the CRM.

A rep may choose only themselves; a team or person outside the user's scope is not found,
as if it did not exist (the page answers 404)."""

from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from sqlmodel import Session

from api.connections import crm_links
from api.listing import MAX_ID
from api.web import guard
from api.web.i18n import text
from api.web.render import error_page, language
from core.accounts import Role, SignedIn, Viewer
from core.metrics.definitions import team_order
from core.people import people_listing, team_members

MAX_TEAM = 200


@dataclass(frozen=True)
class Choice:
    value: str  # "", "team:<name>", "person:<id>"
    kind: str  # everyone, team, person
    label: str  # a team's or a person's name ("" for everyone: the template words it)


@dataclass(frozen=True)
class Focus:
    """The chosen slice: its choice, and the people whose numbers it shows (None: every
    person and the deals of no owner, for a user who sees everyone)."""

    choice: Choice
    people: frozenset[int] | None


def label(lang: str, focus: Focus) -> str:
    """The slice's name as the page's heading says it."""
    if focus.choice.kind == "everyone":
        return text(lang, "focus.everyone")
    if focus.choice.kind == "team":
        return text(lang, "board.team", team=focus.choice.label)
    return focus.choice.label


def choices(session: Session, viewer: Viewer) -> list[Choice]:
    """The selector's options: everyone (not for a rep), each team, each person the user
    sees, by name."""
    listing = people_listing(people=viewer.people)
    persons = [dict(row._mapping) for row in session.execute(listing.stmt)]
    persons.sort(key=lambda p: ((p["name"] or p["email"] or "").casefold(), p["id"]))
    out: list[Choice] = []
    if viewer.role != Role.REP:
        out.append(Choice("", "everyone", ""))
        for team in team_order({p["team"] for p in persons if p["team"]}):
            assert team is not None
            out.append(Choice(f"team:{team}", "team", team))
    out += [Choice(f"person:{p['id']}", "person", p["name"] or p["email"] or str(p["id"]))
            for p in persons]
    return out


def choose(session: Session, viewer: Viewer, show: str) -> Focus | None:
    """The slice `show` names, limited to what the viewer sees; None when it names nothing
    the viewer may see (an unknown team or person, someone else's, a malformed value)."""
    show = show.strip()
    if not show:
        if viewer.role == Role.REP:  # a rep's "everyone" is themselves
            own = viewer.person_id
            return None if own is None else choose(session, viewer, f"person:{own}")
        return Focus(Choice("", "everyone", ""), viewer.people)
    kind, _, value = show.partition(":")
    if kind == "person" and value.isdigit() and 1 <= int(value) <= MAX_ID:
        person = int(value)
        if not viewer.sees(person):
            return None
        rows = session.execute(people_listing(person_id=person).stmt).all()
        if not rows:
            return None
        row: Any = rows[0]
        return Focus(Choice(show, "person", row.name or row.email or value),
                     frozenset({person}))
    if kind == "team" and value and len(value) <= MAX_TEAM and viewer.role != Role.REP:
        members = set(session.execute(team_members(value)).scalars())
        if viewer.people is not None:
            members &= viewer.people
        if not members:
            return None
        return Focus(Choice(show, "team", value), frozenset(members))
    return None


def signed_focus(request: Request, session: Session,
                 show: str) -> tuple[SignedIn, Focus] | Response:
    """The signed-in user and the slice `show` names among what they see; or the answer to
    give instead: off to sign in, or 404 for a slice they may not see."""
    signed = guard.current(request)
    if signed is None:
        return guard.to_login(request)
    focus = choose(session, signed.viewer, show)
    if focus is None:
        return error_page(request, 404, "error.not_found.title",
                          text(language(request), "error.not_found"), signed=signed)
    return signed, focus


def deal_links(session: Session, rows: list[dict[str, Any]]) -> dict[int, str]:
    """deal id -> the deal's page in its CRM, for the deals whose connector builds one
    (api.connections.crm_links)."""
    link = crm_links(session)
    return {int(row["id"]): url for row in rows if (url := link(row)) is not None}


__all__ = ["Choice", "Focus", "choices", "choose", "deal_links", "label", "signed_focus"]
