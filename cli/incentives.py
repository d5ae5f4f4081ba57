"""`crmsync plans ...`, `crmsync statements ...`, `crmsync periods ...`: commission plans,
statements and closing periods (docs/incentives.md)."""

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from api.listing import csv_stream, dumps, xlsx_stream
from cli.context import checked_context
from cli.output import console, err, fail
from core import people
from core.db import session_scope
from core.incentives import periods, statements
from core.incentives.calendar import PeriodInvalid, parse_period
from core.incentives.plans import PlanInvalid
from core.metrics.currency import CurrencyError
from core.metrics.periods import today
from core.people import PersonError

plans_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
statements_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
periods_app = typer.Typer(no_args_is_help=True)  # its help: COMMANDS in cli/main.py
FORMATS = ("table", "json", "csv", "xlsx")


@plans_app.command("apply")
def plans_apply(file: Annotated[Path, typer.Argument(help="The plan, YAML or JSON.")]) -> None:
    """Create or change a plan from a file (a new version when it differs)."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise fail(f"cannot read {file} ({type(exc).__name__})") from None
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            stored, changed = statements.save_plan(session, text)
    except PlanInvalid as exc:
        for item in exc.errors:
            where = f"line {item['line']}: " if item.get("line") else ""
            err.print(f"{file}: {where}{item['field']}: {item['message']}")
        raise fail(f"{file} is not a valid plan; nothing was changed") from None
    state = "saved as version" if changed else "unchanged at version"
    console.print(f"plan {stored.key}: {state} {stored.version}")


@plans_app.command("list")
def plans_list() -> None:
    """The plans and their current versions."""
    ctx = checked_context()
    table = Table(title="commission plans")
    for column in ("key", "name", "version", "period", "currency", "members", "effective"):
        table.add_column(column)
    with session_scope(ctx.engine) as session:
        for stored in statements.list_plans(session):
            plan = stored.plan
            members = f"team {plan.team}" if plan.team else ", ".join(plan.people)
            table.add_row(stored.key, plan.name, str(stored.version), plan.period,
                          plan.currency, members,
                          f"{plan.effective_from} .. {plan.effective_to or ''}")
    console.print(table)


@statements_app.command("show")
def statements_show(
    period: Annotated[str, typer.Option(help="2027-01, 2027-Q1 or 2027.")],
    person: Annotated[str | None, typer.Option(help="A person id or email.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json, csv or xlsx.")] = "table",
    output: Annotated[Path | None, typer.Option(help="Write to this file (xlsx: needed "
                                                "unless stdout is redirected).")] = None,
) -> None:
    """The statements of a period (every person's, or one person's)."""
    if fmt not in FORMATS:
        raise fail(f"--format must be one of {', '.join(FORMATS)}")
    ctx = checked_context()
    settings = ctx.settings
    try:
        the_period = parse_period(period, settings.fiscal_year_start_month)
        with session_scope(ctx.engine) as session:
            person_id = people.resolve(
                session, person_id=int(person) if person and person.isdigit() else None,
                email=person if person and not person.isdigit() else None)
            if not periods.is_locked(session, the_period.label):
                periods.record_adjustments(session, settings, today=today(settings))
            data = statements.statements(session, settings, the_period, person_id=person_id)
    except (PeriodInvalid, PersonError, CurrencyError) as exc:
        raise fail(str(exc).removeprefix("owner_email: ").removeprefix("person_id: ")) from None
    _write(data, fmt, output, the_period.label)


def _write(data: list[dict[str, object]], fmt: str, output: Path | None, label: str) -> None:
    rows = list(statements.rows(data))
    if fmt == "xlsx":
        if output is None and sys.stdout.isatty():
            raise fail("--format xlsx writes a workbook: give --output FILE or redirect stdout")
        chunks = xlsx_stream(rows, statements.COLUMNS, f"statements-{label}")
        with (output.open("wb") if output else sys.stdout.buffer) as out:
            for chunk in chunks:
                out.write(chunk)
        return
    text = dumps({"data": data}) + "\n" if fmt == "json" else \
        "".join(csv_stream(rows, statements.COLUMNS)) if fmt == "csv" else None
    if text is not None:
        if output is not None:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return
    for item in data:
        _print_statement(item)
    if not data:
        console.print(f"no statements for {label} (no plan of this period in effect, or "
                      "no members)")


def _print_statement(item: dict[str, object]) -> None:
    table = Table(title=f"{item['name']} <{item['email'] or ''}> — {item['plan_key']} "
                  f"v{item['plan_version']} — {item['period']}"
                  + (" (locked)" if item["locked"] else ""))
    for column in ("line", "deal", "close", "amount", "rate / bands", "commission"):
        table.add_column(column)
    lines = item["lines"]
    assert isinstance(lines, list)
    for line in lines:
        bands = line.get("bands") or []
        rate = str(line["rate"]) if line.get("rate") is not None else "; ".join(
            f"{b['amount']} x {b['rate']}" for b in bands)
        label = line["kind"] + (f" {line['name']}" if line.get("name") else "") + \
            (f" ({line['period']}: {line['reason']})" if line.get("reason") else "")
        table.add_row(label, line.get("deal_remote_id") or "", str(line.get("close_date") or ""),
                      str(line.get("amount") or ""), rate, str(line["commission"]))
    console.print(table)
    console.print(f"measure {item['measure']} {item['currency']}, quota {item['quota']}, "
                  f"attainment {item['attainment']}; earned {item['earned']}, "
                  f"payout {item['payout']}, draw balance {item['draw_balance']}"
                  + (f"; {item['note']}" if item["note"] else ""))


@periods_app.command("lock")
def periods_lock(period: Annotated[str, typer.Argument(help="2027-01, 2027-Q1 or 2027.")]) -> None:
    """Close a period: snapshot every statement of it; later changes become adjustments."""
    ctx = checked_context()
    try:
        with session_scope(ctx.engine) as session:
            done = periods.lock(session, ctx.settings, period, today=today(ctx.settings))
    except (PeriodInvalid, periods.PeriodLocked, CurrencyError) as exc:
        raise fail(str(exc)) from None
    console.print(f"period {done.period.label} locked: {done.statements} statements, "
                  f"{done.adjustments} adjustments of earlier periods recorded")
