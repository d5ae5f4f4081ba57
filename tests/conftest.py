"""Shared fixtures: real databases (SQLite file and the machine's PostgreSQL), Redis.

tests/unit and tests/contract need no server; tests/integration (marked `integration`) uses
PostgreSQL and Redis.

PostgreSQL is not optional: a test that needs it fails when it is down
(start it with the command in README.md), it is never skipped.

Speed (docs/testing.md): the suite writes bytecode caches even when PYTHONDONTWRITEBYTECODE
is set (each test process, and each command a test starts, would otherwise compile every
module again), hashes passwords with argon2's CHEAPEST profile (tests/unit/test_accounts.py
checks the real parameters), and within a process shares FastAPI's prepared routes and
field adapters and SQLAlchemy's compiled statements.
"""

import sys

sys.dont_write_bytecode = False  # before the imports below: they are cached too

import dataclasses  # noqa: E402
import fcntl  # noqa: E402
import hashlib  # noqa: E402
import inspect  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import weakref  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402
from types import MappingProxyType, SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import pytest_asyncio  # noqa: E402
from argon2 import PasswordHasher, profiles  # noqa: E402
from fastapi.dependencies import utils as fastapi_dependencies  # noqa: E402
from pydantic import TypeAdapter  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.orm import Mapper  # noqa: E402
from sqlalchemy.util import HasMemoized, LRUCache  # noqa: E402

from core import accounts  # noqa: E402
from core.db import MIGRATIONS, make_engine, upgrade  # noqa: E402
from core.models import SQLModel  # noqa: E402
from tests.shared_store import read_only  # noqa: E402

# The sandboxes the tests run (real servers on 127.0.0.1, in-process apps under these
# names) may receive credentials: the operator setting a deployment with sandboxes needs.
SANDBOX_ENDPOINTS = "127.0.0.1,sandbox,sandbox.test,zoho.test,fx.test"
os.environ["CRMSYNC_ALLOW_ENDPOINTS"] = SANDBOX_ENDPOINTS  # every Settings() of the suite

PG_ADMIN_URL = os.environ.get("CRMSYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
SLOTS = 15  # test processes at once on one machine (Redis databases 1..15; 0 is left alone)

SERVERLESS = (Path(__file__).parent / "unit", Path(__file__).parent / "contract")
# Every fixture on PostgreSQL or Redis depends on one of these.
SERVER_FIXTURES = frozenset({"pg_url", "empty_pg_url", "db_url", "module_db_url", "redis_url"})


PASSWORDS = accounts.PASSWORDS
"""The password hasher crmsync runs with (the suite runs with CHEAPEST_PASSWORDS)."""
CHEAPEST_PASSWORDS = PasswordHasher.from_parameters(profiles.CHEAPEST)


@pytest.fixture(scope="session", autouse=True)
def cheapest_password_hashing() -> Iterator[None]:
    """Argon2id at argon2-cffi's CHEAPEST profile, made for tests: the real parameters cost
    0.1-1 s of CPU and 64 MiB per hash and verification, and the dashboard's tests sign in
    hundreds of times. The same code runs; tests/unit/test_accounts.py checks PASSWORDS."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(accounts, "PASSWORDS", CHEAPEST_PASSWORDS)
        yield


try:  # FastAPI's private module (0.12x); without it the suite prepares routes as FastAPI does
    from fastapi._compat import v2 as fastapi_fields
except ImportError:  # pragma: no cover
    fastapi_fields = None  # type: ignore[assignment]

_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}
_build_adapter = getattr(getattr(fastapi_fields, "ModelField", None), "__post_init__", None)
_SIGNATURES: weakref.WeakKeyDictionary[Any, inspect.Signature] = weakref.WeakKeyDictionary()
_typed_signature = fastapi_dependencies.get_typed_signature


def _shared_signature(call: Any) -> inspect.Signature:
    try:
        return _SIGNATURES[call]
    except KeyError:
        signature = _SIGNATURES[call] = _typed_signature(call)
        return signature
    except TypeError:  # not weakly referable
        return _typed_signature(call)


def _field_key(field: fastapi_fields.ModelField) -> Any:
    """What a field's pydantic adapter is made of (its annotation, metadata, attributes
    and config), each value with its type (1 and True are equal, not the same field)."""
    info = fastapi_fields.asdict(field.field_info)
    return (info["annotation"], tuple((type(m), m) for m in info["metadata"]),
            tuple((k, type(v), v) for k, v in sorted(info["attributes"].items())),
            tuple(sorted((field.config or {}).items())))


def _shared_adapter(field: fastapi_fields.ModelField) -> None:
    try:
        key = _field_key(field)
        field._type_adapter = _ADAPTERS[key]
    except TypeError:  # an unhashable default or metadata: built as FastAPI does
        _build_adapter(field)
    except KeyError:
        _build_adapter(field)
        _ADAPTERS[key] = field._type_adapter


@pytest.fixture(scope="session", autouse=True)
def shared_field_adapters() -> Iterator[None]:
    """One pydantic TypeAdapter per distinct parameter or response field in a test process.
    FastAPI prepares an app's routes on its first request, building an adapter for every
    parameter and response model of every route before the one matched (15-100 ms of CPU
    an app), and about 700 tests build an app. An adapter holds no state of its app:
    equal fields share the validator (the routes an app or a test declares itself; the
    included ones are shared whole, shared_route_contexts). Both
    patched functions are FastAPI's private ones: a FastAPI without them runs unpatched."""
    with pytest.MonkeyPatch.context() as patch:
        if _build_adapter is not None and hasattr(fastapi_fields, "asdict"):
            patch.setattr(fastapi_fields.ModelField, "__post_init__", _shared_adapter)
        if hasattr(fastapi_dependencies, "get_typed_signature"):
            patch.setattr(fastapi_dependencies, "get_typed_signature", _shared_signature)
        yield


try:  # FastAPI's private classes (0.165); without them each app prepares its own routes
    from fastapi.routing import _EffectiveRouteContext as _RouteContext
    _context_from_route = _RouteContext.__dict__["from_api_route"].__func__
except (ImportError, AttributeError, KeyError):  # pragma: no cover
    _RouteContext = _context_from_route = None

_NO_OVERRIDES = SimpleNamespace(dependency_overrides=MappingProxyType({}))
_ROUTE_CONTEXTS: dict[int, list[tuple[Any, Any, Any]]] = {}


def _shared_route_context(cls: Any, *, original_route: Any, include_context: Any) -> Any:
    """The prepared route (dependant, fields, request handler) of `original_route` included
    as `include_context` says, built once per test process for every app that includes it
    alike. The app enters an included route's context only as the provider of dependency
    overrides; crmsync sets none: an app whose overrides are empty gets them frozen (setting
    one then fails), one that has some prepares its own routes."""
    app = include_context.dependency_overrides_provider
    overrides = getattr(app, "dependency_overrides", None)
    if not (isinstance(overrides, dict | MappingProxyType) and not overrides):
        return _context_from_route(cls, original_route=original_route,
                                   include_context=include_context)
    app.dependency_overrides = _NO_OVERRIDES.dependency_overrides
    alike = dataclasses.replace(include_context, dependency_overrides_provider=_NO_OVERRIDES)
    built = _ROUTE_CONTEXTS.setdefault(id(original_route), [])  # a route is not hashable
    for route, known, context in built:
        if route is original_route and known == alike:
            return context
    context = _context_from_route(cls, original_route=original_route, include_context=alike)
    built.append((original_route, alike, context))  # the route kept: its id stays its own
    return context


@pytest.fixture(scope="session", autouse=True)
def shared_route_contexts() -> Iterator[None]:
    """Each included route prepared once per test process, not once per app: FastAPI
    prepares an app's included routes on its first requests (every route before the one
    matched: its dependant, fields and request handler; 20-100 ms of CPU an app), and
    about 700 tests build an app (create_app includes the same module-level routers alike
    each time). The patched method is FastAPI's private one: a FastAPI without it runs
    unpatched."""
    with pytest.MonkeyPatch.context() as patch:
        if _context_from_route is not None:
            patch.setattr(_RouteContext, "from_api_route", classmethod(_shared_route_context))
        yield


class _SharedCompiledSql:
    """SQLAlchemy's cache of compiled statements, one for a whole test process: its keys
    hold the dialect of the engine that compiled, here the process's first dialect alike
    (same class, server version and parameter style), so that every engine finds what
    another compiled."""

    def __init__(self) -> None:
        self._compiled = LRUCache[Any, Any](20000)
        self._dialects: dict[Any, Any] = {}

    def _key(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        dialect = key[0]
        alike = (type(dialect), dialect.server_version_info, dialect.paramstyle)
        return (self._dialects.setdefault(alike, dialect), *key[1:])

    def get(self, key: tuple[Any, ...], default: Any = None) -> Any:
        return self._compiled.get(self._key(key), default)

    def __setitem__(self, key: tuple[Any, ...], compiled: Any) -> None:
        self._compiled[self._key(key)] = compiled

    def clear(self) -> None:
        self._compiled.clear()


_engine_init = Engine.__init__


@pytest.fixture(scope="session", autouse=True)
def shared_compiled_sql() -> Iterator[None]:
    """Each statement compiled once per test process, not once per engine: SQLAlchemy
    caches compiled SQL per engine (and, for the ORM's flushes, per mapper and dialect),
    and most tests make an engine of their own, so every test compiled its statements
    again (about a tenth of the unit tier's CPU). Engines made alike (core.db.make_engine)
    compile alike: the statements' SQL is the same. The patched attributes are
    SQLAlchemy's own (Engine._compiled_cache, Mapper._compiled_cache)."""
    compiled = _SharedCompiledSql()

    def init(self: Engine, *args: Any, **kwargs: Any) -> None:
        _engine_init(self, *args, **kwargs)
        if self._compiled_cache is not None:
            self._compiled_cache = compiled  # type: ignore[assignment]

    def _compiled_cache(self: Mapper[Any]) -> _SharedCompiledSql:
        return compiled

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Engine, "__init__", init)
        patch.setattr(Mapper, "_compiled_cache", HasMemoized.memoized_attribute(_compiled_cache))
        yield


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core. Much of a test's time is waiting (sandboxes and
    apps answering over HTTP, PostgreSQL and Redis, Chromium, vendor rate windows), so one
    worker per core leaves the cores idle: on the 2-core CI machine 4 workers ran the suite
    in 278 s against 352 s with 2 (docs/testing.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return 2 * (cores or 1)


def pytest_xdist_setupnodes(config: pytest.Config) -> None:
    """Before the workers start (in the controller, once): the test modules' bytecode with
    pytest's rewritten asserts, for the modules that have none or an older one. Each worker
    imports every test module; without that cache (a clean clone's first run, as in CI)
    the workers each rewrote all of them at once, 5-6 s of CPU a worker (docs/testing.md).
    pytest's own rewriting (private functions), so skipped when pytest changes them."""
    try:
        from _pytest.assertion import rewrite

        state = config.stash[rewrite.assertstate_key]
        tail, rewrite_test, write_pyc = rewrite.PYC_TAIL, rewrite._rewrite_test, rewrite._write_pyc
        cache_dir = rewrite.get_cache_dir
    except (ImportError, AttributeError, KeyError):  # pragma: no cover
        return
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        if not (path.name.startswith("test_") or path.name == "conftest.py"):
            continue
        pyc = cache_dir(path) / (path.name[:-3] + tail)
        if pyc.exists() and pyc.stat().st_mtime >= path.stat().st_mtime:
            continue
        cache_dir(path).mkdir(exist_ok=True)
        source, code = rewrite_test(path, config)
        write_pyc(state, code, source, pyc)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """tests/unit and tests/contract run without database servers: a test there that asks
    for one fails."""
    servers = SERVER_FIXTURES & set(getattr(item, "fixturenames", ()))
    if servers and any(tier in item.path.parents for tier in SERVERLESS):
        pytest.fail(f"{item.path.parent.name} tests need no {', '.join(sorted(servers))}: "
                    "move this one to tests/integration", pytrace=False)


def _empty_all(engine: Engine) -> None:
    """Every table emptied and every id sequence restarted, in one round trip: DELETE on
    the few rows a test wrote takes milliseconds, TRUNCATE of every table over half a second."""
    tables = reversed(SQLModel.metadata.sorted_tables)  # rows that others refer to go last
    deletes = "; ".join(f'DELETE FROM "{t.name}"' for t in tables)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"{deletes}; SELECT setval(oid, 1, false) FROM pg_class "
                             "WHERE relkind = 'S'")


@pytest.fixture(scope="session")
def slot() -> Iterator[int]:
    """A number 1..SLOTS that no other test process on this machine holds meanwhile (a lock
    file each, held for the session): it names this process's Redis database and its
    PostgreSQL databases, so parallel workers and concurrent runs never share one."""
    numbers = [*range(1, SLOTS + 1), 1 + os.getpid() % SLOTS]  # every one held: wait
    for attempt, number in enumerate(numbers):
        with (Path(tempfile.gettempdir()) / f"crmsync-test-{number}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | (fcntl.LOCK_NB if attempt < SLOTS else 0))
            except BlockingIOError:
                continue
            yield number
            return


def _admin(statement: str) -> Any:
    """Run one statement on the admin database; returns its first value, if any."""
    admin = make_engine(PG_ADMIN_URL)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            result = conn.execute(text(statement))
            return result.scalar() if result.returns_rows else None
    except Exception as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable ({exc}); start it: "
                    "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start")
    finally:
        admin.dispose()


def _pg_database(name: str) -> str:
    """The URL of database `name`, created if missing. Test databases are kept between runs
    (DROP DATABASE waits for a checkpoint, seconds on a busy machine); their commits do not
    wait for the disk."""
    if not _admin(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
        _admin(f"CREATE DATABASE {name}")
        _admin(f"ALTER DATABASE {name} SET synchronous_commit = off")
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _migrations_digest() -> str:
    files = sorted(p for p in MIGRATIONS.rglob("*") if p.is_file() and p.suffix != ".pyc")
    return hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]


def _migrated_pg_database(name: str) -> str:
    """The URL of database `name`, migrated; rebuilt when the migrations changed since it was
    built (the database's comment records their digest)."""
    digest = _migrations_digest()
    comment = (f"SELECT shobj_description(oid, 'pg_database') FROM pg_database "
               f"WHERE datname = '{name}'")
    if _admin(comment) != digest:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        engine = make_engine(_pg_database(name))
        upgrade(engine)
        engine.dispose()
        _admin(f"COMMENT ON DATABASE {name} IS '{digest}'")
    return _pg_database(name)


@pytest.fixture(scope="session")
def pg_url(slot: int) -> str:
    """This process's migrated PostgreSQL database, crmsync_test_<slot>."""
    return _migrated_pg_database(f"crmsync_test_{slot}")


@pytest.fixture
def empty_pg_url(slot: int) -> str:
    """A PostgreSQL database with nothing in it (no migration ran), crmsync_test_<slot>_empty."""
    url = _pg_database(f"crmsync_test_{slot}_empty")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    engine.dispose()
    return url


@pytest.fixture
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    _empty_all(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return f"sqlite:///{tmp_path / 'crmsync.db'}"


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per test session; each test gets a copy of it (a copy
    takes a millisecond, running the migrations about 130 ms)."""
    path = tmp_path_factory.mktemp("template") / "crmsync.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    with engine.connect() as conn:  # everything in the main file, no -wal beside it
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return path


def migrated_sqlite(template: Path, directory: Path) -> str:
    """A fresh migrated SQLite database in `directory` (a copy of the template)."""
    target = directory / "crmsync.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_engine(sqlite_url: str, sqlite_template: Path) -> Iterator[Engine]:
    url = migrated_sqlite(sqlite_template, Path(make_url(sqlite_url).database or "").parent)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Run the test once on each database; the database is fresh and migrated."""
    if request.param == "sqlite":
        yield migrated_sqlite(request.getfixturevalue("sqlite_template"), tmp_path)
    else:
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
        _empty_all(engine)
        engine.dispose()
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_db_url(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> str:
    """Like db_url, once per test module: for a module fixture that seeds a store which the
    module's read-only tests share (tests.shared_store.read_only checks that each left it
    as it was). On PostgreSQL it is a database of its own, crmsync_test_<slot>_module, so
    the module's other tests (db_url, engine, pg_engine) do not empty it meanwhile."""
    if request.param == "sqlite":
        return migrated_sqlite(request.getfixturevalue("sqlite_template"),
                               tmp_path_factory.mktemp("module"))
    url = _migrated_pg_database(f"crmsync_test_{request.getfixturevalue('slot')}_module")
    engine = make_engine(url)
    _empty_all(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def module_sqlite_stores(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory
                         ) -> Iterator[Callable[[], Engine]]:
    """Once per module, a factory of fresh migrated SQLite stores: for a module that seeds
    its shared store more than one way (a module-scoped fixture's params), one at a time."""
    engines: list[Engine] = []

    def fresh() -> Engine:
        engines.append(make_engine(migrated_sqlite(sqlite_template,
                                                   tmp_path_factory.mktemp("module"))))
        return engines[-1]

    yield fresh
    for engine in engines:
        engine.dispose()


@pytest.fixture(scope="module")
def module_pg_stores(slot: int) -> Iterator[Callable[[], Engine]]:
    """module_sqlite_stores on PostgreSQL: crmsync_test_<slot>_module (module_db_url's),
    emptied at each call."""
    engine = make_engine(_migrated_pg_database(f"crmsync_test_{slot}_module"))

    def fresh() -> Engine:
        _empty_all(engine)
        return engine

    yield fresh
    engine.dispose()


@pytest.fixture(scope="module")
def module_sqlite_engine(sqlite_template: Path,
                         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Like sqlite_engine, once per test module: the unit tier's module_db_url."""
    engine = make_engine(migrated_sqlite(sqlite_template, tmp_path_factory.mktemp("module")))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def module_engine(module_db_url: str) -> Iterator[Engine]:
    """An engine on module_db_url."""
    engine = make_engine(module_db_url)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded_module(request: pytest.FixtureRequest, module_engine: Engine) -> Any:
    """The test module's `seeded(engine)` (an async generator yielding its seeded Api) run
    once per database on module_engine; tests/unit/conftest.py runs it on
    module_sqlite_engine."""
    async for api in request.module.seeded(module_engine):
        yield api


@pytest.fixture
def shared_api(seeded_module: Any) -> Iterator[Any]:
    """The module's seeded store and app (seeded_module), for a test that only reads (it
    runs in that fixture's event loop: tests.shared_store.SHARED_LOOP); the test fails if
    it changed the store."""
    with read_only(seeded_module.engine):
        yield seeded_module


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on each database in turn (see db_url)."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
async def redis_url(slot: int) -> Any:
    """A Redis database of its own, emptied before and after (Redis must be up)."""
    from redis.asyncio import Redis

    redis_db_url = os.environ.get("CRMSYNC_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{slot}")
    client = Redis.from_url(redis_db_url)
    try:
        await client.flushdb()
    except Exception as exc:
        pytest.fail(f"Redis at {redis_db_url} is not usable ({exc}); start it: redis-server "
                    '--daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no')
    yield redis_db_url
    await client.flushdb()
    await client.aclose()
