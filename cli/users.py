"""`crmsync users ...`: the people who sign in to the dashboard (docs/dashboard.md), their
roles, and one-time links to set a password (no mail server: the command prints the link)."""

from typing import Annotated

import typer
from rich.table import Table

from cli.context import checked_context
from cli.output import console, fail, when
from core import accounts
from core.accounts import AccountError, LinkPurpose
from core.config import Settings
from core.db import session_scope

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
LOCAL_URL = "http://127.0.0.1:8000"


def site_url(settings: Settings) -> str:
    """Where people open the dashboard: CRMSYNC_PUBLIC_URL, else the local default."""
    return (settings.public_url or LOCAL_URL).rstrip("/")


def welcome_url(site: str, token: str) -> str:
    """The page of `site` where a one-time link's holder sets their password."""
    return f"{site}/welcome/{token}"



@app.command("add")
def users_add(
    email: Annotated[str, typer.Option(help="The email they sign in with.")],
    role: Annotated[str, typer.Option(
        help="admin (everything), manager (their teams, or everyone) or rep (their own "
        "numbers only).")],
    name: Annotated[str, typer.Option(help="Their name, as the dashboard shows it.")] = "",
    person: Annotated[int | None, typer.Option(
        help="Their person (crmsync people list); a rep defaults to the person with their "
        "email.")] = None,
    team: Annotated[list[str] | None, typer.Option(
        help="A team a manager sees (repeatable; none: every team).")] = None,
) -> None:
    """Add a dashboard user and print their invitation link (it works once, for 3 days)."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            user = accounts.add_user(session, email=email, role=role, name=name,
                                     person_id=person, teams=team or None)
            token = accounts.create_link(session, user, LinkPurpose.INVITE)
    except AccountError as exc:
        raise fail(str(exc)) from None
    console.print(f"added {user.email} ({user.role}); their one-time link to set a password:")
    print(welcome_url(site_url(ctx.settings), token))


def _new_link(email: str, purpose: LinkPurpose) -> None:
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            user = accounts.find_user(session, email)
            token = accounts.create_link(session, user, purpose)
    except AccountError as exc:
        raise fail(str(exc)) from None
    console.print(f"one-time link for {user.email} (earlier links stop working):")
    print(welcome_url(site_url(ctx.settings), token))


@app.command("invite")
def users_invite(email: Annotated[str, typer.Argument(help="The user's email.")]) -> None:
    """Print a fresh invitation link (for a user whose link expired or got lost)."""
    _new_link(email, LinkPurpose.INVITE)


@app.command("reset")
def users_reset(email: Annotated[str, typer.Argument(help="The user's email.")]) -> None:
    """Print a one-time link to set a new password (the old one works until it is used)."""
    _new_link(email, LinkPurpose.RESET)


@app.command("list")
def users_list() -> None:
    """Dashboard users: role, person, teams, whether they have a password, last sign-in."""
    ctx = checked_context()
    table = Table(title="dashboard users")
    table.add_column("email", no_wrap=True)
    for column in ("name", "role", "person", "teams", "password", "last sign-in", "disabled"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for user in accounts.list_users(session):
            table.add_row(user.email, user.name, user.role,
                          str(user.person_id) if user.person_id is not None else "",
                          ", ".join(user.teams) if user.teams is not None else
                          ("all" if user.role == accounts.Role.MANAGER else ""),
                          "set" if user.password_hash else "not yet",
                          when(user.last_login_at), when(user.disabled_at))
    console.print(table)


@app.command("disable")
def users_disable(email: Annotated[str, typer.Argument(help="The user's email.")]) -> None:
    """Disable a user: they are signed out now and cannot sign in any more."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            user = accounts.find_user(session, email)
            accounts.disable_user(session, user)
    except AccountError as exc:
        raise fail(str(exc)) from None
    console.print(f"disabled {user.email}: signed out, and can no longer sign in")
