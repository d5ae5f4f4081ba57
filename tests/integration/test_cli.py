"""The command line as a user runs it: in a fresh directory, in its own process."""

import json
import os
import re
import subprocess
import sys

import pytest


def crmsync(tmp_path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["COLUMNS"] = "120"
    return subprocess.run([sys.executable, "-m", "api.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_demo_on_a_fresh_directory_syncs_and_prints_a_key_and_calls(tmp_path):
    done = crmsync(tmp_path, "demo", "--no-serve", "--deals", "400")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "full sync" in out and "synced into the store" in out
    key = re.search(r"csk_[A-Za-z0-9_-]+", out)
    assert key is not None
    assert out.count(f"Bearer {key.group(0)}") == 4  # four copy-paste calls
    assert (tmp_path / "crmsync.db").exists()
    assert oct((tmp_path / "crmsync.db.key").stat().st_mode & 0o777) == "0o600"

    again = crmsync(tmp_path, "demo", "--no-serve", "--deals", "400")  # reuses the store
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
    env_url = "postgresql://postgres@127.0.0.1:5432/test"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSYNC_")}
    env["CRMSYNC_DATABASE_URL"] = env_url
    done = subprocess.run([sys.executable, "-m", "api.cli", "serve"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "CRMSYNC_SECRET_KEY must be set" in done.stderr
