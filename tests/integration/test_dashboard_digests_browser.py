"""The digest channels' "send test" button in a real browser (Playwright driving Debian's
Chromium) against the app on a real port and the chat robot sandbox on another: an admin
sends a test digest to a DingTalk robot (signed; it arrives with the leaderboard's numbers)
and to a Feishu robot whose secret is wrong (the page shows the platform's refusal), in
English and Chinese. Screenshots: test-output/screenshots/digests-*."""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from api.app import create_app
from api.chat_sandbox import ChatSandbox
from api.chat_sandbox import create_app as chat_app
from connectors.sandbox.server import BackgroundServer
from core import store
from core.config import Settings
from core.db import make_engine, session_scope, upgrade
from core.digests import channels
from core.models import Connection
from core.records import DealRecord, StageRecord, UserRecord
from core.security import SecretBox
from core.types import utcnow
from tests.api_support import add_connection
from tests.digest_support import DINGTALK_SECRET, robots
from tests.integration.test_dashboard_admin_browser import add_user
from tests.integration.test_dashboard_browser import (
    new_page,
    shoot,
    sign_in,
)
from workers.context import JobContext

if TYPE_CHECKING:  # imported by the `chromium` fixture (tests/integration/conftest.py)
    from playwright.sync_api import Browser


@dataclass
class World:
    url: str
    sandbox: ChatSandbox
    good: int
    bad: int


def recent_deals(engine: Engine, connection_id: int) -> None:
    """Two reps and 40 won deals, one a day for the last 40 days (last week is covered)."""
    reps = [UserRecord("u1", "Ann Lee", "ann@example.com", team="East"),
            UserRecord("u2", "Bob Roy", "bob@example.com", team="West")]
    won = StageRecord("s2", "Closed Won", "won", pipeline="Standard", sort_order=2,
                      probability=Decimal("100"))
    now = utcnow()
    deals = [DealRecord(f"d{i}", f"Deal {i}", amount=Decimal("1000.25") + i, currency="USD",
                        amount_home=Decimal("1000.25") + i, stage=won.name,
                        stage_remote_id=won.remote_id, status="won",
                        close_date=(now - timedelta(days=i)).date(),
                        remote_created_at=now - timedelta(days=60),
                        remote_modified_at=now - timedelta(days=i),
                        owner_email=reps[i % 2].email, owner_name=reps[i % 2].name,
                        pipeline="Standard", raw={"id": i})
             for i in range(40)]
    with session_scope(engine) as session:
        for stream, records in (("users", reps), ("stages", [won]), ("deals", deals)):
            store.upsert_records(session, stream=stream, connection_id=connection_id,
                                 records=records)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = f"sqlite:///{tmp_path_factory.mktemp('digests') / 'crmsync.db'}"
    engine = make_engine(url)
    upgrade(engine)
    connection = add_connection(engine)
    with session_scope(engine) as session:
        row = session.get(Connection, connection)
        assert row is not None
        row.home_currency = "USD"
    recent_deals(engine, connection)
    add_user(engine, "boss@example.com", "admin", name="Ada Admin")
    sandbox = robots()
    with BackgroundServer(chat_app(sandbox)) as robot_server:
        secret = Fernet.generate_key().decode()
        settings = Settings(database_url=url, secret_key=secret, redis_url=None,
                            allow_endpoints=f"{robot_server.host}:{robot_server.port}")
        ctx = JobContext(settings=settings, engine=engine, secrets=SecretBox(secret))
        with session_scope(engine) as session:
            good = channels.create_channel(
                session, ctx.secrets, name="Sales group 销售群", platform="dingtalk",
                url=f"{robot_server.url}/robot/send?access_token=dt-token-1",
                secret=DINGTALK_SECRET, language="zh", cadence="weekly", day=0, hour=9)
            bad = channels.create_channel(
                session, ctx.secrets, name="Lark managers", platform="feishu",
                url=f"{robot_server.url}/open-apis/bot/v2/hook/fs-hook-1", secret="wrong",
                cadence="monthly", day=1, hour=8, team="East")
            ids = int(good.id or 0), int(bad.id or 0)
        with BackgroundServer(create_app(settings, ctx=ctx)) as server:
            yield World(server.url, sandbox, *ids)
    engine.dispose()


def test_an_admin_sends_test_digests_and_sees_how_they_went(world: World, browser: "Browser"):
    page = new_page(browser)
    sign_in(page, world.url, "boss@example.com")
    page.goto(f"{world.url}/operations")
    good = page.locator(f'tr[data-digest="{world.good}"]')
    assert "Weekly, Monday 09:00" in good.inner_text()
    page.get_by_role("button", name="Send a test digest to Sales group 销售群").click()
    page.wait_for_load_state()
    assert page.get_by_role("status").inner_text() == \
        "A test digest was sent to Sales group 销售群."
    received = [r for r in world.sandbox.received if r["platform"] == "dingtalk"]
    assert len(received) == 1
    text = received[0]["body"]["markdown"]["text"]
    assert received[0]["body"]["markdown"]["title"] == "crmsync 销售简报 (测试消息)"
    assert re.search(r"1\. (Ann Lee|Bob Roy)  [\d,]+\.\d\d · \d+ · ", text), text
    row = page.locator(f'tr[data-digest="{world.good}"]').inner_text()
    assert "–" not in row.split("\t")[4]  # last sent: now
    page.locator(f'tr[data-digest="{world.good}"]').scroll_into_view_if_needed()
    shoot(page, "digests-sent")

    page.get_by_role("button", name="Send a test digest to Lark managers").click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert").inner_text()
    assert alert.startswith("The test digest to Lark managers was not sent: Feishu code "
                            "19021: sign match fail")
    assert "19021" in page.locator(f'tr[data-digest="{world.bad}"]').inner_text()
    shoot(page, "digests-refused")
    page.context.close()


def test_the_digest_channels_in_chinese(world: World, browser: "Browser"):
    page = new_page(browser, "zh")
    sign_in(page, world.url, "boss@example.com")
    page.goto(f"{world.url}/operations")
    section = page.locator("section[aria-labelledby=digests-heading]")
    assert "每周一 09:00" in section.inner_text() and "钉钉" in section.inner_text()
    section.scroll_into_view_if_needed()
    shoot(page, "digests-zh")
    page.context.close()
