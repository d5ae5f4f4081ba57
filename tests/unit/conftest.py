"""The unit tier's seeded_module: on SQLite alone (tests/conftest.py has the one on both
databases)."""

from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import Engine


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def seeded_module(request: pytest.FixtureRequest, module_sqlite_engine: Engine) -> Any:
    """The test module's `seeded(engine)` run once, on module_sqlite_engine."""
    async for api in request.module.seeded(module_sqlite_engine):
        yield api
