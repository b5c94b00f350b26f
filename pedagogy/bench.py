"""The learning benchmark: several teaching configurations ("arms") under the same seeds, the
same student and the same teacher budget, compared on held-out accuracy per level.

An arm is a set of config overrides (`ARMS`, dotted keys) layered over the embedded default. Each
(arm, seed) is one ordinary run (`runner.run_loop`) in one SQLite file under `--out`; after each
run its numbers are written to `bench.json` (atomically), so a crash loses at most the run in
progress and a rerun with the same `--out` skips the runs already done. The comparison is the
mean ± standard deviation over seeds of the final held-out accuracy per level, plus the teacher's
tokens and explanations and the wall time per run; each arm's gain over standard_kd is its
paired difference seed by seed with a 95% t-interval (`paired_interval`), and a target counts as
met only where that interval excludes zero.

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


# -- paired differences over seeds --------------------------------------------------------------
# Arms share seeds, and a seed fixes the student's initial weights, the problems posed and the
# held-out set: two arms' runs with the same seed are a pair. The per-seed differences to the
# baseline remove what the seed alone decides, and their t-interval says whether a gain is more
# than seed noise (a single mean over three seeds is not evidence).


def t_quantile(df: int, p: float = 0.975) -> float:
    """The p-quantile of Student's t with `df` (integer >= 1) degrees of freedom (p > 0.5).

    Exact closed forms of the t distribution for integer df (Abramowitz & Stegun 26.7.3-4)
    inverted by bisection; no scipy needed."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ConfigError(f"t_quantile: df must be an integer >= 1, got {df!r}")
    if not 0.5 < p < 1:
        raise ConfigError(f"t_quantile: p must be in (0.5, 1), got {p!r}")
    target = 2 * p - 1  # P(|T| < t)
    lo, hi = 0.0, 1.0
    while _t_central(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if _t_central(mid, df) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _t_central(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer df."""
    theta = math.atan(t / math.sqrt(df))
    s, c = math.sin(theta), math.cos(theta)
    if df % 2:  # odd
        total, term = 0.0, c
        for k in range(1, (df - 1) // 2 + 1):
            if k > 1:
                term *= c * c * (2 * k - 2) / (2 * k - 1)
            total += term
        return 2 / math.pi * (theta + s * total) if df > 1 else 2 * theta / math.pi
    total, term = 1.0, 1.0
    for k in range(1, df // 2):
        term *= c * c * (2 * k - 1) / (2 * k)
        total += term
    return s * total


@dataclass(frozen=True)
class Paired:
    """An arm's paired differences to its baseline over seeds, with a t-interval."""

    n: int
    """Seeds with a completed run of both the arm and the baseline."""
    mean: float
    low: float
    """Bounds of the interval (nan with fewer than 2 pairs)."""
    high: float
    level: float = 0.95

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "excludes_zero": self.excludes_zero}


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> Paired:
    """Mean and t-interval (df = n-1) of per-seed differences; no interval below 2 pairs."""
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, level)
    mean = statistics.fmean(diffs)
    if n < 2:
        return Paired(n, mean, math.nan, math.nan, level)
    half = t_quantile(n - 1, (1 + level) / 2) * statistics.stdev(diffs) / math.sqrt(n)
    return Paired(n, mean, mean - half, mean + half, level)


def paired_differences(
    runs: Sequence[dict[str, Any]],
    arm: str,
    baseline: str,
    metric: Callable[[dict[str, Any]], float | None],
) -> dict[int, float]:
    """Per seed, metric(arm's run) - metric(baseline's run), over seeds where both completed
    (and the metric is defined for both)."""

    def by_seed(name: str) -> dict[int, float]:
        out = {}
        for r in runs:
            if r["arm"] == name and r["status"] == "completed":
                value = metric(r)
                if value is not None:
                    out[r["seed"]] = value
        return out

    mine, base = by_seed(arm), by_seed(baseline)
    return {seed: mine[seed] - base[seed] for seed in sorted(mine) if seed in base}


def mean_heldout(run: dict[str, Any]) -> float:
    """A run's final held-out accuracy, averaged over levels."""
    return _mean(run["heldout_final"].values())


def levels_mean(levels: Sequence[str]) -> Callable[[dict[str, Any]], float | None]:
    """A metric: a run's final held-out accuracy averaged over these levels (None if it lacks
    one)."""

    def metric(run: dict[str, Any]) -> float | None:
        final = run["heldout_final"]
        if not all(lv in final for lv in levels):
            return None
        return _mean(final[lv] for lv in levels)

    return metric


def paired_summary(
    runs: Sequence[dict[str, Any]],
    arms: Sequence[str],
    baseline: str,
    metric: Callable[[dict[str, Any]], float | None] = mean_heldout,
) -> dict[str, Paired]:
    """Each arm (not the baseline) against the baseline, paired by seed."""
    return {
        arm: paired_interval(list(paired_differences(runs, arm, baseline, metric).values()))
        for arm in arms
        if arm != baseline
    }


def format_paired(p: Paired, scale: float = 100.0) -> str:
    """`+2.9 [-1.0, +6.8]` (points), or `+2.9 (n=1)` without an interval."""
    if p.n == 0:
        return "-"
    if p.n < 2:
        return f"{scale * p.mean:+.1f} (n=1)"
    return f"{scale * p.mean:+.1f} [{scale * p.low:+.1f}, {scale * p.high:+.1f}]"


def verdict(name: str, p: Paired, target: float) -> str:
    """One line: the paired gain, its interval, the target and whether it is met.

    met: the mean gain reaches the target and, for a positive target, the interval excludes
    zero; "not shown": the mean reaches it but the interval does not exclude zero (or there is
    one seed); "not met": the mean falls short."""
    if p.n == 0:
        return f"{name}: no paired seeds (target {100 * target:+.0f}): not shown"
    reached = p.mean >= target - 1e-9
    if p.n < 2:
        interval = "no interval with 1 seed"
        evidence = "a single seed is not evidence"
    else:
        interval = (
            f"{100 * p.level:.0f}% CI [{100 * p.low:+.1f}, {100 * p.high:+.1f}] "
            f"over {p.n} paired seeds"
        )
        evidence = "the interval excludes zero" if p.excludes_zero else "the interval includes zero"
    if not reached:
        outcome = "not met"
    elif target > 0 and not (p.n >= 2 and p.low > 0):
        outcome = "not shown"
    else:
        outcome = "met"
    return (
        f"{name}: {100 * p.mean:+.1f} points, {interval} (target {100 * target:+.0f}): "
        f"{outcome}; {evidence}"
    )


# -- running -----------------------------------------------------------------------------------


@dataclass
class Bench:
    """One benchmark under `out`: settings, arms, seeds; `run()` does what is not done yet.

    The learning bench; another bench (`pedagogy.bench_agents`) subclasses it and overrides the
    hooks: `overrides`, `config`, `run_record`, `format_record`, `summarise`, `plot`."""

    out: Path
    settings: Any
    """A frozen dataclass (`BenchSettings` here): stored in bench.json, checked on rerun."""
    arms: list[str]
    seeds: list[int]
    log: Callable[[str], None] = field(
        default=lambda line: print(line, file=sys.stderr, flush=True)
    )
    baseline: str = "standard_kd"
    """The arm every other arm is paired with, seed by seed."""

    # -- hooks -------------------------------------------------------------------------------

    def overrides(self, arm: str) -> dict[str, Any]:
        """The arm's overrides as stored in bench.json (a rerun must match them)."""
        return ARMS[arm]

    def config(self, arm: str, seed: int) -> RunConfig:
        return arm_config(arm, seed, self.settings, self.out)

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
        mine = _as_json(asdict(self.settings))
        diff = [k for k in mine if stored.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"--out {self.out} holds a bench with {k}={stored.get(k)!r}, not {mine[k]!r}; "
                "use another --out or the same settings"
            )
        for arm in self.arms:
            if arm in data.get("arms", {}) and data["arms"][arm] != _as_json(self.overrides(arm)):
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
        for i, (arm, seed) in enumerate(todo, 1):
            self.log(f"[{i}/{len(todo)}] {arm} seed {seed}: running")
            record = asyncio.run(self.run_record(arm, seed, configs[arm, seed]))
            data["runs"] = [r for r in data["runs"] if (r["arm"], r["seed"]) != (arm, seed)] + [
                record
            ]
            self.save(data)
            self.log(
                f"[{i}/{len(todo)}] {self.format_record(record)} · total {time.perf_counter() - t0:.0f} s"
            )
        self.save(data)
        mine = [r for r in data["runs"] if (r["arm"], r["seed"]) in configs]
        data["summary"] = self.summarise(mine, self.arms)
        data["failed"] = [r for r in mine if r["status"] != "completed"]
        self.plot(data["summary"])
        return data


def _as_json(value: Any) -> Any:
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
    groups = len(_levels(summary)) + 1
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
    levels = _levels(summary)
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


def _levels(summary: dict[str, dict[str, Any]]) -> list[str]:
    return sorted({lv for s in summary.values() for lv in s["accuracy"]}, key=_level_key)


def level_label(level: str) -> str:
    """A short column name: chain_sum@3 -> L3, facts@1 (the world's) -> 2-hop."""
    skill, n = _level_key(level)
    if skill == "chain_sum":
        return f"L{n}"
    if skill == "facts":
        return f"{n + 1}-hop"
    return level


TARGET_POINTS = 0.10
"""The target: the pedagogy arm at least this much above standard_kd (mean held-out accuracy)
at the same budget, or not below it with half the budget (`pedagogy@half`)."""


def target_lines(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Whether the benchmark's target is met, as printable lines (none without standard_kd):
    each arm's gain is its paired difference to standard_kd over seeds, with a 95% t-interval."""
    if "standard_kd" not in summary:
        return []
    kd = summary["standard_kd"]["mean_accuracy"]["mean"]
    lines = []
    if "pedagogy" in summary:
        lines.append(
            verdict(
                "pedagogy vs standard_kd at the same budget",
                _paired_of(summary["pedagogy"]),
                TARGET_POINTS,
            )
        )
    if "pedagogy@half" in summary:
        half = summary["pedagogy@half"]["mean_accuracy"]["mean"]
        lines.append(
            verdict(
                f"pedagogy with half the budget vs standard_kd ({half:.3f} vs {kd:.3f})",
                _paired_of(summary["pedagogy@half"]),
                0.0,
            ).replace("(target +0)", "(target: not below)")
        )
    best = max(summary, key=lambda a: summary[a]["mean_accuracy"]["mean"])
    gain = summary[best]["mean_accuracy"]["mean"] - kd
    paired = _paired_of(summary[best]) if best != "standard_kd" else None
    ci = f", paired {format_paired(paired)}" if paired is not None and paired.n else ""
    lines.append(
        f"best arm: {best} ({summary[best]['mean_accuracy']['mean']:.3f}, "
        f"{100 * gain:+.1f} points over standard_kd{ci})"
    )
    return lines


def _paired_of(arm_summary: dict[str, Any]) -> Paired:
    """The arm's stored paired difference (no pairs when the summary has none)."""
    d = arm_summary.get("paired")
    if not d:
        return Paired(0, math.nan, math.nan, math.nan)
    return Paired(d["n"], d["mean"], d["low"], d["high"], d.get("level", 0.95))


def table_rows(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (accuracy as mean±std)."""
    levels = sorted({lv for s in summary.values() for lv in s["accuracy"]}, key=_level_key)
    header = [
        "arm",
        "seeds",
        *[level_label(lv) for lv in levels],
        "mean",
        "teacher tokens",
        "explained",
        "s/run",
        "Δmean vs standard_kd [95% CI]",
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
                format_paired(_paired_of(s)),
            ]
        )
    return header, rows
