"""`crmsync digest ...` as a user runs it (embedded SQLite in a fresh directory): channels
add/list/remove, preview prints the exact body, send posts it over HTTP to the chat robot
sandbox, which verifies the DingTalk signature; a wrong secret fails with the reason."""

import json

from api.chat_sandbox import create_app
from connectors.sandbox.server import BackgroundServer
from tests.cli_support import in_process, user_env
from tests.digest_support import DINGTALK_SECRET, robots


def test_channels_preview_and_send(tmp_path):
    sandbox = robots()
    with BackgroundServer(create_app(sandbox)) as server:
        env = user_env(COLUMNS="200", CRMSYNC_ALLOW_ENDPOINTS=f"127.0.0.1:{server.port}")
        url = f"{server.url}/robot/send?access_token=dt-token-1"

        def crmsync(*args: str, **kwargs: str):
            return in_process(args, cwd=tmp_path, env={**env, **kwargs})

        added = crmsync("digest", "channels", "add", "--name", "销售群", "--platform",
                        "dingtalk", "--secret", DINGTALK_SECRET, "--language", "zh",
                        "--monthly", "--day", "1", "--hour", "9", CRMSYNC_DIGEST_URL=url)
        assert added.returncode == 0, added.stderr
        assert "digest channel 1 (销售群) added: monthly, day 1 09:00" in added.stdout
        wrong = crmsync("digest", "channels", "add", "--name", "wrong", "--platform",
                        "dingtalk", "--secret", "SECnot-it", "--url",
                        url.replace("dt-token-1", "dt-token-1&x=1"))
        assert wrong.returncode == 0, wrong.stderr
        listed = crmsync("digest", "channels", "list")
        assert listed.returncode == 0 and "127.0.0.1" in listed.stdout
        assert "dt-token-1" not in listed.stdout and DINGTALK_SECRET not in listed.stdout

        preview = crmsync("digest", "preview", "销售群")
        assert preview.returncode == 0, preview.stderr
        body = json.loads(preview.stdout)
        assert body["msgtype"] == "markdown" and body["markdown"]["title"] == "crmsync 销售简报"
        assert sandbox.received == []  # a preview sends nothing

        sent = crmsync("digest", "send", "销售群")
        assert sent.returncode == 0, sent.stderr
        [got] = sandbox.received
        assert got["body"]["markdown"] == body["markdown"]

        refused = crmsync("digest", "send", "wrong")
        assert refused.returncode == 2
        assert "DingTalk errcode 310000: sign not match" in refused.stderr
        assert "SECnot-it" not in refused.stderr + refused.stdout

        bad = crmsync("digest", "channels", "add", "--name", "x", "--platform", "teams",
                      "--url", url)
        assert bad.returncode == 2 and "platform must be one of" in bad.stderr
        assert crmsync("digest", "channels", "remove", "wrong").returncode == 0
        listed = crmsync("digest", "channels", "list")
        assert "wrong" not in listed.stdout and "销售群" in listed.stdout
        missing = crmsync("digest", "preview", "nope")
        assert missing.returncode == 2 and "not found" in missing.stderr
