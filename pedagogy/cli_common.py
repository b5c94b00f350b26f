"""What the `pedagogy` commands share: the consoles, the help of their common options, the
one-line error exit, plugin loading and the read-only database."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from pedagogy.errors import PedagogyError

console = Console()
err_console = Console(stderr=True)

DB_HELP = (
    "Database URL or SQLite file path (default: the config's db, else pedagogy-runs/pedagogy.db)."
)


def fail(err: PedagogyError) -> NoReturn:
    """The error as one line on stderr, then exit with its code."""
    # escape: "pip install 'pedagogy[postgres]'" must not lose "[postgres]" as a style tag
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


JOBS_HELP = (
    "Runs at a time, each in its own process pinned to its share of the cores (default: one per "
    "usable core; 1: one after another). A run's numbers do not depend on it."
)
PLUGIN_HELP = (
    "Import MODULE first (repeatable): a plugin that registers custom domains, graphs, tools, "
    "styles, ... Installed `pedagogy.plugins` entry points load by themselves, and a run's "
    "recorded plugins are imported again without this."
)


def use_plugins(modules: list[str] | None, store: Any = None, run_id: str | None = None) -> None:
    """Import --plugin modules and installed entry points, then the plugins run `run_id`
    recorded (those may be missing where --plugin modules stand in for them)."""
    from pedagogy.plugins import load_entry_points, load_plugins, load_recorded

    load_plugins(modules or [])
    load_entry_points()
    if store is not None and run_id is not None:
        load_recorded(store.get_run(run_id).config, run_id)


def read_store(db: str | None):
    """The database of --db (else the default config's), opened read-only: never created."""
    from pedagogy.config import load_config
    from pedagogy.memory.store import open_store

    return open_store(db or load_config(None).db_url(), create=False)
