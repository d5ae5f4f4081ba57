"""Log masking: every connector secret (by its secrets model's field names, camelCase too),
the tokens connectors obtain, channel tokens and crmsync API keys are masked in JSON
bodies, escaped JSON and URLs, in the lines `crmsync serve` and `crmsync worker` write."""

import io
import json
import logging
from collections.abc import Iterator

import pytest

from connectors.registry import secret_field_names
from core.config import Settings
from core.logs import JsonFormatter, TextFormatter, add_secret_names, configure_logging, redact
from core.security import new_api_key

API_KEY = new_api_key()
SECRETS = {  # name as the vendors and crmsync spell it -> a value that must never show
    "permanentCode": "PERMCODE-77", "permanent_code": "PERMCODE-78",
    "corpAccessToken": "CORPTOKEN-1", "corp_access_token": "CORPTOKEN-2",
    "aesKey": "QUVTS0VZLXNlY3JldA+/=", "aes_key": "AESKEY-2",
    "appSecret": "APPSECRET-1", "app_secret": "APPSECRET-2",
    "client_secret": "CLIENTSECRET-1", "refresh_token": "1000.REFRESH",
    "access_token": "1000.ACCESS", "token": "CHANNEL-TOKEN-43chars",
    "channelToken": "CHANNEL-TOKEN-2", "apiKey": API_KEY,
}


@pytest.fixture(autouse=True)
def model_names() -> None:
    add_secret_names(secret_field_names())


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """A JSON-lines handler on a logger, as configure_logging installs on the root."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("crmsync.test.masking")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)


def test_the_model_names_come_from_each_registered_connector():
    names = secret_field_names()
    assert {"permanent_code", "app_secret", "aes_key"} <= names  # Fxiaoke's secrets model
    assert {"client_secret", "refresh_token"} <= names  # Zoho's


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_name_is_masked_in_a_json_body(captured, name):
    body = json.dumps({name: SECRETS[name], "corpId": "FSCorp-visible"})
    logging.getLogger("crmsync.test.masking").info("POST /cgi/x body=%s", body)
    line = captured.getvalue()
    assert SECRETS[name] not in line, line
    assert json.loads(line)["message"].startswith("POST /cgi/x body={")
    assert "FSCorp-visible" in line  # other fields stay readable


@pytest.mark.parametrize("name", sorted(SECRETS))
def test_each_name_is_masked_in_a_url_query_string(captured, name):
    url = f"https://open.fxiaoke.com/cgi/corpAccessToken/get?{name}={SECRETS[name]}&limit=100"
    logging.getLogger("crmsync.test.masking").warning("request %s failed", url)
    line = captured.getvalue()
    assert SECRETS[name] not in line and "limit=100" in line, line


def test_extra_fields_and_escaped_json_are_masked(captured):
    logging.getLogger("crmsync.test.masking").info(
        "callback", extra={"aesKey": SECRETS["aesKey"],
                           "payload": {"permanentCode": SECRETS["permanentCode"]}})
    line = captured.getvalue()
    assert SECRETS["aesKey"] not in line and SECRETS["permanentCode"] not in line


def test_api_keys_are_masked_wherever_they_appear():
    for text in (f"Authorization: Bearer {API_KEY}", f"key {API_KEY} created",
                 f"/path?x={API_KEY}"):
        masked = redact(text)
        assert API_KEY[4:] not in masked and "***" in masked


def test_identifiers_and_ordinary_words_stay_readable():
    line = redact("client_id=1000.CLIENT app_id=FSAID_1 grant_type=refresh_token "
                  '{"connection_id": 3, "dedupe_key": "M1"}')
    assert "1000.CLIENT" in line and "FSAID_1" in line and "grant_type=refresh_token" in line
    assert '"dedupe_key": "M1"' in line


def test_configure_logging_masks_the_registered_connectors_secrets(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging(Settings(log_format="text"), secret_field_names())
        assert isinstance(root.handlers[0].formatter, TextFormatter)
        logging.getLogger("crmsync.test").warning(
            'token request {"appSecret": "%s", "permanentCode": "%s"}',
            SECRETS["appSecret"], SECRETS["permanentCode"])
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert "token request" in err
    assert SECRETS["appSecret"] not in err and SECRETS["permanentCode"] not in err


def test_chat_robot_webhook_urls_are_masked():
    line = redact("POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=wk-1 "
                  "https://open.feishu.cn/open-apis/bot/v2/hook/fs-2?x=1 "
                  "https://hooks.slack.com/services/T000/B000/sl-3 "
                  "https://oapi.dingtalk.com/robot/send?access_token=dt-4&timestamp=5")
    for secret in ("wk-1", "fs-2", "sl-3", "dt-4"):
        assert secret not in line
    assert "hooks.slack.com/services/T000/B000/***" in line and "timestamp=5" in line
