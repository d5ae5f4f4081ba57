"""API keys: made with the key shown once (only its sha256 and a prefix are kept), and
revoked. The API (/api/v1/api-keys), the CLI (`crmsync apikey`) and the dashboard's
Operations page all call these. Functions take the caller's session and never commit."""

from sqlmodel import Session

from core.models import ApiKey
from core.security import hash_api_key, new_api_key, parse_scopes
from core.types import utcnow

PREFIX_LENGTH = 12  # "csk_" and 8 characters of the key: enough to tell keys apart
MAX_NAME = 200


class KeyNotFound(LookupError):
    pass


def create_key(session: Session, *, name: str, scopes: list[str] | str) -> tuple[ApiKey, str]:
    """A new key named `name` with `scopes` (core.security.parse_scopes; ValueError when
    the name or a scope is bad): the row and the key itself, which is never stored."""
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME:
        raise ValueError(f"a key's name has 1 to {MAX_NAME} characters")
    chosen = parse_scopes(scopes)
    key = new_api_key()
    row = ApiKey(name=name, key_hash=hash_api_key(key), prefix=key[:PREFIX_LENGTH],
                 scopes=",".join(chosen))
    session.add(row)
    session.flush()
    return row, key


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke the key (it is refused from now on); revoking twice changes nothing."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise KeyNotFound(f"API key {key_id} does not exist")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.add(row)
        session.flush()
    return row


__all__ = ["KeyNotFound", "create_key", "revoke_key"]
