"""The contract every connector keeps with the sync engine, the webhook route and goal
push (connectors/base.py, docs/connectors.md), checked the same way for every registered
connector against the sandbox it declares (tests/contract/conftest.py builds the cases
from the registry: a new connector gets this suite by registering).

Registered under its name with checked models; credentials checked with the home
currency; every stream read page by page with JSON cursors; normalized records
(decimals, aware times, open|won|lost from metadata); resumable from any committed
cursor without losing a record; an incremental read from the last cursor reads only
the overlap; a deletion in the CRM reaches a later read as a tombstone; and where
declared: callbacks verified, a forged one refused, events resolved to current records;
notification channels subscribed, renewed and removed; goals inserted, updated in
place and deleted.
"""

import asyncio
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors import registry
from connectors.base import (
    AccountRecord,
    ActivityRecord,
    Channel,
    DealRecord,
    GoalDeletion,
    GoalOut,
    Page,
    StageRecord,
    UserRecord,
    WebhookRejected,
    WebhookRequest,
    WebhookSecrets,
)
from connectors.registry import CAPABILITIES, get_connector
from connectors.sandbox.server import BackgroundServer
from core.errors import SourceError
from tests.contract.conftest import SANDBOX, Case

RECORD_TYPES = {"users": UserRecord, "stages": StageRecord, "accounts": AccountRecord,
                "deals": DealRecord, "activities": ActivityRecord}


async def pages(source: Any, stream: str, cursor: dict[str, Any] | None) -> list[Page]:
    return [page async for page in source.read(stream, cursor)]


def ids(collected: list[Page]) -> set[str]:
    return {record.remote_id for page in collected for record in page.records}


def deleted(collected: list[Page], entity: str) -> set[str]:
    """Tombstones of `entity`: Deletions, and records that come with their deleted_at."""
    return {d.remote_id for page in collected for d in page.deletions if d.entity == entity} | {
        r.remote_id for page in collected for r in page.records
        if getattr(r, "deleted_at", None) is not None and entity == _entity(r)}


def _entity(record: Any) -> str:
    return "deals" if isinstance(record, DealRecord) else \
        "activities" if isinstance(record, ActivityRecord) else "accounts"


def test_the_connector_is_registered_with_its_models(case: Case):
    cls = get_connector(case.provider)
    assert cls.name == case.provider
    assert cls.max_in_flight >= 1
    assert {"streams", "sandbox"} <= case.capabilities <= set(CAPABILITIES)
    config = cls.config_model.model_validate({**case.sandbox.config("http://sandbox.test"),
                                              "sync_interval_minutes": 30})
    assert config.sync_interval_minutes == 30  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        cls.config_model.model_validate({**case.sandbox.config("http://sandbox.test"),
                                         "sync_interval_minutes": 0})
    with pytest.raises(ValueError):
        cls.secrets_model.model_validate({})


async def test_check_reports_the_home_currency_and_counts_its_calls(case, app):
    source = case.connector(app)
    info = await source.check()
    assert info.home_currency is not None and len(info.home_currency) == 3
    assert info.home_currency == info.home_currency.upper()
    assert source.api_calls > 0


async def test_every_stream_reads_normalized_records_with_json_cursors(case, app):
    source = case.connector(app)
    await source.check()
    for stream in registry.streams_of(case.provider):  # (metadata read by check() may be reused)
        collected = await pages(source, stream, None)
        for page in collected:
            if page.cursor is not None:
                assert orjson.loads(orjson.dumps(page.cursor)) == page.cursor, stream
            for record in page.records:
                assert isinstance(record, RECORD_TYPES[stream]), (stream, record)
                assert isinstance(record.remote_id, str) and record.remote_id
                modified = record.remote_modified_at
                assert modified is None or (isinstance(modified, datetime)
                                            and modified.utcoffset() is not None)
            for deletion in page.deletions:
                assert deletion.entity in ("accounts", "deals", "activities")
                assert deletion.deleted_at.utcoffset() is not None
        if stream in RECORD_TYPES:
            assert ids(collected), f"{case.provider}: no {stream}"
        if stream == "stages":
            categories = {r.category for p in collected for r in p.records}
            assert {"open", "won", "lost"} <= categories
        if stream == "deals":
            deals = [r for p in collected for r in p.records]
            assert {d.status for d in deals} <= {"open", "won", "lost"}
            assert {"open", "won", "lost"} <= {d.status for d in deals}
            for deal in deals:
                for money in (deal.amount, deal.amount_home, deal.probability):
                    assert money is None or isinstance(money, Decimal), deal
                assert deal.close_date is None or type(deal.close_date) is date
                assert deal.owner_email is None or "@" in deal.owner_email


def paged_streams(case: Case) -> tuple[str, ...]:
    """The record streams read incrementally: accounts, deals, and activities when declared."""
    return ("accounts", "deals", *(("activities",) if "activities" in case.capabilities
                                   else ()))


async def test_resuming_from_any_committed_cursor_loses_nothing(case, app):
    source = case.connector(app)
    await source.check()
    for stream in paged_streams(case):
        full = await pages(source, stream, None)
        everything = ids(full)
        assert len(full) >= 2, f"{stream}: the test needs several pages"
        for k in range(1, len(full)):
            cursor = full[k - 1].cursor
            assert cursor is not None
            resumed = await pages(source, stream, cursor)
            assert ids(full[:k]) | ids(resumed) == everything, (stream, k)


async def test_an_incremental_read_from_the_last_cursor_reads_only_the_overlap(case, app):
    source = case.connector(app)
    await source.check()
    for stream in paged_streams(case):
        full = await pages(source, stream, None)
        last = [p.cursor for p in full if p.cursor is not None][-1]
        again = await pages(source, stream, last)
        assert len(ids(again)) < len(ids(full)) / 2, stream
        assert ids(again) <= ids(full), stream


def last_cursor(collected: list[Page]) -> dict[str, Any] | None:
    cursors = [p.cursor for p in collected if p.cursor is not None]
    return cursors[-1] if cursors else None


async def test_a_deal_deleted_in_the_crm_reaches_a_later_read_as_a_tombstone(
        case, app, company):
    source = case.connector(app)
    await source.check()
    deals, gone = await pages(source, "deals", None), await pages(source, "deletions", None)
    known = deleted(deals, "deals") | deleted(gone, "deals")
    victim = sorted(company.deals)[7]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sandbox.test") as control:
        response = await control.delete(f"/_sandbox/deals/{victim}")
    assert response.status_code == 200, response.text
    later = [*await pages(source, "deals", last_cursor(deals)),
             *await pages(source, "deletions", last_cursor(gone))]
    tombstones = (deleted(later, "deals") - known)
    assert len(tombstones) == 1, tombstones  # the deleted deal, and nothing else
    assert tombstones <= ids(deals)  # a deal the full read had


# -- activities, where declared ----------------------------------------------------------------


@pytest.mark.parametrize("case", registry.providers_with("activities"), indirect=True)
async def test_activities_are_typed_and_an_activity_deleted_reaches_a_later_read(
        case, app, company):
    source = case.connector(app)
    await source.check()
    activities = await pages(source, "activities", None)
    gone = await pages(source, "deletions", None)
    records = [r for p in activities for r in p.records]
    assert {"call", "meeting"} <= {r.type for r in records}  # what every CRM has
    for record in records:
        assert record.occurred_at is None or record.occurred_at.utcoffset() is not None
        assert record.done in (True, False, None)
        assert record.owner_remote_id or record.owner_email, record
    assert any(r.deal_remote_id for r in records) and any(r.account_remote_id for r in records)
    known = deleted(activities, "activities") | deleted(gone, "activities")
    # a held call: every CRM's sandbox serves those (docs/connectors.md, the activities stream)
    victim = sorted(i for i, a in company.activities.items() if a.kind == "call" and a.done)[3]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://sandbox.test") as control:
        response = await control.delete(f"/_sandbox/activities/{victim}")
    assert response.status_code == 200, response.text
    later = [*await pages(source, "activities", last_cursor(activities)),
             *await pages(source, "deletions", last_cursor(gone))]
    tombstones = deleted(later, "activities") - known
    assert len(tombstones) == 1, tombstones  # the deleted call, and nothing else
    assert tombstones <= ids(activities)


# -- webhooks, where declared ----------------------------------------------------------------


class Receiver:
    """Our webhook route in miniature, on a real port: each callback parsed by the
    connector (as api/routes/webhooks.py does) and answered with the intake's body."""

    def __init__(self, case: Case, channels: dict[str, str]) -> None:
        self.case, self.channels = case, channels
        self.intakes: list[Any] = []
        self.app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        webhook = WebhookRequest(await request.body(), dict(request.headers),
                                 dict(request.query_params), request.method, str(request.url))
        try:
            intake = self.case.cls.parse_webhook(webhook, WebhookSecrets(
                dict(self.case.sandbox.secrets), dict(self.channels)))
        except WebhookRejected as exc:
            return Response(str(exc), status_code=exc.status)
        self.intakes.append((webhook, intake))
        return Response(intake.body, media_type=intake.content_type)


async def wait_for(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "no callback arrived"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("case", registry.providers_with("webhooks"), indirect=True)
async def test_callbacks_are_verified_and_resolve_to_current_records(case, company):
    app = case.sandbox.create_app(company)
    channels: dict[str, str] = {}
    receiver = Receiver(case, channels)
    with BackgroundServer(receiver.app) as hook, BackgroundServer(app) as crm:
        source = case.connector(app, crm.url, over_http=True)
        await source.check()
        before = await pages(source, "deals", None)
        if "channels" in case.capabilities:
            channel = await source.subscribe_channel(f"{hook.url}/hook")
            channels[channel.channel_id] = channel.token
        elif case.sandbox.set_callback_url is not None:
            case.sandbox.set_callback_url(app, f"{hook.url}/hook")
        else:
            pytest.fail("webhooks without channels need Sandbox.set_callback_url")
        deal_id = sorted(company.deals)[3]
        async with httpx.AsyncClient(base_url=crm.url) as control:
            response = await control.patch(f"/_sandbox/deals/{deal_id}",
                                           json={"amount": "4321.09"})
            assert response.status_code == 200, response.text
            await wait_for(lambda: receiver.intakes)
            webhook, intake = receiver.intakes[0]
            assert intake.events and all(isinstance(key, str) and key
                                         for key, _ in intake.events)
            with pytest.raises(WebhookRejected) as refused:  # nothing to verify it against
                case.cls.parse_webhook(webhook, WebhookSecrets({}, {}))
            assert refused.value.status in (401, 403)
            changes = await source.resolve_webhook_events([p for _, p in intake.events])
            current = {r.remote_id: r for p in await pages(source, "deals", last_cursor(before))
                       for r in p.records}
    records = [r for stream, page in changes if stream == "deals" for r in page.records]
    assert records and all(isinstance(r, DealRecord) for r in records)
    assert {r.remote_id for r in records} <= ids(before)
    for record in records:  # the CRM's current state, as an incremental read sees it
        assert (record.amount, record.status) == (current[record.remote_id].amount,
                                                  current[record.remote_id].status)


@pytest.mark.parametrize("case", registry.providers_with("channels"), indirect=True)
async def test_notification_channels_subscribe_renew_and_unsubscribe(case, company):
    app = case.sandbox.create_app(company)
    source = case.connector(app)
    first = await source.subscribe_channel("http://127.0.0.1:9/hook")
    assert isinstance(first, Channel) and first.channel_id and first.token
    assert first.expires_at.utcoffset() is not None
    assert first.expires_at - datetime.now(first.expires_at.tzinfo) > \
        case.cls.channel_renew_within
    renewed = await source.renew_channel(first)
    assert (renewed.channel_id, renewed.token) == (first.channel_id, first.token)
    assert renewed.expires_at >= first.expires_at
    await source.unsubscribe_channels([first.channel_id])
    with pytest.raises(SourceError):  # the CRM no longer knows it: the job subscribes anew
        await source.renew_channel(first)


# -- goal push, where declared -----------------------------------------------------------------


@pytest.mark.parametrize("case", registry.providers_with("goals"), indirect=True)
async def test_goals_are_inserted_updated_in_place_and_deleted(case, app):
    source = case.connector(app)
    info = await source.check()
    rep = next(r for p in await pages(source, "users", None) for r in p.records
               if r.email and r.active)
    goal = GoalOut(1, "contract-goal-1", rep.email, rep.remote_id, rep.name, "bookings",
                   date(2026, 1, 1), date(2026, 3, 31), Decimal("50000.00"),
                   info.home_currency)
    company_goal = GoalOut(2, "contract-goal-2", None, None, None, "deals_won",
                           date(2026, 1, 1), date(2026, 3, 31), Decimal(12), None)
    made = {r.goal_id: r for r in await source.push_goals([goal, company_goal], [])}
    assert {g: r.status for g, r in made.items()} == {1: "inserted", 2: "inserted"}, made
    assert made[1].remote_id and made[2].remote_id and made[1].remote_id != made[2].remote_id
    goal.target = Decimal("60000.00")
    [edited] = await source.push_goals([goal], [])
    assert (edited.status, edited.remote_id) == ("updated", made[1].remote_id), edited
    gone = await source.push_goals([], [GoalDeletion(2, "contract-goal-2",
                                                     str(made[2].remote_id))])
    assert [(r.goal_id, r.status) for r in gone] == [(2, "deleted")], gone


@pytest.mark.parametrize("case", registry.providers_with("links"), indirect=True)
async def test_a_deals_link_opens_its_page_in_the_sandbox(case, app):
    """links (where declared): the address deal_url builds for a deal the connector read is
    a page of the sandbox (the CRM's web app) that names the deal; an unknown id is not."""
    source = case.connector(app)
    await source.check()
    deal = next(r for p in await pages(source, "deals", None) for r in p.records)
    url = registry.deal_url(case.provider, case.sandbox.config(SANDBOX), deal.remote_id)
    assert url is not None and url.startswith(SANDBOX + "/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as browser:
        page = await browser.get(url)
        assert page.status_code == 200 and deal.name in page.text.replace("&amp;", "&")
        unknown = registry.deal_url(case.provider, case.sandbox.config(SANDBOX), "1")
        assert unknown is not None and (await browser.get(unknown)).status_code == 404
