"""How fast a stored run replays: `replay_throughput` times `replay_run` against the per-episode
path it replaced and against calling the episode graph's node functions directly, in one process
on the same stored run, and returns the numbers (episodes/s by wall clock and by CPU time, this
process's and its worker processes' together: on a shared machine wall time is noisy).

Without a stored run it makes one (`synthetic_run`): the default config's domain, a scripted
student that is right by a fixed share, the scripted teacher, the programmatic verifier and the
"always" intervention policy's stored decisions, so its episodes look like the default run's.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pedagogy.errors import ConfigError
from pedagogy.memory.base import Store

__all__ = ["replay_throughput", "synthetic_run"]


def synthetic_run(
    store: Store,
    run_id: str = "synthetic",
    *,
    episodes: int = 10_000,
    per_round: int = 1000,
    right: float = 0.5,
    seed: int = 0,
) -> str:
    """Store a run of `episodes` episodes, `per_round` a round, made through the episode graph
    (compiled once, as the loop does) with scripted agents: the student's first attempt is
    right for a `right` share of problems, its re-attempt for half of the rest. Returns its id."""
    from pedagogy.agents.roles import Student, Teacher, Verifier
    from pedagogy.backends.scripted import ScriptedBackend
    from pedagogy.config import load_config
    from pedagogy.graphs.broker import episode_id
    from pedagogy.graphs.episode import Agents, build_episode_graph
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.memory.records import DecisionRecord, RunRecord

    for name, value in (("episodes", episodes), ("per_round", per_round)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
    if not 0.0 <= right <= 1.0:
        raise ConfigError(f"right must be a share between 0 and 1, got {right!r}")
    config = load_config(None).with_overrides({"seed": seed})
    domain = build_domain_from(config)

    def student(request: Any) -> str:
        problem = request.problem
        key = f"{seed}:{problem.id}:{request.purpose}".encode()
        draw = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
        share = right if request.purpose == "attempt" else 0.5
        return f"A:{problem.answer}" if draw < share else "A:-1"

    agents = Agents(
        Student(ScriptedBackend(student, model="synthetic-student")),
        Teacher(ScriptedBackend.from_domain(domain)),
        Verifier(domain, None),
        reattempt=config.episodes.reattempt,
    )
    graph = build_episode_graph(agents)
    arms = [(s, lv) for s in domain.skills() for lv in domain.levels(s)]
    rng = random.Random(seed)
    store.create_run(RunRecord(run_id, "synthetic", config.model_dump(), seed))
    for round_ in range(1, -(-episodes // per_round) + 1):
        n = min(per_round, episodes - (round_ - 1) * per_round)
        problems = [domain.generate(rng, 1, *arms[i % len(arms)])[0] for i in range(n)]
        store.add_problems(problems)

        async def one(i: int, problem: Any, round_: int = round_) -> Any:
            state = {
                "episode_id": episode_id(run_id, round_, i),
                "run_id": run_id,
                "round": round_,
                "index": i,
                "seed": rng.randrange(2**31),
                "problem": problem,
            }
            return (await graph.ainvoke(state))["record"]

        async def all_(problems: list[Any] = problems) -> list[Any]:
            return await asyncio.gather(*[one(i, p) for i, p in enumerate(problems)])

        records = asyncio.run(all_())
        store.record_episodes(records)
        wrong = [e for e in records if not e.correct_first]
        store.record_decisions(
            [
                DecisionRecord(run_id, round_, "intervention", "always", e.id, chosen=True)
                for e in wrong
            ]
        )
    return run_id


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn(), its wall seconds and CPU seconds (this process and its finished children)."""
    before, start = os.times(), time.perf_counter()
    out = fn()
    wall, after = time.perf_counter() - start, os.times()
    cpu = sum(after[:4]) - sum(before[:4])
    return out, wall, cpu


def _direct(store: Store, run_id: str) -> tuple[int, float, float]:
    """The node functions called directly on episodes already in memory (no reads): the bound
    a replay approaches. (episodes, wall, CPU)."""
    from pedagogy.config import config_from_dict
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.graphs.replay import _replay

    config = config_from_dict(store.get_run(run_id).config, f"run {run_id}")
    domain = build_domain_from(config)
    decided = {d.subject: bool(d.chosen) for d in store.decisions(run_id, kind="intervention")}
    episodes = store.episodes(run_id, with_turns=True)
    problems = store.get_problems([e.problem_id for e in episodes])

    async def all_(episodes: list[Any]) -> list[Any]:
        return [
            await _replay(
                e,
                problems[e.problem_id],
                domain,
                reattempt=config.episodes.reattempt,
                judged=config.verifier.kind == "llm_judge",
                episode_graph=None,
                decided=decided.get(e.id),
                compiled=False,
            )
            for e in episodes
        ]

    asyncio.run(all_(episodes[:1]))  # imports on first use: not timed
    out, wall, cpu = _timed(lambda: asyncio.run(all_(episodes)))
    return len(out), wall, cpu


def _per_episode(store: Store, run_id: str, limit: int) -> tuple[int, int, int, float, float]:
    """The path `replay_run` took before: a graph compiled, and the problem read, per episode,
    episodes awaited one at a time. (episodes, model calls, mismatches, wall, CPU)."""
    from pedagogy.config import config_from_dict
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.graphs.replay import replay_episode

    def run() -> list[Any]:
        config = config_from_dict(store.get_run(run_id).config, f"run {run_id}")
        domain = build_domain_from(config)
        decided = {d.subject: bool(d.chosen) for d in store.decisions(run_id, kind="intervention")}
        episodes = store.episodes(run_id, with_turns=True)[:limit]

        async def all_() -> list[Any]:
            return [
                await replay_episode(
                    e,
                    store,
                    domain,
                    reattempt=config.episodes.reattempt,
                    judged=config.verifier.kind == "llm_judge",
                    decided=decided.get(e.id),
                )
                for e in episodes
            ]

        return asyncio.run(all_())

    out, wall, cpu = _timed(run)
    calls = sum(d.model_calls for d in out)
    return len(out), calls, sum(len(d.mismatches) for d in out), wall, cpu


def replay_throughput(
    store: Store | None = None,
    run_id: str | None = None,
    *,
    episodes: int = 10_000,
    baseline: int | None = 1000,
    workers: tuple[int | None, ...] = (1, None),
) -> dict[str, Any]:
    """Time the replay of a stored run (`run_id` in `store`; None: a `synthetic_run` of
    `episodes` episodes in a temporary SQLite file) and return a dict of numbers.

    Keys: "episodes"; "direct" (node functions on episodes in memory); "per_episode" (the old
    path, on the first `baseline` episodes; None: skipped); "replay_run[workers=W]" per entry
    of `workers` (None: `replay_run`'s own choice); each with wall_s, cpu_s, per_s (by wall),
    per_cpu_s (by CPU) and, for the replays, model_calls, mismatches and vs_direct (per_s over
    the direct calls' per_s). The domain is built (and imported) once before any timing.
    """
    from pedagogy.memory.store import open_store

    if (store is None) != (run_id is None):
        raise ConfigError("pass both store and run_id (a stored run), or neither (a synthetic run)")
    with tempfile.TemporaryDirectory(prefix="pedagogy-replay-") as tmp:
        own = store is None
        if store is None:
            store = open_store(Path(tmp) / "replay.db")
            run_id = synthetic_run(store, episodes=episodes)
        try:
            return _measure(store, run_id, baseline, workers)
        finally:
            if own:
                store.close()


def _measure(
    store: Store, run_id: str, baseline: int | None, workers: tuple[int | None, ...]
) -> dict[str, Any]:
    from pedagogy.graphs.replay import replay_run

    store.get_run(run_id)  # an unknown run: one line, before any timing
    n, wall, cpu = _direct(store, run_id)  # also imports and builds the domain once
    direct = _rates(n, wall, cpu)
    out: dict[str, Any] = {"run_id": run_id, "episodes": n, "direct": direct}
    if baseline:
        m, calls, bad, wall, cpu = _per_episode(store, run_id, baseline)
        out["per_episode"] = _rates(m, wall, cpu, calls, bad, direct)
    for w in workers:
        report, wall, cpu = _timed(lambda w=w: replay_run(store, run_id, workers=w))
        key = f"replay_run[workers={'auto' if w is None else w}]"
        out[key] = _rates(report.episodes, wall, cpu, report.model_calls, report.mismatches, direct)
    return out


def _rates(
    n: int,
    wall: float,
    cpu: float,
    calls: int | None = None,
    mismatches: int | None = None,
    direct: dict[str, Any] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "episodes": n,
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "per_s": round(n / wall, 1) if wall > 0 else None,
        "per_cpu_s": round(n / cpu, 1) if cpu > 0 else None,
    }
    if calls is not None:
        out.update(model_calls=calls, mismatches=mismatches)
    if direct is not None and direct["per_s"] and out["per_s"]:
        out["vs_direct"] = round(out["per_s"] / direct["per_s"], 3)
    return out
