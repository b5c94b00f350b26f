"""What every bench shares: the resumable `Bench` (runs saved one by one to bench.json), one
run's record, aggregation over seeds and the bar plot.

Each (arm, seed) is one ordinary run (`runner.run_loop`) in one SQLite file under `--out`; after
each run its numbers are written to `bench.json` (atomically), so a crash loses at most the runs
in progress and a rerun with the same `--out` skips the runs already done. Runs under one
`--out` must share their settings (seeds and arms may grow) and each arm its overrides.

Runs go `jobs` at a time, each in a process of its own pinned to its share of the cores (one
core each on a 2-core machine: a tiny student computes more per CPU-second on one thread than
on two), all writing to the same SQLite file (WAL). A run's numbers do not depend on how many
ran beside it: jobs are bounded by steps, and every run has its own seeds.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pedagogy.benchmarks.stats import level_key, mean, mean_std, paired_summary
from pedagogy.config import RunConfig
from pedagogy.errors import ConfigError

QUICK_LEVELS = [{"num_terms": 0, "num_digits": 0}, {"num_terms": 0, "num_digits": 1}]
"""The quick benches' (tests') levels: two of the default's chain_sum, one learnable in seconds,
one not."""


def aggregate(runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per arm, over its completed runs: accuracy per level (and the mean over levels), teacher
    tokens, explanations and seconds, each as {"mean", "std"}; plus the seeds that went in."""
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        done = [r for r in runs if r["arm"] == arm and r["status"] == "completed"]
        if not done:
            continue
        levels = sorted({lv for r in done for lv in r["heldout_final"]}, key=level_key)

        def ms(values: Sequence[float]) -> dict[str, float]:
            m, s = mean_std(values)
            return {"mean": m, "std": s}

        out[arm] = {
            "seeds": sorted(r["seed"] for r in done),
            "accuracy": {lv: ms([r["heldout_final"].get(lv, 0.0) for r in done]) for lv in levels},
            "mean_accuracy": ms([mean(r["heldout_final"].values()) for r in done]),
            "teacher_tokens": ms([r["teacher_tokens"] for r in done]),
            "explained": ms([r["explained"] for r in done]),
            "seconds": ms([r["seconds"] for r in done]),
        }
    return out


@dataclass
class Bench:
    """One benchmark under `out`: settings, arms, seeds; `run()` does what is not done yet.

    A bench subclasses it and gives the hooks `overrides` and `config`; `run_record`,
    `format_record`, `summarise` and `plot` have defaults (`pedagogy.benchmarks.learning` and
    `pedagogy.benchmarks.agents` are the two benches)."""

    out: Path
    settings: Any
    """A frozen dataclass: stored in bench.json, checked on rerun."""
    arms: list[str]
    seeds: list[int]
    log: Callable[[str], None] = field(
        default=lambda line: print(line, file=sys.stderr, flush=True)
    )
    baseline: str = ""
    """The arm every other arm is paired with, seed by seed."""
    jobs: int | None = 1
    """Runs at a time, each in its own process on its share of the cores; None: one per usable
    core (at most the runs left); 1: one after another in this process."""

    # -- hooks -------------------------------------------------------------------------------

    def overrides(self, arm: str) -> dict[str, Any]:
        """The arm's overrides as stored in bench.json (a rerun must match them)."""
        raise NotImplementedError

    def config(self, arm: str, seed: int) -> RunConfig:
        raise NotImplementedError

    async def run_record(self, arm: str, seed: int, config: RunConfig) -> dict[str, Any]:
        return await run_one(arm, seed, config)

    def format_record(self, record: dict[str, Any]) -> str:
        return format_record(record)

    def summarise(self, runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, Any]:
        """Per arm: `aggregate`'s numbers plus "paired": its per-seed difference in mean held-out
        accuracy to the baseline (`Paired.as_dict`)."""
        summary = aggregate(runs, arms)
        for arm, p in paired_summary(runs, list(summary), self.baseline).items():
            summary[arm]["paired"] = p.as_dict()
        return summary

    def plot(self, summary: dict[str, Any]) -> Path:
        return plot_bench(summary, self.png_path)

    # -- the bench ---------------------------------------------------------------------------

    @property
    def json_path(self) -> Path:
        return self.out / "bench.json"

    @property
    def png_path(self) -> Path:
        return self.out / "bench.png"

    def load(self) -> dict[str, Any]:
        """The stored results, checked to be comparable with these settings."""
        if not self.json_path.exists():
            return {"settings": asdict(self.settings), "arms": {}, "runs": []}
        try:
            data = json.loads(self.json_path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(
                f"{self.json_path}: not valid JSON ({err}); delete it or use another --out"
            ) from None
        stored = data.get("settings", {})
        mine = as_json(asdict(self.settings))
        diff = [k for k in mine if stored.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--out {self.out} holds a bench with {k}={stored.get(k)!r}, not {mine[k]!r}; "
                "use another --out or the same settings"
            )
        for arm in self.arms:
            if arm in data.get("arms", {}) and data["arms"][arm] != as_json(self.overrides(arm)):
                raise ConfigError(
                    f"--out {self.out}: arm {arm!r} was run with other overrides; use another --out"
                )
        return data

    def save(self, data: dict[str, Any]) -> None:
        data["summary"] = self.summarise(
            data["runs"], list(dict.fromkeys(r["arm"] for r in data["runs"]))
        )
        tmp = self.json_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, self.json_path)

    def run(self) -> dict[str, Any]:
        """Run every (seed, arm) not completed yet, saving after each; returns the results, with
        "summary" restricted to this bench's arms and seeds (bench.json keeps every stored run)."""
        data = self.load()
        # Every config is built (and validated) before the first run starts.
        configs = {(arm, seed): self.config(arm, seed) for seed in self.seeds for arm in self.arms}
        self.out.mkdir(parents=True, exist_ok=True)
        for arm in self.arms:
            data["arms"][arm] = self.overrides(arm)
        done = {(r["arm"], r["seed"]) for r in data["runs"] if r["status"] == "completed"}
        todo = [key for key in configs if key not in done]
        skipped = len(configs) - len(todo)
        if skipped:
            self.log(
                f"bench: {skipped} of {len(configs)} runs already done in {self.json_path}; skipping them"
            )
        t0 = time.perf_counter()
        finished = 0

        def record_done(record: dict[str, Any]) -> None:
            nonlocal finished
            finished += 1
            key = (record["arm"], record["seed"])
            data["runs"] = [r for r in data["runs"] if (r["arm"], r["seed"]) != key] + [record]
            self.save(data)
            self.log(
                f"[{finished}/{len(todo)}] {self.format_record(record)} · total "
                f"{time.perf_counter() - t0:.0f} s"
            )

        jobs = self.parallel_jobs(len(todo))
        if jobs <= 1:
            for i, (arm, seed) in enumerate(todo, 1):
                self.log(f"[{i}/{len(todo)}] {arm} seed {seed}: running")
                record_done(asyncio.run(self.run_record(arm, seed, configs[arm, seed])))
        else:
            self._run_parallel(todo, configs, jobs, record_done)
        self.save(data)
        mine = [r for r in data["runs"] if (r["arm"], r["seed"]) in configs]
        data["summary"] = self.summarise(mine, self.arms)
        data["failed"] = [r for r in mine if r["status"] != "completed"]
        self.plot(data["summary"])
        return data

    def parallel_jobs(self, runs: int) -> int:
        """How many runs go at once: `jobs`, or one per usable core; never more than `runs`."""
        if self.jobs is not None and self.jobs < 1:
            raise ConfigError(f"jobs must be at least 1, got {self.jobs}")
        return max(1, min(runs, self.jobs or len(_cores())))

    def _run_parallel(
        self,
        todo: Sequence[tuple[str, int]],
        configs: dict[tuple[str, int], RunConfig],
        jobs: int,
        record_done: Callable[[dict[str, Any]], None],
    ) -> None:
        """The runs `jobs` at a time in worker processes (spawned: no torch state inherited),
        each pinned to its share of the cores; records come back as runs finish."""
        cores = _cores()
        shares = [cores[i::jobs] or cores for i in range(jobs)]
        worker = replace(self, log=_log_to_stderr)  # picklable: no lambda
        context = multiprocessing.get_context("spawn")
        claimed = context.Value("i", 0)
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_pin_worker, initargs=(shares, claimed)
        ) as pool:
            running: dict[Future, tuple[str, int]] = {}
            queue = list(todo)
            while queue or running:
                while queue and len(running) < jobs:
                    arm, seed = queue.pop(0)
                    self.log(f"[{len(todo) - len(queue)}/{len(todo)}] {arm} seed {seed}: running")
                    running[pool.submit(_run_record, worker, arm, seed, configs[arm, seed])] = (
                        arm,
                        seed,
                    )
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    arm, seed = running.pop(future)
                    try:
                        record = future.result()
                    except ConfigError:
                        raise
                    except Exception as err:  # a dead worker fails its run, not the bench
                        record = {
                            "arm": arm,
                            "seed": seed,
                            "status": "failed",
                            "error": f"{type(err).__name__}: {err}",
                            "seconds": 0.0,
                        }
                    record_done(record)


def _cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _log_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _pin_worker(shares: list[list[int]], claimed: Any) -> None:
    """Pin this worker, before it imports torch, to the next unclaimed share of the cores."""
    with claimed.get_lock():
        share = shares[claimed.value % len(shares)]
        claimed.value += 1
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, share)


def _run_record(bench: Bench, arm: str, seed: int, config: RunConfig) -> dict[str, Any]:
    return asyncio.run(bench.run_record(arm, seed, config))


def as_json(value: Any) -> Any:
    """As it reads back from bench.json (tuples become lists)."""
    return json.loads(json.dumps(value))


async def run_one(
    arm: str,
    seed: int,
    config: RunConfig,
    extra: Callable[[Any, str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One run; its numbers as a JSON-able record (a failure is recorded, not raised).
    `extra(store, run_id)` adds fields read from the run's store."""
    from pedagogy.memory.store import open_store
    from pedagogy.report import run_summary
    from pedagogy.runner import run_loop

    t0 = time.perf_counter()
    record: dict[str, Any] = {"arm": arm, "seed": seed}
    try:
        result = await run_loop(config)
    except ConfigError:
        raise
    except Exception as err:  # one failed run must not stop the bench; a rerun retries it
        return {
            **record,
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "seconds": time.perf_counter() - t0,
        }
    seconds = round(time.perf_counter() - t0, 1)
    store = open_store(result.db_url)
    try:
        s = run_summary(store, result.run_id)
        more = extra(store, result.run_id) if extra is not None else {}
    finally:
        store.close()
    teacher = s["tokens"].get("teacher", {})
    return {
        **record,
        "status": result.status,
        "run_id": result.run_id,
        "seconds": seconds,
        "heldout_initial": s["heldout_initial"],
        "heldout_final": s["heldout_final"],
        "teacher_tokens": int(
            teacher.get("prompt_tokens", 0) + teacher.get("completion_tokens", 0)
        ),
        "teacher_calls": int(teacher.get("calls", 0)),
        "explained": s["counts"]["explained"],
        "episodes": s["counts"]["episodes"],
        "correct_first": s["counts"]["correct_first"],
        "promoted": sum(v["status"] == "promoted" for v in s["model_versions"]),
        **more,
    }


def format_record(r: dict[str, Any]) -> str:
    """One progress line for a finished run."""
    if r["status"] != "completed":
        return f"{r['arm']} seed {r['seed']}: {r['status']} after {r['seconds']:.0f} s: {r.get('error', '')}"
    accs = " ".join(
        f"L{level_key(k)[1]}={v:.2f}"
        for k, v in sorted(r["heldout_final"].items(), key=lambda kv: level_key(kv[0]))
    )
    return (
        f"{r['arm']} seed {r['seed']}: {accs} mean={mean(r['heldout_final'].values()):.2f} · "
        f"teacher tokens {r['teacher_tokens']} · explained {r['explained']} · {r['seconds']:.0f} s"
    )


# -- the plot ----------------------------------------------------------------------------------


def plot_bench(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    """Grouped bars: held-out accuracy per level (and the mean), one bar per arm, std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    groups = len(levels_of(summary)) + 1
    fig, ax = plt.subplots(figsize=(max(7.0, 1.2 * groups + 0.12 * len(summary) * groups), 4.5))
    plot_arms(ax, summary)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_arms(
    ax: Any, summary: dict[str, dict[str, Any]], label: Callable[[str], str] | None = None
) -> None:
    """Draw the grouped bars of `plot_bench` on a matplotlib axis (arms labelled by `label`)."""
    import matplotlib.pyplot as plt

    arms = list(summary)
    levels = levels_of(summary)
    groups = [*levels, "mean"]
    width = 0.8 / max(len(arms), 1)
    colors = plt.get_cmap("tab20").colors  # 20 distinct colours: the default cycle repeats after 10
    for i, arm in enumerate(arms):
        s = summary[arm]
        cells = [s["accuracy"].get(lv, {"mean": 0.0, "std": 0.0}) for lv in levels] + [
            s["mean_accuracy"]
        ]
        xs = [g + (i - (len(arms) - 1) / 2) * width for g in range(len(groups))]
        ax.bar(
            xs,
            [c["mean"] for c in cells],
            width,
            yerr=[c["std"] for c in cells],
            capsize=2,
            color=colors[i % len(colors)],
            label=f"{label(arm) if label else arm} (n={len(s['seeds'])})",
        )
    ax.set_xticks(range(len(groups)), [level_label(g) for g in groups])
    ax.set_ylabel("held-out accuracy (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)


def levels_of(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Every level held out by some arm of the summary, in level order."""
    return sorted({lv for s in summary.values() for lv in s["accuracy"]}, key=level_key)


def level_label(level: str) -> str:
    """A short column name: chain_sum@3 -> L3, facts@1 (the world's) -> 2-hop."""
    skill, n = level_key(level)
    if skill == "chain_sum":
        return f"L{n}"
    if skill == "facts":
        return f"{n + 1}-hop"
    return level
