"""`crmsync goals ...` and the demo's goals, as a user runs them (own process, fresh directory)."""

import json
import re
from decimal import Decimal

from connectors.registry import sandboxes
from tests.integration.test_cli import crmsync


def test_demo_sets_and_pushes_goals_then_the_goals_commands(tmp_path, demo_store):
    # the store `crmsync demo --no-serve` left (tests/integration/conftest.py), a copy
    demo = demo_store
    demo_store.copy_to(tmp_path)
    out = re.sub(r"\s+", " ", demo.stdout)
    found = re.search(r"goals for (\S+) to (\S+): (\d+) new", out)
    assert found is not None, demo.stdout
    # every CRM with a sandbox: each takes the goals of its own reps, skips the others'
    pushed = re.findall(r"connection \d+: (\d+) inserted(?:, (\d+) skipped)?;?", out)
    assert len(pushed) == len(sandboxes()), out
    assert "error" not in out.split("pushed to the CRMs")[1].split("leaderboard")[0], out
    assert all(int(i) + int(s or 0) == int(found.group(3)) != 0 for i, s in pushed)
    assert "leaderboard" in demo.stdout and "attainment" in demo.stdout

    # the demo's commission plan: the top payout it prints is the statements' largest
    shown = re.search(r"commissions (\S+), plan demo-sales \((\d+) reps\)", out)
    assert shown is not None, demo.stdout
    top = re.search(r"commissions .*? payout .*?│ [^│]+ │ [^│]+ │ [^│]+ │ ([\d,.]+) ", out)
    assert top is not None, out
    listed = crmsync(tmp_path, "statements", "show", "--period", shown.group(1),
                     "--format", "json")
    assert listed.returncode == 0, listed.stderr
    payouts = [Decimal(str(s["payout"])) for s in json.loads(listed.stdout)["data"]]
    assert len(payouts) == int(shown.group(2)) == int(found.group(3))
    assert max(payouts) == Decimal(top.group(1).replace(",", "")) > 0

    again = crmsync(tmp_path, "goals", "push")  # nothing changed: no CRM call is needed
    assert again.returncode == 0, again.stderr
    assert "unchanged" in again.stdout and "inserted" not in again.stdout

    start, end = found.group(1), found.group(2)
    bad = tmp_path / "bad.csv"
    bad.write_text("owner_email,metric,period_start,period_end,target\n"
                   f"nobody@example.com,bookings,{start},{end},100\n"
                   f",bookings,{end},{start},100\n")
    done = crmsync(tmp_path, "goals", "import", str(bad))
    assert done.returncode == 2
    assert "line 2: owner_email" in done.stderr and "line 3: period_end" in done.stderr
    assert "nothing was imported" in done.stderr

    good = tmp_path / "good.csv"
    good.write_text("owner_email,metric,period_start,period_end,target\n"
                    f",deals_won,{start},{end},40\n")
    done = crmsync(tmp_path, "goals", "import", str(good))
    assert done.returncode == 0, done.stderr
    assert "1 created, 0 updated, 0 unchanged" in done.stdout
    missing = crmsync(tmp_path, "goals", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
