"""The learning benchmark: several teaching configurations ("arms") under the same seeds, the
same student and the same teacher budget, compared on held-out accuracy per level.

An arm is a set of config overrides (dotted keys) layered over the embedded default; the arms
are data, `arms/learning.yaml` (loaded into `ARM_SPECS` and `ARMS`). Runs and resumption are
`core.Bench`'s. The comparison is the mean ± standard deviation over seeds of the final
held-out accuracy per level, plus the teacher's tokens and explanations and the wall time per
run; each arm's gain over standard_kd is its paired difference seed by seed with a 95%
t-interval (`stats.paired_interval`), and a target counts as met only where that interval
excludes zero.

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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pedagogy.benchmarks.arms import (
    ARMS_DIR,
    BUDGET_SHARE,
    Arm,
    default_names,
    dotted_overrides,
    load_arms,
    nest,
)
from pedagogy.benchmarks.core import QUICK_LEVELS, Bench, level_label, levels_of
from pedagogy.benchmarks.stats import format_paired, paired_of, verdict
from pedagogy.config import RunConfig, load_config
from pedagogy.errors import ConfigError

ARMS_FILE = ARMS_DIR / "learning.yaml"
ARM_SPECS: dict[str, Arm] = load_arms(ARMS_FILE)
"""The arms of `arms/learning.yaml`: name, description, whether it runs by default, overrides."""
ARMS: dict[str, dict[str, Any]] = dotted_overrides(ARM_SPECS)
"""Arm -> its dotted overrides (`BUDGET_SHARE` included where the arm sets one)."""
DEFAULT_ARMS = default_names(ARM_SPECS)
"""What `pedagogy bench learning` runs without --arms (15 arms x 3 seeds)."""
QUICK_ARMS = ["standard_kd", "pedagogy"]


def _added(arm: str, base: str) -> dict[str, Any]:
    """The overrides `arm` sets on top of `base` ({} when either is missing)."""
    if arm not in ARMS or base not in ARMS:
        return {}
    return {k: v for k, v in ARMS[arm].items() if ARMS[base].get(k, object()) != v}


STANDARD_KD: dict[str, Any] = dict(ARMS.get("standard_kd", {}))
PEDAGOGY: dict[str, Any] = dict(ARMS.get("pedagogy", {}))
MECHANISMS: dict[str, dict[str, Any]] = {
    name.removeprefix("kd+"): _added(name, "standard_kd")
    for name in ARMS
    if name.startswith("kd+") and f"no_{name.removeprefix('kd+')}" in ARMS
}
"""Each mechanism of the pedagogy arm (one with both a `kd+` and a `no_` arm), as the overrides
that switch it on."""
SKILL_GRAPH: dict[str, Any] = _added("kd+graph", "standard_kd")
"""The skill graph of the default domain's five levels (see the arms file)."""

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
        # Every arm runs every round: an early stop would compare arms at different rounds.
        "evaluation": {"heldout_per_arm": settings.heldout_per_arm, "patience": None},
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


@dataclass
class LearningBench(Bench):
    """`pedagogy bench learning`: the arms of `ARMS`, each paired with standard_kd."""

    baseline: str = "standard_kd"

    def overrides(self, arm: str) -> dict[str, Any]:
        return ARMS[arm]

    def config(self, arm: str, seed: int) -> RunConfig:
        return arm_config(arm, seed, self.settings, self.out)


# -- the verdict and the table -----------------------------------------------------------------

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
                paired_of(summary["pedagogy"]),
                TARGET_POINTS,
            )
        )
    if "pedagogy@half" in summary:
        half = summary["pedagogy@half"]["mean_accuracy"]["mean"]
        lines.append(
            verdict(
                f"pedagogy with half the budget vs standard_kd ({half:.3f} vs {kd:.3f})",
                paired_of(summary["pedagogy@half"]),
                0.0,
            ).replace("(target +0)", "(target: not below)")
        )
    best = max(summary, key=lambda a: summary[a]["mean_accuracy"]["mean"])
    gain = summary[best]["mean_accuracy"]["mean"] - kd
    paired = paired_of(summary[best]) if best != "standard_kd" else None
    ci = f", paired {format_paired(paired)}" if paired is not None and paired.n else ""
    lines.append(
        f"best arm: {best} ({summary[best]['mean_accuracy']['mean']:.3f}, "
        f"{100 * gain:+.1f} points over standard_kd{ci})"
    )
    return lines


def table_rows(summary: dict[str, dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the comparison table (accuracy as mean±std)."""
    levels = levels_of(summary)
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
                format_paired(paired_of(s)),
            ]
        )
    return header, rows
