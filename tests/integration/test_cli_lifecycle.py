"""The command line over a connection's whole life, key rotation, the demo's port, and
every failure as one line: in this process (tests/cli_support.py), and the real `crmsync`
console script in its own process where that is the point (exit code and one line from
the installed entry point, the demo serving until interrupted)."""

import json
import re
import signal
import socket
import subprocess
import time

import httpx
import pytest
from cryptography.fernet import Fernet

from connectors.sandbox import generate_company
from connectors.sandbox.server import BackgroundServer, free_port
from connectors.zoho import sandbox
from core.db import make_engine, upgrade
from tests.cli_support import CRMSYNC, console_script, in_process, user_env

SECRETS = {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret"}
REFRESH = "sandbox-refresh-token"


def run(cwd, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
        timeout: float = 120, process: bool = False) -> subprocess.CompletedProcess[str]:
    """`crmsync *args` in `cwd` with a user's environment plus `env`: in this process, or
    (`process`) the installed console script in its own, stopped after `timeout` s."""
    if process:
        return console_script(args, cwd=cwd, env=user_env(**(env or {})), input=stdin,
                              timeout=timeout)
    return in_process(args, cwd=cwd, env=user_env(**(env or {})), input=stdin)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line (asserts exit 2, no traceback)."""
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def zoho():
    with BackgroundServer(sandbox.create_app(generate_company(seed=7, deals=60))) as server:
        yield server


def allow(server: BackgroundServer) -> dict[str, str]:
    return {"CRMSYNC_ALLOW_ENDPOINTS": f"{server.host}:{server.port}"}


def test_connection_lifecycle_against_the_sandbox(tmp_path, zoho):
    env = {**allow(zoho), "CRMSYNC_SECRET_REFRESH_TOKEN": REFRESH}
    (tmp_path / "secrets.json").write_text(json.dumps(SECRETS))
    added = run(tmp_path, "connections", "add", "zoho", "--name", "Zoho",
                "--config", f"accounts_url={zoho.url}", "--secrets-file", "secrets.json", env=env)
    assert added.returncode == 0, added.stderr
    assert "organization: Acme" in added.stderr and "home currency: USD" in added.stderr
    created = json.loads(added.stdout)  # stdout stays the connection's JSON
    assert created["secrets_set"] == ["client_id", "client_secret", "refresh_token"]
    cid = str(created["id"])
    assert (tmp_path / "crmsync.db").stat().st_mode & 0o777 == 0o600

    listed = run(tmp_path, "connections", "list", env=allow(zoho))
    assert listed.returncode == 0 and "Zoho" in listed.stdout and "active" in listed.stdout
    tested = run(tmp_path, "connections", "test", cid, env=allow(zoho))
    assert tested.returncode == 0, tested.stderr
    assert "organization: Acme" in tested.stdout and "home currency: USD" in tested.stdout

    # a bad secret fails the check and changes nothing
    bad = run(tmp_path, "connections", "update", cid, "--secret", "refresh_token=wrong",
              env=allow(zoho))
    assert "refresh token" in one_line_error(bad) and "wrong" not in bad.stderr
    assert run(tmp_path, "connections", "test", cid, env=allow(zoho)).returncode == 0

    renamed = run(tmp_path, "connections", "update", cid, "--name", "Zoho US", env=allow(zoho))
    assert renamed.returncode == 0 and json.loads(renamed.stdout)["name"] == "Zoho US"
    shown = run(tmp_path, "connections", "show", cid)
    assert json.loads(shown.stdout)["name"] == "Zoho US"
    for secret in (*SECRETS.values(), REFRESH):
        assert secret not in added.stdout + listed.stdout + shown.stdout

    deleted = run(tmp_path, "connections", "delete", cid, "--yes")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout
    assert "does not exist" in one_line_error(run(tmp_path, "connections", "show", cid))


def test_an_unreachable_crm_fails_in_seconds_and_saves_nothing(tmp_path):
    port = free_port("127.0.0.1")  # nothing listens there
    started = time.monotonic()
    done = run(tmp_path, "connections", "add", "zoho", "--name", "Z",
               "--config", f"accounts_url=http://127.0.0.1:{port}", "--secrets-file", "-",
               env={"CRMSYNC_ALLOW_ENDPOINTS": f"127.0.0.1:{port}"},
               stdin=json.dumps({**SECRETS, "refresh_token": REFRESH}))
    assert time.monotonic() - started < 20
    line = one_line_error(done)
    assert "127.0.0.1" in line and "ConnectError" in line and "nothing was saved" in line
    assert "Z " not in run(tmp_path, "connections", "list").stdout


def test_no_check_and_secrets_from_stdin(tmp_path):
    done = run(tmp_path, "connections", "add", "zoho", "--name", "Later", "--config", "dc=eu",
               "--no-check", "--secrets-file", "-",
               stdin=json.dumps({**SECRETS, "refresh_token": REFRESH}))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["secrets_set"] == ["client_id", "client_secret",
                                                      "refresh_token"]
    bad = run(tmp_path, "connections", "add", "zoho", "--name", "X", "--no-check",
              "--secrets-file", "-", stdin="[1, 2]")
    assert "JSON object" in one_line_error(bad)
    assert "visible to other users" in run(tmp_path, "connections", "add", "--help").stdout


def test_apikey_list_and_revoke(tmp_path):
    key = run(tmp_path, "apikey", "create", "--name", "pusher", "--scope", "push").stdout.strip()
    listed = run(tmp_path, "apikey", "list")
    assert "pusher" in listed.stdout and "push" in listed.stdout and key not in listed.stdout
    assert key[:8] in listed.stdout
    revoked = run(tmp_path, "apikey", "revoke", "1")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert re.search(r"pusher .* \d{4}-\d\d-\d\d \d\d:\d\d\s*│\s*$",
                     run(tmp_path, "apikey", "list").stdout, re.M)
    assert "does not exist" in one_line_error(run(tmp_path, "apikey", "revoke", "99"))


def test_keys_rotate_reencrypts_with_the_first_key(tmp_path):
    old, new, other = (Fernet.generate_key().decode() for _ in range(3))
    added = run(tmp_path, "connections", "add", "zoho", "--name", "Z", "--no-check",
                "--secrets-file", "-", stdin=json.dumps({**SECRETS, "refresh_token": REFRESH}),
                env={"CRMSYNC_SECRET_KEY": old})
    assert added.returncode == 0, added.stderr
    wrong = run(tmp_path, "keys", "rotate", env={"CRMSYNC_SECRET_KEY": other})
    assert "connection 1 (Z)" in one_line_error(wrong)
    rotated = run(tmp_path, "keys", "rotate", env={"CRMSYNC_SECRET_KEY": f"{new},{old}"})
    assert rotated.returncode == 0, rotated.stderr
    assert "1 connections" in rotated.stdout
    shown = json.loads(run(tmp_path, "connections", "show", "1",
                           env={"CRMSYNC_SECRET_KEY": new}).stdout)
    assert shown["secrets_set"] == ["client_id", "client_secret", "refresh_token"]
    assert shown["last_error"] is None
    stale = json.loads(run(tmp_path, "connections", "show", "1",
                           env={"CRMSYNC_SECRET_KEY": old}).stdout)
    assert stale["secrets_set"] == [] and "cannot be decrypted" in stale["last_error"]


def test_a_lost_key_file_is_not_replaced_by_a_new_key(tmp_path):
    added = run(tmp_path, "connections", "add", "zoho", "--name", "Z", "--no-check",
                "--secrets-file", "-", stdin=json.dumps({**SECRETS, "refresh_token": REFRESH}))
    assert added.returncode == 0, added.stderr
    (tmp_path / "crmsync.db.key").unlink()
    line = one_line_error(run(tmp_path, "connections", "list"))
    assert "crmsync.db.key is missing" in line
    assert not (tmp_path / "crmsync.db.key").exists()


def newest_migration(directory):
    """The revision `db upgrade` ends at (migrating a scratch database to find it)."""
    scratch = make_engine(f"sqlite:///{directory / 'head.db'}")
    _, head = upgrade(scratch)
    scratch.dispose()
    return head


def test_db_upgrade_says_what_it_applied(tmp_path):
    head = newest_migration(tmp_path)
    engine = make_engine(f"sqlite:///{tmp_path / 'crmsync.db'}")
    upgrade(engine, "0005")
    engine.dispose()
    first = run(tmp_path, "db", "upgrade")
    assert first.returncode == 0 and f"upgraded from 0005 to {head}" in first.stdout
    again = run(tmp_path, "db", "upgrade")
    assert again.returncode == 0 and f"already at {head}" in again.stdout
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert f"upgraded from empty to {head}" in run(fresh, "db", "upgrade").stdout


KEY = Fernet.generate_key().decode()
CASES = {
    "bad key": ({"CRMSYNC_SECRET_KEY": "not-a-key"}, ["apikey", "list"],
                "not a valid Fernet key"),
    "missing key": ({"CRMSYNC_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/test"},
                    ["connections", "list"], "CRMSYNC_SECRET_KEY must be set"),
    "unreachable postgresql": (
        {"CRMSYNC_DATABASE_URL": "postgresql://crm:hunter2pw@127.0.0.1:5499/crm",
         "CRMSYNC_SECRET_KEY": KEY}, ["sync"], "127.0.0.1:5499"),
    "missing database": (
        {"CRMSYNC_DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/no_such_db_x",
         "CRMSYNC_SECRET_KEY": KEY}, ["apikey", "list"], 'database "no_such_db_x" does not'),
    "database file cannot be created": (
        {"CRMSYNC_DATABASE_URL": "sqlite:///a-file/crmsync.db"}, ["apikey", "list"],
        "database file a-file/crmsync.db"),
    "unreachable redis": ({"CRMSYNC_REDIS_URL": "redis://:hunter2pw@127.0.0.1:6398/0"},
                          ["worker"], "cannot reach Redis at redis://:***@127.0.0.1:6398"),
    "unknown worker lane": ({"CRMSYNC_REDIS_URL": "redis://127.0.0.1:6398/0"},
                            ["worker", "--lanes", "sync,webhooks"],
                            "--lanes: unknown lane webhooks: the lanes are sync, webhook, cron"),
    "unsupported url": ({"CRMSYNC_DATABASE_URL": "mysql://crm:hunter2pw@db/crm"},
                        ["connections", "list"], "invalid setting CRMSYNC_DATABASE_URL"),
    "bad setting": ({"CRMSYNC_TIMEZONE": "Mars/Olympus"}, ["people", "list"],
                    "CRMSYNC_TIMEZONE: unknown IANA time zone"),
}


@pytest.mark.parametrize("case", CASES)
def test_every_failure_is_one_line(tmp_path, case):
    env, args, message = CASES[case]
    (tmp_path / "a-file").write_text("")
    line = one_line_error(run(tmp_path, *args, env=env))
    assert message in line
    assert "hunter2pw" not in line


@pytest.mark.parametrize("case", ["unreachable postgresql", "bad setting"])
def test_the_console_script_fails_in_one_line_too(tmp_path, case):
    """The installed entry point: exit code 2, one line on stderr, no traceback, from a
    failure inside a command (the database) and one before any (a setting)."""
    env, args, message = CASES[case]
    line = one_line_error(run(tmp_path, *args, env=env, process=True))
    assert message in line and "hunter2pw" not in line


def test_serve_on_an_unmigrated_database_says_to_upgrade(tmp_path, empty_pg_url):
    env = {"CRMSYNC_DATABASE_URL": empty_pg_url, "CRMSYNC_SECRET_KEY": KEY}
    line = one_line_error(run(tmp_path, "serve", "--port", str(free_port("127.0.0.1")),
                              env=env))
    assert "run `crmsync db upgrade`" in line
    assert "sync" in one_line_error(run(tmp_path, "apikey", "list", env=env))
    assert run(tmp_path, "db", "upgrade", env=env).stdout.strip() == (
        f"database upgraded from empty to {newest_migration(tmp_path)}")


def test_demo_on_a_busy_port_stops_before_doing_anything(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run(tmp_path, "demo", "--port", str(port), "--deals", "100")
    line = one_line_error(done)
    assert f"port {port}" in line and "--port 0" in line
    assert "csk_" not in done.stdout and not (tmp_path / "crmsync.db").exists()


def test_demo_with_port_0_serves_where_its_curls_point(tmp_path):
    demo = subprocess.Popen([CRMSYNC, "demo", "--port", "0", "--deals", "100"], cwd=tmp_path,
                            env=user_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert demo.stdout is not None
        out = ""
        deadline = time.monotonic() + 180
        while "serving the API on" not in out and time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            out += line
        curl = re.search(r"curl -H '(Authorization: Bearer csk_[^']+)' "
                         r"'(http://127\.0\.0\.1:(\d+)/api/v1/users)'", out)
        assert curl is not None, out
        assert curl.group(3) != "0"
        assert f"serving the API on http://127.0.0.1:{curl.group(3)}" in out
        name, value = curl.group(1).split(": ", 1)
        for _ in range(100):
            try:
                response = httpx.get(curl.group(2), headers={name: value}, timeout=5)
                break
            except httpx.ConnectError:
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["data"]
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
