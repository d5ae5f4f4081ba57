"""API keys (only their sha256 is stored) and encryption of stored secrets (Fernet)."""

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlmodel import Session, select

from core.config import Settings
from core.models import Connection, DigestChannel, NotificationChannel

SCOPES = ("read", "write", "push", "admin")
"""A ladder: each scope covers the ones before it (push writes goals into the CRMs)."""
KEY_PREFIX = "csk_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Validate scopes; admin implies push implies write implies read."""
    items = value.split(",") if isinstance(value, str) else list(value)
    scopes = sorted({s.strip().lower() for s in items if s.strip()}, key=_scope_rank)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {value!r}")
    return scopes


def _scope_rank(scope: str) -> int:
    """The scope's place on the ladder; an unknown scope ranks below read (-1)."""
    return SCOPES.index(scope) if scope in SCOPES else -1


def has_scope(granted: str, needed: str) -> bool:
    """Whether the granted scopes reach `needed` on the ladder; unknown scopes grant nothing
    and an unknown `needed` is never met."""
    if needed not in SCOPES:
        return False
    rank = max((_scope_rank(s.strip().lower()) for s in granted.split(",")), default=-1)
    return rank >= _scope_rank(needed)


class SecretsUnreadable(ValueError):
    """Stored secrets that none of the keys in CRMSYNC_SECRET_KEY decrypts."""


class SecretBox:
    """Encrypts secrets at rest. The key is CRMSYNC_SECRET_KEY: one Fernet key, or several
    separated by commas (MultiFernet: the first encrypts, every one decrypts)."""

    def __init__(self, key: str | bytes) -> None:
        text = key.decode() if isinstance(key, bytes) else key
        try:
            fernets = [Fernet(part.strip()) for part in text.split(",") if part.strip()]
            if not fernets:
                raise ValueError("empty")
        except (ValueError, TypeError):
            raise ValueError(
                "CRMSYNC_SECRET_KEY is not a valid Fernet key (or comma-separated list of "
                "keys); generate one with python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from None
        self._fernet = MultiFernet(fernets)

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open(self, token: str, owner: str = "connection") -> dict[str, Any]:
        """The sealed dict; SecretsUnreadable (naming `owner`) when no key decrypts it."""
        if not token:
            return {}
        try:
            value: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise SecretsUnreadable(
                f"the secrets of {owner} cannot be decrypted: none of the keys in "
                "CRMSYNC_SECRET_KEY is the one they were saved with; add that key to "
                "CRMSYNC_SECRET_KEY (comma-separated) or enter the secrets again"
            ) from None
        return value

    def rotate(self, token: str) -> str:
        """The token re-encrypted with the first key (InvalidToken if no key opens it)."""
        return self._fernet.rotate(token.encode()).decode()


def rotate_secrets(session: Session, box: SecretBox) -> dict[str, int]:
    """Re-encrypt every stored secret with the first key of CRMSYNC_SECRET_KEY, in the
    caller's transaction. Raises SecretsUnreadable naming the first row no key opens
    (then nothing is changed once the caller rolls back). Returns counts per kind."""
    counts = {"connections": 0, "notification channels": 0, "digest channels": 0}
    for connection in session.exec(select(Connection).order_by(Connection.id)):  # type: ignore[arg-type]
        if connection.secrets_encrypted:
            owner = f"connection {connection.id} ({connection.name})"
            connection.secrets_encrypted = _rotated(box, connection.secrets_encrypted, owner)
            session.add(connection)
            counts["connections"] += 1
    for channel in session.exec(select(NotificationChannel)):
        if channel.token_encrypted:
            owner = (f"the notification channel {channel.channel_id} of connection "
                     f"{channel.connection_id}")
            channel.token_encrypted = _rotated(box, channel.token_encrypted, owner)
            session.add(channel)
            counts["notification channels"] += 1
    for digest in session.exec(select(DigestChannel)):
        if digest.webhook_encrypted:
            owner = f"digest channel {digest.id} ({digest.name})"
            digest.webhook_encrypted = _rotated(box, digest.webhook_encrypted, owner)
            session.add(digest)
            counts["digest channels"] += 1
    session.flush()
    return counts


def _rotated(box: SecretBox, token: str, owner: str) -> str:
    try:
        return box.rotate(token)
    except InvalidToken:
        box.open(token, owner)  # raises SecretsUnreadable with the owner and the fix
        raise


def secret_box(settings: Settings) -> SecretBox:
    """The box for these settings. Embedded mode keeps a generated key in a 0600 file."""
    if settings.secret_key:
        return SecretBox(settings.secret_key)
    db_path = settings.sqlite_path()
    if db_path is None:
        raise ValueError(
            "CRMSYNC_SECRET_KEY must be set when the database is not an embedded SQLite file"
        )
    key_file = db_path.with_name(db_path.name + ".key")
    return SecretBox(_read_or_create_key(key_file))


def _read_or_create_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key
