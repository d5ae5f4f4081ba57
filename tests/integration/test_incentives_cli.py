"""`crmsync plans apply|list`, `crmsync statements show`, `crmsync periods lock` in a
subprocess on an embedded store (docs/incentives.md): outputs and exit codes (a failure is
one line on stderr and exit code 2)."""

import csv
import io
import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from core.db import make_engine, upgrade
from tests.incentive_support import AE_PLAN, apply, company, deal, goal, upsert
from tests.integration.test_cli import crmsync


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ann's Q1 2027 (40,000 USD and 20,000 EUR = 22,000 USD) and her 100,000 goal."""
    path = tmp_path_factory.mktemp("cli") / "crmsync.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    c = company(engine)
    upsert(engine, c.crm_a, "deals", [deal("d1", "40000", date(2027, 1, 10))])
    upsert(engine, c.crm_b, "deals", [deal("e1", "20000", date(2027, 2, 1))])
    goal(engine, "ann@example.com", date(2027, 1, 1), date(2027, 3, 31), "100000")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def store(template: Path, directory: Path, *, plan: bool = True) -> Path:
    shutil.copyfile(template, directory / "crmsync.db")
    if plan:
        engine = make_engine(f"sqlite:///{directory / 'crmsync.db'}")
        apply(engine, AE_PLAN)
        engine.dispose()
    return directory


def test_plans_apply_and_list(template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store(template, tmp_path, plan=False)
    (tmp_path / "plan.yaml").write_text(AE_PLAN)
    (tmp_path / "bad.yaml").write_text(AE_PLAN.replace("rate: 0.05", "rate: lots"))
    bad = crmsync(tmp_path, "plans", "apply", "bad.yaml")
    assert bad.returncode == 2
    assert "bad.yaml: line 11: tiers[1].rate: must be a number" in bad.stderr
    assert bad.stderr.strip().endswith("bad.yaml is not a valid plan; nothing was changed")
    applied = crmsync(tmp_path, "plans", "apply", "plan.yaml")
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.strip() == "plan ae-2027: saved as version 1"
    listed = crmsync(tmp_path, "plans", "list")
    assert listed.returncode == 0 and "ae-2027" in listed.stdout and "team East" in listed.stdout


def test_statements_show_as_json_csv_and_xlsx(template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store(template, tmp_path)
    shown = crmsync(tmp_path, "statements", "show", "--period", "2027-Q1", "--person",
                    "ann@example.com", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    ann = json.loads(shown.stdout)["data"][0]
    # 40,000 x 2 % + (10,000 x 2 % + 12,000 x 5 %)
    assert [line["commission"] for line in ann["lines"]] == [800, 800]
    as_csv = crmsync(tmp_path, "statements", "show", "--period", "2027-Q1", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["email"], r["kind"], r["commission"]) for r in rows] == [
        ("ann@example.com", "deal", "800.00"), ("ann@example.com", "deal", "800.00"),
        ("ann@example.com", "payout", "1600.00"), ("bob@example.com", "payout", "0.00")]
    book = crmsync(tmp_path, "statements", "show", "--period", "2027-Q1", "--format", "xlsx",
                   "--output", "q1.xlsx")
    assert book.returncode == 0, book.stderr
    import openpyxl  # not at collection (api.listing imports it when writing a workbook)

    sheet = openpyxl.load_workbook(tmp_path / "q1.xlsx").active
    assert sheet is not None and sheet.max_row == 5
    failed = crmsync(tmp_path, "statements", "show", "--period", "2027-Q5")
    assert failed.returncode == 2 and "is not a period label" in failed.stderr


def test_periods_lock(template, tmp_path) -> None:  # type: ignore[no-untyped-def]
    store(template, tmp_path)
    locked = crmsync(tmp_path, "periods", "lock", "2027-Q1")
    assert locked.returncode == 0, locked.stderr
    assert "period 2027-Q1 locked: 2 statements" in locked.stdout
    twice = crmsync(tmp_path, "periods", "lock", "2027-Q1")
    assert twice.returncode == 2 and "is locked already" in twice.stderr
    table = crmsync(tmp_path, "statements", "show", "--period", "2027-Q1")
    assert table.returncode == 0 and "(locked)" in table.stdout
    assert "payout 1600.00" in table.stdout
