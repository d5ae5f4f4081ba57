"""Fixtures of the contract suite: one case per registered connector, built from the
sandbox it declares (connectors.base.Sandbox); nothing here names a provider."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from connectors import registry
from connectors.base import ApiClient, Sandbox
from connectors.endpoints import EndpointPolicy
from connectors.http import LocalLimits, RetryPolicy, build_client
from connectors.sandbox import Company, generate_company
from tests.conftest import SANDBOX_ENDPOINTS

SANDBOX = "http://sandbox.test"
FAST_RETRY = RetryPolicy(attempts=5, initial_wait=0.01, max_wait=0.1)


@dataclass(frozen=True)
class Case:
    provider: str
    cls: Any
    sandbox: Sandbox
    capabilities: frozenset[str]

    def connector(self, app: Any, url: str = SANDBOX, *, over_http: bool = False) -> Any:
        """The connector on a sandbox: in process (ASGI) at `url`, or over real HTTP at
        `url` (a BackgroundServer). Fresh limits: no token or budget of an earlier test."""
        transport = None if over_http else httpx.ASGITransport(app=app)
        client = build_client(transport=transport, timeout=10)
        api = ApiClient(client, max_in_flight=self.cls.max_in_flight, retry=FAST_RETRY,
                        limits=LocalLimits(), endpoints=EndpointPolicy.parse(SANDBOX_ENDPOINTS))
        return self.cls(self.cls.config_model.model_validate(self.sandbox.config(url)),
                        self.cls.secrets_model.model_validate(dict(self.sandbox.secrets)), api)


@pytest.fixture(params=registry.providers())
def case(request: pytest.FixtureRequest) -> Case:
    provider = request.param
    sandbox = registry.sandbox_of(provider)
    if sandbox is None:
        pytest.fail(f"connector {provider!r} declares no sandbox: the contract suite runs "
                    "every connector against its own (docs/connectors.md)")
    return Case(provider, registry.get_connector(provider), sandbox,
                registry.capabilities(provider))


@pytest.fixture
def company() -> Company:
    return generate_company(seed=5, deals=450, accounts=250)


@pytest.fixture
def app(case: Case, company: Company) -> Iterator[Any]:
    yield case.sandbox.create_app(company)
