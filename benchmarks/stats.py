"""Statistics of a bench: mean ± std over seeds, and paired differences over seeds with a
t-interval (quantiles from `scipy.stats`).

Arms share seeds, and a seed fixes the student's initial weights, the problems posed and the
held-out set: two arms' runs with the same seed are a pair. The per-seed differences to the
baseline remove what the seed alone decides, and their t-interval says whether a gain is more
than seed noise (a single mean over three seeds is not evidence).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pedagogy.errors import ConfigError


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return math.nan, math.nan
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def mean(values: Any) -> float:
    """The plain mean of an iterable (0 when it is empty)."""
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def level_key(arm: str) -> tuple[str, int]:
    """Sorts `skill@level` names by skill, then numerically by level."""
    skill, _, level = arm.rpartition("@")
    return (skill, int(level)) if level.isdigit() else (arm, -1)


def t_quantile(df: int, p: float = 0.975) -> float:
    """The p-quantile of Student's t with `df` (integer >= 1) degrees of freedom (p > 0.5)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ConfigError(f"t_quantile: df must be an integer >= 1, got {df!r}")
    if not 0.5 < p < 1:
        raise ConfigError(f"t_quantile: p must be in (0.5, 1), got {p!r}")
    from scipy import stats

    return float(stats.t.ppf(p, df))


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
    """Mean and t-interval (df = n-1, `scipy.stats.t.interval` around the mean with the
    standard error of the mean) of per-seed differences; no interval below 2 pairs; a point
    when every difference is the same."""
    n = len(diffs)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, level)
    centre = statistics.fmean(diffs)
    if n < 2:
        return Paired(n, centre, math.nan, math.nan, level)
    from scipy import stats

    sem = float(stats.sem(diffs))
    if sem == 0:  # scipy wants a positive scale
        return Paired(n, centre, centre, centre, level)
    low, high = stats.t.interval(level, n - 1, loc=centre, scale=sem)
    return Paired(n, centre, float(low), float(high), level)


def paired_of(arm_summary: dict[str, Any]) -> Paired:
    """The arm's stored paired difference (no pairs when the summary has none)."""
    d = arm_summary.get("paired")
    if not d:
        return Paired(0, math.nan, math.nan, math.nan)
    return Paired(d["n"], d["mean"], d["low"], d["high"], d.get("level", 0.95))


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
    return mean(run["heldout_final"].values())


def levels_mean(levels: Sequence[str]) -> Callable[[dict[str, Any]], float | None]:
    """A metric: a run's final held-out accuracy averaged over these levels (None if it lacks
    one)."""

    def metric(run: dict[str, Any]) -> float | None:
        final = run["heldout_final"]
        if not all(lv in final for lv in levels):
            return None
        return mean(final[lv] for lv in levels)

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
