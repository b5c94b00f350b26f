"""`pedagogy runs` (the runs in a database) and `pedagogy show` (one run: its rounds, models,
tokens and cost; its episodes; one episode step by step)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from pedagogy.cli_common import DB_HELP, PLUGIN_HELP, console, fail, read_store, use_plugins
from pedagogy.errors import PedagogyError


def runs_(
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List runs. A run whose process died (no live lease) shows as interrupted: resume it."""
    from pedagogy.memory.lease import run_status

    try:
        with read_store(db) as store:
            rows = store.list_runs()
    except PedagogyError as err:
        fail(err)
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
        with read_store(db) as store:
            use_plugins(plugin, store, run_id)
            summary = run_summary(store, run_id)
            teacher = teacher_summary(store, run_id)
    except PedagogyError as err:
        fail(err)
    if teacher is not None:
        summary["teacher"] = teacher
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
    if teacher is not None:
        arms = " ".join(f"{a} {v:.2f}" for a, v in teacher["heldout"].items())
        console.print(
            f"teacher: {teacher['model']} {teacher['key']} · held-out {arms}", highlight=False
        )
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


def teacher_summary(store: Any, run_id: str) -> dict[str, Any] | None:
    """The run's teacher model (`teacher.model: tiny-teacher`): its name, cache key, version and
    held-out accuracy per arm, from its `teacher_heldout` decisions; None for other teachers."""
    rows = store.decisions(run_id, round=0, kind="teacher_heldout")
    if not rows:
        return None
    first = rows[0]
    return {
        "model": first.policy,
        "key": first.detail.get("key"),
        "version": first.detail.get("version"),
        "heldout": {d.subject: d.value for d in rows},
        "n": {d.subject: d.detail.get("n") for d in rows},
    }


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
        with read_store(db) as store:
            rows = episode_list(store, run_id)
    except PedagogyError as err:
        fail(err)
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
        with read_store(db) as store:
            use_plugins(plugin, store, run_id)
            require_episode(store, run_id, episode_id, db)
            view = episode_view(store, run_id, episode_id)
    except PedagogyError as err:
        fail(err)
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
