"""Alembic environment for the pedagogy schema.

`pedagogy.memory.store.open_store` runs migrations in code: it builds an Alembic `Config` pointing at
this folder and hands its own connection over in `config.attributes["connection"]`, so the SQLite
pragmas and in-memory databases of the store apply. Without a connection (the `alembic` command
line, `-x db=URL`; see alembic.ini), an engine is created from the URL.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from pedagogy.memory.schema import metadata

config = context.config
target_metadata = metadata


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    _configure(
        url=context.get_x_argument(as_dictionary=True).get("db")
        or config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("db") or config.get_main_option(
        "sqlalchemy.url"
    )
    engine = create_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        _configure(connection=connection, render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
