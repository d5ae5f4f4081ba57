"""Connector discovery through the entry-point group `crmsync.connectors`.

First-party connectors register the same way as third-party ones. A connector
that fails to load fails startup: we ship them, so a broken one is a bug.
"""

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.base import Connector
from connectors.endpoints import Endpoint, EndpointPolicy

GROUP = "crmsync.connectors"


class UnknownProvider(LookupError):
    pass


@lru_cache
def load_connectors() -> dict[str, type[Connector]]:
    found: dict[str, type[Connector]] = {}
    for ep in entry_points(group=GROUP):
        cls = ep.load()
        if getattr(cls, "name", None) != ep.name:
            raise RuntimeError(
                f"connector {ep.value} is registered as {ep.name!r} "
                f"but names itself {getattr(cls, 'name', None)!r}"
            )
        found[ep.name] = cls
    if not found:
        raise RuntimeError(
            "no connectors registered: install crmsync (pip install -e .) so that "
            f"its entry points in group {GROUP!r} exist"
        )
    return found


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


def check_endpoints(config: BaseModel, policy: EndpointPolicy) -> None:
    """Raise EndpointRefused unless every URL the config sends secrets to is allowed
    (the config model's `credential_endpoints()`, if it has any)."""
    endpoints: list[Endpoint] = getattr(config, "credential_endpoints", list)()
    for endpoint in endpoints:
        policy.check(endpoint.url, endpoint.vendor)


__all__ = [
    "GROUP",
    "UnknownProvider",
    "ValidationError",
    "check_endpoints",
    "credential_keys",
    "get_connector",
    "load_connectors",
    "secret_field_names",
    "validate_settings",
]
