"""`crmsync --help` lists every command with its help line without importing the commands
(cli/main.py, COMMANDS): the same listing as with each command imported."""

import json
import os
import subprocess
import sys

from cli.main import COMMANDS
from connectors.registry import providers_with

LISTINGS = """
import contextlib, io, json, sys
from typer.core import TyperGroup
from cli import main

def listing():
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        main.main(["--help"])
    return out.getvalue()

lazy = listing()
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("api", "workers")
                  or m in {c.target.split(":")[0] for c in main.COMMANDS.values()})
main.Root.format_help = TyperGroup.format_help  # every command imported to be listed
print(json.dumps({"lazy": lazy, "imported": imported, "eager": listing(),
                  "loaded": sorted(m for m in sys.modules if m.startswith("cli."))}))
"""


def test_the_listing_imports_no_command_and_equals_the_listing_of_the_imported_commands():
    done = subprocess.run([sys.executable, "-c", LISTINGS], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["imported"] == []
    assert "cli.demo" in found["loaded"] and "cli.run" in found["loaded"]  # the eager one
    assert found["lazy"] == found["eager"]
    lines = found["lazy"].splitlines()
    for name, command in COMMANDS.items():
        assert any(f"│ {name} " in line and command.help in line for line in lines), name
    for provider in providers_with("commands"):
        assert any(line.startswith(f"│ {provider} ") for line in lines), provider
