"""What a run did, as one JSON-able summary: `pedagogy show` prints it, plots draw from it."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pedagogy.memory.base import Store
from pedagogy.memory.lease import run_status
from pedagogy.memory.records import UsageRecord


def run_summary(store: Store, run_id: str) -> dict[str, Any]:
    """The documented shape of `pedagogy show RUN --json` (see README)."""
    run = store.get_run(run_id)
    versions = store.model_versions(run_id)
    evals = store.evaluations(run_id)
    jobs = store.training_jobs(run_id)
    episodes = store.episodes(run_id)
    by_version: dict[str, dict[str, float]] = defaultdict(dict)
    for e in evals:
        by_version[e.model_version_id][f"{e.skill}@{e.level}"] = e.accuracy
    status_of = {v.id: v.status for v in versions}
    rounds: dict[int, dict[str, Any]] = {}
    acting: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for e in evals:
        r = rounds.setdefault(e.round, {"round": e.round, "evaluated": {}})
        r["evaluated"].setdefault(e.model_version_id, {})[f"{e.skill}@{e.level}"] = e.accuracy
        if e.metrics:
            acting[e.model_version_id][f"{e.skill}@{e.level}"] = dict(e.metrics)
    ep_by_round: dict[int, list] = defaultdict(list)
    for ep in episodes:
        ep_by_round[ep.round].append(ep)
    for rnd in sorted(set(rounds) | set(ep_by_round)):
        r = rounds.setdefault(rnd, {"round": rnd, "evaluated": {}})
        eps = ep_by_round.get(rnd, [])
        arms: dict[str, int] = defaultdict(int)
        first: dict[str, int] = defaultdict(int)
        for ep in eps:
            arms[ep.arm] += 1
            first[ep.arm] += int(ep.correct_first)
        r["episodes"] = len(eps)
        r["first_try"] = {arm: first[arm] / n for arm, n in sorted(arms.items())}
        r["correct_first"] = sum(ep.correct_first for ep in eps)
        r["explained"] = sum(ep.explained for ep in eps)
        r["arms"] = dict(sorted(arms.items()))
    for rnd, kinds in decision_counts(store, run_id).items():
        rounds.setdefault(rnd, {"round": rnd, "evaluated": {}})["decisions"] = kinds
    for cs in store.curriculum_states(run_id):
        if cs.round in rounds and cs.state.get("probabilities"):
            rounds[cs.round]["probabilities"] = dict(sorted(cs.state["probabilities"].items()))
    # held-out accuracy of the student in service after each round
    current: dict[str, float] = {}
    current_acting: dict[str, dict[str, float]] = {}
    curve = []
    for rnd in sorted(rounds):
        for vid, acc in rounds[rnd]["evaluated"].items():
            if status_of.get(vid) in ("base", "promoted"):
                current, current_acting = acc, acting.get(vid, {})
        rounds[rnd]["heldout"] = dict(current)
        if current_acting:  # an acting student: tool calls and invalid actions per arm
            rounds[rnd]["heldout_acting"] = dict(current_acting)
        curve.append({"round": rnd, "heldout": dict(current)})
    initial = curve[0]["heldout"] if curve else {}
    final = curve[-1]["heldout"] if curve else {}
    practised = sorted({ep.arm for ep in episodes})
    return {
        "run": {
            "id": run.id,
            "name": run.name,
            "status": run_status(run),
            "error": run.error,
            "seed": run.seed,
            "created_at": run.created_at.isoformat() if run.created_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        },
        "rounds": [rounds[r] for r in sorted(rounds)],
        "heldout_initial": initial,
        "heldout_final": final,
        "heldout_acting_final": dict(current_acting),
        "practised_arms": practised,
        "model_versions": [
            {
                "id": v.id,
                "role": v.role,
                "number": v.number,
                "status": v.status,
                "path": v.path,
                "parent_id": v.parent_id,
                "training_job_id": v.training_job_id,
            }
            for v in sorted(versions, key=lambda v: (v.role, v.number))
        ],
        "training_jobs": [
            {
                "id": j.id,
                "role": j.role,
                "round": j.round,
                "attempt": j.attempt,
                "kind": j.kind,
                "status": j.status,
                "metrics": j.metrics,
                "output_version_id": j.output_version_id,
            }
            for j in jobs
        ],
        "counts": {
            "episodes": len(episodes),
            "correct_first": sum(ep.correct_first for ep in episodes),
            "explained": sum(ep.explained for ep in episodes),
            "model_versions": len(versions),
            "training_jobs": len(jobs),
        },
        "tokens": store.token_totals(run_id),
        **calls_summary(store, run_id),
        **usage_summary(store.usage(run_id), run.config.get("budget") or {}),
    }


def calls_summary(store: Store, run_id: str) -> dict[str, Any]:
    """`finish_reasons` (per role, turns per reason), `truncated` (per role, turns cut at
    max_tokens: finish reason "length") and `call_attempts` (the attempts of calls that needed
    more than one: failed ones, and per endpoint how many failed and how many served)."""
    reasons = store.finish_reasons(run_id)
    endpoints: dict[str, dict[str, int]] = defaultdict(lambda: {"failed": 0, "served": 0})
    failed = 0
    for a in store.call_attempts(run_id):
        endpoints[a.endpoint]["failed" if a.error is not None else "served"] += 1
        failed += a.error is not None
    return {
        "finish_reasons": reasons,
        "truncated": {agent: r["length"] for agent, r in reasons.items() if r.get("length")},
        "call_attempts": {"failed": failed, "by_endpoint": dict(sorted(endpoints.items()))},
    }


OUTSIDE_EPISODES = "(outside episodes)"
"""The arm key of calls made outside any episode: an LLM generator posing, refinements."""


def usage_summary(rows: list[UsageRecord], budget: dict[str, Any]) -> dict[str, Any]:
    """`usage`: calls, tokens and cost per role and per curriculum arm and role (cost counts
    known costs; local models cost nothing; `cost_unknown` counts API calls without a price);
    `budget`: each limit the run set, with what is spent against it (wall time is kept in the
    loop's checkpoint, not here)."""
    from pedagogy.graphs.budget import Usage, total

    by_role: dict[str, Usage] = defaultdict(Usage)
    by_arm: dict[str, dict[str, Usage]] = defaultdict(lambda: defaultdict(Usage))
    for row in rows:
        by_role[row.agent].add(row)
        by_arm[row.arm or OUTSIDE_EPISODES][row.agent].add(row)
    every = total(rows)
    spent = {"teacher_tokens": total(rows, "teacher").tokens, "cost_usd": every.cost}
    limits = {
        name: {"limit": limit, "spent": spent.get(name)}
        | ({"cost_unknown": every.cost_unknown} if name == "cost_usd" else {})
        for name, limit in budget.items()
        if limit is not None
    }
    return {
        "usage": {
            "by_role": {agent: u.to_dict() for agent, u in sorted(by_role.items())},
            "by_arm": {
                arm: {agent: u.to_dict() for agent, u in sorted(roles.items())}
                for arm, roles in sorted(by_arm.items())
            },
        },
        "budget": limits,
    }


def episode_list(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's episodes in order, as `pedagogy show RUN --episodes --json` prints them."""
    store.get_run(run_id)  # an unknown run: the store's error, which names `pedagogy runs`
    return [
        {"id": e.id, "round": e.round, "index": e.index, "arm": e.arm, "outcome": e.outcome}
        for e in store.episodes(run_id)
    ]


def episode_view(store: Store, run_id: str, episode_id: str, width: int = 200) -> dict[str, Any]:
    """One episode as `pedagogy show RUN --episode ID --json` prints it: the problem, each
    trajectory step by step (thought, call, observation cut to `width` characters, answer) with
    its verdict, the other turns (explanations, judges) and the decisions."""
    from pedagogy.errors import StoreError

    e = store.get_episode(episode_id)
    if e.run_id != run_id:
        raise StoreError(f"episode {episode_id} belongs to run {e.run_id}, not {run_id}")
    problem = store.get_problems([e.problem_id]).get(e.problem_id)
    verdicts = {v.turn_id: v for v in e.verdicts}

    def cut(text: str | None) -> str | None:
        if text is None or len(text) <= width:
            return text
        return text[: width - 1] + "…"

    trajectories, acting = [], set()
    for traj in e.trajectories():
        acting.update(traj.turn_ids)
        steps = []
        for i, step in enumerate(traj.steps):
            call = step.tool_call
            steps.append(
                {
                    "step": i,
                    "turn_id": step.turn.id,
                    "text": step.text,
                    "thought": step.thought,
                    "action": step.action,
                    "call": None
                    if call is None
                    else {"tool": call.tool, "arguments": call.arguments},
                    "observation": cut(step.observation),
                    "ok": None if call is None else call.ok,
                    "error": step.turn.error or (None if call is None else call.error),
                    "answer": traj.answer if i == len(traj.steps) - 1 else None,
                    "latency_s": step.turn.latency_s + (call.latency_s if call else 0.0),
                    "tokens": step.turn.prompt_tokens + step.turn.completion_tokens,
                }
            )
        verdict = verdicts.get(traj.turn_ids[-1]) if traj.steps else None
        correct = verdict.correct if verdict else e.decisions.get(f"{traj.kind}_correct")
        trajectories.append(
            {
                "kind": traj.kind,
                "agent": traj.agent,
                "answer": traj.answer,
                "correct": correct,
                "parsed_answer": verdict.parsed_answer if verdict else None,
                "steps": steps,
            }
        )
    return {
        "episode": {
            "id": e.id,
            "run_id": e.run_id,
            "round": e.round,
            "index": e.index,
            "arm": e.arm,
            "outcome": e.outcome,
            "correct_first": e.correct_first,
            "correct_final": e.correct_final,
            "explained": e.explained,
        },
        "problem": None
        if problem is None
        else {
            "id": problem.id,
            "prompt": problem.prompt,
            "answer": problem.answer,
        },
        "trajectories": trajectories,
        "turns": [
            {
                "seq": t.seq,
                "agent": t.agent,
                "response": cut(t.response),
                "error": t.error,
                "correct": verdicts[t.id].correct if t.id in verdicts else None,
            }
            for t in e.turns
            if t.id not in acting
        ],
        "decisions": e.decisions,
    }


def decision_counts(store: Store, run_id: str) -> dict[int, dict[str, dict[str, int]]]:
    """Per round, per decision kind, how many decisions had each outcome.

    The outcome is `detail.decision` where a decision carries one (the learnability filter:
    kept, trimmed, rewritten, rejected, bypassed), else "chosen" / "not chosen" (interventions,
    refine candidates, ...) or "recorded" when a decision chooses nothing (arm rewards)."""
    counts: dict[int, dict[str, dict[str, int]]] = {}
    for d in store.decisions(run_id):
        outcome = d.detail.get("decision") if isinstance(d.detail, dict) else None
        if not isinstance(outcome, str):
            outcome = "recorded" if d.chosen is None else ("chosen" if d.chosen else "not chosen")
        kinds = counts.setdefault(d.round, {}).setdefault(d.kind, {})
        kinds[outcome] = kinds.get(outcome, 0) + 1
    return {
        r: {k: dict(sorted(v.items())) for k, v in sorted(kinds.items())}
        for r, kinds in sorted(counts.items())
    }


def plot_learning_curve(summary: dict[str, Any], path: str | Path) -> Path:
    """Held-out accuracy per arm over rounds, one line per (skill, level)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    curve = [r for r in summary["rounds"] if r.get("heldout")]
    arms = sorted({a for r in curve for a in r["heldout"]})
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for arm in arms:
        xs = [r["round"] for r in curve if arm in r["heldout"]]
        ys = [r["heldout"][arm] for r in curve if arm in r["heldout"]]
        style = "-o" if arm in summary["practised_arms"] else ":x"
        ax.plot(xs, ys, style, label=arm, markersize=3)
    ax.set_xlabel("round (0 = before teaching)")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"run {summary['run']['id']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curriculum_heatmap(summary: dict[str, Any], path: str | Path) -> Path:
    """The curriculum's probability of each arm (rows) in each round (columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    planned = [r for r in summary["rounds"] if r.get("probabilities")]
    arms = sorted({a for r in planned for a in r["probabilities"]})
    grid = [[r["probabilities"].get(a, 0.0) for r in planned] for a in arms]
    width = max(4.5, 2.0 + 0.6 * len(planned))
    fig, ax = plt.subplots(figsize=(width, 1.4 + 0.4 * max(len(arms), 1)))
    image = ax.imshow(grid or [[0.0]], aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(planned)), [str(r["round"]) for r in planned])
    ax.set_yticks(range(len(arms)), arms)
    for i, row in enumerate(grid):
        for j, p in enumerate(row):
            ax.text(
                j,
                i,
                f"{p:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if p < 0.5 else "black",
            )
    ax.set_xlabel("round")
    ax.set_title(f"curriculum P(arm) · {summary['run']['id']}", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
