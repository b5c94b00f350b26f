"""The run's training pool, kept round by round: each fine-tuning job reads only what is new.

A job trains on the round's new examples mixed with earlier ones, so it needs every verified
example of the run. Reading every episode with its turns and problems again each round makes a
round's data assembly grow with the run; the pool instead reads each finished round once and
keeps its examples. A fresh process (a resume) reads the earlier rounds once, in the same order,
so the pool and everything sampled from it are the same as in an uninterrupted run. The current
round is always read again: a job that restarts after a crash sees the round as stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pedagogy.domains.base import Domain, Problem
from pedagogy.memory.base import Store
from pedagogy.memory.records import DatasetItemRecord, EpisodeRecord
from pedagogy.training.data import examples_from_episodes, trajectory_examples

__all__ = ["PoolRound", "TrainingPool"]


@dataclass
class PoolRound:
    """One round's contribution: its episodes (with turns), their problems, their examples."""

    episodes: list[EpisodeRecord]
    problems: dict[str, Problem]
    items: list[DatasetItemRecord]
    segments: dict[tuple[str | None, str], list[tuple[str, bool]]] = field(default_factory=dict)


class TrainingPool:
    """Examples of one run, by round (`acting`: verified trajectories; else text examples)."""

    def __init__(
        self, store: Store, run_id: str, domain: Domain, *, acting: bool, in_context: bool
    ):
        self.store, self.run_id, self.domain = store, run_id, domain
        self.acting, self.in_context = acting, in_context
        self._rounds: dict[int, PoolRound] = {}
        self.reads = 0
        """Rounds read from the store so far (a flat-cost check: one per round after the first)."""

    def _read(self, round_: int) -> PoolRound:
        self.reads += 1
        episodes = self.store.episodes(self.run_id, round=round_, with_turns=True)
        problems = self.store.get_problems(list({e.problem_id for e in episodes}))
        if self.acting:
            items, segments = trajectory_examples(episodes, problems)
            return PoolRound(episodes, problems, items, segments)
        items = examples_from_episodes(episodes, problems, self.domain, in_context=self.in_context)
        return PoolRound(episodes, problems, items)

    def through(self, round_: int) -> tuple[PoolRound, list[DatasetItemRecord], dict[Any, Any]]:
        """(this round as stored now, every example of rounds 1..round_ in order, the segments of
        every trajectory example)."""
        for r in range(1, round_):
            if r not in self._rounds:
                self._rounds[r] = self._read(r)
        self._rounds[round_] = current = self._read(round_)
        items: list[DatasetItemRecord] = []
        segments: dict[Any, Any] = {}
        for r in range(1, round_ + 1):
            items.extend(self._rounds[r].items)
            segments.update(self._rounds[r].segments)
        return current, items, segments
