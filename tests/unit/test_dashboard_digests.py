# ruff: noqa: F811 - the fixtures site and store are imported, and taken by name
"""The digest channels on the Operations page (api/web/operations.py): listed with their
schedule, last send and error (never the URL or secret), in English and Chinese; the
"send test" button sends through the chat robot sandbox and says how it went; admins
only, with the form's CSRF token."""

import re
from html import unescape

from core.db import session_scope
from core.digests import channels
from tests.digest_support import (
    DINGTALK_SECRET,
    DINGTALK_URL,
    FEISHU_URL,
    robots,
    transport,
)
from tests.unit.test_dashboard_admin_pages import admin_csrf
from tests.unit.test_dashboard_pages import (  # noqa: F401 - fixtures
    Site,
    seeded_file,
    site,
    store,
)


def add_channels(site: Site) -> tuple[int, int]:
    box = site.app.state.secrets
    with session_scope(site.engine) as session:
        good = channels.create_channel(session, box, name="Sales group", platform="dingtalk",
                                       url=DINGTALK_URL, secret=DINGTALK_SECRET,
                                       language="zh", cadence="weekly", day=0, hour=9)
        bad = channels.create_channel(session, box, name="Lark team", platform="feishu",
                                      url=FEISHU_URL, secret="not-demo", cadence="monthly",
                                      day=1, hour=8, team="East")
        return int(good.id or 0), int(bad.id or 0)


async def test_the_test_button_sends_and_reports_the_robots_answer(site: Site) -> None:
    sandbox = robots()
    site.app.state.ctx.transport = transport(sandbox)
    good, bad = add_channels(site)
    csrf = await admin_csrf(site)
    page = await site.page("/operations")
    assert f'data-digest="{good}"' in page.text and "Weekly, Monday 09:00" in page.text
    assert "Monthly, day 1 08:00" in page.text and "oapi.dingtalk.com" in page.text
    assert "dt-token-1" not in page.text and DINGTALK_SECRET not in page.text
    sent = await site.client.post(f"/operations/digests/{good}/test", data={"csrf": csrf})
    assert sent.status_code == 200
    assert "A test digest was sent to Sales group." in unescape(sent.text)
    [got] = sandbox.received
    assert got["body"]["markdown"]["title"] == "crmsync 销售简报 (测试消息)"
    row = re.search(rf'<tr data-digest="{good}">.*?</tr>', sent.text, re.S)
    assert row is not None and "–</td>" not in row.group(0).split("</td>")[3]

    failed = await site.client.post(f"/operations/digests/{bad}/test", data={"csrf": csrf})
    text = unescape(failed.text)
    assert "The test digest to Lark team was not sent: Feishu code 19021: sign match fail" \
        in text
    assert len(sandbox.received) == 1
    assert (await site.client.post("/operations/digests/999/test",
                                   data={"csrf": csrf})).status_code == 404
    assert (await site.client.post(f"/operations/digests/{good}/test",
                                   data={"csrf": "forged"})).status_code == 403
    assert len(sandbox.received) == 1


async def test_only_admins_send_tests(site: Site) -> None:
    sandbox = robots()
    site.app.state.ctx.transport = transport(sandbox)
    good, _ = add_channels(site)
    await site.sign_in("east@example.com")
    refused = await site.client.post(f"/operations/digests/{good}/test", data={"csrf": "x"})
    assert refused.status_code == 403 and sandbox.received == []


async def test_the_digest_channels_in_chinese(site: Site) -> None:
    add_channels(site)
    await site.sign_in("admin@example.com")
    site.client.cookies.set("lang", "zh")
    page = await site.page("/operations")
    assert "简报" in page.text and "每周一 09:00" in page.text and "钉钉" in page.text
    assert "发送测试" in page.text and "每月 1 日 08:00" in page.text
