"""Connector discovery through the entry-point group `crmsync.connectors`.

First-party connectors register the same way as third-party ones. A connector
that fails to load fails startup: we ship them, so a broken one is a bug.
"""

from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.base import Connector

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


__all__ = [
    "GROUP",
    "UnknownProvider",
    "ValidationError",
    "get_connector",
    "load_connectors",
    "validate_settings",
]
