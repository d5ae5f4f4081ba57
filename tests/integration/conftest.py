"""Every test here is marked `integration`: `pytest -m "not integration"` leaves them out.

The demo's store (`crmsync demo --no-serve`) is built once per run (demo_store); each
module of the dashboard's browser tests works on a copy of it. Those modules share one
Chromium per test process (browser); each test opens a context of its own in it."""

import asyncio
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.cli_support import in_process, user_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser

HERE = Path(__file__).parent
CHROMIUM = Path("/usr/bin/chromium-headless-shell")


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
    """`crmsync demo --no-serve --deals 400` in a directory of its own, once per run: the
    demo costs seconds of CPU (five sandboxes synced, goals pushed), and the modules of the
    dashboard's browser tests each start from the store it leaves. Under pytest-xdist the
    first worker that needs it runs it and leaves a copy in the run's temporary directory;
    the others wait for that (a lock file) and read it."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return _demo(tmp_path_factory.mktemp("demo"))
    shared = tmp_path_factory.getbasetemp().parent / "demo-store"
    printed = shared.with_suffix(".stdout")  # written last: the copy is whole
    with shared.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not printed.exists():
            demo = _demo(tmp_path_factory.mktemp("demo"))
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            for name in ("crmsync.db", "crmsync.db.key"):  # not the -wal and -shm files
                shutil.copy2(demo.directory / name, shared / name)
            printed.write_text(demo.stdout)
    return DemoStore(shared, printed.read_text())


def _demo(directory: Path) -> DemoStore:
    done = in_process(["demo", "--no-serve", "--deals", "400", "--port", "0"], cwd=directory,
                      env=user_env(COLUMNS="120"))
    assert done.returncode == 0, done.stderr
    with closing(sqlite3.connect(directory / "crmsync.db")) as conn:  # all in the main file
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not busy
    return DemoStore(directory, done.stdout)


@pytest.fixture(scope="session")
def chromium() -> Iterator["Browser"]:
    """Debian's Chromium under Playwright, launched once per test process: a launch costs
    about 0.8 s of CPU (Chromium and Playwright's driver), paid once instead of once per
    module. Its headless shell (Chromium's old headless mode, what Playwright itself runs
    headless), not the whole browser in headless mode: the same pages and screenshots for
    about a third of the CPU a page (docs/testing.md). Take `browser`, which lends it to a
    module. Playwright is imported here, by the processes that run a browser test, not by
    every process that collects the suite (0.2-0.3 s of CPU)."""
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install it: apt-get install -y chromium-headless-shell"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        asyncio.events._set_running_loop(None)  # until a module borrows it (browser)
        yield launched
        asyncio.events._set_running_loop(launched._loop)
        launched.close()


@pytest.fixture(scope="module")
def browser(chromium: "Browser") -> Iterator["Browser"]:
    """The process's Chromium for one module's tests; each test opens its own context
    (`new_page`), and any context a test left open is closed after the module.

    Playwright's sync API leaves its event loop marked as running in this thread between
    calls, so no other event loop can run there (pytest-asyncio's, `asyncio.run`): the
    mark is set while a browser module runs, as when each module launched its own
    Chromium, and cleared after it, as when that Chromium was closed."""
    asyncio.events._set_running_loop(chromium._loop)
    yield chromium
    for context in chromium.contexts:
        context.close()
    asyncio.events._set_running_loop(None)
