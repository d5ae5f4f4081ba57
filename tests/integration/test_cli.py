"""The command line as a user runs it: in a fresh directory, with a user's environment (in
this process, tests/cli_support.py; the serve and sandbox commands in their own)."""

import json
import re
import subprocess
import sys
import time

import httpx
import pytest

from connectors.registry import sandboxes
from connectors.sandbox.server import free_port
from tests.cli_support import console_script, in_process, user_env


def crmsync(tmp_path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` in directory tmp_path, in this process (tests/cli_support.py; the
    timeout of the subprocess it was is kept for callers, and not needed)."""
    return in_process(args, cwd=tmp_path, env=user_env(COLUMNS="120"))


def test_demo_on_a_fresh_directory_syncs_and_prints_a_key_and_calls(tmp_path, demo_store):
    # the demo on a fresh directory (once per test process: tests/integration/conftest.py),
    # then again on a copy of the store it left. --port 0: the demo holds its port while it
    # runs; 8000 may be taken (a parallel test, a developer's demo)
    demo_store.copy_to(tmp_path)
    out = demo_store.stdout
    assert "full sync" in out and "synced into the store" in out
    key = re.search(r"csk_[A-Za-z0-9_-]+", out)
    assert key is not None
    assert out.count(f"Bearer {key.group(0)}") == 4  # four copy-paste calls
    assert (demo_store.directory / "crmsync.db").exists()
    assert oct((demo_store.directory / "crmsync.db.key").stat().st_mode & 0o777) == "0o600"

    again = crmsync(tmp_path, "demo", "--no-serve", "--port", "0",
                    "--deals", "400")  # reuses the store
    assert again.returncode == 0, again.stderr

    missing = crmsync(tmp_path, "sync", "--connection", "99")
    assert missing.returncode == 2 and "no such connection" in missing.stderr


def test_apikey_create_prints_only_the_key(tmp_path):
    done = crmsync(tmp_path, "apikey", "create", "--name", "bi", "--scope", "read")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"csk_[A-Za-z0-9_-]+\n", done.stdout)
    bad = crmsync(tmp_path, "apikey", "create", "--name", "x", "--scope", "root")
    assert bad.returncode == 2 and "scopes must be" in bad.stderr


@pytest.mark.parametrize("args, message", [
    (["--config", "dc=mars"], "config.dc"),
    (["--config", "nonsense"], "key=value"),
    (["--secret", "client_id=abc"], "secrets.client_secret"),
])
def test_connections_add_refuses_bad_settings_without_echoing_secrets(tmp_path, args, message):
    done = crmsync(tmp_path, "connections", "add", "zoho", "--name", "z",
                   "--secret", "refresh_token=TOPSECRET123", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "TOPSECRET123" not in done.stdout + done.stderr


def test_connections_add_prints_the_connection_without_secrets(tmp_path):
    done = crmsync(tmp_path, "connections", "add", "zoho", "--name", "Zoho EU", "--no-check",
                   "--config", "dc=eu", "--secret", "client_id=cid",
                   "--secret", "client_secret=TOPSECRET123", "--secret", "refresh_token=rt")
    assert done.returncode == 0, done.stderr
    connection = json.loads(done.stdout)
    assert connection["provider"] == "zoho" and connection["config"]["dc"] == "eu"
    assert connection["secrets_set"] == ["client_id", "client_secret", "refresh_token"]
    assert "TOPSECRET123" not in done.stdout


def test_serve_without_a_secret_key_on_postgresql_says_what_to_do(tmp_path):
    env = user_env(CRMSYNC_DATABASE_URL="postgresql://postgres@127.0.0.1:5432/test")
    done = in_process(["serve"], cwd=tmp_path, env=env)
    assert done.returncode == 2
    assert "CRMSYNC_SECRET_KEY must be set" in done.stderr


def test_the_console_script_lists_the_commands_and_touches_nothing(tmp_path):
    """The installed entry point in its own process: help, exit code 0, and importing the
    command line creates no store, key file or anything else in the directory."""
    for args in (["--help"], ["sandbox", "--help"]):
        done = console_script(args, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert "Usage: crmsync" in done.stdout and done.stderr == ""
    assert "connections" in done.stdout or "Run a simulated CRM" in done.stdout
    assert list(tmp_path.iterdir()) == []
    unknown = console_script(["no-such-command"], cwd=tmp_path)
    assert unknown.returncode == 2 and "No such command" in unknown.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.timeout(600)  # one CLI start per registered sandbox, each a few seconds
def test_every_registered_sandbox_is_a_command_with_its_options(tmp_path):
    declared = sandboxes()
    listed = crmsync(tmp_path, "sandbox", "--help")
    assert listed.returncode == 0, listed.stderr
    assert set(declared) <= set(re.findall(r"│ (\w+)\s{2,}", listed.stdout)), listed.stdout
    demo = crmsync(tmp_path, "demo", "--help")
    for provider, sandbox in declared.items():
        shown = crmsync(tmp_path, "sandbox", provider, "--help")
        assert shown.returncode == 0, shown.stderr
        assert f"[default: {sandbox.default_port}]" in shown.stdout
        for option in sandbox.options:
            assert f"--{option.name}" in shown.stdout
            assert (f"--{provider}-{option.name}" in demo.stdout) == option.demo
    assert "--zoho-one-currency" in demo.stdout  # kept from before the registry built it


def test_a_sandbox_command_serves_its_sandbox(tmp_path):
    """Each sandbox command as its own process (a server that keeps running), all started
    at once: each spends seconds importing, which they do side by side."""
    ports = {provider: free_port() for provider in sandboxes()}
    processes = {provider: subprocess.Popen(
        [sys.executable, "-m", "cli", "sandbox", provider, "--port", str(port),
         "--deals", "50"], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
        for provider, port in ports.items()}
    try:
        deadline = time.monotonic() + 90
        for provider, port in ports.items():
            stats = None
            while stats is None and time.monotonic() < deadline:
                try:
                    stats = httpx.get(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=1)
                except httpx.TransportError:
                    time.sleep(0.05)
            assert stats is not None and stats.status_code == 200, provider
    finally:
        for process in processes.values():
            process.terminate()
        outputs = {provider: process.communicate(timeout=10)[0]
                   for provider, process in processes.items()}
    for provider, port in ports.items():
        out = outputs[provider]
        assert f"127.0.0.1:{port}" in out and "CRMSYNC_ALLOW_ENDPOINTS" in out, out
