"""The `pedagogy` command line. Every flag has help; errors are one line with the fix, exit 2.

Read commands (runs, show, replay, export, audit) open the database read-only: a mistyped --db is
an error, never a new empty database. PEDAGOGY_DEBUG=1 shows the traceback of an unexpected error.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from pedagogy.errors import ConfigError, PedagogyError

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
            _fail(err)
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
console = Console()
err_console = Console(stderr=True)

DB_HELP = (
    "Database URL or SQLite file path (default: the config's db, else pedagogy-runs/pedagogy.db)."
)


def _fail(err: PedagogyError) -> None:
    # escape: "pip install 'pedagogy[postgres]'" must not lose "[postgres]" as a style tag
    err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False, soft_wrap=True)
    raise typer.Exit(err.exit_code)


PLUGIN_HELP = (
    "Import MODULE first (repeatable): a plugin that registers custom domains, graphs, tools, "
    "styles, ... Installed `pedagogy.plugins` entry points load by themselves, and a run's "
    "recorded plugins are imported again without this."
)


def _plugins(modules: list[str] | None, store: Any = None, run_id: str | None = None) -> None:
    """Import --plugin modules and installed entry points, then the plugins run `run_id`
    recorded (those may be missing where --plugin modules stand in for them)."""
    from pedagogy.plugins import load_entry_points, load_plugins, load_recorded

    load_plugins(modules or [])
    load_entry_points()
    if store is not None and run_id is not None:
        load_recorded(store.get_run(run_id).config, run_id)


def _store(db: str | None):
    """The database of --db (else the default config's), opened read-only: never created."""
    from pedagogy.config import load_config
    from pedagogy.memory.store import open_store

    return open_store(db or load_config(None).db_url(), create=False)


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


@app.command()
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
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="No live progress, only the final report."
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Run the teaching loop (no arguments: the embedded default). Exit 3: a budget stopped it
    (resume with a higher one)."""
    from pedagogy.checks import db_option, interrupted_line
    from pedagogy.config import load_config
    from pedagogy.progress import LiveProgress
    from pedagogy.report import plot_learning_curve, run_summary
    from pedagogy.runner import run_loop

    progress, db_url = None, None
    try:
        _plugins(plugin)  # before the config: its names and options may be theirs
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
        db_url = cfg.db_url()
        progress = LiveProgress(console, enabled=not quiet)
        with progress:
            result = asyncio.run(run_loop(cfg, resume=resume, emit=progress.event))
        with _store(db_url) as store:
            summary = run_summary(store, result.run_id)
        png = result.run_dir / "learning_curve.png"
        if not result.already_completed:  # a completed run's curve is drawn already
            png = plot_learning_curve(summary, png)
    except PedagogyError as err:
        _fail(err)
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


@app.command("runs")
def runs_(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs. A run whose process died (no live lease) shows as interrupted: resume it."""
    from pedagogy.memory.lease import run_status

    try:
        with _store(db) as store:
            rows = store.list_runs()
    except PedagogyError as err:
        _fail(err)
    data = [
        {
            "id": r.id,
            "name": r.name,
            "status": run_status(r),
            "seed": r.seed,
            "created_at": r.created_at.isoformat() if r.created_at else None,
            "error": r.error,
        }
        for r in rows
    ]
    if as_json:
        print(json.dumps(data, indent=2))
        return
    table = Table("id", "name", "status", "created", "error")
    for r in data:
        table.add_row(
            r["id"], r["name"], r["status"], (r["created_at"] or "")[:19], r["error"] or ""
        )
    console.print(table)


@app.command()
def show(
    run_id: str = typer.Argument(..., help="Run id (see `pedagogy runs`)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as JSON (shape in README)."
    ),
    plot: Path | None = typer.Option(None, "--plot", help="Also save the learning curve PNG here."),
    heatmap: Path | None = typer.Option(
        None, "--heatmap", help="Also save the curriculum heatmap PNG (P(arm) per round) here."
    ),
    episode: str | None = typer.Option(
        None,
        "--episode",
        help="Show one episode instead: its trajectories step by step "
        "(thought, tool call, observation, answer) with their verdicts, and its other turns.",
    ),
    list_episodes: bool = typer.Option(
        False,
        "--episodes",
        help="List the run's episodes instead (id, round, index, arm, outcome): the ids that "
        "--episode takes.",
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Rounds, held-out accuracy per round and level, model versions, counts, tokens, cost."""
    from pedagogy.report import plot_curriculum_heatmap, plot_learning_curve, run_summary

    if list_episodes:
        _list_episodes(run_id, db, as_json)
        return
    if episode is not None:
        _show_episode(run_id, episode, db, as_json, plugin)
        return
    try:
        with _store(db) as store:
            _plugins(plugin, store, run_id)
            summary = run_summary(store, run_id)
    except PedagogyError as err:
        _fail(err)
    if plot is not None:
        plot_learning_curve(summary, plot)
    if heatmap is not None:
        plot_curriculum_heatmap(summary, heatmap)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
        return
    r = summary["run"]
    console.print(
        f"run {r['id']} · {r['name']} · {r['status']}" + (f" · {r['error']}" if r["error"] else "")
    )
    arms = sorted({a for rd in summary["rounds"] for a in rd.get("heldout", {})})
    skills = {a.rpartition("@")[0] for a in arms}
    title = "held-out accuracy of the student in service, per round"
    if len(skills) == 1:  # one skill: its levels as "@0", "@1", ... fit an 80-column terminal
        title += f" ({next(iter(skills))}@level)"
    table = Table(title=title)
    table.add_column("round", justify="right")
    for a in arms:
        table.add_column(
            "@" + a.rpartition("@")[2] if len(skills) == 1 else a, justify="right", overflow="fold"
        )
    table.add_column("episodes", justify="right")
    table.add_column("first-try", justify="right")
    table.add_column("explained", justify="right")
    for rd in summary["rounds"]:
        table.add_row(
            str(rd["round"]),
            *[f"{rd.get('heldout', {}).get(a, 0):.2f}" for a in arms],
            str(rd.get("episodes", 0)),
            str(rd.get("correct_first", 0)),
            str(rd.get("explained", 0)),
        )
    console.print(table)
    vt = Table("version", title="model versions (ids for `pedagogy audit model`)")
    vt.add_column("id", no_wrap=True)  # whole: `audit model` takes it
    for name in ("status", "job", "path"):
        vt.add_column(name)
    for v in summary["model_versions"]:
        role = "" if v["role"] == "student" else f"{v['role']} "
        vt.add_row(
            f"{role}v{v['number']}",
            v["id"],
            v["status"],
            (v["training_job_id"] or "-")[:12],
            v["path"],
        )
    console.print(vt)
    tt = Table("agent", "calls", "prompt tokens", "completion tokens", "cost (USD)", title="tokens")
    by_role = summary.get("usage", {}).get("by_role", {})
    for agent, t in summary["tokens"].items():
        u = by_role.get(agent, t)  # local backends' calls cost 0; an unpriced API call: unknown
        tt.add_row(
            agent,
            str(int(t.get("calls", 0))),
            str(int(t.get("prompt_tokens", 0))),
            str(int(t.get("completion_tokens", 0))),
            _cost_cell(u.get("cost"), int(u.get("cost_unknown") or 0), int(t.get("calls", 0))),
        )
    console.print(tt)
    _print_usage(summary)
    _print_calls(summary)
    decided = [rd for rd in summary["rounds"] if rd.get("decisions")]
    if decided:
        dt = Table("round", "kind", "outcomes", title="decisions (SQL table decisions)")
        for rd in decided:
            for kind, outcomes in rd["decisions"].items():
                dt.add_row(
                    str(rd["round"]), kind, " · ".join(f"{o} {n}" for o, n in outcomes.items())
                )
        console.print(dt)
    c = summary["counts"]
    console.print(
        f"episodes {c['episodes']} · correct first try {c['correct_first']} · explained {c['explained']} · training jobs {c['training_jobs']}"
    )


def _print_usage(summary: dict[str, Any]) -> None:
    """Tokens and cost per curriculum arm and role, and the run's budgets against them."""

    def cost(u: dict[str, Any]) -> str:
        return _cost_cell(u.get("cost"), int(u.get("cost_unknown") or 0), int(u["calls"]))

    at = Table("arm", "agent", "calls", "tokens", "cost (USD)", title="tokens per curriculum arm")
    for arm, roles in summary["usage"]["by_arm"].items():
        for agent, u in roles.items():
            at.add_row(arm, agent, str(u["calls"]), f"{u['tokens']:,}", cost(u))
    if at.row_count:
        console.print(at)
    units = {
        "teacher_tokens": "{:,.0f} tokens",
        "cost_usd": "${:,.4f}",
        "wall_seconds": "{:,.0f} s",
    }
    for name, b in summary["budget"].items():
        unit = units.get(name, "{}")
        spent = "" if b.get("spent") is None else unit.format(b["spent"]) + " spent of "
        unknown = f" ({b['cost_unknown']} calls of unknown price)" if b.get("cost_unknown") else ""
        console.print(f"budget {name}: {spent}{unit.format(b['limit'])}{unknown}", highlight=False)


def _cost_cell(cost: float | None, unknown: int, calls: int) -> str:
    """USD, or "unknown" when no call's price is known, or the known part + the unknown calls."""
    if unknown and unknown >= calls:
        return "unknown"
    known = f"{cost or 0.0:.4f}"
    return f"{known} + {unknown} unknown" if unknown else known


def _print_calls(summary: dict[str, Any]) -> None:
    """A warning for turns cut at max_tokens (per role), and the failed attempts of calls."""
    truncated = summary.get("truncated") or {}
    if truncated:
        roles = " · ".join(f"{agent} {n}" for agent, n in truncated.items())
        console.print(
            f"[yellow]warning[/]: {sum(truncated.values())} turns were cut at max_tokens "
            f"(finish_reason length: {roles}); raise that role's max_tokens",
            highlight=False,
        )
    attempts = summary.get("call_attempts") or {}
    if attempts.get("failed"):
        where = " · ".join(
            f"{endpoint} {n['failed']} failed, served {n['served']} after a failure"
            for endpoint, n in attempts["by_endpoint"].items()
        )
        console.print(
            f"call attempts: {attempts['failed']} failed, then retried or passed to a fallback "
            f"(SQL table call_attempts): {escape(where)}",
            highlight=False,
        )


def _list_episodes(run_id: str, db: str | None, as_json: bool) -> None:
    from pedagogy.report import episode_list

    try:
        with _store(db) as store:
            rows = episode_list(store, run_id)
    except PedagogyError as err:
        _fail(err)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("episode id", "round", "#", "arm", "outcome", title=f"episodes of run {run_id}")
    for r in rows:
        table.add_row(r["id"], str(r["round"]), str(r["index"]), r["arm"], r["outcome"])
    console.print(table)


def _show_episode(
    run_id: str, episode_id: str, db: str | None, as_json: bool, plugin: list[str] | None
) -> None:
    from pedagogy.checks import require_episode
    from pedagogy.report import episode_view

    try:
        with _store(db) as store:
            _plugins(plugin, store, run_id)
            require_episode(store, run_id, episode_id, db)
            view = episode_view(store, run_id, episode_id)
    except PedagogyError as err:
        _fail(err)
    if as_json:
        print(json.dumps(view, indent=2, default=str))
        return
    e, p = view["episode"], view["problem"] or {}
    console.print(
        f"episode {e['id']} · run {e['run_id']} · round {e['round']} #{e['index']} · "
        f"{e['arm']} · {e['outcome']}",
        highlight=False,
    )
    console.print(
        f"problem  {p.get('prompt', '?')}   (answer {p.get('answer', '?')})", highlight=False
    )
    for traj in view["trajectories"]:
        verdict = {True: "correct", False: "wrong", None: "-"}[traj["correct"]]
        table = Table(
            "step",
            "thought",
            "action",
            "observation",
            title=(f"{traj['kind']} ({traj['agent']}) · answer {traj['answer']} · {verdict}"),
        )
        for s in traj["steps"]:
            call = s["call"]
            if call is not None:
                action = f"{call['tool']} {json.dumps(call['arguments'], ensure_ascii=False)}"
            elif s["answer"] is not None:
                action = f"A:{s['answer']}"
            else:
                action = f"invalid: {s['text']}"
            table.add_row(str(s["step"]), s["thought"] or "", action, s["observation"] or "")
        console.print(table)
    for t in view["turns"]:
        mark = "" if t["correct"] is None else (" ✓" if t["correct"] else " ✗")
        console.print(
            f"turn {t['seq']} {t['agent']}{mark}: {t['error'] or t['response']}", highlight=False
        )


@app.command()
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
        with _store(db) as store:
            _plugins(plugin, store, run_id)
            report = replay_run(store, run_id, episode)
    except PedagogyError as err:
        _fail(err)
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


@app.command()
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
    from pedagogy.errors import ConfigError
    from pedagogy.memory.export import export_run

    try:
        if fmt not in ("jsonl", "hf"):
            raise ConfigError(f"--format {fmt!r}: choose jsonl or hf")
        require_output(out, fmt)  # before the database: a bad --out writes nothing
        with _store(db) as store:
            _plugins(plugin, store, run_id)
            n = export_run(store, run_id, fmt, out)
    except PedagogyError as err:
        _fail(err)
    console.print(f"wrote {n} records to {out}")


@audit_app.command("model")
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
        _plugins(plugin)
        with _store(db) as store:
            require_model_version(store, version, db)
            audit = audit_model(store, version)
    except PedagogyError as err:
        _fail(err)
    data = audit.to_dict()
    if as_json:
        print(json.dumps(data, indent=2, default=str))
        return
    for key, value in data.items():
        if isinstance(value, list) and len(value) > 8:
            value = f"{len(value)} items: {', '.join(map(str, value[:5]))}, ..."
        console.print(f"{key:>22}  {value}")


@audit_app.command("verify")
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
        with _store(db) as store:
            try:  # the chain is checked from stored rows alone: an auditor needs no plugin code
                _plugins(plugin, store, run_id)
            except ConfigError as err:
                err_console.print(
                    f"warning: {escape(str(err))}; checking the chain without it",
                    highlight=False,
                    soft_wrap=True,
                )
            report = verify_run(store, run_id, audit_key())
    except PedagogyError as err:
        _fail(err)
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


@app.command()
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


@bench_app.command("learning")
def bench_learning(
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, help="Seeds per arm: 0..N-1 (default 3; --quick: 1)."
    ),
    budget: int | None = typer.Option(
        None,
        "--budget",
        min=0,
        help="Teacher explanations per round, the same for every arm (default: a quarter of the episodes per round).",
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Teaching rounds per run (default 3; --quick: 2)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="A tiny bench for tests/CI: 2 levels, 2 rounds of 48 episodes, 3 s training, 1 seed, 2 arms.",
    ),
    out: Path = typer.Option(
        Path("pedagogy-bench"),
        "--out",
        help="Folder for bench.json, bench.png and the runs' database; a rerun skips runs done there.",
    ),
    arms: str | None = typer.Option(
        None,
        "--arms",
        help="Comma-separated arms (default: the 15 marked default in benchmarks/arms/learning.yaml; --quick: standard_kd,pedagogy); the file lists more.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the per-arm summary as JSON instead of a table."
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """Run several teaching arms with the same seeds, student and teacher budget; compare held-out accuracy."""
    from dataclasses import replace

    try:
        # Inside the try: a bad arms file (loaded on import) is one line, exit 2.
        from pedagogy.benchmarks.learning import (
            BenchSettings,
            LearningBench,
            parse_arms,
            table_rows,
            target_lines,
        )

        _plugins(plugin)
        settings = BenchSettings.quick_settings() if quick else BenchSettings()
        update: dict[str, Any] = {}
        if rounds is not None:
            update["rounds"] = rounds
        settings = replace(settings, **update, budget=budget)  # None: a quarter of the episodes
        bench = LearningBench(
            out, settings, parse_arms(arms, quick), list(range(seeds or (1 if quick else 3)))
        )
        data = bench.run()
    except PedagogyError as err:
        _fail(err)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted; finished runs are in {out / 'bench.json'}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
    summary = data["summary"]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    header, rows = table_rows(summary)
    s = data["settings"]
    wide = _print_table(
        f"held-out accuracy after {s['rounds']} rounds of {s['episodes']} episodes, budget "
        f"{s['budget']}/round (mean±std over seeds; Δ: paired over seeds, points)",
        header,
        rows,
    )
    for line in target_lines(summary):
        wide.print(line, highlight=False, soft_wrap=True)
    console.print(f"results    {bench.json_path}")
    console.print(f"plot       {bench.png_path}")
    console.print(f"database   {out / 'bench.db'}")
    _exit_if_failed(data["failed"])


def _exit_if_failed(failed: list[dict[str, Any]]) -> None:
    """A bench's failed runs: one line naming the first, exit 1 (a rerun retries them)."""
    if not failed:
        return
    first = failed[0]
    err_console.print(
        f"[bold red]error:[/] {len(failed)} run(s) failed, e.g. "
        + escape(
            f"{first['arm']} seed {first['seed']}: {first.get('error')}; "
            "rerun the same command to retry them"
        ),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


def _print_table(title: str, header: list[str], rows: list[list[str]]) -> Console:
    """A comparison table, every digit kept when the output is a file; returns the console."""
    table = Table(title=title)
    for i, name in enumerate(header):
        width = max([len(name)] + [len(row[i]) for row in rows])
        table.add_column(
            name, justify="left" if i == 0 else "right", no_wrap=True, min_width=min(width, 14)
        )
    for row in rows:
        table.add_row(*row)
    wide = console if console.is_terminal else Console(width=240)
    wide.print(table)
    return wide


@bench_app.command("agents")
def bench_agents(
    seeds: int | None = typer.Option(
        None, "--seeds", min=1, help="Seeds per arm and domain: 0..N-1 (default 3; --quick: 1)."
    ),
    rounds: int | None = typer.Option(
        None, "--rounds", min=1, help="Teaching rounds per run (default 3; --quick: 2)."
    ),
    episodes: int | None = typer.Option(
        None,
        "--episodes",
        min=4,
        help="Episodes per round (default: 200 on chain_sum, 96 on the world; this sets both; the "
        "budget stays a quarter of them unless --budget).",
    ),
    budget: int | None = typer.Option(
        None,
        "--budget",
        min=0,
        help="Teacher explanations (demonstrations) per round, the same for every arm.",
    ),
    train_steps: int | None = typer.Option(
        None,
        "--train-steps",
        min=1,
        help="Optimiser steps of each fine-tuning job, the same for every arm (default: 150 on "
        "chain_sum, 100 on the world, whose trajectories are ~3x longer; this sets both).",
    ),
    arms: str | None = typer.Option(
        None,
        "--arms",
        help="Comma-separated arms (default: cot,agent,agent+ftp_sag); also agent_whole "
        "(benchmarks/arms/agents.yaml).",
    ),
    domains: str | None = typer.Option(
        None, "--domains", help="Comma-separated domains (default: chain_sum,world)."
    ),
    quick: bool = typer.Option(
        False,
        "--quick",
        help="A tiny bench for tests: 2 chain_sum levels, a 30-entity world, 2 rounds of 24 episodes.",
    ),
    out: Path = typer.Option(
        Path("pedagogy-bench-agents"),
        "--out",
        help="Folder for bench.json, bench.png and the runs' database; a rerun skips runs done there.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the per-arm summary as JSON instead of tables."
    ),
    plugin: list[str] | None = typer.Option(None, "--plugin", metavar="MODULE", help=PLUGIN_HELP),
) -> None:
    """CoT distillation vs agent distillation (vs agent + FTP/SAG) on chain_sum and the world's
    retrieval questions, same seeds, student, budget and training steps; paired 95% intervals."""
    from dataclasses import replace

    try:
        # Inside the try: a bad arms file (loaded on import) is one line, exit 2.
        from pedagogy.benchmarks import agents as A
        from pedagogy.benchmarks.trajectories import trajectory_lines

        _plugins(plugin)
        settings = A.AgentBenchSettings.quick_settings() if quick else A.AgentBenchSettings()
        update: dict[str, Any] = {}
        if rounds is not None:
            update["rounds"] = rounds
        if episodes is not None:
            update["episodes"] = update["world_episodes"] = episodes
        if train_steps is not None:
            update["train_steps"] = update["world_train_steps"] = train_steps
        settings = replace(settings, **update, budget=budget)  # None: a quarter of the episodes
        arm_names = A.parse_names(arms, list(A.ARMS), A.DEFAULT_ARMS, "arms")
        domain_names = A.parse_names(domains, list(A.DOMAINS), list(A.DOMAINS), "domains")
        keys = [A.run_key(d, a) for d in domain_names for a in arm_names]
        bench = A.AgentBench(out, settings, keys, list(range(seeds or (1 if quick else 3))))
        data = bench.run()
    except PedagogyError as err:
        _fail(err)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted; finished runs are in {out / 'bench.json'}; rerun the same command to continue"
        )
        raise typer.Exit(130) from None
    summary = data["summary"]
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    s = data["settings"]
    wide = console if console.is_terminal else Console(width=240)
    for domain, domain_arms in A.by_domain(summary).items():
        header, rows = A.table_rows(domain_arms)
        episodes, budget, steps = settings.sizes(domain)
        title = (
            f"{domain}: held-out accuracy after {s['rounds']} rounds of {episodes} episodes, "
            f"budget {budget}/round, {steps} steps/job (mean±std over seeds; Δ: paired over "
            "seeds, points)"
        )
        wide = _print_table(title, header, rows)
    for line in [
        *A.target_lines(summary),
        *A.sag_lines(data["runs"], summary),
        *trajectory_lines(summary),
    ]:
        wide.print(line, highlight=False, soft_wrap=True)
    console.print(f"results    {bench.json_path}")
    console.print(f"plot       {bench.png_path}")
    console.print(f"database   {out / 'bench.db'}")
    _exit_if_failed(data["failed"])


def main() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        app()
    except PedagogyError as err:  # raised outside a command body
        err_console.print(f"error: {escape(str(err))}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()


@bench_app.command("throughput")
def bench_throughput(
    parts: str | None = typer.Option(
        None,
        "--parts",
        help="Comma-separated measures (default: training,decoding,replay,growth,litellm).",
    ),
    quick: bool = typer.Option(False, "--quick", help="Small sizes, for a check in seconds."),
    as_json: bool = typer.Option(False, "--json", help="Print every number as JSON."),
) -> None:
    """Each part against its baseline, side by side in one process: ratios, targets, verdicts."""
    import json

    from pedagogy.benchmarks import throughput as T

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip()) if parts else T.PARTS
    try:
        report = T.run(chosen, quick=quick, progress=lambda text: err_console.print(text))
    except PedagogyError as err:
        _fail(err)
        return
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    env = report["environment"]
    console.print(
        f"{env['machine']} · {env['cores']} cores · load {env['load_1min']:.1f} · "
        + " ".join(f"{k} {v}" for k, v in env["versions"].items()),
        highlight=False,
    )
    from rich.table import Table

    table = Table("measure", "pedagogy", "baseline", "ratio", "target", "met")
    for row in T.rows(report):
        table.add_row(*row)
    console.print(table)
