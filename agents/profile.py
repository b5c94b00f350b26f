"""The teacher's model of the student: how well it masters each arm and each skill.

Mastery is the success rate of *first* attempts (before any explanation), smoothed towards a
prior so that an arm seen twice does not read as 0% or 100%:

    mastery(arm) = (correct + prior * prior_weight) / (attempts + prior_weight)

where `correct` and `attempts` are weighted counts. With `decay` < 1 an episode of round r counts
decay ** (latest_round - r), so the profile follows a student that is being trained; decay = 1
weighs every round alike. Skill mastery pools the weighted counts of the skill's arms.

Episodes whose outcome is "error" (the backend failed) say nothing about the student and are
skipped. The profile is updated incrementally, one round at a time, and its whole state is a
JSON-able dict, so the loop can persist it per round and restore it on resume.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pedagogy.domains.base import parse_arm
from pedagogy.errors import ConfigError
from pedagogy.memory.records import EpisodeRecord


class EpisodeSource(Protocol):
    """The part of a Store the profile reads."""

    def episodes(self, run_id: str, round: int | None = None) -> list[EpisodeRecord]: ...


@dataclass
class ArmCounts:
    """Weighted first-attempt counts of one arm."""

    correct: float = 0.0
    """Weighted first attempts that were correct."""
    attempts: float = 0.0
    """Weighted first attempts."""
    seen: int = 0
    """Unweighted number of first attempts (for reports)."""


@dataclass
class StudentProfile:
    """Mastery per arm ("skill@level") and per skill, from first-attempt success rates."""

    decay: float = 1.0
    """Weight per round of age: an episode k rounds older than the latest counts decay ** k."""
    prior: float = 0.5
    """Mastery assumed for an arm never seen."""
    prior_weight: float = 1.0
    """How many pseudo-attempts the prior is worth (0: raw success rates)."""
    last_round: int | None = None
    """The latest round observed; counts are weighted relative to it."""
    counts: dict[str, ArmCounts] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not (isinstance(self.decay, (int, float)) and 0 < self.decay <= 1):
            raise ConfigError(
                f"StudentProfile.decay must be in (0, 1], got {self.decay!r}; "
                "use 1 to weigh all rounds alike, e.g. 0.7 to favour recent rounds"
            )
        if not (isinstance(self.prior, (int, float)) and 0 <= self.prior <= 1):
            raise ConfigError(f"StudentProfile.prior must be in [0, 1], got {self.prior!r}")
        if not (isinstance(self.prior_weight, (int, float)) and self.prior_weight >= 0):
            raise ConfigError(
                f"StudentProfile.prior_weight must be >= 0, got {self.prior_weight!r}; "
                "use 0 for raw success rates"
            )

    # -- building ------------------------------------------------------------------------------

    @classmethod
    def from_episodes(cls, episodes: Iterable[EpisodeRecord], **options: Any) -> StudentProfile:
        profile = cls(**options)
        profile.observe(episodes)
        return profile

    @classmethod
    def from_store(cls, store: EpisodeSource, run_id: str, **options: Any) -> StudentProfile:
        """The profile of every episode the run has stored so far."""
        return cls.from_episodes(store.episodes(run_id), **options)

    def observe(self, episodes: Iterable[EpisodeRecord]) -> None:
        """Add stored episodes (any rounds, any order)."""
        per_round: dict[int, dict[str, list[int]]] = defaultdict(
            lambda: defaultdict(lambda: [0, 0])
        )
        for ep in episodes:
            if ep.outcome == "error":
                continue
            tally = per_round[ep.round][ep.arm]
            tally[0] += int(bool(ep.correct_first))
            tally[1] += 1
        for rnd in sorted(per_round):
            self.update(rnd, {arm: (c, n) for arm, (c, n) in per_round[rnd].items()})

    def update(self, round: int, results: Mapping[str, tuple[int, int]]) -> None:
        """Add one round's first-attempt results, {arm: (correct, attempted)}.

        The same shape the curriculum samplers take. Rounds may arrive out of order: an older
        round is added with its decayed weight.
        """
        if isinstance(round, bool) or not isinstance(round, int):
            raise ConfigError(f"round must be an int, got {round!r}")
        for arm, pair in results.items():
            correct, attempted = pair
            if not (0 <= correct <= attempted):
                raise ConfigError(
                    f"arm {arm!r} has {correct} correct of {attempted} attempted; "
                    "pass (correct, attempted) with 0 <= correct <= attempted"
                )
        if self.last_round is None:
            self.last_round = round
        elif round > self.last_round:
            shrink = self.decay ** (round - self.last_round)
            for c in self.counts.values():
                c.correct *= shrink
                c.attempts *= shrink
            self.last_round = round
        weight = self.decay ** (self.last_round - round)
        for arm, (correct, attempted) in results.items():
            c = self.counts.setdefault(arm, ArmCounts())
            c.correct += weight * correct
            c.attempts += weight * attempted
            c.seen += int(attempted)

    # -- reading -------------------------------------------------------------------------------

    def mastery(self, arm: str) -> float:
        """Smoothed first-attempt success rate of `arm`; `prior` for an arm never seen."""
        c = self.counts.get(arm)
        return self._rate(c.correct, c.attempts) if c is not None else self.prior

    def skill_mastery(self, skill: str) -> float:
        """Smoothed success rate over all arms of `skill`, pooled by weighted attempts."""
        correct = attempts = 0.0
        for arm, c in self.counts.items():
            if parse_arm(arm)[0] == skill:
                correct += c.correct
                attempts += c.attempts
        return self._rate(correct, attempts)

    def attempts(self, arm: str) -> int:
        """How many first attempts of `arm` were observed (unweighted)."""
        c = self.counts.get(arm)
        return c.seen if c is not None else 0

    def arms(self) -> list[str]:
        return sorted(self.counts)

    def skills(self) -> list[str]:
        return sorted({parse_arm(arm)[0] for arm in self.counts})

    def summary(self) -> dict[str, dict[str, float]]:
        """{"arms": {arm: mastery}, "skills": {skill: mastery}}, for logs and reports."""
        return {
            "arms": {arm: self.mastery(arm) for arm in self.arms()},
            "skills": {skill: self.skill_mastery(skill) for skill in self.skills()},
        }

    def _rate(self, correct: float, attempts: float) -> float:
        total = attempts + self.prior_weight
        if total <= 0:
            return self.prior
        return (correct + self.prior * self.prior_weight) / total

    # -- persistence ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this profile is (JSON-able)."""
        return {
            "kind": "student_profile",
            "decay": self.decay,
            "prior": self.prior,
            "prior_weight": self.prior_weight,
            "last_round": self.last_round,
            "arms": {
                arm: [c.correct, c.attempts, c.seen] for arm, c in sorted(self.counts.items())
            },
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != "student_profile":
            raise ConfigError(
                f"not a student profile state (kind {state.get('kind')!r}); pass the dict that "
                "StudentProfile.state() returned"
            )
        self.decay = float(state["decay"])
        self.prior = float(state["prior"])
        self.prior_weight = float(state["prior_weight"])
        self.last_round = state["last_round"]
        self.counts = {
            arm: ArmCounts(float(correct), float(attempts), int(seen))
            for arm, (correct, attempts, seen) in state["arms"].items()
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> StudentProfile:
        profile = cls()
        profile.load_state(state)
        return profile
