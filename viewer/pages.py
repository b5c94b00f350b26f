"""What each page of the viewer shows, read from the store (templates lay it out).

Each function takes the open store and the page's ids and returns the template's context; an
unknown id raises the store's StoreError (the app answers 404).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from pedagogy.errors import StoreError
from pedagogy.memory.records import EpisodeFilter
from pedagogy.viewer.charts import heat_fill, line_chart

OUTCOMES = ("correct_first", "correct_after_explanation", "wrong", "error")
"""An episode's possible outcomes (the episodes list's filter)."""

__all__ = ["audit", "calls", "compare", "episode", "episodes", "run", "runs", "version"]


def runs(store: Any) -> list[dict[str, Any]]:
    """Every run in the store, newest first, with its latest held-out mean; a run whose process
    died (no live lease) as interrupted, as `pedagogy runs` shows it."""
    from pedagogy.memory.lease import run_status

    out = []
    for r in sorted(store.list_runs(), key=lambda r: str(r.created_at or ""), reverse=True):
        evals = store.evaluations(r.id)
        last = max((e.round for e in evals), default=None)
        final = [e.accuracy for e in evals if e.round == last]
        out.append(
            {
                "id": r.id,
                "name": r.name,
                "status": run_status(r),
                "error": r.error,
                "created_at": r.created_at,
                "finished_at": r.finished_at,
                "rounds": (r.config or {}).get("rounds"),
                "last_round": last,
                "heldout_mean": sum(final) / len(final) if final else None,
            }
        )
    return out


def _curves(rounds: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in rounds:
        for arm, acc in (r.get("heldout") or {}).items():
            series[arm].append((r["round"], acc))
    return dict(series)


def run(store: Any, run_id: str) -> dict[str, Any]:
    from pedagogy.memory.lease import run_status
    from pedagogy.report import run_summary

    record = store.get_run(run_id)  # StoreError for an unknown run
    summary = run_summary(store, run_id)
    rounds = summary["rounds"]
    arms = sorted({a for r in rounds for a in (r.get("probabilities") or {})})
    heat = [
        {
            "round": r["round"],
            "cells": [
                {
                    "p": (r.get("probabilities") or {}).get(a),
                    "fill": heat_fill((r.get("probabilities") or {}).get(a)),
                }
                for a in arms
            ],
        }
        for r in rounds
        if r.get("probabilities")
    ]
    kinds = sorted({k for r in rounds for k in (r.get("decisions") or {})})
    return {
        "run": record,
        "status": run_status(record),
        "summary": summary,
        "chart": line_chart(_curves(rounds), title="held-out accuracy per level"),
        "heat_arms": arms,
        "heat": heat,
        "decision_kinds": kinds,
        "rounds": rounds,
        "environment": _environment(record),
        "config": record.config,
    }


def _environment(record: Any) -> list[dict[str, Any]]:
    """The library versions each process that worked on the run recorded (its run folder's
    environment.json), [] when the folder is not on this machine."""
    from pedagogy.environment import read_environment

    workdir = (record.config or {}).get("workdir")
    if not workdir:
        return []
    try:
        return read_environment(Path(workdir) / "runs" / record.id)
    except (OSError, ValueError):
        return []


def audit(store: Any, run_id: str) -> dict[str, Any]:
    from pedagogy.memory.audit import verify_run
    from pedagogy.memory.chain import audit_key

    if not run_exists(store, run_id):
        raise StoreError(f"unknown run {run_id!r}")
    try:
        report = verify_run(store, run_id, audit_key())
    except StoreError as err:  # a keyed run without its key, a chain without a head row
        return {"run_id": run_id, "report": None, "error": str(err), "problems": [], "clean": False}
    return {
        "run_id": run_id,
        "report": report,
        "clean": report.clean,
        "problems": [p.line() for p in report.problems],
        "error": None,
    }


def _flag(value: str, what: str) -> bool | None:
    if value in ("", "any"):
        return None
    if value in ("yes", "no"):
        return value == "yes"
    raise ValueError(f"{what} must be yes, no or any, got {value!r}")


def episodes(
    store: Any,
    run_id: str,
    round_: str,
    arm: str,
    outcome: str,
    explained: str,
    tool: str,
    after: str,
) -> dict[str, Any]:
    if not run_exists(store, run_id):
        raise StoreError(f"unknown run {run_id!r}")
    if round_ and not round_.lstrip("-").isdigit():
        raise ValueError(f"round must be a number, got {round_!r}")
    if outcome and outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
    flt = EpisodeFilter(
        int(round_) if round_ else None,
        arm or None,
        outcome or None,
        _flag(explained, "explained"),
        _flag(tool, "tool"),
    )
    key = None
    if after:
        try:
            r, i = after.split(".")
            key = (int(r), int(i))
        except ValueError:
            raise ValueError(f"after must be ROUND.INDEX, got {after!r}") from None
    page = store.episodes_page(run_id, flt, key)
    next_query = None
    if page.after is not None:
        next_query = {**flt.query(), "after": f"{page.after[0]}.{page.after[1]}"}
    return {
        "run_id": run_id,
        "page": page,
        "filter": flt,
        "outcomes": OUTCOMES,
        "next_query": next_query,
        "first": after == "",
    }


def episode(store: Any, episode_id: str) -> dict[str, Any]:
    ep = store.get_episode(episode_id)
    verdicts = {v.turn_id: v for v in ep.verdicts}
    explanations = {x.turn_id: x for x in ep.explanations}
    calls: dict[str, list[Any]] = defaultdict(list)
    for c in ep.tool_calls:
        calls[c.turn_id].append(c)
    turns = [
        {
            "turn": t,
            "verdict": verdicts.get(t.id),
            "explanation": explanations.get(t.id),
            "tool_calls": calls.get(t.id, []),
            "finish_reason": (t.detail or {}).get("finish_reason"),
        }
        for t in sorted(ep.turns, key=lambda t: t.seq)
    ]
    problems = store.get_problems([ep.problem_id])
    return {"episode": ep, "turns": turns, "problem": problems.get(ep.problem_id)}


def version(store: Any, version_id: str) -> dict[str, Any]:
    from pedagogy.memory.lineage import audit_model

    lineage = audit_model(store, version_id)
    return {"lineage": lineage, "version": lineage.version}


def compare(store: Any, a: str, b: str) -> dict[str, Any]:
    from pedagogy.report import run_summary

    ra, rb = store.get_run(a), store.get_run(b)  # StoreError for an unknown run
    series: dict[str, list[tuple[int, float]]] = {}
    for label, run_id in (("A", a), ("B", b)):
        for arm, points in _curves(run_summary(store, run_id)["rounds"]).items():
            series[f"{label} {arm}"] = points
    dashed = [name for name in series if name.startswith("B ")]
    return {
        "a": ra,
        "b": rb,
        "chart": line_chart(
            series, title="held-out accuracy per level, A solid, B dashed", dashed=dashed, width=760
        ),
        "diff": config_diff(ra.config or {}, rb.config or {}),
    }


def config_diff(
    a: dict[str, Any], b: dict[str, Any], prefix: str = ""
) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every leaf that differs."""
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        name = f"{prefix}{key}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out.extend(config_diff(va, vb, name + "."))
        elif va != vb:
            out.append((name, va, vb))
    return out


CALLS_PER_PAGE = 100


def calls(store: Any, run_id: str, purpose: str, page: str) -> dict[str, Any]:
    """The run's model calls outside episodes, in chain order, a page at a time: the startup
    checks, an LLM generator's calls, the teacher's refinements, an on-policy job's samples
    (with the teacher's mean log-probability of their tokens)."""
    if not run_exists(store, run_id):
        raise StoreError(f"unknown run {run_id!r}")
    if page and not page.isdigit():
        raise ValueError(f"page must be a number, got {page!r}")
    turns = store.turns_outside_episodes(run_id)
    purposes = sorted({str(t.request.get("purpose") or "") for t in turns})
    if purpose:
        turns = [t for t in turns if t.request.get("purpose") == purpose]
    n = int(page or 0)
    shown = turns[n * CALLS_PER_PAGE : (n + 1) * CALLS_PER_PAGE]
    rows = []
    for t in shown:
        scores = (t.detail or {}).get("teacher_logprobs")
        rows.append(
            {
                "turn": t,
                "purpose": t.request.get("purpose") or "",
                "step": t.request.get("step"),
                "teacher_mean": sum(scores) / len(scores) if scores else None,
            }
        )
    return {
        "run_id": run_id,
        "rows": rows,
        "purposes": purposes,
        "purpose": purpose,
        "page": n,
        "total": len(turns),
        "more": (n + 1) * CALLS_PER_PAGE < len(turns),
    }


def run_exists(store: Any, run_id: str) -> bool:
    try:
        store.get_run(run_id)
    except StoreError:
        return False
    return True
