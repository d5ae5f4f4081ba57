"""A connector from outside this repository, shipped the way a third party ships one:
the package in tests/acme_kit/ (a fictional CRM, its sandbox on the kit in
connectors/sandbox/) installed into a temporary directory next to a dist-info that
registers its entry point. With no file of crmsync changed, it passes the contract
suite, is a `crmsync sandbox` command, and syncs into a store (docs/connectors.md)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from sqlmodel import Session, select

from connectors.sandbox.server import free_port
from core.db import make_engine
from core.models import Deal
from tests.acme_kit import install

ROOT = Path(__file__).resolve().parents[2]
CRMSYNC = Path(sys.executable).with_name("crmsync")  # the console script, as users run it
SERIAL = ["-n", "0"] if importlib.util.find_spec("xdist") else []  # one process, no workers
UNUSED = ["-p", "no:schemathesis", "-p", "no:hypothesispytest"]
"""Plugins the contract suite does not use (importing Hypothesis: 0.8 of its 2.3 s of CPU)."""
TOKEN = "sandbox-token"  # the secrets of the package's sandbox (acmecrm/sandbox/__init__.py)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed package, as site-packages would."""
    return install(tmp_path_factory.mktemp("site"))


def with_site(site: Path) -> dict[str, str]:
    """This process's environment with `site` on the path of the processes it starts."""
    path = os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "COLUMNS": "120"}


def crmsync(site: Path, cwd: Path, *args: str, **settings: str
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in with_site(site).items() if not k.startswith("CRMSYNC_")}
    return subprocess.run([str(CRMSYNC), *args], cwd=cwd, env={**env, **settings},
                          capture_output=True, text=True, timeout=180)


def test_it_passes_the_contract_suite(site):
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *SERIAL, *UNUSED,
         "tests/contract", "-k", "acme"],
        cwd=ROOT, env=with_site(site), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    passed = re.findall(r"^PASSED (\S+)", done.stdout, re.MULTILINE)
    assert all(case.endswith("[acme]") for case in passed), done.stdout
    # registration, check, every stream, resume, incremental, deletions
    assert len(passed) >= 6, done.stdout


def test_it_is_a_sandbox_command(site, tmp_path):
    listed = crmsync(site, tmp_path, "sandbox", "--help")
    assert listed.returncode == 0, listed.stderr
    assert "acme" in re.findall(r"│ (\w+)\s{2,}", listed.stdout), listed.stdout
    shown = crmsync(site, tmp_path, "sandbox", "acme", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "[default: 8490]" in shown.stdout, shown.stdout


@pytest.fixture
def sandbox(site: Path, tmp_path: Path) -> Iterator[str]:
    """`crmsync sandbox acme` on a free port, started as a user starts it; its URL once it
    answers. Stopped when the test ends."""
    url = f"http://127.0.0.1:{(port := free_port())}"
    env = {k: v for k, v in with_site(site).items() if not k.startswith("CRMSYNC_")}
    process = subprocess.Popen([str(CRMSYNC), "sandbox", "acme", "--port", str(port),
                                "--deals", "300"], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/_sandbox/stats", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "the sandbox did not answer"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()


def stored_deals(store: Path, connection_id: int) -> dict[str, Deal]:
    engine = make_engine(f"sqlite:///{store}")
    try:
        with Session(engine) as session:
            return {d.remote_id: d for d in session.exec(
                select(Deal).where(Deal.connection_id == connection_id))}
    finally:
        engine.dispose()


def test_it_syncs_into_the_store(site, sandbox, tmp_path):
    store = tmp_path / "crmsync.db"
    settings = {"CRMSYNC_DATABASE_URL": f"sqlite:///{store}",
                "CRMSYNC_SECRET_KEY": Fernet.generate_key().decode(),
                "CRMSYNC_ALLOW_ENDPOINTS": "127.0.0.1"}
    added = crmsync(site, tmp_path, "connections", "add", "acme", "--name", "Acme",
                    "--config", f"base_url={sandbox}", "--secret", f"token={TOKEN}", **settings)
    assert added.returncode == 0, added.stderr
    connection = int(json.loads(added.stdout)["id"])
    synced = crmsync(site, tmp_path, "sync", "--connection", str(connection), **settings)
    assert synced.returncode == 0, synced.stdout + synced.stderr

    deals = stored_deals(store, connection)
    assert len(deals) == httpx.get(f"{sandbox}/_sandbox/stats").json()["deals"]
    for remote_id in sorted(deals)[::50]:
        crm = httpx.get(f"{sandbox}/_sandbox/deals/{remote_id}").json()
        assert (deals[remote_id].amount, deals[remote_id].currency) == (
            Decimal(str(crm["amount"])), crm["currency"])

    gone = sorted(deals)[7]  # deleted in the CRM: a tombstone after the next sync
    assert httpx.delete(f"{sandbox}/_sandbox/deals/{gone}").status_code == 200
    again = crmsync(site, tmp_path, "sync", "--connection", str(connection), **settings)
    assert again.returncode == 0, again.stdout + again.stderr
    after = stored_deals(store, connection)
    assert [r for r, d in after.items() if d.deleted_at is not None] == [gone]
