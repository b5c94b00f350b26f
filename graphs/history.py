"""What the student did in earlier rounds, read from the store once per round.

The student profile (adaptive style, utility interventions) and the adaptive generator's success
per generator setting need every earlier round's first attempts. Reading the whole run again each
round makes a round's cost grow with the run; this keeps each finished round's first attempts
after its first read. A fresh process (a resume) reads the finished rounds once, so it computes
the same numbers as an uninterrupted run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pedagogy.domains.base import Problem
from pedagogy.memory.base import Store

__all__ = ["Attempt", "RoundHistory"]


@dataclass(frozen=True)
class Attempt:
    """One episode's first attempt: its arm, round, outcome, and the generator setting (cell)."""

    round: int
    arm: str
    correct: bool
    error: bool
    cell: str | None


class RoundHistory:
    """First attempts of finished rounds, each round read once (`cell_of` names a problem's
    generator setting; it is asked only when a caller wants cells)."""

    def __init__(self, store: Store, run_id: str, cell_of: Callable[[Problem], str]) -> None:
        self.store, self.run_id, self.cell_of = store, run_id, cell_of
        self._rounds: dict[int, list[Attempt]] = {}
        self.reads = 0

    def _read(self, round_: int, cells: bool) -> list[Attempt]:
        self.reads += 1
        episodes = self.store.episodes(self.run_id, round=round_)
        problems = (
            self.store.get_problems(sorted({e.problem_id for e in episodes})) if cells else {}
        )
        return [
            Attempt(
                e.round,
                e.arm,
                bool(e.correct_first),
                e.outcome == "error",
                self.cell_of(problems[e.problem_id]) if e.problem_id in problems else None,
            )
            for e in episodes
        ]

    def before(self, round_: int, *, cells: bool = False) -> list[Attempt]:
        """Every first attempt of rounds 1 .. round_ - 1, in round order."""
        out: list[Attempt] = []
        for r in range(1, round_):
            rows = self._rounds.get(r)
            if rows is None or (cells and rows and rows[0].cell is None):
                rows = self._rounds[r] = self._read(r, cells)
            out.extend(rows)
        return out

    def tallies(self, round_: int) -> dict[int, dict[str, tuple[int, int]]]:
        """{round: {arm: (correct, attempted)}} of rounds before `round_`, errors left out (the
        shape `StudentProfile.update` takes)."""
        out: dict[int, dict[str, list[int]]] = {}
        for a in self.before(round_):
            if a.error:
                continue
            tally = out.setdefault(a.round, {}).setdefault(a.arm, [0, 0])
            tally[0] += int(a.correct)
            tally[1] += 1
        return {r: {arm: (c, n) for arm, (c, n) in arms.items()} for r, arms in out.items()}
