"""Every test here is marked `integration`: `pytest -m "not integration"` leaves them out.

The demo's store (`crmsync demo --no-serve`) is built once per test process (demo_store);
each module of the dashboard's browser tests works on a copy of it."""

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cli_support import in_process, user_env

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@dataclass(frozen=True)
class DemoStore:
    directory: Path  # the store and its key, as the demo left them; copy it (copy_to)
    stdout: str  # what the demo printed: its links, key and calls

    def copy_to(self, directory: Path) -> Path:
        shutil.copytree(self.directory, directory, dirs_exist_ok=True)
        return directory


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> DemoStore:
    """`crmsync demo --no-serve --deals 400` in a directory of its own, once per test
    process: the demo costs seconds of CPU (five sandboxes synced, goals pushed), and the
    modules of the dashboard's browser tests each start from the store it leaves."""
    directory = tmp_path_factory.mktemp("demo")
    done = in_process(["demo", "--no-serve", "--deals", "400", "--port", "0"], cwd=directory,
                      env=user_env(COLUMNS="120"))
    assert done.returncode == 0, done.stderr
    return DemoStore(directory, done.stdout)
