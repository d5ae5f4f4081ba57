"""Scheduled digests end to end (workers/digests.py): built from the store, signed, sent over
HTTP to the chat robot sandbox (api/chat_sandbox.py) behind the vendors' hosts; exactly
once per channel and period under the in-process scheduler and under arq workers sharing
Redis; retries of transient failures; permanent ones on the channel; no secret in logs."""

import asyncio
import logging
import time
from datetime import UTC, date, datetime, timedelta

import httpx
from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker
from cryptography.fernet import Fernet
from sqlalchemy import Engine

from core.config import Settings
from core.db import session_scope
from core.digests import channels
from core.digests.content import money
from core.hygiene import hygiene_counts
from core.logs import redact
from core.metrics.definitions import GroupBy, summaries
from core.metrics.scorecard import scorecards
from core.models import Connection, DigestChannel
from core.security import SecretBox
from tests.api_support import add_connection, seed
from tests.digest_support import DINGTALK_SECRET, DINGTALK_URL, URLS, robots, transport
from workers.context import JobContext
from workers.digests import send_due_digests
from workers.runner import InProcessRunner
from workers.settings import CronLaneSettings, digests_job

FEBRUARY = datetime(2025, 2, 1, 10, tzinfo=UTC)  # after the monthly moment Feb 1, 09:00


def context(engine: Engine, sandbox_transport: httpx.AsyncBaseTransport,
            key: str | None = None) -> JobContext:
    key = key or Fernet.generate_key().decode()
    url = engine.url.render_as_string(hide_password=False)
    return JobContext(settings=Settings(database_url=url, secret_key=key, timezone="UTC"),
                      engine=engine, secrets=SecretBox(key), transport=sandbox_transport)


def add_channel(ctx: JobContext, platform: str = "dingtalk", *, secret: str | None = None,
                created: datetime = datetime(2025, 1, 15, tzinfo=UTC), **fields) -> int:
    with session_scope(ctx.engine) as session:
        channel = channels.create_channel(
            session, ctx.secrets, name=f"{platform} robot", platform=platform,
            url=fields.pop("url", URLS[platform]), secret=secret, cadence="monthly", day=1,
            hour=9, **fields)
        channel.created_at = created
        return int(channel.id or 0)


def deliveries(engine: Engine, channel_id: int) -> list[tuple[str, str, int]]:
    with session_scope(engine) as session:
        return [(d.period, d.status, d.attempts)
                for d in channels.deliveries(session, channel_id)]


async def test_a_due_digest_is_sent_once_with_the_leaderboards_numbers(engine):
    connection_id = add_connection(engine)
    with session_scope(engine) as session:
        session.get(Connection, connection_id).home_currency = "USD"
    seed(engine, connection_id)
    sandbox = robots()
    ctx = context(engine, transport(sandbox))
    channel_id = add_channel(ctx, secret=DINGTALK_SECRET, language="zh")
    assert await send_due_digests(ctx, FEBRUARY - timedelta(days=1)) == \
        {"sent": 0, "retrying": 0, "failed": 0}  # January 1st's moment: before the channel
    assert await send_due_digests(ctx, FEBRUARY) == {"sent": 1, "retrying": 0, "failed": 0}
    await send_due_digests(ctx, FEBRUARY + timedelta(minutes=1))
    await asyncio.gather(*(send_due_digests(ctx, FEBRUARY + timedelta(minutes=2))
                           for _ in range(3)))
    assert deliveries(engine, channel_id) == [("2025-02-01", "sent", 1)]
    [got] = sandbox.received
    text = got["body"]["markdown"]["text"]
    with session_scope(engine) as session:
        board = summaries(session, start=date(2025, 1, 1), end=date(2025, 1, 31),
                          group_bys=[GroupBy.OWNER], settings=ctx.settings)[GroupBy.OWNER]
        channel = session.get(DigestChannel, channel_id)
        assert channel is not None and channel.last_sent_at is not None
        assert channel.last_error is None
    assert board["total"]["bookings"] > 0
    assert f"**合计**: {money(board['total']['bookings'])} · {board['total']['deals_won']}" \
        in text
    for row in board["data"]:
        if row["bookings"]:
            assert f"{row['owner_name']}  {money(row['bookings'])} · {row['deals_won']}" in text
    assert "月 2025-01-01 – 2025-01-31 · 全员" in text
    with session_scope(engine) as session:  # the scorecards' and hygiene's own numbers
        cards = scorecards(session, start=date(2025, 1, 1), end=date(2025, 1, 31),
                           settings=ctx.settings)
        issues = sum(c["total"] for c in hygiene_counts(session, settings=ctx.settings)
                     .values())
    assert "**个人记分卡（与上期相比）**" in text
    for card in cards["data"]:
        won = card["bookings"]
        assert (f"{card['owner_name']}（{card['team']} 第 {card['rank']} 名）：赢单 "
                f"{money(won['value'])}（{won['change']:+,.2f}）") in text
    assert issues > 0 and f"**商机整理：{issues} 个进行中的商机需要处理**" in text
    assert "长期未更新、已过成交日期" in text  # the seeded open deals closed in January 2025
    assert got["body"]["msgUuid"] == f"crmsync-digest-{channel_id}-2025-02-01"


class FailingFirst(httpx.AsyncBaseTransport):
    """Answers the first `failures` requests with HTTP 502, then passes them on."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int) -> None:
        self.inner, self.failures = inner, failures

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures > 0:
            self.failures -= 1
            return httpx.Response(502, text="<html>bad gateway</html>")
        return await self.inner.handle_async_request(request)


async def test_a_transient_failure_is_retried_with_back_off(sqlite_engine):
    sandbox = robots()
    ctx = context(sqlite_engine, FailingFirst(transport(sandbox), 2))
    channel_id = add_channel(ctx, "wecom")
    assert (await send_due_digests(ctx, FEBRUARY))["retrying"] == 1
    assert deliveries(sqlite_engine, channel_id) == [("2025-02-01", "pending", 1)]
    assert (await send_due_digests(ctx, FEBRUARY + timedelta(seconds=20)))["retrying"] == 0
    assert (await send_due_digests(ctx, FEBRUARY + timedelta(seconds=31)))["retrying"] == 1
    # the second wait doubles: 60 s after the second attempt
    assert (await send_due_digests(ctx, FEBRUARY + timedelta(seconds=80)))["sent"] == 0
    assert (await send_due_digests(ctx, FEBRUARY + timedelta(seconds=92)))["sent"] == 1
    assert deliveries(sqlite_engine, channel_id) == [("2025-02-01", "sent", 3)]
    assert len(sandbox.received) == 1


async def test_a_permanent_failure_is_not_retried_and_no_secret_is_logged(
        sqlite_engine, caplog):
    caplog.set_level(logging.DEBUG)
    # httpx's own logger: core.logs.configure_logging (run by earlier tests of this process)
    # quiets it to WARNING
    caplog.set_level(logging.DEBUG, logger="httpx")
    sandbox = robots()
    ctx = context(sqlite_engine, transport(sandbox))
    channel_id = add_channel(ctx, secret="SECwrong-secret-value")
    assert (await send_due_digests(ctx, FEBRUARY))["failed"] == 1
    assert (await send_due_digests(ctx, FEBRUARY + timedelta(hours=1)))["failed"] == 0
    assert deliveries(sqlite_engine, channel_id) == [("2025-02-01", "failed", 1)]
    with session_scope(sqlite_engine) as session:
        channel = channels.get_channel(session, channel_id)
        assert channel.last_error == "DingTalk errcode 310000: sign not match"
        shown = channels.public(ctx.secrets, channel)
    assert shown["host"] == "oapi.dingtalk.com" and shown["signed"] is True
    assert "dt-token-1" in caplog.text  # httpx's own request line, before masking
    logged = redact(caplog.text)  # what the project's log formatters write (core/logs.py)
    for secret in ("SECwrong-secret-value", "dt-token-1"):
        assert secret not in logged and secret not in repr(shown)
    assert sandbox.received == []


async def test_a_network_failure_names_the_host_only(sqlite_engine):
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    ctx = context(sqlite_engine, httpx.MockTransport(refuse))
    channel_id = add_channel(ctx, "slack")
    assert (await send_due_digests(ctx, FEBRUARY))["retrying"] == 1
    with session_scope(sqlite_engine) as session:
        error = channels.get_channel(session, channel_id).last_error
    assert error == "ConnectError calling hooks.slack.com"


async def test_the_in_process_scheduler_sends_a_due_digest_once(sqlite_engine):
    sandbox = robots()
    ctx = context(sqlite_engine, transport(sandbox))
    channel_id = add_channel(ctx, "feishu", secret="demo",
                             created=datetime(2020, 1, 1, tzinfo=UTC))
    runner = InProcessRunner(ctx)
    runner.start_scheduler(every=0.05)
    try:
        for _ in range(200):
            if sandbox.received:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # ten more ticks
    finally:
        await runner.close()
    assert len(sandbox.received) == 1
    [(_period, status, attempts)] = deliveries(sqlite_engine, channel_id)
    assert (status, attempts) == ("sent", 1)
    assert sandbox.received[0]["body"]["card"]["header"]["title"]["content"] == \
        "crmsync sales digest"


async def test_two_arq_workers_send_a_due_digest_once(pg_engine, redis_url):
    assert "send_digests_minutely" in {c.name for c in CronLaneSettings.cron_jobs}
    sandbox = robots()
    key = Fernet.generate_key().decode()
    contexts = [context(pg_engine, transport(sandbox), key) for _ in range(2)]
    channel_id = add_channel(contexts[0], "dingtalk", secret=DINGTALK_SECRET,
                             created=datetime(2020, 1, 1, tzinfo=UTC))

    def worker(ctx: JobContext) -> Worker:
        async def startup(worker_ctx):
            worker_ctx["job"] = ctx

        # every second on both workers, not unique: only the database claim keeps it once
        tick = cron(digests_job, name="digests_every_second", second=set(range(60)),
                    run_at_startup=True, unique=False, max_tries=1, timeout=60)
        return Worker(functions=[], cron_jobs=[tick], on_startup=startup, poll_delay=0.05,
                      redis_settings=RedisSettings.from_dsn(redis_url),
                      handle_signals=False)

    workers = [worker(ctx) for ctx in contexts]
    tasks = [asyncio.create_task(w.main()) for w in workers]
    try:
        await asyncio.sleep(3.5)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for w in workers:
            await w.close()
    assert sum(w.jobs_complete for w in workers) >= 4  # both ran the job several times
    assert len(sandbox.received) == 1
    [(_period, status, attempts)] = deliveries(pg_engine, channel_id)
    assert (status, attempts) == ("sent", 1)
    assert DINGTALK_URL.split("=")[1] == sandbox.received[0]["robot"]


async def test_two_channels_of_one_robot_keep_its_rate(sqlite_engine):
    """Slack allows about one message a second: the second channel's send waits for it
    (the process's shared limits, keyed by the robot) instead of getting a 429."""
    sandbox = robots()
    ctx = context(sqlite_engine, transport(sandbox))
    first = add_channel(ctx, "slack")
    with session_scope(sqlite_engine) as session:
        second = channels.create_channel(session, ctx.secrets, name="slack again",
                                         platform="slack", url=URLS["slack"],
                                         cadence="monthly", day=1, hour=9)
        second.created_at = datetime(2025, 1, 15, tzinfo=UTC)
        second_id = int(second.id or 0)
    started = time.monotonic()
    assert await send_due_digests(ctx, FEBRUARY) == {"sent": 2, "retrying": 0, "failed": 0}
    assert time.monotonic() - started >= 0.9
    assert len(sandbox.received) == 2
    assert deliveries(sqlite_engine, first)[0][1] == deliveries(sqlite_engine, second_id)[0][1] \
        == "sent"
