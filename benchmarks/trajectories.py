"""What an acting student's stored trajectories show (the agents bench): tool calls per
problem, invalid steps, unanswered attempts, demonstrations and failed calls, per run and
averaged over seeds, and the lines that report them."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any


def agent_stats(store: Any, run_id: str) -> dict[str, Any]:
    """Read from a run's store: the acting student's held-out metrics per level (of the model
    in service at the end, as `heldout_final`) and what its training trajectories show."""
    versions = {v.id: v.status for v in store.model_versions(run_id)}
    heldout: dict[str, dict[str, float]] = {}
    by_round: dict[int, list[Any]] = defaultdict(list)
    for e in store.evaluations(run_id):
        by_round[e.round].append(e)
    for rnd in sorted(by_round):
        current = {
            f"{e.skill}@{e.level}": dict(e.metrics)
            for e in by_round[rnd]
            if versions.get(e.model_version_id) in ("base", "promoted") and e.metrics
        }
        if current:
            heldout = current
    episodes = store.episodes(run_id, with_turns=True)
    return {"heldout_agent": heldout, "trajectories": trajectory_stats(episodes)}


def trajectory_stats(episodes: Sequence[Any]) -> dict[str, Any]:
    """Tool calls per problem, invalid steps, unanswered attempts and demonstrations, from the
    episodes' decisions (`attempt_steps`, `attempt_tools`, `attempt_invalid`, ...) and the
    student's failed tool calls by reason. Empty for episodes without trajectories (cot)."""
    kinds: dict[str, dict[str, float]] = {}
    for kind in ("attempt", "reattempt", "demonstration"):
        rows = [e.decisions for e in episodes if f"{kind}_steps" in (e.decisions or {})]
        if rows:
            kinds[kind] = _kind_stats(rows, kind)
    if not kinds:
        return {}
    rounds = []
    for rnd in sorted({e.round for e in episodes}):
        rows = [
            e.decisions
            for e in episodes
            if e.round == rnd and "attempt_steps" in (e.decisions or {})
        ]
        if rows:
            rounds.append({"round": rnd, **_kind_stats(rows, "attempt")})
    errors: Counter[str] = Counter()
    student_calls = 0
    for e in episodes:
        agent_of = {t.id: t.agent for t in e.turns}
        for call in e.tool_calls:
            if agent_of.get(call.turn_id) == "student":
                student_calls += 1
                if not call.ok:
                    errors[call.error or "unknown"] += 1
    return {
        **kinds,
        "by_round": rounds,
        "student_tool_calls": student_calls,
        "student_tool_errors": dict(errors.most_common()),
    }


def _kind_stats(rows: Sequence[dict[str, Any]], kind: str) -> dict[str, float]:
    n = len(rows)
    steps = sum(int(r.get(f"{kind}_steps") or 0) for r in rows)
    out = {
        "n": n,
        "tool_calls_per_problem": sum(len(r.get(f"{kind}_tools") or []) for r in rows) / n,
        "steps_per_problem": steps / n,
        "invalid_rate": sum(int(r.get(f"{kind}_invalid") or 0) for r in rows) / max(steps, 1),
        "unanswered": sum(r.get(f"{kind}_answer") is None for r in rows) / n,
    }
    if any(f"{kind}_correct" in r for r in rows):
        out["correct"] = sum(bool(r.get(f"{kind}_correct")) for r in rows) / n
    return out


def mean_metrics(per_run: Sequence[dict[str, dict[str, float]]]) -> dict[str, float]:
    """Each agent metric averaged over levels, then over runs ({} for a text student)."""
    values: dict[str, list[float]] = defaultdict(list)
    for levels in per_run:
        if not levels:
            continue
        for name in {k for m in levels.values() for k in m}:
            values[name].append(statistics.fmean(m[name] for m in levels.values() if name in m))
    return {k: statistics.fmean(v) for k, v in values.items()}


def mean_trajectories(per_run: Sequence[dict[str, Any]]) -> dict[str, Any]:
    runs = [t for t in per_run if t]
    if not runs:
        return {}
    out: dict[str, Any] = {}
    for kind in ("attempt", "reattempt", "demonstration"):
        stats = [t[kind] for t in runs if kind in t]
        if stats:
            out[kind] = {k: statistics.fmean(s[k] for s in stats if k in s) for k in stats[0]}
    rounds: dict[int, list[dict[str, float]]] = defaultdict(list)
    for t in runs:
        for r in t.get("by_round", []):
            rounds[r["round"]].append(r)
    out["by_round"] = [
        {"round": rnd, **{k: statistics.fmean(r[k] for r in rs) for k in rs[0] if k != "round"}}
        for rnd, rs in sorted(rounds.items())
    ]
    errors: Counter[str] = Counter()
    for t in runs:
        errors.update(t.get("student_tool_errors", {}))
    out["student_tool_calls"] = statistics.fmean(t.get("student_tool_calls", 0) for t in runs)
    out["student_tool_errors"] = {k: v / len(runs) for k, v in errors.most_common()}
    return out


def trajectory_lines(summary: dict[str, Any]) -> list[str]:
    """What the stored trajectories show, one line per agent arm."""
    lines = []
    for key, s in summary.items():
        t, agent = s.get("trajectories") or {}, s.get("heldout_agent") or {}
        if not t and not agent:
            continue
        parts = []
        if agent:
            parts.append(
                f"held-out {agent.get('mean_tool_calls', 0):.2f} calls/problem, "
                f"{100 * agent.get('invalid_action_rate', 0):.0f}% invalid steps, "
                f"{100 * agent.get('unanswered', 0):.0f}% unanswered"
            )
        if "attempt" in t:
            a = t["attempt"]
            trend = ""
            if len(t.get("by_round", [])) > 1:
                first, last = t["by_round"][0], t["by_round"][-1]
                trend = (
                    f" (round {first['round']} -> {last['round']}: "
                    f"{first['tool_calls_per_problem']:.1f} -> {last['tool_calls_per_problem']:.1f}"
                    f" calls, {100 * first['invalid_rate']:.0f}% -> "
                    f"{100 * last['invalid_rate']:.0f}% invalid)"
                )
            parts.append(
                f"training attempts {a['tool_calls_per_problem']:.2f} calls/problem, "
                f"{100 * a['invalid_rate']:.0f}% invalid steps, "
                f"{100 * a['unanswered']:.0f}% unanswered{trend}"
            )
        if "demonstration" in t:
            d = t["demonstration"]
            parts.append(
                f"{d['n']:.0f} demonstrations/run, {d['tool_calls_per_problem']:.1f} calls each"
                + (f", {100 * d['correct']:.0f}% correct" if "correct" in d else "")
            )
        errors = t.get("student_tool_errors") or {}
        if errors:
            shown = ", ".join(f"{k} {v:.0f}" for k, v in list(errors.items())[:3])
            parts.append(f"failed student calls/run: {shown}")
        lines.append(f"{key}: " + "; ".join(parts))
    return lines
