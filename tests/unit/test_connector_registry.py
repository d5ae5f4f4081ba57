"""The registry checks what a connector declares when it loads (connectors/registry.py,
docs/connectors.md): a broken plugin fails registration with a message naming the fault."""

import sys
from datetime import timedelta
from importlib.metadata import EntryPoint, distributions
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel

from connectors import registry
from connectors.base import (
    GoalPusher,
    NotificationChannels,
    Sandbox,
    WebhookReceiver,
)
from connectors.registry import GROUP, InvalidConnector, load_entry_points
from tests.acme_kit import install


class Settings(BaseModel):
    pass


class Minimal:
    """Streams only: the smallest connector the registry takes."""

    name: ClassVar[str] = "minimal"
    config_model: ClassVar[type[BaseModel]] = Settings
    secrets_model: ClassVar[type[BaseModel]] = Settings
    max_in_flight: ClassVar[int] = 1

    def __init__(self, config: Any, secrets: Any, api: Any) -> None: ...

    @property
    def api_calls(self) -> int:
        return 0

    async def check(self) -> Any: ...

    def read(self, stream: str, cursor: Any) -> Any: ...


class HalfWebhooks(Minimal):
    name: ClassVar[str] = "halfwebhooks"

    @classmethod
    def parse_webhook(cls, request: Any, known: Any) -> Any: ...


class NoRead:
    name: ClassVar[str] = "noread"
    config_model: ClassVar[type[BaseModel]] = Settings
    secrets_model: ClassVar[type[BaseModel]] = Settings
    max_in_flight: ClassVar[int] = 0
    api_calls = 0

    async def check(self) -> Any: ...


class BadSandbox(Minimal):
    name: ClassVar[str] = "badsandbox"
    sandbox: ClassVar[Any] = {"create_app": None}


class ShortRenewal(Minimal):
    name: ClassVar[str] = "shortrenewal"
    channel_renew_within: ClassVar[timedelta] = timedelta(minutes=5)

    async def subscribe_channel(self, notify_url: str) -> Any: ...

    async def renew_channel(self, channel: Any) -> Any: ...

    async def unsubscribe_channels(self, channel_ids: Any) -> None: ...


class HistoryWithoutBatch(Minimal):
    name: ClassVar[str] = "historywithoutbatch"

    async def read_stage_history(self, deal_remote_ids: Any) -> Any: ...


class ZeroBatch(HistoryWithoutBatch):
    name: ClassVar[str] = "zerobatch"
    stage_history_batch: ClassVar[int] = 0


class Misnamed(Minimal):
    name: ClassVar[str] = "other"


def entry(name: str, cls: type) -> EntryPoint:
    return EntryPoint(name=name, value=f"{__name__}:{cls.__name__}", group=GROUP)


def test_a_connector_with_only_streams_registers():
    assert set(load_entry_points([entry("minimal", Minimal)])) == {"minimal"}
    assert registry.check_connector("minimal", Minimal) == {"streams"}


@pytest.mark.parametrize("name, cls, message", [
    ("halfwebhooks", HalfWebhooks, "declares webhooks without resolve_webhook_events"),
    ("noread", NoRead, "declares streams without read"),
    ("noread", NoRead, "max_in_flight must be an int of at least 1"),
    ("badsandbox", BadSandbox, "sandbox must be a connectors.base.Sandbox"),
    ("shortrenewal", ShortRenewal, "channel_renew_within must be a timedelta over an hour"),
    ("misnamed", Misnamed, "names itself 'other'"),
    ("historywithoutbatch", HistoryWithoutBatch,
     "declares stage_history without stage_history_batch"),
    ("zerobatch", ZeroBatch, "stage_history_batch must be an int of at least 1"),
])
def test_a_broken_connector_fails_registration_saying_why(name, cls, message):
    with pytest.raises(InvalidConnector) as caught:
        load_entry_points([entry("minimal", Minimal), entry(name, cls)])
    assert message in str(caught.value)
    assert f"{__name__}:{cls.__name__}" in str(caught.value)  # which plugin


def test_a_connector_installed_outside_the_repository_loads_with_its_capabilities(
        tmp_path, monkeypatch):
    """tests/acme_kit's package as pip leaves it in a directory of the path: its own
    dist-info names the entry point."""
    install(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    [dist] = distributions(path=[str(tmp_path)])
    try:
        found = load_entry_points(dist.entry_points.select(group=GROUP))
    finally:  # no later test sees the package
        for module in [m for m in sys.modules if m.split(".")[0] == "acmecrm"]:
            del sys.modules[module]
    assert list(found) == ["acme"]
    assert registry.check_connector("acme", found["acme"]) == {"streams", "sandbox"}
    assert isinstance(found["acme"].sandbox, Sandbox)


def test_the_registry_exposes_what_first_party_connectors_declare():
    names = registry.providers()
    assert names == sorted(names) and len(names) >= 2
    for provider in names:
        caps = registry.capabilities(provider)
        cls = registry.get_connector(provider)
        assert "streams" in caps
        assert ("webhooks" in caps) == isinstance(cls, WebhookReceiver)
        assert ("goals" in caps) == isinstance(cls, GoalPusher)
        assert ("channels" in caps) == isinstance(cls, NotificationChannels)
        assert ("sandbox" in caps) == isinstance(registry.sandbox_of(provider), Sandbox)
        assert provider in registry.providers_with("streams")
    assert registry.providers_with("channels")  # somebody renews channels today
    assert list(registry.sandboxes()) == sorted(
        registry.sandboxes(), key=lambda p: (registry.sandboxes()[p].demo_rank, p))
