"""The learning benchmark: several teaching configurations ("arms") under the same seeds, the
same student and the same teacher budget, compared on held-out accuracy per level.

An arm is a set of config overrides (`ARMS`, dotted keys) layered over the embedded default. Each
(arm, seed) is one ordinary run (`runner.run_loop`) in one SQLite file under `--out`; after each
run its numbers are written to `bench.json` (atomically), so a crash loses at most the run in
progress and a rerun with the same `--out` skips the runs already done. The comparison is the
mean ± standard deviation over seeds of the final held-out accuracy per level, plus the teacher's
tokens and explanations and the wall time per run.

Why these sizes: every arm x 3 seeds must finish on 2 CPU cores within 45 minutes. Measured (2
cores, nothing else running): 3 rounds of 400 episodes with 60 held-out problems per level and
150-step fine-tuning jobs (11-13 s each) take 30-60 s a run; 4 rounds with 100 held-out
problems took 130-155 s a run (too slow). A good part of a run is its first minute: building
the student, evaluating it and running episodes with an untrained student that writes 64
tokens of noise per answer. Jobs are bounded by steps, not time, so every arm gets the same
training compute and a busy machine slows the bench without changing its numbers.
The budget binds (a quarter of the episodes may be explained), which is where choosing *which*
attempts to explain, and how, can matter; the default's last two levels stay out of reach, which
is where a curriculum can matter.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pedagogy.config import RunConfig, load_config
from pedagogy.errors import ConfigError

# -- the arms ----------------------------------------------------------------------------------
# Dotted config keys -> values. `standard_kd` is plain distillation: uniform practice, explain
# every wrong attempt (in plan order) until the budget is spent, worked solutions, train on all.
# `pedagogy` switches every mechanism on; each `no_*` ablation is pedagogy with ONE mechanism
# switched back to the standard choice, and each `kd+*` arm is standard_kd with ONE mechanism
# switched on. The two families answer different questions: which mechanism hurts the full arm,
# and which one helps the standard recipe on its own.

# The skill graph of the default domain's five levels: the composite level (2-4 terms of 1-3
# digits) requires both of its components, more terms (level 2) and more digits (level 3); the
# other levels are open from the start. (The default chain, each level requiring the one below,
# keeps a student that starts at zero on level 0 for the bench's three rounds; measured: 0.07.)
SKILL_GRAPH: dict[str, Any] = {
    "curriculum.skill_graph": True,
    "curriculum.level_chain": False,
    "curriculum.prerequisites": {"chain_sum@4": ["chain_sum@2", "chain_sum@3"]},
}
STANDARD_KD: dict[str, Any] = {
    "curriculum.sampler": "uniform",
    "curriculum.skill_graph": False,
    "curriculum.level_chain": True,
    "curriculum.prerequisites": None,
    "episodes.intervention": "always",
    "episodes.style": "worked",
    "training.kind": "sft",
    "training.filter": False,
}
PEDAGOGY: dict[str, Any] = {
    "curriculum.sampler": "bandit",
    **SKILL_GRAPH,
    "episodes.intervention": "utility",
    "episodes.style": "adaptive",
    "training.kind": "sft",
    "training.filter": True,
}
MECHANISMS: dict[str, dict[str, Any]] = {
    "curriculum": {"curriculum.sampler": "bandit", **SKILL_GRAPH},
    "utility": {"episodes.intervention": "utility"},
    "style": {"episodes.style": "adaptive"},
    "filter": {"training.filter": True},
}
"""Each mechanism of the pedagogy arm, as the overrides that switch it on."""

ARMS: dict[str, dict[str, Any]] = {
    "standard_kd": STANDARD_KD,
    "pedagogy": PEDAGOGY,
    **{
        f"no_{name}": {**PEDAGOGY, **{k: STANDARD_KD[k] for k in keys}}
        for name, keys in MECHANISMS.items()
    },
    **{f"kd+{name}": {**STANDARD_KD, **keys} for name, keys in MECHANISMS.items()},
    # The curriculum in two parts: the bandit alone, without the skill graph's gates.
    "kd+bandit": {**STANDARD_KD, "curriculum.sampler": "bandit"},
    # ...and the bandit rewarded by measured held-out progress after training (SOAR), not practice.
    "kd+grounded": {**STANDARD_KD, "curriculum.sampler": "bandit", "curriculum.grounded": True},
    # Learning from mistakes: REDI on the student's wrong attempts instead of plain SFT.
    "kd+redi": {**STANDARD_KD, "training.kind": "redi"},
    # Failure-driven refinement: a quarter of each round posed as variants of failed problems.
    "kd+refine": {**STANDARD_KD, "curriculum.refine": 0.25},
}
BUDGET_SHARE = "bench.budget_share"
"""An arm key (not a config key): this share of the bench's explanation budget for the arm."""
# The target's second form: the pedagogy arm with half the explanations (and so about half the
# teacher tokens) against standard_kd with all of them.
ARMS["pedagogy@half"] = {**PEDAGOGY, BUDGET_SHARE: 0.5}
DEFAULT_ARMS = list(ARMS)
"""What `pedagogy bench learning` runs without --arms (15 arms x 3 seeds)."""

# Arms run only when named with --arms (measured once; kept so the numbers can be rerun).
ARMS.update(
    {
        # The skill graph alone (uniform over the arms it has unlocked).
        "kd+graph": {**STANDARD_KD, **SKILL_GRAPH},
        # The skill graph's default chain of levels, with the bandit (the first bench's curriculum).
        "kd+chain": {**STANDARD_KD, "curriculum.sampler": "bandit", "curriculum.skill_graph": True},
        # The student also trained on explanation + problem -> solution (training.in_context).
        "kd+in_context": {**STANDARD_KD, "training.in_context": True},
        "kd+utility+in_context": {
            **STANDARD_KD,
            "episodes.intervention": "utility",
            "training.in_context": True,
        },
        # The adaptive generator: inside each level, pose the settings the student is ready for.
        "kd+adapt": {**STANDARD_KD, "generator.adapt": True},
        "kd+curriculum+adapt": {**STANDARD_KD, **MECHANISMS["curriculum"], "generator.adapt": True},
        "pedagogy+adapt": {**PEDAGOGY, "generator.adapt": True},
    }
)
QUICK_ARMS = ["standard_kd", "pedagogy"]

# Two levels of the default's chain_sum: one learnable in seconds, one not.
QUICK_LEVELS = [{"num_terms": 0, "num_digits": 0}, {"num_terms": 0, "num_digits": 1}]
QUICK_PREREQUISITES = {"chain_sum@1": ["chain_sum@0"]}
"""The skill graph's prerequisites on the quick bench's two levels."""


@dataclass(frozen=True)
class BenchSettings:
    """What every arm shares. Runs under one --out must share these (seeds and arms may grow)."""

    rounds: int = 3
    episodes: int = 400
    """Episodes per round."""
    budget: int | None = None
    """Explanations per round (episodes.explain_budget); None: a quarter of `episodes`."""
    train_steps: int | None = 150
    """Optimiser steps of each fine-tuning job: every arm gets the same training compute, and a
    busy machine changes a run's wall time but not its numbers. None: bound jobs by time only."""
    train_seconds: float = 60.0
    """Time limit of each fine-tuning job (a safety net; 150 steps take 11-13 s on 2 idle
    cores)."""
    heldout_per_arm: int = 60
    """Held-out problems per level: evaluating an untrained student (64 tokens of noise each) is
    a good part of a run's first minute."""
    quick: bool = False
    """Two levels and small held-out sets instead of the default domain."""

    def __post_init__(self) -> None:
        if self.budget is None:
            object.__setattr__(self, "budget", max(1, self.episodes // 4))

    @classmethod
    def quick_settings(cls) -> BenchSettings:
        return cls(
            rounds=2, episodes=48, train_steps=30, train_seconds=3.0, heldout_per_arm=16, quick=True
        )


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"a.b": 1} -> {"a": {"b": 1}} (the shape `RunConfig.with_overrides` takes)."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        node = out
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return out


def parse_arms(text: str | None, quick: bool = False) -> list[str]:
    """`--arms a,b` -> names, checked against `ARMS`; None: `DEFAULT_ARMS` (quick: two)."""
    if text is None:
        return list(QUICK_ARMS if quick else DEFAULT_ARMS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise ConfigError(f"--arms {text!r} names no arm; choose from: {', '.join(ARMS)}")
    for n in names:
        if n not in ARMS:
            raise ConfigError(f"unknown arm {n!r} in --arms; choose from: {', '.join(ARMS)}")
    return list(dict.fromkeys(names))


def arm_config(arm: str, seed: int, settings: BenchSettings, out: Path) -> RunConfig:
    """The run config of one (arm, seed): the embedded default, the shared settings, the arm."""
    base = load_config(None)
    shared: dict[str, Any] = {
        "name": f"bench-{arm}-s{seed}",
        "seed": seed,
        "rounds": settings.rounds,
        "workdir": str(out / "work"),
        "db": str(out / "bench.db"),
        "episodes": {"per_round": settings.episodes, "explain_budget": settings.budget},
        "training": {"max_seconds": settings.train_seconds, "max_steps": settings.train_steps},
        "evaluation": {"heldout_per_arm": settings.heldout_per_arm},
    }
    if settings.quick:
        options = dict(base.domain.options)
        options["levels"] = {"chain_sum": QUICK_LEVELS}
        shared["domain"] = {"options": options}
        shared["episodes"]["write_batch"] = 16
    dotted = dict(ARMS[arm])
    if settings.quick and dotted.get("curriculum.prerequisites"):
        dotted["curriculum.prerequisites"] = QUICK_PREREQUISITES
    share = dotted.pop(BUDGET_SHARE, None)
    if share is not None:
        shared["episodes"]["explain_budget"] = max(1, round(settings.budget * share))
    cfg = base.with_overrides(shared)
    try:
        return cfg.with_overrides(nest(dotted))
    except ConfigError as err:
        # Name the arm; an unknown key means this checkout's config lacks a mechanism.
        raise ConfigError(f"arm {arm!r}: {str(err).removeprefix('overrides: ')}") from None


# -- aggregation -------------------------------------------------------------------------------


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(runs: Sequence[dict[str, Any]], arms: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per arm, over its completed runs: accuracy per level (and the mean over levels), teacher
    tokens, explanations and seconds, each as {"mean", "std"}; plus the seeds that went in."""
    out: dict[str, dict[str, Any]] = {}
    for arm in arms:
        done = [r for r in runs if r["arm"] == arm and r["status"] == "completed"]
        if not done:
            continue
        levels = sorted({lv for r in done for lv in r["heldout_final"]}, key=_level_key)

        def ms(values: Sequence[float]) -> dict[str, float]:
            m, s = mean_std(values)
            return {"mean": m, "std": s}

        out[arm] = {
            "seeds": sorted(r["seed"] for r in done),
            "accuracy": {lv: ms([r["heldout_final"].get(lv, 0.0) for r in done]) for lv in levels},
            "mean_accuracy": ms([_mean(r["heldout_final"].values()) for r in done]),
            "teacher_tokens": ms([r["teacher_tokens"] for r in done]),
            "explained": ms([r["explained"] for r in done]),
            "seconds": ms([r["seconds"] for r in done]),
        }
    return out


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _level_key(arm: str) -> tuple[str, int]:
    skill, _, level = arm.rpartition("@")
    return (skill, int(level)) if level.isdigit() else (arm, -1)


# -- running -----------------------------------------------------------------------------------


@dataclass
class Bench:
    """One benchmark under `out`: settings, arms, seeds; `run()` does what is not done yet."""

    out: Path
    settings: BenchSettings
    arms: list[str]
    seeds: list[int]
    log: Callable[[str], None] = field(
        default=lambda line: print(line, file=sys.stderr, flush=True)
    )

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
        mine = asdict(self.settings)
        diff = [k for k in mine if stored.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--out {self.out} holds a bench with {k}={stored.get(k)!r}, not {mine[k]!r}; "
                "use another --out or the same settings"
            )
        for arm in self.arms:
            if arm in data.get("arms", {}) and data["arms"][arm] != ARMS[arm]:
                raise ConfigError(
                    f"--out {self.out}: arm {arm!r} was run with other overrides; use another --out"
                )
        return data

    def save(self, data: dict[str, Any]) -> None:
        data["summary"] = aggregate(
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
        configs = {
            (arm, seed): arm_config(arm, seed, self.settings, self.out)
            for seed in self.seeds
            for arm in self.arms
        }
        self.out.mkdir(parents=True, exist_ok=True)
        for arm in self.arms:
            data["arms"][arm] = ARMS[arm]
        done = {(r["arm"], r["seed"]) for r in data["runs"] if r["status"] == "completed"}
        todo = [key for key in configs if key not in done]
        skipped = len(configs) - len(todo)
        if skipped:
            self.log(
                f"bench: {skipped} of {len(configs)} runs already done in {self.json_path}; skipping them"
            )
        t0 = time.perf_counter()
        for i, (arm, seed) in enumerate(todo, 1):
            self.log(f"[{i}/{len(todo)}] {arm} seed {seed}: running")
            record = asyncio.run(run_one(arm, seed, configs[arm, seed]))
            data["runs"] = [r for r in data["runs"] if (r["arm"], r["seed"]) != (arm, seed)] + [
                record
            ]
            self.save(data)
            self.log(
                f"[{i}/{len(todo)}] {format_record(record)} · total {time.perf_counter() - t0:.0f} s"
            )
        self.save(data)
        mine = [r for r in data["runs"] if (r["arm"], r["seed"]) in configs]
        data["summary"] = aggregate(mine, self.arms)
        data["failed"] = [r for r in mine if r["status"] != "completed"]
        plot_bench(data["summary"], self.png_path)
        return data


async def run_one(arm: str, seed: int, config: RunConfig) -> dict[str, Any]:
    """One run; its numbers as a JSON-able record (a failure is recorded, not raised)."""
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
    store = open_store(result.db_url)
    try:
        s = run_summary(store, result.run_id)
    finally:
        store.close()
    teacher = s["tokens"].get("teacher", {})
    return {
        **record,
        "status": result.status,
        "run_id": result.run_id,
        "seconds": round(time.perf_counter() - t0, 1),
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
    }


def format_record(r: dict[str, Any]) -> str:
    """One progress line for a finished run."""
    if r["status"] != "completed":
        return f"{r['arm']} seed {r['seed']}: {r['status']} after {r['seconds']:.0f} s: {r.get('error', '')}"
    accs = " ".join(
        f"L{_level_key(k)[1]}={v:.2f}"
        for k, v in sorted(r["heldout_final"].items(), key=lambda kv: _level_key(kv[0]))
    )
    return (
        f"{r['arm']} seed {r['seed']}: {accs} mean={_mean(r['heldout_final'].values()):.2f} · "
        f"teacher tokens {r['teacher_tokens']} · explained {r['explained']} · {r['seconds']:.0f} s"
    )


def plot_bench(summary: dict[str, dict[str, Any]], path: Path) -> Path:
    """Grouped bars: held-out accuracy per level (and the mean), one bar per arm, std error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    arms = list(summary)
    levels = sorted({lv for s in summary.values() for lv in s["accuracy"]}, key=_level_key)
    groups = [*levels, "mean"]
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(
        figsize=(max(7.0, 1.2 * len(groups) + 0.12 * len(arms) * len(groups)), 4.5)
    )
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
            label=f"{arm} (n={len(s['seeds'])})",
        )
    ax.set_xticks(range(len(groups)), [g.replace("chain_sum@", "L") for g in groups])
    ax.set_ylabel("held-out accuracy (mean ± std over seeds)")
    ax.set_ylim(0, 1.05)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


TARGET_POINTS = 0.10
"""The target: the pedagogy arm at least this much above standard_kd (mean held-out accuracy)
at the same budget, or not below it with half the budget (`pedagogy@half`)."""


def target_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Whether the benchmark's target is met, as printable lines (none without standard_kd)."""
    if "standard_kd" not in summary:
        return []
    kd = summary["standard_kd"]["mean_accuracy"]["mean"]
    lines = []
    if "pedagogy" in summary:
        gain = summary["pedagogy"]["mean_accuracy"]["mean"] - kd
        met = "met" if gain >= TARGET_POINTS - 1e-9 else "not met"
        lines.append(
            f"pedagogy vs standard_kd at the same budget: {100 * gain:+.1f} points "
            f"(target +{100 * TARGET_POINTS:.0f}): {met}"
        )
    if "pedagogy@half" in summary:
        half = summary["pedagogy@half"]["mean_accuracy"]["mean"]
        met = "met" if half >= kd - 1e-9 else "not met"
        lines.append(
            f"pedagogy with half the budget vs standard_kd: {half:.3f} vs {kd:.3f} "
            f"(target: not below): {met}"
        )
    best = max(summary, key=lambda a: summary[a]["mean_accuracy"]["mean"])
    lines.append(
        f"best arm: {best} ({summary[best]['mean_accuracy']['mean']:.3f}, "
        f"{100 * (summary[best]['mean_accuracy']['mean'] - kd):+.1f} points over standard_kd)"
    )
    return lines


def table_rows(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (accuracy as mean±std)."""
    levels = sorted({lv for s in summary.values() for lv in s["accuracy"]}, key=_level_key)
    header = [
        "arm",
        "seeds",
        *[lv.replace("chain_sum@", "L") for lv in levels],
        "mean",
        "teacher tokens",
        "explained",
        "s/run",
    ]
    rows = []
    for arm, s in summary.items():

        def pm(c: dict[str, float], fmt: str = ".2f") -> str:
            return f"{c['mean']:{fmt}}±{c['std']:{fmt}}"

        rows.append(
            [
                arm,
                str(len(s["seeds"])),
                *[pm(s["accuracy"][lv]) if lv in s["accuracy"] else "-" for lv in levels],
                pm(s["mean_accuracy"]),
                pm(s["teacher_tokens"], ".0f"),
                pm(s["explained"], ".0f"),
                f"{s['seconds']['mean']:.0f}",
            ]
        )
    return header, rows
