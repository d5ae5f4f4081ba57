"""`crmsync hygiene ...`: open deals that break a sales hygiene rule, their counts per rep,
and the rules' settings (docs/evaluation.md#hygiene)."""

from typing import Annotated

import typer
from rich.table import Table

from api.connections import crm_links
from cli.context import checked_context
from cli.output import console, fail
from core.db import session_scope
from core.hygiene import HygieneError, hygiene_items, hygiene_summary, rules, set_rule
from core.queries import fetch_page

app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py

Connection = Annotated[int | None, typer.Option(help="Connection id (default: all).")]
Team = Annotated[str | None, typer.Option(help="Only this team's people.")]


@app.command("summary")
def hygiene_summary_command(connection: Connection = None, team: Team = None) -> None:
    """Open deals breaking each rule, per rep, per team and in all."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        found = hygiene_summary(session, settings=ctx.settings, connection_id=connection,
                                team=team)
    keys = found["rules"]
    table = Table(title=f"sales hygiene on {found['today']}")
    for column in ("person", "rep", "team", *keys, "deals"):
        table.add_column(column, justify="right" if column in (*keys, "deals") else "left")
    for row in found["data"]:
        table.add_row(str(row["person_id"] or ""), row["owner_name"] or "(no owner)",
                      row["team"] or "", *(str(row["counts"][k]) for k in keys),
                      str(row["total"]))
    for row in found["teams"]:
        table.add_row("", "", f"team {row['team']}" if row["team"] else "no team",
                      *(str(row["counts"].get(k, 0)) for k in keys), str(row["total"]))
    total = found["total"]
    table.add_row("", "total", "", *(str(total["counts"].get(k, 0)) for k in keys),
                  str(total["total"]))
    console.print(table)


@app.command("list")
def hygiene_list(
    rule: Annotated[str | None, typer.Option(help="Only deals breaking this rule.")] = None,
    person: Annotated[int | None, typer.Option(help="Only this owner's (person id).")] = None,
    team: Team = None, connection: Connection = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many.")] = 100,
) -> None:
    """Open deals breaking a rule, with the rules each breaks and its page in the CRM."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            listing = hygiene_items(session, settings=ctx.settings, connection_id=connection,
                                    owner_person_id=person, team=team, rule=rule)
            rows, more = fetch_page(session, listing, after=None, limit=limit)
            link = crm_links(session)
    except HygieneError as exc:
        raise fail(str(exc)) from None
    table = Table(title="open deals breaking a hygiene rule")
    for column in ("deal", "name", "rep", "rules", "close date", "CRM link"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["name"], row["owner_name"] or "",
                      ", ".join(row["rules"]), str(row["close_date"] or ""), link(row) or "")
    console.print(table)
    if more is not None:
        console.print(f"(the first {limit}; --limit shows more)")


@app.command("rules")
def hygiene_rules() -> None:
    """The rules, on or off, and their thresholds."""
    ctx = checked_context()
    with session_scope(ctx.engine) as session:
        states = rules(session)
    table = Table(title="hygiene rules")
    for column in ("rule", "on", "threshold", "default", "what it flags"):
        table.add_column(column)
    for state in states:
        spec = state.spec
        table.add_row(spec.key, "yes" if state.enabled else "no",
                      f"{state.threshold} {spec.unit}" if spec.unit else "",
                      f"{spec.default} {spec.unit}" if spec.unit else "", spec.description)
    console.print(table)


@app.command("set")
def hygiene_set(
    rule: Annotated[str, typer.Argument(help="The rule's key (crmsync hygiene rules).")],
    on: Annotated[bool | None, typer.Option("--on/--off", help="Switch it on or off.")] = None,
    threshold: Annotated[int | None, typer.Option(help="Days (stale) or percentage points "
                                                   "(probability_mismatch).")] = None,
    default: Annotated[bool, typer.Option("--default", help="Back to the default "
                                          "threshold.")] = False,
) -> None:
    """Switch a rule on or off, or set its threshold; the next check uses it (no restart)."""
    changes: dict[str, object] = {}
    if on is not None:
        changes["enabled"] = on
    if threshold is not None or default:
        if threshold is not None and default:
            raise fail("give --threshold or --default, not both")
        changes["threshold"] = threshold
    if not changes:
        raise fail("give --on, --off, --threshold or --default")
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            state = set_rule(session, rule, changes)
    except HygieneError as exc:
        raise fail(str(exc)) from None
    unit = f" {state.spec.unit}" if state.spec.unit else ""
    console.print(f"{state.key}: {'on' if state.enabled else 'off'}"
                  + (f", threshold {state.threshold}{unit}" if state.spec.unit else ""))
