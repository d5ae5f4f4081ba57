"""Errors that cross from connectors into the domain, and the store's own that a command
line reports without importing the store. Messages never carry secrets."""


class SourceError(Exception):
    """A CRM call failed for good (after retries)."""


class AuthError(SourceError):
    """Credentials are invalid or revoked: the connection needs re-authorization."""


class ConfigError(SourceError):
    """The connection's configuration is wrong (module missing, bad data centre...)."""


class TransientError(SourceError):
    """Worth retrying: 5xx, timeouts, truncated bodies, throttling."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TransientError):
    """The vendor throttled us (HTTP 429 or a vendor rate-limit code)."""


class SchemaNotCurrent(RuntimeError):
    """The database's schema is not the revision this code ships (`crmsync db upgrade`)."""
