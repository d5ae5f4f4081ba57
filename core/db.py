"""Engine and session factories, and migrations (Alembic, in core/migrations)."""

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from core.errors import SchemaNotCurrent
from core.metrics.localdates import SQLITE_LOCAL_DATE, sqlite_local_date

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Plain SQLAlchemy URLs work as given: crmsync picks the driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = make_url(url).database
        if path and path != ":memory:":
            _create_private(Path(path))
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    return create_engine(
        url, pool_pre_ping=True, connect_args={"options": "-c timezone=UTC"}, **kwargs
    )


def _create_private(path: Path) -> None:
    """Create the embedded database file readable by its owner only (0600) before SQLite
    opens it (its -wal and -shm files take the same mode); an existing file is left alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    dbapi_connection.create_function(SQLITE_LOCAL_DATE, 2, sqlite_local_date,
                                     deterministic=True)


@contextmanager
def session_scope(bind: Engine | Connection) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on error.

    `bind` is an engine (a pooled connection each time) or a connection held by the caller."""
    with Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


T = TypeVar("T")
DEADLOCK_ATTEMPTS = 3
_DEADLOCK = "40P01"  # PostgreSQL's deadlock_detected


def retrying_deadlocks(transaction: Callable[[], T], *, attempts: int = DEADLOCK_ATTEMPTS,
                       on_retry: Callable[[], None] | None = None) -> T:
    """`transaction()` (one whole transaction) run again, after a short random pause, when
    PostgreSQL chose it as the victim of a deadlock, at most `attempts` times in all.
    PostgreSQL rolled it back whole, so running it again is safe; `on_retry` undoes what
    the caller kept in memory of the failed attempt. Writers of different connections
    share rows (the persons of the reps they share, keyed by email); each adds the persons
    it makes in email order (core.people.match_users), so they do not deadlock over those,
    but a deadlock over other rows would still abort one."""
    for attempt in range(1, attempts + 1):
        try:
            return transaction()
        except DBAPIError as exc:
            if attempt == attempts or getattr(exc.orig, "sqlstate", None) != _DEADLOCK:
                raise
            if on_retry is not None:
                on_retry()
            time.sleep(random.uniform(0.02, 0.1) * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


@asynccontextmanager
async def turn(engine: Engine, space: int, key: int, *,
               poll: float = 0.1) -> AsyncIterator[None]:
    """The block runs while no other process runs a block of the same (space, key): on
    PostgreSQL, a transaction on a connection of its own holds pg_advisory_xact_lock(space,
    key), asked every `poll` seconds so the event loop never blocks, until the block ends
    (a process that dies releases it with its connection). Other databases are served by
    one process (docs/operations.md), whose callers take turns themselves: nothing."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        ask = text("SELECT pg_try_advisory_xact_lock(:space, :key)")
        while True:  # another process's lock: nothing here to wait on but the database
            if connection.execute(ask, {"space": space, "key": key}).scalar():
                break
            await asyncio.sleep(poll)
        yield  # the transaction, and the lock, end when the connection is given back


def compared_with_models(connection: Connection) -> Callable[..., bool]:
    """Alembic's include_object for comparing this database with the models: leaves out
    the foreign keys that triggers keep here instead of constraints (PostgreSQL, migration
    0022: a trigger named as the key), which the models still declare."""
    kept: frozenset[str] = frozenset()
    if connection.dialect.name == "postgresql":
        kept = frozenset(connection.exec_driver_sql(
            "SELECT tgname FROM pg_trigger JOIN pg_proc ON pg_proc.oid = tgfoid "
            "WHERE proname = 'crmsync_connection_key'").scalars())

    def include(obj: Any, _name: str | None, type_: str, reflected: bool, _other: Any) -> bool:
        return not (type_ == "foreign_key_constraint" and not reflected
                    and f"{obj.parent.name}_{obj.column_keys[0]}_fkey" in kept)

    return include


def upgrade(engine: Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Run the Alembic migrations up to `revision` on this engine; returns the revision
    before and after (None: no schema). A database already at the head is left as it is
    without loading the migrations (every app and command on SQLite starts here)."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        before = MigrationContext.configure(connection).get_current_revision()
        if revision == "head" and before is not None and {before} == shipped_heads():
            return before, before
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(connection).get_current_revision()
    return before, after


@cache
def shipped_heads() -> frozenset[str]:
    """The Alembic heads this code ships, read from core/migrations once per process (the
    files of a running process's own code do not change under it)."""
    from alembic.script import ScriptDirectory

    return frozenset(ScriptDirectory(str(MIGRATIONS)).get_heads())


def prepare_database(engine: Engine) -> None:
    """Embedded SQLite is migrated automatically; another database must already be current."""
    if engine.dialect.name == "sqlite":
        upgrade(engine)
        return
    current, head = schema_revisions(engine)
    if current != head:
        raise SchemaNotCurrent(
            f"the database schema is at revision {', '.join(sorted(current)) or 'none'} but "
            f"this crmsync needs {', '.join(sorted(head))}: run `crmsync db upgrade` first"
        )


def schema_revisions(engine: Engine) -> tuple[set[str], set[str]]:
    """(the database's current Alembic heads, the heads this code ships)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    return current, set(shipped_heads())
