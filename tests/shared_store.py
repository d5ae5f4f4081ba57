"""The guard of a store that a module's read-only tests share (docs/testing.md): the
fixtures module_db_url, module_sqlite_engine, module_engine and shared_api are in
tests/conftest.py."""

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest
from sqlalchemy import Engine

from core.models import ApiKey, SQLModel

SHARED_LOOP = pytest.mark.asyncio(loop_scope="module")
"""The mark of an async test taking shared_api: it runs in the event loop of the module's
seeded_module (`@pytest_asyncio.fixture(scope="module", loop_scope="module")`)."""


def store_rows(engine: Engine) -> dict[str, str | None]:
    """Every row of every table as text, in primary-key order (one string per table; None:
    no rows), but when an API key was last used: the one write of a request that only
    reads (api/deps.py, at most once a minute). One statement: the database renders the
    rows (PostgreSQL a row's text, SQLite each value quoted), so a snapshot costs one round
    trip instead of a query per table."""
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql(_snapshot(engine.dialect.name)).all())


@cache
def _snapshot(dialect: str) -> str:
    tables = []
    for table in SQLModel.metadata.sorted_tables:
        columns = [f'"{c.name}"' for c in table.c if c is not ApiKey.__table__.c.last_used_at]
        order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        if dialect == "postgresql":
            rows = (f"SELECT string_agg(ROW({', '.join(columns)})::text, E'\\n' "
                    f'ORDER BY {order}) FROM "{table.name}"')
        else:  # SQLite: quote() renders every value exactly (a REAL to all its digits)
            row = " || ',' || ".join(f"quote({c})" for c in columns)
            rows = (f"SELECT group_concat(r, char(10)) FROM (SELECT {row} AS r "
                    f'FROM "{table.name}" ORDER BY {order})')
        tables.append(f"SELECT '{table.name}', ({rows})")
    return "\nUNION ALL ".join(tables)


@contextmanager
def read_only(engine: Engine) -> Iterator[None]:
    """Fails unless the store is as it was: the guard of a test sharing a module's seeded
    store, which must not write to it."""
    before = store_rows(engine)
    yield
    after = store_rows(engine)
    changed = sorted(name for name, rows in after.items() if rows != before.get(name))
    assert not changed, ("this test wrote to the module's shared store (tables "
                         f"{', '.join(changed)}): give it a store of its own (engine)")
