"""When a run stops before its last round: a held-out plateau with patience.

After each round's evaluation the loop asks whether the held-out mean has improved on the best
so far by more than `min_delta` within the last `patience` rounds; if not, the run ends there,
with a decision of kind "stop" that says why. The rule reads the run's evaluations from the
store, never a counter kept in memory, so a resumed run decides exactly as the uninterrupted one.
A round that trained nothing, or whose candidate was rolled back below the best, counts as a round
without improvement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pedagogy.memory.records import DecisionRecord, EvaluationRecord

__all__ = ["Plateau", "round_means"]


def round_means(evaluations: list[EvaluationRecord]) -> dict[int, float]:
    """{round: mean held-out accuracy of the version evaluated in that round}."""
    per_round: dict[int, list[float]] = {}
    for e in evaluations:
        per_round.setdefault(e.round, []).append(e.accuracy)
    return {r: sum(v) / len(v) for r, v in per_round.items() if v}


@dataclass(frozen=True)
class Plateau:
    """Stop once `patience` rounds in a row brought no gain above `min_delta` over the best
    held-out mean before them (None: never stop early)."""

    patience: int | None
    min_delta: float = 0.01

    def stale_rounds(self, means: dict[int, float], round_: int) -> tuple[int, float]:
        """(rounds since the last improvement, up to `round_`; the best mean so far)."""
        best = means.get(0, 0.0)
        stale = 0
        for r in range(1, round_ + 1):
            mean = means.get(r)
            if mean is not None and mean > best + self.min_delta:
                best, stale = mean, 0
            else:
                stale += 1
                best = max(best, mean) if mean is not None else best
        return stale, best

    def decide(
        self, run_id: str, round_: int, means: dict[int, float], last_round: int
    ) -> DecisionRecord | None:
        """The "stop" decision after `round_`, or None to go on."""
        if self.patience is None or round_ >= last_round:
            return None
        stale, best = self.stale_rounds(means, round_)
        if stale < self.patience:
            return None
        detail: dict[str, Any] = {
            "decision": "stop",
            "reason": (
                f"held-out mean not above {best:.3f} + {self.min_delta} for {stale} rounds "
                f"(patience {self.patience})"
            ),
            "best_mean": best,
            "rounds_left": last_round - round_,
            "means": {str(r): m for r, m in sorted(means.items()) if r <= round_},
        }
        return DecisionRecord(
            run_id, round_, "stop", "plateau", f"round-{round_}", True, best, detail
        )
