"""The guard of a store that a module's read-only tests share (docs/testing.md): the
fixtures module_db_url, module_sqlite_engine, module_engine and shared_api are in
tests/conftest.py."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, select

from core.models import ApiKey, SQLModel

SHARED_LOOP = pytest.mark.asyncio(loop_scope="module")
"""The mark of an async test taking shared_api: it runs in the event loop of the module's
seeded_module (`@pytest_asyncio.fixture(scope="module", loop_scope="module")`)."""


def store_rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in primary-key order, but when an API key was last used:
    the one write of a request that only reads (api/deps.py, at most once a minute)."""
    rows = {}
    with engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            columns = [c for c in table.c if c is not ApiKey.__table__.c.last_used_at]
            query = select(*columns).order_by(*table.primary_key.columns)
            rows[table.name] = [tuple(row) for row in conn.execute(query)]
    return rows


@contextmanager
def read_only(engine: Engine) -> Iterator[None]:
    """Fails unless the store is as it was: the guard of a test sharing a module's seeded
    store, which must not write to it."""
    before = store_rows(engine)
    yield
    assert store_rows(engine) == before, \
        "this test wrote to the module's shared store: give it a store of its own (engine)"
