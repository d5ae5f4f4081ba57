"""What the benchmarks share: a fresh, migrated database of their own."""

import os
import tempfile

from sqlalchemy import text

from core.db import make_engine, upgrade

PG_URL = os.environ.get("CRMSYNC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def fresh_database(kind: str, prefix: str) -> str:
    """A migrated SQLite file, or a PostgreSQL database named `{prefix}_{pid}`."""
    if kind == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    else:
        admin = make_engine(PG_URL)
        name = f"{prefix}_{os.getpid()}"
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    return url
