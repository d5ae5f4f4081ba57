"""Connection settings, shared by the HTTP routes and the command line.

Config and secrets are validated by the provider's connector (connectors.registry);
secrets are sealed with the SecretBox and never returned, only their names
(`secrets_set`). Functions flush and never commit: the caller owns the transaction.
"""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from api.deps import JobQueue
from api.schemas import Answer
from connectors.endpoints import EndpointPolicy, EndpointRefused
from connectors.registry import (
    UnknownProvider,
    check_endpoints,
    credential_keys,
    deal_url,
    get_connector,
    providers,
    validate_settings,
)
from core.history import backfill_progress
from core.models import Connection
from core.security import SecretBox, SecretsUnreadable
from core.types import ConnectionStatus, utcnow

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class ConnectionInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1, max_length=40, examples=providers(),
                          description="A registered provider (docs/connectors.md).")
    name: Name
    config: dict[str, Any] = Field(default_factory=dict)
    secrets: dict[str, Any] = Field(default_factory=dict, description="Write-only.")


class ConnectionPatch(BaseModel):
    """Given keys of `config` and `secrets` are merged into the stored ones (null removes)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    config: dict[str, Any] | None = None
    secrets: dict[str, Any] | None = Field(default=None, description="Write-only.")


class ConnectionPublic(Answer):
    id: int
    provider: str
    name: str
    config: dict[str, Any]
    secrets_set: list[str]
    home_currency: str | None
    status: ConnectionStatus
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    last_synced_at: datetime | None


class InvalidSettings(ValueError):
    """Bad provider, config or secrets. `errors` are pydantic-style, without input values."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors
        ))


class NameTaken(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"a connection named {name!r} already exists")


def create_connection(session: Session, box: SecretBox, payload: ConnectionInput, *,
                      endpoints: EndpointPolicy | None = None) -> dict[str, Any]:
    """Add a connection; returns its public JSON. Raises InvalidSettings or NameTaken.
    `endpoints` decides where secrets may go (CRMSYNC_ALLOW_ENDPOINTS; vendors only by
    default)."""
    config, secrets = validated(payload.provider, payload.config, payload.secrets, endpoints)
    _ensure_name_free(session, payload.name)
    connection = Connection(provider=payload.provider, name=payload.name, config=config,
                            secrets_encrypted=box.seal(secrets))
    session.add(connection)
    _flush(session, payload.name)
    return public_connection(connection.model_dump(), box)


def update_connection(
    session: Session, box: SecretBox, connection: Connection, patch: ConnectionPatch, *,
    endpoints: EndpointPolicy | None = None,
) -> dict[str, Any]:
    """Rename and/or merge settings, re-validated as a whole; returns the public JSON.

    When a config key that decides where the secrets go changes (the connector's
    `credential_keys`), the stored secrets are dropped: the patch must give them all."""
    if patch.name is not None and patch.name != connection.name:
        _ensure_name_free(session, patch.name)
        connection.name = patch.name
    if patch.config is not None or patch.secrets is not None:
        config = _merge(connection.config, patch.config)
        moved = [key for key in sorted(credential_keys(connection.provider))
                 if config.get(key) != connection.config.get(key)]
        stored = _stored_secrets(box, connection, patch)  # unreadable: an error either way
        secrets = _merge({} if moved else stored, patch.secrets)
        if moved:
            _require_secrets(connection.provider, secrets, moved)
        config, secrets = validated(connection.provider, config, secrets, endpoints)
        connection.config = config
        connection.secrets_encrypted = box.seal(secrets)
        if patch.secrets and connection.status == ConnectionStatus.NEEDS_REAUTH:
            connection.status = ConnectionStatus.ACTIVE  # new credentials: the next sync tries them
    connection.updated_at = utcnow()
    session.add(connection)
    _flush(session, connection.name)
    return public_connection(connection.model_dump(), box)


def validated(
    provider: str, config: dict[str, Any], secrets: dict[str, Any],
    endpoints: EndpointPolicy | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config and secrets as the provider's models accept them (defaults filled in), the
    URLs that receive the secrets allowed by `endpoints` (vendors only by default)."""
    try:
        config_model, secrets_model = validate_settings(provider, config, secrets)
    except UnknownProvider as exc:
        error = {"type": "value_error", "loc": ("provider",), "msg": str(exc)}
        raise InvalidSettings([error]) from None
    except ValidationError as exc:
        part = "config" if exc.title == get_connector(provider).config_model.__name__ else "secrets"
        errors = exc.errors(include_input=False, include_url=False)
        raise InvalidSettings([{**e, "loc": (part, *e["loc"])} for e in errors]) from None
    try:
        check_endpoints(config_model, endpoints or EndpointPolicy())
    except EndpointRefused as exc:
        raise InvalidSettings([{"type": "value_error", "loc": ("config",), "msg": str(exc)}]
                              ) from None
    return config_model.model_dump(mode="json"), _plain(secrets_model)


def _require_secrets(provider: str, secrets: dict[str, Any], moved: list[str]) -> None:
    """InvalidSettings naming every required secret this patch did not give again."""
    fields = get_connector(provider).secrets_model.model_fields
    missing = [name for name, field in fields.items()
               if field.is_required() and secrets.get(name) in (None, "")]
    reason = (f"is required again: config.{moved[0]} changed, so the stored secrets were "
              "dropped; give every secret in the same request")
    if missing:
        raise InvalidSettings([{"type": "value_error", "loc": ("secrets", name), "msg": reason}
                               for name in missing])


def public_connection(row: dict[str, Any], box: SecretBox) -> dict[str, Any]:
    """A connection's columns as the API shows them: secret names only."""
    data = {k: v for k, v in row.items() if k != "secrets_encrypted"}
    try:
        secrets = box.open(row.get("secrets_encrypted") or "", owner_of(row))
    except SecretsUnreadable as exc:  # shown, never taken for "no secrets"
        secrets, data["last_error"] = {}, str(exc)
    names = sorted(k for k, v in secrets.items() if v not in (None, ""))
    return ConnectionPublic.model_validate({**data, "secrets_set": names}).model_dump(mode="json")


def _plain(model: BaseModel) -> dict[str, Any]:
    """The model's values as JSON types, secret values revealed (for sealing only)."""
    values, as_json = model.model_dump(), model.model_dump(mode="json")
    return {
        key: value.get_secret_value() if isinstance(value, SecretStr) else as_json[key]
        for key, value in values.items()
        if value is not None
    }


def _merge(stored: dict[str, Any], patch: dict[str, Any] | None) -> dict[str, Any]:
    merged = dict(stored)
    for key, value in (patch or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def owner_of(row: dict[str, Any]) -> str:
    """How errors name a connection: `connection 3 (Zoho EU)`."""
    return f"connection {row.get('id')} ({row.get('name')})"


def _stored_secrets(box: SecretBox, connection: Connection,
                    patch: ConnectionPatch) -> dict[str, Any]:
    """The stored secrets; when no key decrypts them, SecretsUnreadable, unless this
    patch enters secrets again (then only the given ones count)."""
    try:
        return box.open(connection.secrets_encrypted, owner_of(connection.model_dump()))
    except SecretsUnreadable:
        if not patch.secrets:
            raise
        return {}


def _ensure_name_free(session: Session, name: str) -> None:
    if session.exec(select(Connection.id).where(Connection.name == name)).first() is not None:
        raise NameTaken(name)


def _flush(session: Session, name: str) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the name
        session.rollback()
        raise NameTaken(name) from None


def crm_links(session: Session) -> Callable[[Mapping[str, Any]], str | None]:
    """A function giving a deal row's (connection_id, remote_id) page in its CRM, or None
    where its connector builds none (the `links` capability, connectors.registry.deal_url);
    the connections are read once, here."""
    settings = {c.id: (c.provider, dict(c.config or {}))
                for c in session.exec(select(Connection))}

    def link(row: Mapping[str, Any]) -> str | None:
        found = settings.get(row["connection_id"])
        if found is None or not row.get("remote_id"):
            return None
        return deal_url(found[0], found[1], str(row["remote_id"]))

    return link


class BackfillState(Answer):
    """Where a connection's stage history backfill stands (docs/evaluation.md)."""

    connection_id: int
    running: bool = Field(description="A backfill is queued or running now.")
    deals_done: int = Field(description="Live deals whose stage history has been read.")
    deals_total: int = Field(description="Live deals of the connection.")
    finished: bool = Field(description="The last backfill read every deal.")
    started_at: datetime | None = Field(description="When the last backfill started.")
    finished_at: datetime | None = Field(description="When it ended (null while running, and "
                                          "after its worker was killed).")
    last_error: str | None = Field(description="Why the last backfill stopped, if it failed.")


async def backfill_state(session: Session, jobs: JobQueue, connection_id: int) -> BackfillState:
    """Where the connection's stage history backfill stands, for the API and the operations
    page: what its state records (core.history.backfill_progress), and `running` as the job
    runner says (queued or running now). A backfill whose worker was killed (SIGKILL) left
    a start without an end in its state: the runner runs it no more, so it is not running.
    The runner is asked first: a backfill ending in between reads as running and finished."""
    running = await jobs.backfill_running(connection_id)
    progress = await run_in_threadpool(backfill_progress, session, connection_id=connection_id)
    return BackfillState(connection_id=connection_id, running=running, **progress)
