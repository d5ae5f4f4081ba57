"""API keys (only their sha256 is stored) and encryption of connection secrets (Fernet)."""

import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from core.config import Settings

SCOPES = ("read", "write", "admin")
KEY_PREFIX = "csk_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_scopes(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """Validate scopes; admin implies write implies read."""
    items = value.split(",") if isinstance(value, str) else list(value)
    scopes = sorted({s.strip().lower() for s in items if s.strip()}, key=_scope_rank)
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; got {value!r}")
    return scopes


def _scope_rank(scope: str) -> int:
    return SCOPES.index(scope) if scope in SCOPES else len(SCOPES)


def has_scope(granted: str, needed: str) -> bool:
    """admin covers write and read; write covers read."""
    rank = max((_scope_rank(s) for s in granted.split(",") if s), default=-1)
    return rank >= _scope_rank(needed)


class SecretBox:
    """Encrypts connection secrets at rest. The key is CRMSYNC_SECRET_KEY (a Fernet key)."""

    def __init__(self, key: str | bytes) -> None:
        try:
            self._fernet = Fernet(key)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "CRMSYNC_SECRET_KEY is not a valid Fernet key; generate one with "
                "python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            ) from exc

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            value: dict[str, Any] = json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken:
            raise ValueError(
                "connection secrets cannot be decrypted: CRMSYNC_SECRET_KEY differs from "
                "the key they were saved with; restore that key or re-enter the secrets"
            ) from None
        return value


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
