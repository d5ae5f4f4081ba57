"""Connector discovery through the entry-point group `crmsync.connectors`, and the
capabilities each connector declares (connectors/base.py, docs/connectors.md).

First-party connectors register the same way as third-party ones. A connector that
fails to load, or declares a capability only in part, fails startup with a message
saying what is missing: we ship them, so a broken one is a bug.
"""

import inspect
from collections.abc import Iterable, Mapping
from datetime import timedelta
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.base import Connector, Sandbox
from connectors.endpoints import Endpoint, EndpointPolicy
from core.records import REQUIRED_STREAMS, STREAMS
from core.types import Stream

GROUP = "crmsync.connectors"

CAPABILITIES: dict[str, tuple[str, ...]] = {
    "streams": ("check", "read", "api_calls"),
    "webhooks": ("parse_webhook", "resolve_webhook_events"),
    "channels": ("channel_renew_within", "subscribe_channel", "renew_channel",
                 "unsubscribe_channels"),
    "goals": ("push_goals",),
    "stage_history": ("stage_history_batch", "read_stage_history"),
    "goal_results": ("goal_results",),
    "sandbox": ("sandbox",),
    "commands": ("command_line",),
    "links": ("deal_url",),
    "activities": ("_read_activities",),
}
"""Each capability and the class members that declare it (connectors/base.py): all of
them, or none."""


class UnknownProvider(LookupError):
    pass


class InvalidConnector(RuntimeError):
    """A registered connector that does not keep the protocol; the message says why."""


@lru_cache
def load_connectors() -> dict[str, type[Connector]]:
    found = load_entry_points(entry_points(group=GROUP))
    if not found:
        raise RuntimeError(
            "no connectors registered: install crmsync (pip install -e .) so that "
            f"its entry points in group {GROUP!r} exist"
        )
    return found


def load_entry_points(eps: Iterable[EntryPoint]) -> dict[str, type[Connector]]:
    """Load and check each entry point's connector class; InvalidConnector if one is
    broken."""
    found: dict[str, type[Connector]] = {}
    for ep in eps:
        cls = ep.load()
        check_connector(ep.name, cls, origin=ep.value)
        found[ep.name] = cls
    return found


def check_connector(name: str, cls: Any, origin: str = "") -> frozenset[str]:
    """Check that `cls` keeps the Connector protocol and declares each capability whole;
    its capabilities, or InvalidConnector naming what is wrong."""
    where = f"connector {origin or getattr(cls, '__qualname__', cls)!s} (registered as {name!r})"
    if not inspect.isclass(cls):
        raise InvalidConnector(f"{where} is not a class")
    if getattr(cls, "name", None) != name:
        raise InvalidConnector(f"{where} names itself {getattr(cls, 'name', None)!r}")
    problems = []
    for model in ("config_model", "secrets_model"):
        value = getattr(cls, model, None)
        if not (inspect.isclass(value) and issubclass(value, BaseModel)):
            problems.append(f"{model} must be a pydantic model class")
    limit = getattr(cls, "max_in_flight", None)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        problems.append("max_in_flight must be an int of at least 1")
    found = set()
    for capability, members in CAPABILITIES.items():
        present = [m for m in members if hasattr(cls, m)]
        if capability == "streams" or present:
            missing = [m for m in members if m not in present]
            if missing:
                problems.append(f"declares {capability} without {', '.join(missing)}")
            else:
                found.add(capability)
    for method in ("check", "read", "resolve_webhook_events", "subscribe_channel",
                   "renew_channel", "unsubscribe_channels", "push_goals", "deal_url",
                   "read_stage_history", "goal_results"):
        if hasattr(cls, method) and not callable(getattr(cls, method)):
            problems.append(f"{method} must be a method")
    problems += _member_problems(cls)
    if problems:
        raise InvalidConnector(f"{where}: " + "; ".join(problems))
    return frozenset(found)


def _member_problems(cls: Any) -> list[str]:
    """What is wrong with the optional capabilities' class attributes."""
    problems = []
    renew = getattr(cls, "channel_renew_within", None)
    if renew is not None and not (isinstance(renew, timedelta) and renew > timedelta(hours=1)):
        problems.append("channel_renew_within must be a timedelta over an hour (the renewal "
                        "job runs hourly)")
    batch = getattr(cls, "stage_history_batch", None)
    if batch is not None and not (isinstance(batch, int) and not isinstance(batch, bool)
                                  and batch >= 1):
        problems.append("stage_history_batch must be an int of at least 1")
    sandbox = getattr(cls, "sandbox", None)
    if sandbox is not None and not isinstance(sandbox, Sandbox):
        problems.append("sandbox must be a connectors.base.Sandbox")
    return problems


def providers() -> list[str]:
    """Every registered provider, sorted."""
    return sorted(load_connectors())


def capabilities(provider: str) -> frozenset[str]:
    """The capabilities `provider` declares (keys of CAPABILITIES)."""
    return check_connector(provider, get_connector(provider))


def streams_of(provider: str) -> tuple[Stream, ...]:
    """The streams a sync of `provider` reads, in order: the required ones and each optional
    one whose capability it declares (the `activities` stream: the activities capability)."""
    declared = capabilities(provider)
    return tuple(s for s in STREAMS if s in REQUIRED_STREAMS or s.value in declared)


def providers_with(capability: str) -> list[str]:
    """Registered providers that declare `capability`, sorted."""
    return [p for p in providers() if capability in capabilities(p)]


def sandbox_of(provider: str) -> Sandbox | None:
    """The sandbox `provider` declares, or None."""
    sandbox: Sandbox | None = getattr(get_connector(provider), "sandbox", None)
    return sandbox


def sandboxes() -> dict[str, Sandbox]:
    """Every declared sandbox by provider, in the demo's order (demo_rank, then name)."""
    found = {p: s for p in providers() if (s := sandbox_of(p)) is not None}
    return dict(sorted(found.items(), key=lambda item: (item[1].demo_rank, item[0])))


def get_connector(provider: str) -> type[Connector]:
    connectors = load_connectors()
    try:
        return connectors[provider]
    except KeyError:
        known = ", ".join(sorted(connectors))
        raise UnknownProvider(f"unknown provider {provider!r}; known: {known}") from None


def validate_settings(
    provider: str, config: dict[str, Any], secrets: dict[str, Any]
) -> tuple[BaseModel, BaseModel]:
    """Validate a connection's config and secrets; raises UnknownProvider or ValidationError."""
    cls = get_connector(provider)
    return cls.config_model.model_validate(config), cls.secrets_model.model_validate(secrets)


def secret_field_names() -> frozenset[str]:
    """The field names of every registered connector's secrets model (for log masking)."""
    return frozenset(name for cls in load_connectors().values()
                     for name in cls.secrets_model.model_fields)


def credential_keys(provider: str) -> frozenset[str]:
    """Config keys that decide where the provider's secrets are sent (`credential_keys` of
    its config model): when one changes, the stored secrets must be given again."""
    keys: frozenset[str] = getattr(get_connector(provider).config_model, "credential_keys",
                                   frozenset())
    return keys


def deal_url(provider: str, config: Mapping[str, Any], remote_id: str) -> str | None:
    """The web address of a deal's record in its CRM (the `links` capability), or None: a
    provider that is not installed or declares no links, a config its model refuses, or
    an answer that is not an http(s) address."""
    try:
        cls = get_connector(provider)
    except UnknownProvider:
        return None
    build = getattr(cls, "deal_url", None)
    if build is None:
        return None
    try:
        model = cls.config_model.model_validate(config)
    except ValidationError:
        return None
    url = build(model, remote_id)
    return url if isinstance(url, str) and url.startswith(("https://", "http://")) else None


def check_endpoints(config: BaseModel, policy: EndpointPolicy) -> None:
    """Raise EndpointRefused unless every URL the config sends secrets to is allowed
    (the config model's `credential_endpoints()`, if it has any)."""
    endpoints: list[Endpoint] = getattr(config, "credential_endpoints", list)()
    for endpoint in endpoints:
        policy.check(endpoint.url, endpoint.vendor)


__all__ = [
    "CAPABILITIES",
    "GROUP",
    "InvalidConnector",
    "UnknownProvider",
    "ValidationError",
    "capabilities",
    "check_connector",
    "check_endpoints",
    "credential_keys",
    "deal_url",
    "get_connector",
    "load_connectors",
    "load_entry_points",
    "providers",
    "providers_with",
    "sandbox_of",
    "sandboxes",
    "secret_field_names",
    "validate_settings",
]
