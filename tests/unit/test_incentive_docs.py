"""The worked examples of docs/incentives.md, computed: each example's plan, deals and
expected figures are read from the page itself, so the page and the code cannot drift."""

import re
from datetime import date
from decimal import Decimal as D
from pathlib import Path

import pytest

from core.db import session_scope
from core.incentives import periods
from tests.incentive_support import SETTINGS, apply, company, deal, one, set_deal, upsert

DOC = Path(__file__).parents[2] / "docs" / "incentives.md"
EXAMPLE = re.compile(r"<!-- example: (\w+) -->\n(.*?)<!-- /example -->", re.S)


def example(name: str) -> tuple[str, list[list[list[str]]]]:
    """The example's plan (its YAML block) and its tables (rows of cells, no header)."""
    body = dict(EXAMPLE.findall(DOC.read_text(encoding="utf-8")))[name]
    plan = body.split("```yaml\n", 1)[1].split("```", 1)[0]
    tables: list[list[list[str]]] = []
    previous = ""
    for line in body.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if not previous.startswith("|"):
                tables.append([])  # a new table: this is its header
            else:
                tables[-1].append(cells)
        previous = line
    return plan, tables


def number(text: str) -> D:
    return D(text.replace(",", "").replace("−", "-"))


def seeded(engine, name: str):  # type: ignore[no-untyped-def]
    plan, tables = example(name)
    c = company(engine)
    apply(engine, plan)
    upsert(engine, c.crm_a, "deals", [deal(remote, str(number(amount)),
                                           date.fromisoformat(close))
                                      for remote, close, amount in tables[0]])
    return c, tables


@pytest.mark.parametrize("name,period", [("flat", "2027-01"), ("tiers", "2027-Q1")])
def test_the_statement_examples(sqlite_engine, name: str, period: str) -> None:  # type: ignore[no-untyped-def]
    c, tables = seeded(sqlite_engine, name)
    statement = one(sqlite_engine, period, c.people["ann"])
    expected = [(kind, remote or None, number(amount)) for kind, remote, amount in tables[1]]
    got = [(line["kind"], line["deal_remote_id"], line["commission"])
           for line in statement["lines"]] + [("payout", None, statement["payout"])]
    assert got == expected


def test_the_draw_and_clawback_example(sqlite_engine) -> None:  # type: ignore[no-untyped-def]
    c, tables = seeded(sqlite_engine, "draw")
    with session_scope(sqlite_engine) as session:
        periods.lock(session, SETTINGS, "2027-01", today=date(2027, 2, 1))
    set_deal(sqlite_engine, "d1", status="lost")
    with session_scope(sqlite_engine) as session:
        periods.record_adjustments(session, SETTINGS, today=date(2027, 2, 20))
    got = [[label, *(str(one(sqlite_engine, label, c.people["ann"])[key])
                     for key in ("earned", "payout", "draw_balance"))]
           for label in ("2027-01", "2027-02", "2027-03")]
    assert [[row[0], *map(number, row[1:])] for row in got] == \
        [[row[0], *map(number, row[1:])] for row in tables[1]]
