"""The store parts of `pedagogy bench throughput`: `growth` (a round's store work as the run
grows) and `store` (recording episodes against Core `executemany`)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from pedagogy.benchmarks.throughput import _timed

__all__ = ["growth", "store_ratio"]


def _round_work(store: Any, run_id: str, round_: int) -> dict[str, float]:
    """A round's store reads with the pool and history warm (as in a running loop), and the
    same data read the old way (the whole run again), each the least CPU of three tries."""
    from pedagogy.config import config_from_dict
    from pedagogy.domains.base import problem_parameters
    from pedagogy.graphs.history import RoundHistory
    from pedagogy.graphs.parts import build_domain_from
    from pedagogy.training.data import examples_from_episodes
    from pedagogy.training.pool import TrainingPool

    domain = build_domain_from(config_from_dict(store.get_run(run_id).config))
    pool = TrainingPool(store, run_id, domain, acting=False, in_context=False)
    history = RoundHistory(store, run_id, lambda p: str(problem_parameters(domain, p)))
    pool.through(round_ - 1)  # what earlier rounds of the process already read
    history.before(round_, cells=True)

    def incremental() -> None:
        pool.through(round_)
        history.before(round_ + 1, cells=True)
        store.episodes(run_id, round=round_)
        store.evaluations(run_id)

    def full() -> None:
        episodes = store.episodes(run_id, with_turns=True)
        problems = store.get_problems(list({e.problem_id for e in episodes}))
        examples_from_episodes(episodes, problems, domain)

    full()  # imports and caches warm, so neither timing pays them
    inc = min(_timed(incremental)[2] for _ in range(3))
    whole = min(_timed(full)[2] for _ in range(3))
    return {"round_cpu_s": inc, "full_read_cpu_s": whole}


def growth(small: int = 1000, large: int = 100_000, per_round: int = 1000) -> dict[str, Any]:
    """A round's store work with `large` stored episodes over that with `small` (synthetic
    runs of the default domain in temporary SQLite files)."""
    from pedagogy.graphs.replay_bench import synthetic_run
    from pedagogy.memory.store import open_store

    out: dict[str, Any] = {"per_round": per_round}
    with tempfile.TemporaryDirectory(prefix="pedagogy-growth-") as tmp:
        for name, n in (("small", small), ("large", large)):
            store = open_store(Path(tmp) / f"{name}.db")
            try:
                # `n` stored before, then the round under test.
                run_id, build_s, _ = _timed(
                    lambda store=store, n=n: synthetic_run(
                        store, episodes=n + per_round, per_round=per_round
                    )
                )
                round_ = -(-(n + per_round) // per_round)
                out[name] = {
                    "episodes": n,
                    "build_s": build_s,
                    **_round_work(store, run_id, round_),
                }
            finally:
                store.close()
    out["ratio"] = out["large"]["round_cpu_s"] / out["small"]["round_cpu_s"]
    out["full_read_ratio"] = out["large"]["full_read_cpu_s"] / out["small"]["full_read_cpu_s"]
    return out


def store_ratio(per_round: int = 1000, rounds: int = 8) -> dict[str, Any]:
    """Turns per CPU-second the store records through the loop's path (`record_episodes`: rows
    built, each turn, verdict and explanation hash-chained, all inserted in one transaction)
    against Core `executemany` inserting the same rows into the same tables of another SQLite
    file, a round at a time, alternating. The episodes are one synthetic round
    (`synthetic_run`), recorded again under new ids each round. Turns/s and the ratio are of each
    side's least CPU over the rounds (a shared machine adds to some rounds, never takes away);
    `ratio_total` is that of the sums."""
    import copy
    import uuid

    from sqlalchemy import insert, select

    from pedagogy.graphs.replay_bench import synthetic_run
    from pedagogy.memory import schema as S
    from pedagogy.memory.records import RunRecord
    from pedagogy.memory.store import open_store

    tables = (S.episodes, S.turns, S.tool_calls, S.call_attempts, S.verdicts, S.explanations)
    with tempfile.TemporaryDirectory(prefix="pedagogy-store-") as tmp:
        source = open_store(Path(tmp) / "source.db")
        try:
            run_id = synthetic_run(source, episodes=per_round, per_round=per_round)
            episodes = source.episodes(run_id, with_turns=True)
            problems = source.get_problems([e.problem_id for e in episodes])
        finally:
            source.close()
        ours, core = open_store(Path(tmp) / "store.db"), open_store(Path(tmp) / "core.db")
        try:
            for store in (ours, core):
                store.create_run(RunRecord("bench", "store", {}, 0))
                store.add_problems(list(problems.values()))
            ours_cpu: list[float] = []
            core_cpu: list[float] = []
            per_round_turns = sum(len(e.turns) for e in episodes)
            for round_ in range(1, rounds + 1):
                batch = copy.deepcopy(episodes)
                for e in batch:
                    e.id, e.run_id, e.round = uuid.uuid4().hex, "bench", round_
                    ids = {t.id: uuid.uuid4().hex for t in e.turns}
                    for t in e.turns:
                        t.id, t.hash = ids[t.id], ""
                    for x in (*e.verdicts, *e.explanations, *e.tool_calls):
                        x.turn_id = ids.get(x.turn_id, x.turn_id)
                    for c in e.tool_calls:
                        c.id, c.hash = uuid.uuid4().hex, ""
                start = time.process_time()
                ours.record_episodes(batch)
                ours_cpu.append(time.process_time() - start)
                # The same rows as stored, for Core to insert (untimed).
                with ours._engine.connect() as conn:
                    ep_ids = select(S.episodes.c.id).where(S.episodes.c.round == round_)
                    in_round = {
                        t.name: (t.c.id if t is S.episodes else t.c.episode_id).in_(ep_ids)
                        for t in tables
                        if t is S.episodes or "episode_id" in t.c
                    }
                    turn_ids = select(S.turns.c.id).where(in_round["turns"])
                    in_round["call_attempts"] = S.call_attempts.c.turn_id.in_(turn_ids)
                    rows = [
                        (
                            t,
                            [
                                dict(r._mapping)
                                for r in conn.execute(select(t).where(in_round[t.name]))
                            ],
                        )
                        for t in tables
                    ]
                start = time.process_time()
                with core._engine.begin() as conn:
                    for table, table_rows in rows:
                        if table_rows:
                            conn.execute(insert(table), table_rows)
                core_cpu.append(time.process_time() - start)
        finally:
            ours.close()
            core.close()
    return {
        "turns": per_round_turns * rounds,
        "episodes": per_round * rounds,
        "store": {"cpu_s": sum(ours_cpu), "per_cpu_s": per_round_turns / min(ours_cpu)},
        "core": {"cpu_s": sum(core_cpu), "per_cpu_s": per_round_turns / min(core_cpu)},
        "ratio": min(core_cpu) / min(ours_cpu),
        "ratio_total": sum(core_cpu) / sum(ours_cpu),
    }
