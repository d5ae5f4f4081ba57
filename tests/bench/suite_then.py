"""The suite as it was at an earlier commit, run with today's code: how long the tests that
existed then take now.

Run: python -m tests.bench.suite_then [--commit 71d45d2] [--list-only]

The connector kit's target for the suite (CI at most half of the 206 s it took, no test
dropped) was set at 71d45d2, when the suite had 1,426 tests; later work added hundreds more
for other features (three connectors, the dashboard, incentives, evaluation). This collects
the suite at that commit (a temporary git worktree, this virtualenv), picks today's tests of
the same module file name and test function (a test moved between tiers, or given other
parameters, still counts; one whose function is gone is listed as gone), and runs them with
the suite's own options (pyproject.toml: the same workers), printing pytest's summary, the
wall time and the CPU time of the test processes. docs/testing.md has the figures.
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def collect(cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """The test ids pytest collects in `cwd` (one process, no workers)."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0",
         "-p", "no:cacheprovider"], cwd=cwd, env=env, capture_output=True, text=True,
        check=True).stdout
    return [line for line in out.splitlines() if "::" in line]


def function_key(test_id: str) -> str:
    """A test's module file name and function, without its directory or parameters."""
    path, _, name = test_id.partition("::")
    return f"{os.path.basename(path)}::{name.split('[')[0]}"


def then_ids(commit: str) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "then"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(tree), commit],
                       cwd=ROOT, check=True)
        try:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            return collect(tree, env)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                           check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commit", default="71d45d2")
    parser.add_argument("--list-only", action="store_true",
                        help="print the counts and the tests gone, run nothing")
    args = parser.parse_args()
    then = then_ids(args.commit)
    now = collect(ROOT)
    wanted = {function_key(test_id) for test_id in then}
    chosen = [test_id for test_id in now if function_key(test_id) in wanted]
    gone = sorted(wanted - {function_key(test_id) for test_id in now})
    print(f"{args.commit}: {len(then):,} tests; today: {len(now):,}, of which {len(chosen):,} "
          f"are of the same module and function")
    for key in gone:
        print(f"  gone since: {key}")
    if args.list_only:
        return
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as ids:
        ids.write("\n".join(chosen))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    code = subprocess.run(
        [sys.executable, "-c", "import sys, pytest; sys.exit(pytest.main(['-q', '-p', "
         "'no:cacheprovider', *open(sys.argv[1]).read().split('\\n')]))", ids.name],
        cwd=ROOT).returncode
    wall = time.monotonic() - started
    os.unlink(ids.name)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(f"{len(chosen):,} tests of {args.commit}'s suite: {wall:.1f} s wall, "
          f"{cpu:.0f} s of CPU (user + system of the test "
          f"processes; PostgreSQL's backends not included); load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    sys.exit(code)


if __name__ == "__main__":
    main()
