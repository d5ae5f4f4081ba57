"""`crmsync people ...`: who each CRM user is, and mapping users to people by hand."""

import json
from typing import Annotated

import typer
from rich.table import Table

from cli.context import checked_context
from cli.output import console, fail
from core import people
from core.db import session_scope
from core.queries import iter_rows

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py


@app.command("list")
def people_list(
    unmatched: Annotated[bool, typer.Option(
        "--unmatched", help="Only CRM users no rule matched to anyone (to map by hand).")] = False,
) -> None:
    """People and their CRM users (or the unmatched CRM users)."""
    ctx = checked_context()
    if unmatched:
        table = Table(title="unmatched CRM users")
        for column in ("user", "connection", "remote id", "name", "email", "mobile", "person"):
            table.add_column(column)
        for row in iter_rows(ctx.engine, people.unmatched_listing()):
            table.add_row(*(str(row[c] if row[c] is not None else "") for c in (
                "id", "connection_id", "remote_id", "name", "email", "mobile", "person_id")))
    else:
        table = Table(title="people")
        for column in ("person", "name", "email", "mobile", "team", "CRM users"):
            table.add_column(column)
        with session_scope(ctx.engine) as session:
            rows = people.with_users(session, list(iter_rows(ctx.engine,
                                                             people.people_listing())))
        for row in rows:
            users = ", ".join(f"{u['id']} ({u['connection_id']}:{u['remote_id']}, "
                              f"{u['person_match']})" for u in row["users"])
            table.add_row(str(row["id"]), row["name"], row["email"] or "",
                          row["mobile"] or "", row["team"] or "", users)
    console.print(table)


@app.command("map")
def people_map(
    person_id: Annotated[int, typer.Argument(help="The person (crmsync people list).")],
    user: Annotated[int | None, typer.Option(help="The CRM user's id.")] = None,
    connection: Annotated[int | None, typer.Option(help="Or its connection id ...")] = None,
    remote_id: Annotated[str | None, typer.Option(help="... and its id in that CRM.")] = None,
) -> None:
    """Map a CRM user to a person by hand (syncs keep it); prints the person as JSON."""
    if (user is None) == (connection is None or not remote_id):
        raise fail("give --user, or --connection and --remote-id")
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            people.map_user(session, person_id, user_id=user, connection_id=connection,
                            remote_id=remote_id)
            person = people.get_person(session, person_id)
    except (people.PersonNotFound, people.PersonError) as exc:
        raise fail(str(exc)) from None
    console.print_json(json.dumps(person, default=str))
