"""Alembic environment: run migrations on the connection `corral.db.engine.upgrade` hands over."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from corral.db.models import Base

target_metadata = Base.metadata
config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        # Only for `alembic` run by hand with sqlalchemy.url set (e.g. autogenerate during development).
        engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
        with engine.begin() as conn:
            context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
            context.run_migrations()
        return
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
