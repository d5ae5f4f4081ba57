"""The four chat platforms (core/digests/platforms): signatures against the worked values of
docs/vendors/chat.md §2, verified by the sandbox receivers (api/chat_sandbox.py);
messages per platform and language, cut to the size limits; what answers mean."""

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
import pytest

from core.digests.content import LABELS, Digest
from core.digests.platforms import PLATFORMS, dingtalk, feishu, slack, wecom
from core.digests.render import encoded
from core.digests.schedule import Schedule, latest_moment
from core.hygiene import RULES, SHORT_LABELS
from tests.digest_support import (
    DINGTALK_URL,
    FEISHU_URL,
    SECRETS,
    URLS,
    robots,
    sample_digest,
    transport,
)


def test_dingtalk_signature_is_the_documented_worked_value():
    assert dingtalk.signature("SEC0123456789abcdef", 1700000000002) == \
        "VGvd0brDJp/nMZtR+XnA3yBIlhowT+TwkRPua0q1/jg="


def test_feishu_signature_is_the_documented_worked_value_not_dingtalks():
    assert feishu.signature("demo", 1599360473) == \
        "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8="
    dingtalk_style = base64.b64encode(hmac.new(b"demo", b"1599360473\ndemo",
                                               hashlib.sha256).digest()).decode()
    assert dingtalk_style == "DkEDUyVoOOJ539qBvUgMyzkzIdRWlf4e/V3Rq+ONJnQ="


async def post(sandbox, url: str, body: dict, *, raw: bytes | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport(sandbox)) as client:
        return await client.post(url, content=raw if raw is not None else encoded(body),
                                 headers={"Content-Type": "application/json"})


MARKDOWN = {"msgtype": "markdown", "markdown": {"title": "crmsync", "text": "crmsync digest"}}


async def test_the_dingtalk_receiver_verifies_the_worked_value_and_its_window():
    sandbox = robots(clock=lambda: 1700000000.002)
    wire = "VGvd0brDJp%2FnMZtR%2BXnA3yBIlhowT%2BTwkRPua0q1%2Fjg%3D"  # §2.1
    ok = await post(sandbox, f"{DINGTALK_URL}&timestamp=1700000000002&sign={wire}", MARKDOWN)
    assert ok.status_code == 200 and ok.json() == {"errcode": 0, "errmsg": "ok"}
    unencoded = "VGvd0brDJp/nMZtR+XnA3yBIlhowT+TwkRPua0q1/jg="  # "+" decodes to a space
    bad = await post(sandbox, f"{DINGTALK_URL}&timestamp=1700000000002&sign={unencoded}",
                     MARKDOWN)
    assert bad.status_code == 200 and bad.json() == {"errcode": 310000,
                                                     "errmsg": "sign not match"}
    late = robots(clock=lambda: 1700000000.002 + 3601)
    answer = await post(late, f"{DINGTALK_URL}&timestamp=1700000000002&sign={wire}", MARKDOWN)
    assert answer.json() == {"errcode": 310000, "errmsg": "invalid timestamp"}
    assert len(sandbox.received) == 1 and not late.received


async def test_the_dingtalk_receiver_refuses_a_wrong_secret_and_a_missing_keyword():
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    sandbox = robots(clock=now.timestamp)
    url, body = dingtalk.request(DINGTALK_URL, "SECwrong", MARKDOWN, now, "k1")
    assert (await post(sandbox, url, body)).json()["errmsg"] == "sign not match"
    url, body = dingtalk.request(DINGTALK_URL, SECRETS["dingtalk"],
                                 {"msgtype": "text", "text": {"content": "hello"}}, now, "k2")
    assert (await post(sandbox, url, body)).json() == {"errcode": 310000,
                                                       "errmsg": "keywords not in content"}
    assert (await post(sandbox, DINGTALK_URL.replace("dt-token-1", "nope"), MARKDOWN)).json() \
        == {"errcode": 300001, "errmsg": "token is not exist"}
    assert sandbox.received == []


FEISHU_TEXT = {"msg_type": "text", "content": {"text": "crmsync digest"}}


async def test_the_feishu_receiver_verifies_the_worked_value_in_the_body():
    sandbox = robots(clock=lambda: 1599360473.0)
    signed = {"timestamp": "1599360473", "sign": "l1N0gAcBjdwBvGm1xMjOF0XSyaLRpR7tuO5dHfhAYc8=",
              **FEISHU_TEXT}
    answer = await post(sandbox, FEISHU_URL, signed)
    assert answer.status_code == 200 and answer.json()["code"] == 0
    assert answer.json()["StatusCode"] == 0
    dingtalk_style = {**signed, "sign": "DkEDUyVoOOJ539qBvUgMyzkzIdRWlf4e/V3Rq+ONJnQ="}
    refused = await post(sandbox, FEISHU_URL, dingtalk_style)
    assert refused.json()["code"] == 19021
    stale = await post(robots(clock=lambda: 1599360473.0 + 3601), FEISHU_URL, signed)
    assert stale.json()["code"] == 19021
    assert len(sandbox.received) == 1


async def test_the_feishu_receiver_refuses_a_wrong_secret_a_keyword_only_in_a_link_and_size():
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    sandbox = robots(clock=now.timestamp)
    url, body = feishu.request(FEISHU_URL, "not-demo", FEISHU_TEXT, now, "")
    assert (await post(sandbox, url, body)).json()["code"] == 19021
    link = {"msg_type": "post", "content": {"post": {"en_us": {"title": "digest", "content": [
        [{"tag": "a", "text": "open", "href": "https://x.test/crmsync"}]]}}}}
    url, body = feishu.request(FEISHU_URL, SECRETS["feishu"], link, now, "")
    assert (await post(sandbox, url, body)).json()["code"] == 19024
    big = {**FEISHU_TEXT, "content": {"text": "crmsync " + "x" * 21000}}
    url, body = feishu.request(FEISHU_URL, SECRETS["feishu"], big, now, "")
    answer = await post(sandbox, url, body)
    assert answer.status_code == 400 and answer.json()["code"] == 9499
    assert sandbox.received == []


async def test_the_wecom_and_slack_receivers_check_the_key_and_the_shape():
    sandbox = robots()
    wrong = await post(sandbox, URLS["wecom"].replace("wk-", "xx-"), {"msgtype": "text",
                                                                      "text": {"content": "a"}})
    assert wrong.status_code == 200 and wrong.json()["errcode"] == 93000
    long = {"msgtype": "markdown_v2", "markdown_v2": {"content": "数" * 1366}}  # 4098 bytes
    assert (await post(sandbox, URLS["wecom"], long)).json()["errcode"] == 40058
    assert (await post(sandbox, URLS["slack"], {"username": "x"})).text == "no_text"
    forged = await post(sandbox, URLS["slack"].replace("slacksecret1", "guess"), {"text": "a"})
    assert forged.status_code == 403 and forged.text == "invalid_token"
    assert sandbox.received == []


@pytest.mark.parametrize("name", sorted(PLATFORMS))
@pytest.mark.parametrize("language", ["en", "zh"])
async def test_every_platforms_digest_is_accepted_by_its_receiver(name, language):
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    sandbox = robots(clock=now.timestamp)
    chosen = PLATFORMS[name]
    digest = sample_digest(language)
    digest.title = {"en": "crmsync sales digest", "zh": "crmsync 销售简报"}[language]
    url, body = chosen.request(URLS[name], SECRETS.get(name), chosen.message(digest), now, "k")
    answer = await post(sandbox, url, body)
    assert answer.status_code == 200, answer.text
    assert chosen.outcome(answer.status_code, answer.headers, answer.text).ok
    [got] = sandbox.received
    assert "Rep 000 李娜" in json.dumps(got["body"], ensure_ascii=False)
    assert digest.columns[1] in json.dumps(got["body"], ensure_ascii=False)


def test_each_platforms_documented_message_shape():
    digest = sample_digest("zh")
    digest.language = "zh"
    w = wecom.message(digest)
    assert w["msgtype"] == "markdown_v2"
    assert "| # | 销售 | 赢单金额 CNY | 赢单数 | 目标达成 |" in w["markdown_v2"]["content"]
    assert "| 1 | Rep 000 李娜 | 3,000.00 | 3 | 85.0% |" in w["markdown_v2"]["content"]
    d = dingtalk.message(digest)
    assert d["msgtype"] == "markdown" and d["markdown"]["title"] == digest.title
    assert "1. Rep 000 李娜  3,000.00 · 3 · 85.0%" in d["markdown"]["text"]
    f = feishu.message(digest)
    assert f["msg_type"] == "interactive" and f["card"]["schema"] == "2.0"
    table = next(e for e in f["card"]["body"]["elements"] if e["tag"] == "table")
    assert [c["display_name"] for c in table["columns"]] == ["#", *digest.columns]
    assert table["rows"][0] == {"rank": "1", "name": "Rep 000 李娜", "won": "3,000.00",
                                "deals": "3", "goal": "85.0%"}
    s = slack.message(digest)
    assert s["blocks"][0] == {"type": "header", "text": {"type": "plain_text",
                                                          "text": digest.title}}
    assert s["text"].startswith(digest.title)
    board = s["blocks"][2]["text"]["text"]
    assert board.startswith("*排行榜*\n```\n#") and "Rep 000 李娜" in board


def test_slack_escapes_mrkdwn():
    digest = sample_digest()
    digest.reps[0] = digest.reps[0].__class__("A&B <x>", "1.00", "1", "-")
    text = json.dumps(slack.message(digest))
    assert "A&amp;B &lt;x&gt;" in text and "<x>" not in text


@pytest.mark.parametrize("name", sorted(PLATFORMS))
async def test_a_long_leaderboard_is_cut_with_and_n_more_and_still_accepted(name):
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    sandbox = robots(clock=now.timestamp)
    digest = sample_digest("en", reps=800)
    chosen = PLATFORMS[name]
    body = chosen.message(digest)
    text = json.dumps(body, ensure_ascii=False)
    assert "Rep 000" in text and "Rep 799" not in text
    shown = sum(f"Rep {i:03} " in text for i in range(800))
    assert f"and {800 - shown} more" in text
    url, signed = chosen.request(URLS[name], SECRETS.get(name), body, now, "k")
    answer = await post(sandbox, url, signed)
    assert chosen.outcome(answer.status_code, answer.headers, answer.text).ok, answer.text


@pytest.mark.parametrize("name, status, text, ok, retry, wait", [
    ("wecom", 200, '{"errcode":0,"errmsg":"ok"}', True, False, None),
    ("wecom", 200, '{"errcode":-1,"errmsg":"system busy"}', False, True, 5.0),
    ("wecom", 200, '{"errcode":45009,"errmsg":"api freq out of limit"}', False, True, 60.0),
    ("wecom", 200, '{"errcode":93000,"errmsg":"invalid webhook url"}', False, False, None),
    ("dingtalk", 200, '{"errcode":130101,"errmsg":"send too fast"}', False, True, 600.0),
    ("dingtalk", 200, '{"errcode":310000,"errmsg":"sign not match"}', False, False, None),
    ("dingtalk", 200, '{"errcode":-1,"errmsg":"系统繁忙"}', False, True, None),
    ("feishu", 400, '{"code":9499,"msg":"too many request"}', False, True, None),
    ("feishu", 200, '{"code":11232,"msg":"frequency limited"}', False, True, None),
    ("feishu", 200, '{"code":19024,"msg":"Key Words Not Found"}', False, False, None),
    ("slack", 200, "ok", True, False, None),
    ("slack", 404, "channel_not_found", False, False, None),
    ("slack", 500, "rollup_error", False, True, None),
    ("wecom", 502, "<html>bad gateway</html>", False, True, None),
])
def test_what_each_platforms_answers_mean(name, status, text, ok, retry, wait):
    headers = {"Retry-After": "3"} if status == 429 else {}
    outcome = PLATFORMS[name].outcome(status, headers, text)
    assert (outcome.ok, outcome.retry, outcome.wait) == (ok, retry, wait)
    assert outcome.ok or outcome.error


def test_a_dingtalk_clock_refusal_says_to_check_the_clock():
    outcome = dingtalk.outcome(200, {}, '{"errcode":310000,"errmsg":"invalid timestamp"}')
    assert not outcome.retry and outcome.error == (
        "DingTalk errcode 310000: invalid timestamp (check this server's clock: DingTalk "
        "allows an hour of difference)")


def test_slack_429_waits_retry_after():
    outcome = slack.outcome(429, {"retry-after": "7"}, "rate_limited")
    assert outcome.retry and outcome.wait == 7.0


@pytest.mark.parametrize("name, url", [
    ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"),
    ("dingtalk", "https://oapi.dingtalk.com/robot/send?access_token="),
    ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/"),
    ("slack", "https://hooks.slack.com/services/T000/B000"),
    ("slack", "ftp://hooks.slack.com/services/T/B/x"),
])
def test_webhook_urls_of_the_wrong_shape_are_refused(name, url):
    with pytest.raises(ValueError, match="must look like"):
        PLATFORMS[name].check_url(url)


def test_schedules_name_their_moment_and_the_days_covered():
    now = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)  # a Saturday
    weekly = latest_moment(Schedule("weekly", 0, 9), now, "UTC")  # Mondays 09:00
    assert weekly.at == datetime(2026, 11, 30, 9, tzinfo=UTC) and weekly.period == "2026-11-30"
    assert (weekly.start.isoformat(), weekly.end.isoformat()) == ("2026-11-23", "2026-11-29")
    saturday = latest_moment(Schedule("weekly", 5, 9), now, "UTC")
    assert saturday.period == "2026-12-05"
    assert latest_moment(Schedule("weekly", 5, 10), now, "UTC").period == "2026-11-28"
    monthly = latest_moment(Schedule("monthly", 1, 8), now, "Asia/Shanghai")
    assert monthly.period == "2026-12-01"
    assert (monthly.start.isoformat(), monthly.end.isoformat()) == ("2026-11-01", "2026-11-30")
    # 09:30 UTC is 17:30 in Shanghai: the 5th at 18:00 has not come yet
    assert latest_moment(Schedule("monthly", 5, 18), now, "Asia/Shanghai").period == \
        "2026-11-05"
    january = latest_moment(Schedule("monthly", 3, 0), datetime(2027, 1, 2, tzinfo=UTC), "UTC")
    assert (january.period, january.start.isoformat()) == ("2026-12-03", "2026-11-01")


@pytest.mark.parametrize("cadence, day, hour", [("daily", 1, 9), ("weekly", 7, 9),
                                                 ("monthly", 29, 9), ("monthly", 0, 9),
                                                 ("weekly", 1, 24)])
def test_bad_schedules_are_refused(cadence, day, hour):
    with pytest.raises(ValueError):
        Schedule(cadence, day, hour)


def test_the_digest_labels_exist_in_both_languages():
    assert set(LABELS["en"]) == set(LABELS["zh"])
    # every hygiene rule's short name, shared with the dashboard (api/web/i18n.py)
    assert set(SHORT_LABELS["en"]) == set(SHORT_LABELS["zh"]) == set(RULES)
    assert Digest("zh", "t", "s", None).label("more", n=3) == "另有 3 项"


def test_dingtalk_signs_the_query_and_keeps_msg_uuid():
    now = datetime.fromtimestamp(1700000000.002, UTC)
    url, body = dingtalk.request(DINGTALK_URL, "SEC0123456789abcdef", MARKDOWN, now, "u-1")
    assert url.endswith("&timestamp=1700000000002&sign="
                        + quote("VGvd0brDJp/nMZtR+XnA3yBIlhowT+TwkRPua0q1/jg=", safe=""))
    assert body["msgUuid"] == "u-1"


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def test_the_receivers_enforce_the_platforms_rates():
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    clock = Clock(now.timestamp())
    sandbox = robots(clock=clock)
    digest = sample_digest()

    async def send(name: str) -> httpx.Response:
        chosen = PLATFORMS[name]
        moment = datetime.fromtimestamp(clock.now, UTC)
        url, body = chosen.request(URLS[name], SECRETS.get(name), chosen.message(digest),
                                   moment, "k")
        return await post(sandbox, url, body)

    for _ in range(20):  # WeCom and DingTalk: 20 a minute
        assert (await send("wecom")).json()["errcode"] == 0
        assert (await send("dingtalk")).json()["errcode"] == 0
    assert (await send("wecom")).json()["errcode"] == 45009
    assert (await send("dingtalk")).json()["errcode"] == 130101
    clock.now += 61  # WeCom's minute is over; DingTalk blocks for 10 minutes
    assert (await send("wecom")).json()["errcode"] == 0
    assert (await send("dingtalk")).json()["errcode"] == 130101
    clock.now += 540
    assert (await send("dingtalk")).json()["errcode"] == 0
    for _ in range(5):  # Feishu: 5 a second
        assert (await send("feishu")).json()["code"] == 0
    assert (await send("feishu")).json()["code"] == 11232
    assert (await send("slack")).text == "ok"  # Slack: about one a second
    limited = await send("slack")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    clock.now += 1
    assert (await send("slack")).text == "ok"


@pytest.mark.parametrize("name", sorted(PLATFORMS))
async def test_a_long_list_section_is_cut_too_and_accepted(name):
    now = datetime(2026, 12, 5, 9, tzinfo=UTC)
    sandbox = robots(clock=now.timestamp)
    chosen = PLATFORMS[name]
    body = chosen.message(sample_digest("en", reps=2, items=900))
    text = json.dumps(body, ensure_ascii=False)
    assert "Rep 000" in text and "Rep 001" in text  # the short leaderboard stays whole
    shown = sum(f"Deal {i:03} " in text for i in range(900))
    assert 0 < shown < 900 and f"and {900 - shown} more" in text
    assert "Hygiene" in text
    url, signed = chosen.request(URLS[name], SECRETS.get(name), body, now, "k")
    answer = await post(sandbox, url, signed)
    assert chosen.outcome(answer.status_code, answer.headers, answer.text).ok, answer.text


def test_an_empty_list_says_so():
    digest = sample_digest("en", reps=1, items=1)
    digest.lists[0] = digest.lists[0].__class__("Hygiene", [], "No issues.")
    for chosen in PLATFORMS.values():
        assert "No issues." in json.dumps(chosen.message(digest), ensure_ascii=False)
    assert "Deal 000 &lt;b&gt;" in json.dumps(slack.message(sample_digest(items=1)))
