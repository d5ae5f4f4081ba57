"""Alembic environment: runs on the connection core.db.upgrade hands over."""

from alembic import context
from sqlmodel import SQLModel

import core.models  # noqa: F401  (registers the tables)
from core.db import compared_with_models

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `crmsync db upgrade` (core.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=compared_with_models(connection),  # autogenerate's comparison
)
with context.begin_transaction():
    context.run_migrations()
