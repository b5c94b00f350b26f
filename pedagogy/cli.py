"""The `pedagogy` command line. Every flag has help; errors are one line with the fix, exit 2.

Read commands (runs, show, replay, export, audit) open the database read-only: a mistyped --db is
an error, never a new empty database. PEDAGOGY_DEBUG=1 shows the traceback of an unexpected error.

This module is the app and its table of commands; the commands live beside it: `run` and `init`
in pedagogy.cli_run, `runs` and `show` in pedagogy.cli_show, `replay`, `export` and `audit` in
pedagogy.cli_records, `bench` in pedagogy.cli_bench, what they share in pedagogy.cli_common.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import typer
from rich.markup import escape
from typer.core import TyperGroup

from pedagogy.cli_bench import bench_agents, bench_learning, bench_rollouts, bench_throughput
from pedagogy.cli_common import err_console, fail
from pedagogy.cli_records import (
    audit_anchor_cmd,
    audit_model_cmd,
    audit_verify_cmd,
    export,
    replay,
)
from pedagogy.cli_run import init, run
from pedagogy.cli_serve import serve
from pedagogy.cli_show import runs_, show
from pedagogy.errors import PedagogyError
from pedagogy.moved import moved_names

READ_COMMANDS = frozenset({"runs", "show", "replay", "export", "audit"})
"""Commands that only read the database: they never create a file, and any error is one line."""
DEBUG_ENV = "PEDAGOGY_DEBUG"


class _Commands(TyperGroup):
    """Every command's errors as one line on stderr: a PedagogyError with its exit code, and in a
    read command any other exception too (exit 1; PEDAGOGY_DEBUG=1 shows its traceback). A `run`
    keeps the traceback: reproducing a failure there is expensive."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except PedagogyError as err:
            fail(err)
        except (typer.Exit, typer.Abort, click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as err:
            if ctx.invoked_subcommand not in READ_COMMANDS or os.environ.get(DEBUG_ENV):
                raise
            orig = getattr(err, "orig", None) or err  # a database error: the driver's message
            reason = " ".join(str(orig).split())[:300]
            err_console.print(
                f"[bold red]error:[/] {escape(f'{type(orig).__name__}: {reason}')} (unexpected; "
                f"rerun with {DEBUG_ENV}=1 for the traceback and report it)",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=_Commands,
    add_completion=False,
    no_args_is_help=True,
    help="Teach a small model from a bigger one — and prove that it learned.",
)
audit_app = typer.Typer(
    no_args_is_help=True,
    help="Answer lineage questions about models; check that a run's records are untouched.",
)
app.add_typer(audit_app, name="audit")
bench_app = typer.Typer(
    no_args_is_help=True, help="Compare teaching configurations under the same seeds and budget."
)
app.add_typer(bench_app, name="bench")

# The commands, in the order `pedagogy --help` lists them.
app.command()(run)
app.command("runs")(runs_)
app.command()(show)
app.command()(replay)
app.command()(export)
audit_app.command("model")(audit_model_cmd)
audit_app.command("verify")(audit_verify_cmd)
audit_app.command("anchor")(audit_anchor_cmd)
app.command()(init)
app.command()(serve)
bench_app.command("learning")(bench_learning)
bench_app.command("agents")(bench_agents)
bench_app.command("throughput")(bench_throughput)
bench_app.command("rollouts")(bench_rollouts)

# What moved out of this module keeps working from here, with a DeprecationWarning naming its
# new home.
__getattr__, _moved_dir, _ = moved_names(
    __name__,
    {"pedagogy.cli_common": ["DB_HELP", "PLUGIN_HELP", "console"]},
    {
        "_fail": ("pedagogy.cli_common", "fail"),
        "_plugins": ("pedagogy.cli_common", "use_plugins"),
        "_store": ("pedagogy.cli_common", "read_store"),
        "_arm_table": ("pedagogy.cli_run", "_arm_table"),
        "_cost_cell": ("pedagogy.cli_show", "_cost_cell"),
        "_list_episodes": ("pedagogy.cli_show", "_list_episodes"),
        "_print_calls": ("pedagogy.cli_show", "_print_calls"),
        "_print_usage": ("pedagogy.cli_show", "_print_usage"),
        "_show_episode": ("pedagogy.cli_show", "_show_episode"),
        "_exit_if_failed": ("pedagogy.cli_bench", "_exit_if_failed"),
        "_print_table": ("pedagogy.cli_bench", "_print_table"),
    },
)


def __dir__() -> list[str]:
    return sorted({*globals(), *_moved_dir()})


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except PedagogyError as err:  # raised outside a command body
        err_console.print(f"error: {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
