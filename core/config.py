"""Settings, read from the environment (prefix CRMSYNC_)."""

from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration. Embedded mode (the default) needs none of it."""

    model_config = SettingsConfigDict(env_prefix="CRMSYNC_", extra="ignore")

    database_url: str = "sqlite:///./crmsync.db"
    redis_url: str | None = None
    secret_key: str | None = None
    reporting_currency: str | None = None
    timezone: str = "UTC"
    fiscal_year_start_month: int = 1
    public_url: str | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    nightly_sync_hour: int | None = 2
    """Local hour (CRMSYNC_TIMEZONE) of the nightly full sync; unset (empty) turns it off."""
    job_retry_seconds: float = 30.0
    """First back-off of a sync job that failed transiently; doubles per try."""
    job_lease_seconds: int = 60
    """A killed worker's sync job is picked up again this long after its last sign of life."""
    max_body_bytes: int = 1024 * 1024
    """Largest request body the API reads (bytes); goal imports (5 MB) and webhooks (1 MB)
    have their own caps. Larger bodies get 413 before anything is parsed."""
    allow_endpoints: str = ""
    """Hosts besides the CRM vendors' own that may receive CRM credentials (sandboxes,
    private clouds): comma-separated `host`, `host:port`, `[ipv6]:port`, `*.domain` or
    `*`. Loopback, private and link-local addresses need the host listed explicitly."""

    worker_jobs: int = 10
    """Syncs, stage history backfills, goal pushes and channel subscriptions one
    `crmsync worker` runs at a time (its sync lane); embedded, the syncs and backfills
    `crmsync serve` runs at a time. More wait, in the order they were queued."""
    worker_webhook_jobs: int = 10
    """Webhook processing jobs one `crmsync worker` runs at a time, on a queue of their own
    (its webhook lane): they never wait behind syncs (workers.settings.worker_lanes)."""
    worker_webhook_process: bool = False
    """Whether `crmsync worker` (all its lanes) runs its webhook lane in a child process of
    its own (`crmsync worker --lanes webhook`), whose event loop sync work never holds up
    (workers.settings.run)."""

    webhook_rate_per_second: int = 2000
    """Callbacks one connection may send per second (a token bucket of as many, per API
    process; shared by every API process through Redis when CRMSYNC_REDIS_URL is set).
    More get 429 with Retry-After, and the vendor retries."""

    @field_validator("nightly_sync_hour", mode="before")
    @classmethod
    def _hour(cls, value: Any) -> Any:
        if value in ("", "none", "off"):
            return None
        if value is not None and not 0 <= int(value) <= 23:
            raise ValueError("nightly_sync_hour must be 0..23, or empty to turn it off")
        return value

    @field_validator("job_retry_seconds", "job_lease_seconds", "max_body_bytes",
                     "webhook_rate_per_second", "worker_jobs", "worker_webhook_jobs")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("only sqlite:///path/to/file.db and "
                             "postgresql://user:password@host:5432/name are supported")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("fiscal_year_start_month")
    @classmethod
    def _month(cls, value: int) -> int:
        if not 1 <= value <= 12:
            raise ValueError("fiscal_year_start_month must be 1..12")
        return value

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) != 3 or not value.isalpha():
            raise ValueError("reporting_currency must be a 3-letter ISO code")
        return value.upper()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def sqlite_path(self) -> Path | None:
        """The file of an embedded SQLite database, or None for another database."""
        if not self.is_sqlite:
            return None
        path = self.database_url.split(":///", 1)[-1]
        return None if path in ("", ":memory:") else Path(path)


@lru_cache
def get_settings() -> Settings:
    return Settings()
