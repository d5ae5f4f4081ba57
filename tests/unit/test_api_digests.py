"""The digest channels API (api/routes/digests.py): the webhook URL and secret are
write-only; bad input is refused with a reason and changes nothing; a test send goes to
the robot (the chat robot sandbox behind the vendor's host) and reports its answer."""

from tests.api_support import running_api
from tests.digest_support import DINGTALK_SECRET, DINGTALK_URL, robots, transport

V1 = "/api/v1"
NEW = {"name": "销售群", "platform": "dingtalk", "url": DINGTALK_URL, "secret": DINGTALK_SECRET,
       "language": "zh", "cadence": "monthly", "day": 1, "hour": 9}


async def test_the_url_and_secret_never_come_back(sqlite_engine):
    sandbox = robots()
    async with running_api(sqlite_engine, transport(sandbox)) as api:
        created = await api.client.post(f"{V1}/digests", json=NEW)
        assert created.status_code == 201, created.text
        channel = created.json()
        assert channel["host"] == "oapi.dingtalk.com" and channel["signed"] is True
        listed = await api.client.get(f"{V1}/digests")
        patched = await api.client.patch(f"{V1}/digests/{channel['id']}", json={"hour": 8})
        assert patched.json()["hour"] == 8
        sent = await api.client.post(f"{V1}/digests/{channel['id']}/test")
        assert sent.json() == {"ok": True, "error": None}
        preview = await api.client.get(f"{V1}/digests/{channel['id']}/preview")
        assert preview.json()["msgtype"] == "markdown"
        for response in (created, listed, patched, sent, preview):
            assert "dt-token-1" not in response.text
            assert DINGTALK_SECRET not in response.text
        [got] = sandbox.received
        assert "测试消息" in got["body"]["markdown"]["title"]
        after = (await api.client.get(f"{V1}/digests")).json()["data"][0]
        assert after["last_sent_at"] is not None and after["last_error"] is None


async def test_bad_channels_are_refused_and_change_nothing(sqlite_engine):
    async with running_api(sqlite_engine, transport(robots())) as api:
        for body, reason in [
            ({**NEW, "url": "https://oapi.dingtalk.com/robot/send"}, "must look like"),
            ({**NEW, "platform": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/"
              "send?key=k"}, "no signing secret"),
            ({**NEW, "cadence": "monthly", "day": 31}, "1..28"),
        ]:
            refused = await api.client.post(f"{V1}/digests", json=body)
            assert refused.status_code == 422 and reason in refused.text, refused.text
            assert DINGTALK_SECRET not in refused.text
        assert (await api.client.post(f"{V1}/digests", json={**NEW, "language": "fr"})) \
            .status_code == 422
        assert (await api.client.get(f"{V1}/digests")).json() == {"data": []}


async def test_a_test_send_reports_the_robots_refusal(sqlite_engine):
    sandbox = robots()
    async with running_api(sqlite_engine, transport(sandbox)) as api:
        channel = (await api.client.post(f"{V1}/digests", json={
            **NEW, "secret": "SECnot-the-robots"})).json()
        sent = await api.client.post(f"{V1}/digests/{channel['id']}/test")
        assert sent.json() == {"ok": False,
                               "error": "DingTalk errcode 310000: sign not match"}
        listed = (await api.client.get(f"{V1}/digests")).json()["data"][0]
        assert listed["last_error"] == "DingTalk errcode 310000: sign not match"
        assert sandbox.received == []
