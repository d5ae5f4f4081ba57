"""The job context of a command, after checking what every command needs."""

import sqlite3

from redis import Redis

from cli.output import fail
from core.config import Settings, get_settings
from core.db import prepare_database
from workers.context import JobContext, build_context


def checked_context(settings: Settings | None = None) -> JobContext:
    """The job context, after checking what every command needs: the secret key, a
    reachable database with the current schema (embedded SQLite is migrated on the spot)
    and, when configured, a reachable Redis. A bad setting raises; main() reports it in
    one line."""
    settings = settings or get_settings()
    _refuse_lost_key_file(settings)
    ctx = build_context(settings)
    if not ctx.settings.is_sqlite:
        prepare_database(ctx.engine)
    if ctx.settings.redis_url:
        client = Redis.from_url(ctx.settings.redis_url, socket_connect_timeout=3,
                                socket_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    return ctx


def _refuse_lost_key_file(settings: Settings) -> None:
    """An embedded database holding encrypted secrets whose generated key file is gone:
    stop, rather than generate a new key that cannot read them."""
    path = settings.sqlite_path()
    if settings.secret_key or path is None or not path.exists():
        return
    key_file = path.with_name(path.name + ".key")
    if key_file.exists():
        return
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            sealed = db.execute("SELECT 1 FROM connection WHERE secrets_encrypted != '' "
                                "LIMIT 1").fetchone()
        except sqlite3.Error:  # no schema yet
            sealed = None
    if sealed:
        raise fail(f"the key file {key_file} is missing but {path} holds encrypted secrets: "
                   "restore the key file, or set CRMSYNC_SECRET_KEY to that key")
