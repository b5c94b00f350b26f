"""`pedagogy run` (start or resume a run) and `pedagogy init` (write the default config)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from pedagogy.cli_common import (
    DB_HELP,
    PLUGIN_HELP,
    console,
    err_console,
    fail,
    read_store,
    use_plugins,
)
from pedagogy.errors import PedagogyError


def _arm_table(summary: dict[str, Any]) -> Table:
    initial, final = summary["heldout_initial"], summary["heldout_final"]
    table = Table(title="held-out accuracy per level")
    table.add_column("arm")
    table.add_column("practised")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for arm in sorted(set(initial) | set(final)):
        table.add_row(
            arm,
            "yes" if arm in summary["practised_arms"] else "-",
            f"{initial.get(arm, 0):.2f}",
            f"{final.get(arm, 0):.2f}",
        )
    return table


def run(
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="YAML config (default: the embedded default; see `pedagogy init`).",
    ),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    workdir: Path | None = typer.Option(
        None,
        "--workdir",
        help="Folder for the run's models and checkpoints, and its database without --db "
        "(default: the config's workdir, else pedagogy-runs).",
    ),
    rounds: int | None = typer.Option(None, "--rounds", min=1, help="Number of teaching rounds."),
    seed: int | None = typer.Option(
        None, "--seed", help="Run seed (curriculum, problems, model init)."
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Continue a killed, failed or interrupted run by id, from any directory (give its "
        "--db). Refused (exit 2) while another process runs it.",
    ),
    budget_teacher_tokens: int | None = typer.Option(
        None,
        "--budget-teacher-tokens",
        min=1,
        help="Stop before a round once the teacher's calls took this many tokens (with --resume: "
        "replaces the run's limit).",
    ),
    budget_cost_usd: float | None = typer.Option(
        None,
        "--budget-cost-usd",
        help="Stop before a round once the run's model calls cost this many USD (with --resume: "
        "replaces the run's limit).",
    ),
    budget_wall_seconds: float | None = typer.Option(
        None,
        "--budget-wall-seconds",
        help="Stop before a round once the loop has run this many seconds, resumes added up "
        "(with --resume: replaces the run's limit).",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help='Run each round\'s episodes on Ray actors: "local" starts a cluster on this machine, '
        "\"auto\" joins this machine's, ray://HOST:PORT a remote one (the config's ray section; "
        'needs pip install "pedagogy[ray]"). Held-out numbers are the same as without it.',
    ),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No live progress, only the final report."
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Run the teaching loop (no arguments: the embedded default). Exit 3: a budget stopped it
    (resume with a higher one)."""
    from pedagogy.checks import db_option, interrupted_line
    from pedagogy.config import load_config

    progress, db_url = None, None
    try:
        use_plugins(plugin)  # before the config: its names and options may be theirs
        cfg = load_config(config)
        update: dict[str, Any] = {"plugins": list(dict.fromkeys([*cfg.plugins, *(plugin or [])]))}
        if db is not None:
            update["db"] = db
        if workdir is not None:
            update["workdir"] = str(workdir)
        if rounds is not None:
            update["rounds"] = rounds
        if seed is not None:
            update["seed"] = seed
        limits = {
            "teacher_tokens": budget_teacher_tokens,
            "cost_usd": budget_cost_usd,
            "wall_seconds": budget_wall_seconds,
        }
        cfg = cfg.model_copy(update=update)
        limits = {k: v for k, v in limits.items() if v is not None}
        if limits:
            cfg = cfg.with_overrides({"budget": limits})
        if ray is not None:
            cfg = cfg.with_overrides({"ray": {"address": ray}})
        db_url = cfg.db_url()
        # The loop's imports (LangGraph, the store, plotting) only once the config holds: a
        # config with a typo fails before paying for them.
        from pedagogy.progress import LiveProgress
        from pedagogy.report import plot_learning_curve, run_summary
        from pedagogy.runner import run_loop

        progress = LiveProgress(console, enabled=not quiet)
        with progress:
            result = asyncio.run(run_loop(cfg, resume=resume, emit=progress.event))
        with read_store(db_url) as store:
            summary = run_summary(store, result.run_id)
        png = result.run_dir / "learning_curve.png"
        if not result.already_completed:  # a completed run's curve is drawn already
            png = plot_learning_curve(summary, png)
    except PedagogyError as err:
        fail(err)
    except KeyboardInterrupt:
        run_id = (progress and progress.run_id) or resume
        err_console.print(interrupted_line(run_id, db_url), highlight=False, soft_wrap=True)
        raise typer.Exit(130) from None
    console.print(_arm_table(summary))
    took = f"{result.seconds:.0f} s"
    if resume and not result.already_completed:
        took += " this session"  # the run's earlier sessions are not counted here
    console.print(f"run        {result.run_id} ({result.status}, {took})")
    if result.already_completed:
        console.print(f"note       {escape(result.detail or '')}", highlight=False, soft_wrap=True)
    console.print(f"database   {result.db_url}")
    console.print(f"models     {result.run_dir / 'models'}")
    console.print(f"curve      {png}")
    where = escape(db_option(result.db_url))
    console.print(
        f"next       pedagogy show {result.run_id}{where}  |  "
        f"pedagogy replay {result.run_id}{where}",
        highlight=False,
        soft_wrap=True,
    )
    if result.status == "budget_exhausted":
        console.print(f"stopped    {escape(result.detail or '')}", highlight=False, soft_wrap=True)
        raise typer.Exit(3)


def init(
    path: Path = typer.Argument(
        Path("pedagogy.yaml"), help="Where to write the commented default config."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented default config."""
    from pedagogy.config import DEFAULT_CONFIG_PATH

    if path.exists() and not force:
        err_console.print(
            f"[bold red]error:[/] {escape(str(path))} exists; pass --force to overwrite",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    path.write_text(DEFAULT_CONFIG_PATH.read_text())
    console.print(f"wrote {path}; run it with `pedagogy run --config {path}`")
