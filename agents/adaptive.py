"""An adaptive generator: inside a level, pose the settings the student is ready for.

A curriculum sampler chooses *which* level to practise; a level is itself a range of generator
parameters (a reasoning-gym level of chain_sum draws 2-4 terms of 1-3 digits). Measured on the
learning bench, the hardest level stays out of reach as a whole while some of its settings (two
short terms) are learnable. `AdaptiveGenerator` makes the procedural generator adapt its sampling
parameters to the student, Socratic-Zero style: it over-samples candidates for an arm, groups
them by their parameters (a *cell*, e.g. ``num_digits=1,num_terms=2``), estimates the student's
first-attempt success per cell from what it has seen so far (Beta(1, 1) posterior mean), and
draws the problems to pose with weight

    floor + (1 - floor) * exp(-((success - target) / width) ** 2)

so cells near the target success rate (the zone of proximal development) are posed most, cells
it has mastered or cannot touch yet less, and no cell ever starves. An unseen cell has success
0.5. The statistics are a function of the stored episodes, so a resumed run recomputes them
exactly; the draw uses the caller's seeded RNG.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError

__all__ = ["AdaptiveGenerator", "CellStats", "cell_key"]


def cell_key(parameters: dict[str, Any] | None) -> str:
    """A cell's name: its parameters sorted, e.g. "num_digits=1,num_terms=2" ("" for none)."""
    if not parameters:
        return ""
    return ",".join(f"{k}={parameters[k]}" for k in sorted(parameters))


@dataclass
class CellStats:
    """First attempts and successes per arm and cell."""

    counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """arm -> cell -> [correct, attempts]."""

    def add(self, arm: str, cell: str, correct: bool) -> None:
        c = self.counts.setdefault(arm, {}).setdefault(cell, [0, 0])
        c[0] += int(bool(correct))
        c[1] += 1

    @classmethod
    def from_attempts(cls, attempts: Iterable[tuple[str, str, bool]]) -> CellStats:
        """From (arm, cell, correct first attempt) triples."""
        stats = cls()
        for arm, cell, correct in attempts:
            stats.add(arm, cell, correct)
        return stats

    def success(self, arm: str, cell: str) -> float:
        """Posterior mean of the success rate under a uniform prior: (correct + 1) / (n + 2)."""
        correct, n = self.counts.get(arm, {}).get(cell, (0, 0))
        return (correct + 1) / (n + 2)

    def attempts(self, arm: str, cell: str) -> int:
        return self.counts.get(arm, {}).get(cell, (0, 0))[1]


@dataclass
class AdaptiveGenerator:
    """Chooses which of an arm's candidate problems to pose, by the student's success per cell."""

    target: float = 0.5
    """The success rate most wanted (the zone of proximal development's centre)."""
    width: float = 0.25
    """How fast the weight falls off away from `target` (in success-rate units)."""
    floor: float = 0.05
    """Least weight of any cell, so mastered and out-of-reach settings are still posed."""
    oversample: int = 4
    """Candidates drawn per problem posed; more lets the choice follow the weights more closely."""

    def __post_init__(self) -> None:
        for name, lo, hi in (("target", 0.0, 1.0), ("floor", 0.0, 1.0)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not lo <= value <= hi
            ):
                raise ConfigError(
                    f"adaptive generator {name} must be in [{lo}, {hi}], got {value!r}"
                )
        if (
            isinstance(self.width, bool)
            or not isinstance(self.width, (int, float))
            or not (math.isfinite(self.width) and self.width > 0)
        ):
            raise ConfigError(f"adaptive generator width must be > 0, got {self.width!r}; try 0.25")
        if (
            isinstance(self.oversample, bool)
            or not isinstance(self.oversample, int)
            or self.oversample < 1
        ):
            raise ConfigError(
                f"adaptive generator oversample must be an integer >= 1, got {self.oversample!r}; "
                "try 4 (1 poses what the generator draws, unchanged)"
            )

    def weight(self, success: float) -> float:
        return self.floor + (1 - self.floor) * math.exp(
            -(((success - self.target) / self.width) ** 2)
        )

    def choose(
        self,
        rng: random.Random,
        candidates: Sequence[Problem],
        n: int,
        arm: str,
        stats: CellStats,
        cell_of: Callable[[Problem], str],
    ) -> tuple[list[Problem], dict[str, dict[str, Any]]]:
        """n of `candidates` drawn without replacement by their cell's weight, and per cell what
        was known and decided: success, attempts, weight, candidates, posed."""
        if n < 0:
            raise ConfigError(f"n must be >= 0, got {n}")
        cells = [cell_of(p) for p in candidates]
        report: dict[str, dict[str, Any]] = {}
        for cell in cells:
            if cell not in report:
                s = stats.success(arm, cell)
                report[cell] = {
                    "success": s,
                    "attempts": stats.attempts(arm, cell),
                    "weight": self.weight(s),
                    "candidates": 0,
                    "posed": 0,
                }
            report[cell]["candidates"] += 1
        # Weighted sampling without replacement in one pass (Efraimidis-Spirakis): each candidate
        # gets the key u ** (1 / weight), u uniform; the n largest keys are posed.
        keys = [rng.random() ** (1 / max(report[c]["weight"], 1e-12)) for c in cells]
        chosen = sorted(sorted(range(len(candidates)), key=lambda i: -keys[i])[:n])
        for i in chosen:
            report[cells[i]]["posed"] += 1
        return [candidates[i] for i in chosen], dict(sorted(report.items()))
