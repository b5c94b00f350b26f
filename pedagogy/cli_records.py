"""What a run's records give and prove: `pedagogy replay` (the run again from its recorded
responses), `pedagogy export` (its training records) and `pedagogy audit` (a model version's
lineage; the run's hash chain)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from pedagogy.cli_common import (
    DB_HELP,
    PLUGIN_HELP,
    console,
    err_console,
    fail,
    read_store,
    use_plugins,
)
from pedagogy.errors import ConfigError, PedagogyError


def replay(
    run_id: str = typer.Argument(..., help="Run id."),
    episode: str | None = typer.Option(None, "--episode", help="Replay one episode by id."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Exact replay from recorded responses and observations: model calls, tool executions, mismatches (each must be 0)."""
    from pedagogy.graphs.replay import replay_run

    try:
        with read_store(db) as store:
            use_plugins(plugin, store, run_id)
            report = replay_run(store, run_id, episode)
    except PedagogyError as err:
        fail(err)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        console.print(
            f"replayed {report.episodes} episodes · model calls {report.model_calls} · "
            f"tool executions {report.tool_executions} · mismatches {report.mismatches}"
            + (
                f" · {report.seconds:.1f} s ({report.episodes / report.seconds:,.0f} episodes/s)"
                if report.seconds
                else ""
            )
        )
        for d in report.details:
            for m in d.mismatches:
                console.print(escape(f"  {d.episode_id}: {m}"), highlight=False)
    if report.model_calls or report.mismatches or report.tool_executions:
        raise typer.Exit(1)


def export(
    run_id: str = typer.Argument(..., help="Run id."),
    fmt: str = typer.Option(
        "jsonl", "--format", help="jsonl (OpenAI chat format) or hf (datasets.save_to_disk)."
    ),
    out: Path = typer.Option(..., "--out", help="Output file (jsonl) or directory (hf)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Export chat-format training records carrying their lineage ids."""
    from pedagogy.checks import require_output
    from pedagogy.memory.export import export_run

    try:
        if fmt not in ("jsonl", "hf"):
            raise ConfigError(f"--format {fmt!r}: choose jsonl or hf")
        require_output(out, fmt)  # before the database: a bad --out writes nothing
        with read_store(db) as store:
            use_plugins(plugin, store, run_id)
            n = export_run(store, run_id, fmt, out)
    except PedagogyError as err:
        fail(err)
    console.print(f"wrote {n} records to {out}")


def audit_model_cmd(
    version: str = typer.Argument(..., help="Model version id (see `pedagogy show RUN`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Which episodes and turns trained a model version (from the lineage graph)."""
    from pedagogy.checks import require_model_version
    from pedagogy.memory.lineage import audit_model

    try:
        use_plugins(plugin)
        with read_store(db) as store:
            require_model_version(store, version, db)
            audit = audit_model(store, version)
    except PedagogyError as err:
        fail(err)
    data = audit.to_dict()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"{len(value)} items: {', '.join(map(str, value[:5]))}, ..."
        console.print(f"{key:>22}  {value}")


def audit_verify_cmd(
    run_id: str = typer.Argument(..., help="Run id (see `pedagogy runs`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Check the run's hash chain (turns, tool calls, verdicts, explanations, decisions, dataset
    items): exit 0 if untouched, 1 with each edited, deleted, inserted or reordered row.

    A run written with PEDAGOGY_AUDIT_KEY set is checked under that key (set it again here)."""
    from pedagogy.memory.audit import verify_run
    from pedagogy.memory.chain import KEY_ENV, audit_key

    try:
        with read_store(db) as store:
            try:  # the chain is checked from stored rows alone: an auditor needs no plugin code
                use_plugins(plugin, store, run_id)
            except ConfigError as err:
                err_console.print(
                    f"warning: {escape(str(err))}; checking the chain without it",
                    highlight=False,
                    soft_wrap=True,
                )
            report = verify_run(store, run_id, audit_key())
    except PedagogyError as err:
        fail(err)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
        raise typer.Exit(0 if report.clean else 1)

    def say(text: str) -> None:
        console.print(escape(text), highlight=False, soft_wrap=True)

    tables = " · ".join(f"{t} {n}" for t, n in report.tables.items() if n)
    say(f"run {run_id} · {report.links} links ({tables or 'none'}) · head {report.length}")
    if report.keyed:
        say(f"hash HMAC-SHA256 under {KEY_ENV}: a writer of the database cannot re-chain it")
    else:
        say(
            "hash SHA-256, no key: catches edits, not a writer who re-hashes the whole chain "
            f"(set {KEY_ENV} when a run is written to catch that too)"
        )
    if report.full_from:
        say(f"links #0-#{report.full_from - 1}: turns and tool calls chained before migration 0006")
    for note in report.notes:
        say(f"note: {note}")
    if report.clean:
        say("clean: every link verifies and the chain head matches")
        return
    counts = " · ".join(f"{kind} {n}" for kind, n in report.counts().items())
    say(f"TAMPERED: {len(report.problems)} problem(s): {counts}")
    for problem in report.problems:
        say(f"  {problem.line()}")
    if report.unchecked:
        say(f"{report.unchecked} link(s) right after a deleted or moved one could not be checked")
    raise typer.Exit(1)
