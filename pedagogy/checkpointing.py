"""Where a run's loop graph keeps its checkpoints: in the run's PostgreSQL database, else in
checkpoints.sqlite in the run's folder."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError


@contextlib.asynccontextmanager
async def checkpointer(db_url: str, run_dir: Path) -> AsyncIterator[Any]:
    """The LangGraph checkpointer of a run on `db_url` whose folder is `run_dir`."""
    if db_url.startswith("postgresql"):
        try:
            from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        except ImportError as err:
            raise ConfigError(
                f"a PostgreSQL run needs LangGraph's PostgreSQL checkpointer ({err.name or err} "
                "is missing); install the extra: pip install 'pedagogy[postgres]'"
            ) from None

        conn = db_url.replace("postgresql+psycopg://", "postgresql://")
        async with AsyncPostgresSaver.from_conn_string(conn) as saver:
            await saver.setup()
            yield saver
    else:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

        async with AsyncSqliteSaver.from_conn_string(str(run_dir / "checkpoints.sqlite")) as saver:
            yield saver
