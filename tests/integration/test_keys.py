"""Key handling: scope ladder, several secret keys, rotation, unreadable secrets, file modes."""

import pytest
from cryptography.fernet import Fernet
from sqlmodel import select

from api.connections import ConnectionInput, ConnectionPatch, create_connection, update_connection
from core.config import Settings
from core.db import make_engine, session_scope
from core.digests import channels as digests
from core.models import Connection, DigestChannel, NotificationChannel
from core.security import (
    SecretBox,
    SecretsUnreadable,
    has_scope,
    parse_scopes,
    rotate_secrets,
    secret_box,
)
from core.types import utcnow
from tests.api_support import ZOHO_SECRETS, make_key, running_api

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


@pytest.mark.parametrize(("granted", "needed", "ok"), [
    ("superuser", "read", False),          # unknown ranks below read, never above admin
    ("superuser", "admin", False),
    ("read,superuser", "write", False),
    ("read,superuser", "read", True),
    ("admin", "superuser", False),         # an unknown need is never met
    ("write", "push", False),
    ("push", "write", True),
    ("push", "admin", False),
    ("admin", "push", True),
    (" Admin ", "read", True),
])
def test_scope_ladder(granted, needed, ok):
    assert has_scope(granted, needed) is ok


def test_parse_scopes_knows_push_and_refuses_unknown():
    assert parse_scopes("admin,push,read") == ["read", "push", "admin"]
    with pytest.raises(ValueError, match="scopes must be"):
        parse_scopes(["root"])


async def test_goal_push_needs_the_push_scope(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        for scopes, status in (("write", 403), ("push", 200), ("admin", 200)):
            key = make_key(api.engine, scopes)
            response = await api.client.post("/api/v1/goals/push", json=None,
                                             headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == status, (scopes, response.text)
        writer = {"Authorization": f"Bearer {make_key(api.engine, 'write')}"}
        answer = await api.client.post("/api/v1/goals/push", headers=writer)
        assert "'push' scope" in answer.json()["error"]["message"]


def test_several_keys_first_encrypts_all_decrypt():
    sealed_old = SecretBox(OLD).seal({"a": 1})
    both = SecretBox(f"{NEW}, {OLD}")
    assert both.open(sealed_old) == {"a": 1}
    assert SecretBox(NEW).open(both.seal({"b": 2})) == {"b": 2}
    with pytest.raises(SecretsUnreadable, match=r"connection 7 .*CRMSYNC_SECRET_KEY"):
        SecretBox(NEW).open(sealed_old, "connection 7 (x)")
    with pytest.raises(ValueError, match="not a valid Fernet key") as info:
        SecretBox(f"{NEW},not-a-key")
    assert NEW not in str(info.value)


def _seed(engine, box: SecretBox) -> int:
    with session_scope(engine) as session:
        public = create_connection(session, box, ConnectionInput(
            provider="zoho", name="Zoho EU", config={"dc": "eu"}, secrets=ZOHO_SECRETS))
        session.add(NotificationChannel(
            connection_id=public["id"], channel_id="1000", token_encrypted=box.seal(
                {"token": "tok"}), notify_url="https://x.example/h", expires_at=utcnow()))
        digests.create_channel(session, box, name="sales", platform="slack",
                               url="https://hooks.slack.com/services/T1/B1/s1")
        return int(public["id"])


def test_rotate_reencrypts_every_secret_with_the_first_key(engine):
    connection_id = _seed(engine, SecretBox(OLD))
    with session_scope(engine) as session:
        counts = rotate_secrets(session, SecretBox(f"{NEW},{OLD}"))
    assert counts == {"connections": 1, "notification channels": 1, "digest channels": 1}
    only_new = SecretBox(NEW)
    with session_scope(engine) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        assert only_new.open(connection.secrets_encrypted) == ZOHO_SECRETS
        channel = session.exec(select(NotificationChannel)).one()
        assert only_new.open(channel.token_encrypted) == {"token": "tok"}
        digest = session.exec(select(DigestChannel)).one()
        assert only_new.open(digest.webhook_encrypted) == {
            "url": "https://hooks.slack.com/services/T1/B1/s1", "secret": None}


def test_rotate_with_an_unreadable_secret_names_it_and_changes_nothing(engine):
    _seed(engine, SecretBox(OLD))
    with session_scope(engine) as session:
        before = session.exec(select(Connection.secrets_encrypted)).one()
    with (pytest.raises(SecretsUnreadable, match=r"connection \d+ \(Zoho EU\)"),
          session_scope(engine) as session):
        rotate_secrets(session, SecretBox(NEW))
    with session_scope(engine) as session:
        assert session.exec(select(Connection.secrets_encrypted)).one() == before


def test_unreadable_secrets_are_an_error_not_an_empty_dict(engine):
    connection_id = _seed(engine, SecretBox(OLD))
    wrong = SecretBox(NEW)
    with session_scope(engine) as session:
        connection = session.get(Connection, connection_id)
        assert connection is not None
        with pytest.raises(SecretsUnreadable, match="enter the secrets again"):
            update_connection(session, wrong, connection,
                              ConnectionPatch(config={"goals_module": "Goals"}))
        # entering them again is the way out
        public = update_connection(session, wrong, connection,
                                   ConnectionPatch(secrets=ZOHO_SECRETS))
        assert public["secrets_set"] == sorted(ZOHO_SECRETS)


async def test_api_shows_unreadable_secrets_and_refuses_a_patch_with_409(sqlite_engine):
    async with running_api(sqlite_engine) as api:
        connection_id = _seed(sqlite_engine, SecretBox(OLD))  # not the app's key
        shown = (await api.get(f"/api/v1/connections/{connection_id}")).json()
        assert shown["secrets_set"] == [] and "cannot be decrypted" in shown["last_error"]
        response = await api.client.patch(f"/api/v1/connections/{connection_id}",
                                          json={"config": {"goals_module": "Goals"}})
        assert response.status_code == 409
        assert "Zoho EU" in response.json()["error"]["message"]


def test_embedded_database_and_key_file_are_private(tmp_path):
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'sub' / 'crm.db'}")
    secret_box(settings)
    engine = make_engine(settings.database_url)
    with engine.connect():
        pass
    engine.dispose()
    for name in ("crm.db", "crm.db.key"):
        assert (tmp_path / "sub" / name).stat().st_mode & 0o777 == 0o600, name
