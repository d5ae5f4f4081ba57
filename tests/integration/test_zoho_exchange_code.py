"""`crmsync zoho exchange-code` against the Zoho sandbox, as a user runs it (a user's
environment; in this process, tests/cli_support.py): a Self Client grant code becomes a
refresh token (printed, or saved as a connection that then syncs); expired, reused and
mistyped codes, a wrong client and a refused accounts server are one-line errors that save
nothing and never echo a secret."""

import json
import subprocess
import time

import httpx
import pytest

from connectors.sandbox.server import BackgroundServer
from connectors.zoho.sandbox import create_app
from tests.cli_support import in_process, user_env

CLIENT_ID = "sandbox-client-id"
CLIENT_SECRET = "sandbox-client-secret"
REFRESH_TOKEN = "sandbox-refresh-token"


@pytest.fixture(scope="module")
def sandbox():
    app = create_app(deals=60, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                     refresh_token=REFRESH_TOKEN)
    with BackgroundServer(app) as server:
        server.state = app.state.zoho
        yield server


def grant_code(sandbox, **body) -> str:
    answer = httpx.post(f"{sandbox.url}/_sandbox/grant-codes", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["code"])


def crmsync(tmp_path, sandbox, *args: str, allow: bool = True,
            secret: str = CLIENT_SECRET) -> subprocess.CompletedProcess[str]:
    env = user_env(CRMSYNC_ZOHO_CLIENT_SECRET=secret)  # not on the command line
    if allow:
        env["CRMSYNC_ALLOW_ENDPOINTS"] = f"127.0.0.1:{sandbox.port}"
    return in_process(args, cwd=tmp_path, env=env)


def exchange(tmp_path, sandbox, code: str, *extra: str, **kwargs):
    return crmsync(tmp_path, sandbox, "zoho", "exchange-code", "--dc", "cn",
                   "--client-id", CLIENT_ID, "--code", code,
                   "--accounts-url", sandbox.url, *extra, **kwargs)


def assert_one_line_error(done, *words: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    for secret in (CLIENT_SECRET, REFRESH_TOKEN, "wrong-secret-42"):
        assert secret not in done.stderr


def test_a_grant_code_becomes_a_refresh_token_once(tmp_path, sandbox):
    code = grant_code(sandbox)
    done = exchange(tmp_path, sandbox, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{REFRESH_TOKEN}\n"
    assert "warning" in done.stderr and "ZohoCRM.notifications.ALL" in done.stderr
    assert CLIENT_SECRET not in done.stdout + done.stderr
    again = exchange(tmp_path, sandbox, code)  # a grant code works once
    assert_one_line_error(again, "invalid_code", "Generate Code")


def test_with_a_name_the_connection_is_created_and_syncs(tmp_path, sandbox):
    scope = ("ZohoCRM.modules.ALL,ZohoCRM.settings.ALL,ZohoCRM.users.READ,ZohoCRM.org.READ,"
             "ZohoCRM.notifications.ALL")
    done = exchange(tmp_path, sandbox, grant_code(sandbox, scope=scope), "--name", "Zoho CN")
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr  # every scope granted
    start = done.stdout.index("{")
    public = json.loads(done.stdout[start:done.stdout.rindex("}") + 1])
    assert public["name"] == "Zoho CN" and public["provider"] == "zoho"
    assert public["config"]["dc"] == "com.cn"  # --dc cn, Zoho's short name
    assert public["config"]["accounts_url"] == sandbox.url
    for secret in (CLIENT_SECRET, REFRESH_TOKEN):
        assert secret not in done.stdout + done.stderr
    synced = crmsync(tmp_path, sandbox, "sync", "--connection", str(public["id"]), "--full")
    assert synced.returncode == 0, synced.stderr  # the stored refresh token works
    assert sandbox.state.stats()["token_grants"] >= 2
    # the name is taken now: a second exchange saves nothing new
    taken = exchange(tmp_path, sandbox, grant_code(sandbox), "--name", "Zoho CN")
    assert taken.returncode == 2 and "already exists" in taken.stderr


def test_an_expired_code_is_refused(tmp_path, sandbox):
    code = grant_code(sandbox, expires_in=0.05)
    time.sleep(0.2)
    assert_one_line_error(exchange(tmp_path, sandbox, code, "--name", "late"), "expired")
    assert not (tmp_path / "crmsync.db").exists()  # nothing was created


def test_a_wrong_client_secret_is_refused_without_echoing_it(tmp_path, sandbox):
    done = exchange(tmp_path, sandbox, grant_code(sandbox), "--name", "x",
                    secret="wrong-secret-42")
    assert_one_line_error(done, "invalid_client", "--dc")
    assert not (tmp_path / "crmsync.db").exists()


def test_an_accounts_server_that_is_not_allowed_gets_nothing(tmp_path, sandbox):
    before = sandbox.state.token_grants
    code = grant_code(sandbox)
    done = exchange(tmp_path, sandbox, code, allow=False)
    assert_one_line_error(done, "CRMSYNC_ALLOW_ENDPOINTS")
    assert sandbox.state.token_grants == before
    assert code in sandbox.state.grant_codes  # never sent: still unused


def test_an_unknown_data_centre_is_one_line(tmp_path, sandbox):
    done = crmsync(tmp_path, sandbox, "zoho", "exchange-code", "--dc", "mars",
                   "--client-id", CLIENT_ID, "--code", "1000.x")
    assert_one_line_error(done, "unknown data centre 'mars'", "com.cn")


def test_the_sandbox_token_endpoint_speaks_the_authorization_code_grant(sandbox):
    url = f"{sandbox.url}/oauth/v2/token"
    form = {"grant_type": "authorization_code", "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET, "code": grant_code(sandbox, scope="a.ALL,b.READ")}
    first = httpx.post(url, data=form)
    assert first.status_code == 200
    body = first.json()
    assert body["refresh_token"] == REFRESH_TOKEN and body["access_token"].startswith("1000.")
    assert body["scope"] == "a.ALL b.READ" and body["expires_in"] == 3600
    assert body["api_domain"] == sandbox.url and body["token_type"] == "Bearer"
    # Zoho's errors are HTTP 200 with an error key
    assert httpx.post(url, data=form).json() == {"error": "invalid_code"}  # used
    assert httpx.post(url, data={**form, "code": ""}).json() == {"error": "invalid_code"}
    wrong = {**form, "client_secret": "nope", "code": grant_code(sandbox)}
    assert httpx.post(url, data=wrong).json() == {"error": "invalid_client"}
    for bad in ({"expires_in": 0}, {"expires_in": 601}, {"scope": " "}, {"expires_in": "x"}):
        answer = httpx.post(f"{sandbox.url}/_sandbox/grant-codes", json=bad)
        assert answer.status_code == 400, bad
