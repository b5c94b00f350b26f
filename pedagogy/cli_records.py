"""What a run's records give and prove: `pedagogy replay` (the run again from its recorded
responses), `pedagogy export` (its training records) and `pedagogy audit` (a model version's
lineage; the run's hash chain)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
    """Export chat-format training records carrying their lineage ids, and the run's latest
    chain anchor (beside a .jsonl as NAME.anchor.json, inside an hf folder as anchor.json)."""
    from pedagogy.checks import require_output
    from pedagogy.memory.export import anchor_beside, export_run

    try:
        if fmt not in ("jsonl", "hf"):
            raise ConfigError(f"--format {fmt!r}: choose jsonl or hf")
        require_output(out, fmt)  # before the database: a bad --out writes nothing
        with read_store(db) as store:
            use_plugins(plugin, store, run_id)
            anchor, where = _latest_anchor(store, run_id, db)
            n = export_run(store, run_id, fmt, out, anchor)
    except PedagogyError as err:
        fail(err)
    console.print(f"wrote {n} records to {out}")
    if anchor is None:
        say(f"no anchor: {where}; a recipient can check the chain, not that it is whole")
    else:
        say(
            f"with the anchor of round {anchor.round} (link #{anchor.index}) in {anchor_beside(out, fmt)}"
        )


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


def say(text: str) -> None:
    console.print(escape(text), highlight=False, soft_wrap=True)


def _run_folder(store: Any, run_id: str, db: str | None) -> Path:
    """The folder a stored run keeps its models, checkpoints and anchors in."""
    from pedagogy.config import RunConfig, load_config
    from pedagogy.run_models import resume_dir

    run = store.get_run(run_id)
    # Only the workdir is needed: the run's config is not validated (an auditor may lack its
    # plugins).
    stored = RunConfig.model_construct(workdir=run.config.get("workdir", RunConfig().workdir))
    url = db or load_config(None).db_url()
    return resume_dir(stored, run.config.get("db"), run_id, url)[0]


def _latest_anchor(store: Any, run_id: str, db: str | None) -> tuple[Any, str]:
    """The run's latest anchor from its run folder, or None and why there is none."""
    from pedagogy.memory.anchor import FILENAME, latest_anchor, read_anchors

    try:
        path = _run_folder(store, run_id, db) / FILENAME
    except ConfigError as err:
        return None, str(err)
    if not path.exists():
        return None, f"{path} does not exist (the run wrote no anchor: it ended no round)"
    return latest_anchor(read_anchors(path), run_id), str(path)


def audit_anchor_cmd(
    run_id: str = typer.Argument(..., help="Run id (see `pedagogy runs`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the anchor as JSON."),
) -> None:
    """The run's latest chain anchor, from its run folder's anchors.jsonl: the chain's head at the
    end of the last round (or of the run). Keep a copy; verify against it with
    `pedagogy audit verify RUN --anchor FILE`."""
    try:
        with read_store(db) as store:
            anchor, where = _latest_anchor(store, run_id, db)
            if anchor is None:
                raise ConfigError(f"run {run_id} has no anchor: {where}")
    except PedagogyError as err:
        fail(err)
    if as_json:
        print(json.dumps(anchor.to_dict(), indent=2))
        return
    tables = " · ".join(f"{t} {n}" for t, n in anchor.tables.items() if n)
    end = "end of the run" if anchor.finished else "end of the round"
    say(f"run {run_id} · round {anchor.round} ({end}) · {anchor.at}")
    say(f"link #{anchor.index} {anchor.hash or '(empty chain)'}")
    say(f"{anchor.length} links ({tables or 'none'}) · {'keyed' if anchor.keyed else 'no key'}")
    say(f"from {where}")


def audit_verify_cmd(
    run_id: str = typer.Argument(..., help="Run id (see `pedagogy runs`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    anchor_file: Path | None = typer.Option(
        None,
        "--anchor",
        metavar="FILE",
        help="Also hold the chain to anchors kept outside the database: a run folder's "
        "anchors.jsonl, or an export's anchor.json. Catches cut, re-hashed or appended links.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Check the run's hash chain (turns, tool calls, verdicts, explanations, decisions, dataset
    items): exit 0 if untouched, 1 with each edited, deleted, inserted or reordered row.

    A run written with PEDAGOGY_AUDIT_KEY set is checked under that key (set it again here)."""
    from pedagogy.memory.anchor import check_anchors, read_anchors, run_anchors
    from pedagogy.memory.audit import verify_run
    from pedagogy.memory.chain import KEY_ENV, audit_key

    try:
        anchors = None
        if anchor_file is not None:  # before the database: a bad file reads nothing
            anchors = run_anchors(read_anchors(anchor_file), run_id, anchor_file)
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
            held = check_anchors(store, run_id, anchors) if anchors else None
            kept = _kept_anchors(store, run_id, db) if held is None and not as_json else None
    except PedagogyError as err:
        fail(err)
    clean = report.clean and (held is None or held.clean)
    if as_json:
        data = report.to_dict()
        if held is not None:
            data["anchor"] = held.to_dict()
            data["clean"] = clean
        print(json.dumps(data, indent=2))
        raise typer.Exit(0 if clean else 1)

    tables = " · ".join(f"{t} {n}" for t, n in report.tables.items() if n)
    say(f"run {run_id} · {report.links} links ({tables or 'none'}) · head {report.length}")
    if report.keyed:
        say(f"hash HMAC-SHA256 under {KEY_ENV}: a writer of the database cannot re-chain it")
    elif held is not None:
        say("hash SHA-256, no key: a chain re-hashed since an anchor is caught by the anchor")
    else:
        say(
            "hash SHA-256, no key: catches edits, not a writer who re-hashes the whole chain "
            f"(set {KEY_ENV} when a run is written, or verify with --anchor, to catch that too)"
        )
    if report.full_from:
        say(f"links #0-#{report.full_from - 1}: turns and tool calls chained before migration 0006")
    for note in report.notes:
        say(f"note: {note}")
    if held is not None:
        _say_anchors(held, anchor_file)
    elif kept is not None:
        say(f"note: the run folder keeps anchors: add --anchor {kept} to hold the chain to them")
    if clean:
        held_too = "" if held is None else "; the chain holds its anchors"
        say(f"clean: every link verifies and the chain head matches{held_too}")
        return
    if not report.clean:
        counts = " · ".join(f"{kind} {n}" for kind, n in report.counts().items())
        say(f"TAMPERED: {len(report.problems)} problem(s): {counts}")
        for problem in report.problems:
            say(f"  {problem.line()}")
        if report.unchecked:
            say(
                f"{report.unchecked} link(s) right after a deleted or moved one could not be "
                "checked"
            )
    raise typer.Exit(1)


def _kept_anchors(store: Any, run_id: str, db: str | None) -> Path | None:
    """The run folder's anchors.jsonl when it can be found; else None."""
    from pedagogy.memory.anchor import FILENAME

    try:
        path = _run_folder(store, run_id, db) / FILENAME
    except PedagogyError:
        return None
    return path if path.is_file() else None


def _say_anchors(held: Any, where: Path | None) -> None:
    latest = held.latest
    say(
        f"anchors: {held.anchors} from {where}, the latest of round {latest.round} at link "
        f"#{latest.index}" + (" (run finished)" if latest.finished else "")
    )
    for note in held.notes:
        say(f"note: {note}")
    for problem in held.problems:
        say(f"TAMPERED: {problem}")
