"""The sandboxes write timestamps through connectors.sandbox.stamps (built from tables,
cheaply) instead of `isoformat()` / `strftime()`: every byte they answer must stay what the
plain formatting gives. Each changed sandbox is read by its own connector (every stream,
then after mutations through the kit, the control API and direct edits, incrementally
and in full again), once as it is and once with each fast formatter swapped for the plain
one it replaces, and every answer's status, headers and body are compared."""

import itertools
import random
import secrets
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import connectors.hubspot.client as hubspot_client
import connectors.hubspot.sandbox.records as hubspot_records
import connectors.hubspot.sandbox.wire as hubspot_sandbox
import connectors.pipedrive.sandbox.wire as pipedrive_sandbox
import connectors.salesforce.sandbox.wire as salesforce_sandbox
import connectors.zoho.sandbox.wire as zoho_sandbox
from connectors import registry
from connectors.base import ApiClient
from connectors.endpoints import EndpointPolicy
from connectors.http import LocalLimits, RetryPolicy, build_client
from connectors.hubspot import wire as hubspot_wire
from connectors.pipedrive import wire as pipedrive_wire
from connectors.salesforce import wire as salesforce_wire
from connectors.sandbox import generate_company
from connectors.sandbox.stamps import utc_text, wall_text
from tests.conftest import SANDBOX_ENDPOINTS

DAY = date(2027, 3, 13)  # the generated company's data ends before this day
START = datetime(2027, 3, 14, 6, 59, 57, tzinfo=UTC)  # New York's clocks go forward at 07:00


def _zoho_plain(tz: ZoneInfo, seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).astimezone(tz).isoformat()


# provider -> the fast formatters and the plain ones they replace
PLAIN: dict[str, list[tuple[ModuleType, str, Callable[..., str]]]] = {
    "zoho": [(zoho_sandbox, "_local_text", _zoho_plain)],
    "pipedrive": [(pipedrive_sandbox, "v1_time", pipedrive_wire.v1_time),
                  (pipedrive_sandbox, "v2_time", pipedrive_wire.v2_time)],
    "hubspot": [(hubspot_sandbox, "iso_ms", hubspot_wire.iso_ms),
                (hubspot_records, "iso_ms", hubspot_wire.iso_ms)],
    "salesforce": [(salesforce_sandbox, "format_datetime", salesforce_wire.format_datetime)],
}


# searches as fast as the test asks (the connector's budget raised alike, below)
OPTIONS: dict[str, dict[str, Any]] = {"hubspot": {"search_per_second": 10_000}}
UNTIMED = {"x-ratelimit-reset"}  # seconds left in a rate window, from the monotonic clock


class Recorder(httpx.AsyncBaseTransport):
    """The app in process; every answer kept (method, URL, status, headers, body)."""

    def __init__(self, app: Any) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.answers: list[tuple[str, str, int, list[tuple[str, str]], bytes]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        body = await response.aread()
        headers = sorted((k, v) for k, v in response.headers.multi_items()
                         if k not in UNTIMED)
        self.answers.append((request.method, str(request.url), response.status_code, headers,
                             body))
        return httpx.Response(response.status_code, headers=response.headers, content=body,
                              request=request)


async def _scenario(provider: str, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """Everything random or timed made repeatable: ids and tokens from counters, the wall
    clock and the company's clock stepping from START (across a DST change)."""
    counter = itertools.count()
    monkeypatch.setattr(secrets, "token_hex", lambda n=32: f"{next(counter):0{2 * n}x}")
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n=32: f"t{next(counter):0{n}d}")
    monkeypatch.setattr(hubspot_client, "SEARCH_RATE", hubspot_client.RateBudget(10_000, 1.0))
    ticks = itertools.count()
    monkeypatch.setattr("time.time", lambda: START.timestamp() + next(ticks) * 0.25)
    company = generate_company(seed=5, deals=120, accounts=30, today=DAY)
    steps = itertools.count()  # one second a change: the changes cross 07:00
    company.clock = lambda: START + timedelta(seconds=next(steps))
    sandbox, cls = registry.sandbox_of(provider), registry.get_connector(provider)
    assert sandbox is not None
    app = sandbox.create_app(company, **OPTIONS.get(provider, {}))
    recorder = Recorder(app)
    client = build_client(transport=recorder, timeout=10)
    api = ApiClient(client, max_in_flight=1, retry=RetryPolicy(attempts=1), limits=LocalLimits(),
                    endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS))
    url = "http://sandbox.test"
    source = cls(cls.config_model.model_validate(sandbox.config(url)),
                 cls.secrets_model.model_validate(dict(sandbox.secrets)), api)
    await source.check()
    streams = registry.streams_of(provider)
    cursors: dict[str, Any] = {}

    async def read(full: bool) -> None:
        for stream in streams:
            async for page in source.read(stream, None if full else cursors.get(stream)):
                cursors[stream] = page.cursor if page.cursor is not None else cursors.get(stream)

    await read(full=True)
    rng = random.Random(7)
    company.mutate(0.2, rng)  # edits, new deals, deletions: one instant
    deal = sorted(company.deals)[3]
    company.edit_deal(deal, stage_id=company.stages[-1].id, amount="1234.5")
    company.delete_account(sorted(company.accounts)[1])
    company.add_activity(kind="task", subject="Call back", done=True,
                         deal_id=sorted(company.deals)[0])
    await read(full=False)
    async with httpx.AsyncClient(transport=recorder, base_url=url) as control:
        await control.post("/_sandbox/mutate", json={"fraction": 0.1, "seed": 3})
        await control.patch(f"/_sandbox/deals/{sorted(company.deals)[5]}",
                            json={"name": "Renamed", "close_date": "2026-04-01"})
    company.reps[2].first_name = "Direct"  # edited in place, as some tests do
    company.refresh()
    await read(full=False)
    await read(full=True)
    await client.aclose()
    return recorder


@pytest.mark.parametrize("provider", sorted(PLAIN))
async def test_each_answer_is_byte_for_byte_the_plain_formatting(provider, monkeypatch) -> None:
    fast = await _scenario(provider, monkeypatch)
    with monkeypatch.context() as plain:
        for module, name, function in PLAIN[provider]:
            plain.setattr(module, name, function)
        reference = await _scenario(provider, plain)
    assert len(fast.answers) == len(reference.answers) > 10
    for got, want in zip(fast.answers, reference.answers, strict=True):
        assert got == want
    stamped = b"".join(body for *_, body in fast.answers)
    assert b"2027-03-14" in stamped  # the changes' stamps were served
    if provider == "zoho":  # on both sides of the change to summer time
        assert b"2027-03-14T01:59:57-05:00" in stamped
        assert b"2027-03-14T03:00:00-04:00" in stamped


ZONES = ("America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe", "Europe/London",
         "Asia/Shanghai", "America/Sao_Paulo", "UTC")


@pytest.mark.parametrize("zone", ZONES)
def test_zoho_local_times_are_isoformat_in_the_org_zone(zone) -> None:
    """Random instants 1990-2040, and every 2h11m59s through three years of DST changes."""
    tz, rng = ZoneInfo(zone), random.Random(zone)
    instants = [rng.randrange(631_152_000, 2_208_988_800) for _ in range(2_000)]
    instants += range(1_700_000_000, 1_700_000_000 + 3 * 365 * 86_400, 7_919)
    for seconds in instants:
        assert zoho_sandbox._local_text(tz, seconds) == _zoho_plain(tz, seconds), seconds


def test_utc_text_is_strftime_and_wall_text_is_isoformat() -> None:
    rng = random.Random(11)
    for _ in range(5_000):
        seconds = rng.randrange(-2_000_000_000, 4_102_444_800)
        moment = datetime.fromtimestamp(seconds, UTC) + timedelta(
            microseconds=rng.choice((0, rng.randrange(1_000_000))))
        shown = moment.astimezone(ZoneInfo(rng.choice(ZONES)))
        for sep in "T ":
            assert utc_text(shown, sep) == moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S"), moment
        if seconds >= 0:
            assert wall_text(seconds) == moment.replace(tzinfo=None, microsecond=0).isoformat()
