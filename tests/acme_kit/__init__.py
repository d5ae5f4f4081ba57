"""A connector written outside crmsync, for the tests that install it the way pip would.

`acmecrm/` is a fictional CRM's connector package with the layout docs/connectors.md
describes (wire, mapping, client, connector, sandbox on the kit in connectors/sandbox/).
It is never imported from here: `install()` copies it into a directory, next to a
dist-info that registers its entry point, and that directory goes on the path.
"""

import shutil
from pathlib import Path

from connectors.registry import GROUP

PACKAGE = Path(__file__).parent / "acmecrm"
ENTRY_POINT = "acme = acmecrm.connector:AcmeConnector"


def install(directory: Path) -> Path:
    """`acmecrm` and `acmecrm-0.1.dist-info` in `directory`: importable and registered
    for any Python with `directory` on its path (importlib.metadata reads dist-info
    directories on sys.path). Returns `directory`."""
    shutil.copytree(PACKAGE, directory / "acmecrm",
                    ignore=shutil.ignore_patterns("__pycache__"))
    info = directory / "acmecrm-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acmecrm\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{ENTRY_POINT}\n")
    return directory
