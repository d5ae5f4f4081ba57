"""The contract every connector keeps with the sync engine (connectors/base.py,
docs/sync.md), checked the same way for each first-party connector against its own sandbox.

A new CRM plugin adds one Case below and passes this suite before its own tests matter:
registered under its name, credentials checked with the home currency, every stream read
page by page with JSON cursors, normalized records (decimals, aware times, open|won|lost
from metadata), resumable from any committed cursor without losing a record, and an
incremental read from the last cursor that reads only the overlap.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
import orjson
import pytest

from connectors.base import (
    STREAMS,
    AccountRecord,
    ApiClient,
    DealRecord,
    Page,
    StageRecord,
    UserRecord,
)
from connectors.endpoints import EndpointPolicy
from connectors.fxiaoke import auth as fx_auth
from connectors.fxiaoke import connector as fx_connector
from connectors.fxiaoke import sandbox as fx_sandbox
from connectors.http import RetryPolicy, build_client
from connectors.registry import get_connector
from connectors.sandbox.dataset import generate_company
from connectors.zoho import auth as zoho_auth
from connectors.zoho import sandbox as zoho_sandbox
from tests.conftest import SANDBOX_ENDPOINTS

SANDBOX = "http://sandbox.test"
RECORD_TYPES = {"users": UserRecord, "stages": StageRecord, "accounts": AccountRecord,
                "deals": DealRecord}


@dataclass(frozen=True)
class Case:
    provider: str
    make_app: Callable[..., Any]
    config: dict[str, Any]
    secrets: dict[str, str]


CASES = {
    "zoho": Case("zoho", zoho_sandbox.create_app, {"accounts_url": SANDBOX},
                 {"client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
                  "refresh_token": "sandbox-refresh-token"}),
    "fxiaoke": Case("fxiaoke", fx_sandbox.create_app,
                    {"base_url": SANDBOX, "admin_mobile": "13800130000"},
                    {"app_id": fx_sandbox.SANDBOX_APP_ID,
                     "app_secret": fx_sandbox.SANDBOX_APP_SECRET,
                     "permanent_code": fx_sandbox.SANDBOX_PERMANENT_CODE,
                     "aes_key": fx_sandbox.SANDBOX_AES_KEY}),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Case:
    zoho_auth._CACHE.clear()  # tokens are cached per process, per credentials
    fx_auth.clear_cache()
    fx_connector._RECENT.clear()
    monkeypatch.setattr(fx_connector, "RATE", fx_connector.RateBudget(1000, 1.0))
    return CASES[request.param]


@pytest.fixture
def app(case: Case) -> Any:
    return case.make_app(generate_company(seed=5, deals=450, accounts=250))


def connector(case: Case, app: Any) -> Any:
    cls = get_connector(case.provider)
    client = build_client(transport=httpx.ASGITransport(app=app), timeout=10)
    api = ApiClient(client, max_in_flight=cls.max_in_flight,
                    retry=RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.1),
                    endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS))
    return cls(cls.config_model.model_validate(case.config),
               cls.secrets_model.model_validate(case.secrets), api)


async def pages(source: Any, stream: str, cursor: dict[str, Any] | None) -> list[Page]:
    return [page async for page in source.read(stream, cursor)]


def ids(collected: list[Page]) -> set[str]:
    return {record.remote_id for page in collected for record in page.records}


def test_the_connector_is_registered_with_its_models(case):
    cls = get_connector(case.provider)
    assert cls.name == case.provider
    assert cls.max_in_flight >= 1
    config = cls.config_model.model_validate({**case.config, "sync_interval_minutes": 30})
    assert config.sync_interval_minutes == 30  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        cls.config_model.model_validate({**case.config, "sync_interval_minutes": 0})
    with pytest.raises(ValueError):
        cls.secrets_model.model_validate({})


async def test_check_reports_the_home_currency_and_counts_its_calls(case, app):
    source = connector(case, app)
    info = await source.check()
    assert info.home_currency is not None and len(info.home_currency) == 3
    assert info.home_currency == info.home_currency.upper()
    assert source.api_calls > 0


async def test_every_stream_reads_normalized_records_with_json_cursors(case, app):
    source = connector(case, app)
    await source.check()
    for stream in STREAMS:  # (metadata read by check() may be reused: no call needed)
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
                assert deletion.entity in ("accounts", "deals")
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


async def test_resuming_from_any_committed_cursor_loses_nothing(case, app):
    source = connector(case, app)
    await source.check()
    for stream in ("accounts", "deals"):
        full = await pages(source, stream, None)
        everything = ids(full)
        assert len(full) >= 2, f"{stream}: the test needs several pages"
        for k in range(1, len(full)):
            cursor = full[k - 1].cursor
            assert cursor is not None
            resumed = await pages(source, stream, cursor)
            assert ids(full[:k]) | ids(resumed) == everything, (stream, k)


async def test_an_incremental_read_from_the_last_cursor_reads_only_the_overlap(case, app):
    source = connector(case, app)
    await source.check()
    for stream in ("accounts", "deals"):
        full = await pages(source, stream, None)
        last = [p.cursor for p in full if p.cursor is not None][-1]
        again = await pages(source, stream, last)
        assert len(ids(again)) < len(ids(full)) / 2, stream
        assert ids(again) <= ids(full), stream
