"""Curriculum samplers: which (skill, level) arms to practise next.

v1 ships `uniform` and an SEC-style `bandit`: arm values Q are updated by TD(0),
Q <- (1 - alpha) Q + alpha r, with r the arm's learning progress (the absolute change of its
success rate since the arm was last practised); arms are drawn from softmax(Q / temperature),
with a share `explore` drawn uniformly so that no arm starves. The whole state, RNG included, is
a JSON-able dict: the loop stores it per round and restores it on resume.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from pedagogy.errors import ConfigError, UnknownNameError


@runtime_checkable
class CurriculumSampler(Protocol):
    """Chooses arms for a round and learns from the round's outcomes."""

    arms: list[str]

    def sample(self, n: int) -> list[str]:
        """n arm names (with repetition) for the next round."""
        ...

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        """Learn from {arm: (correct, attempted)}; returns the reward given to each arm."""
        ...

    def probabilities(self) -> dict[str, float]: ...

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this sampler is (JSON-able)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


@dataclass
class UniformSampler:
    """Every arm equally often: the baseline curriculum."""

    arms: list[str]
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("the curriculum has no arms; check domain skills and curriculum.arms")
        self.rng = random.Random(self.seed)

    def sample(self, n: int) -> list[str]:
        return [self.rng.choice(self.arms) for _ in range(n)]

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        return {arm: 0.0 for arm in results}

    def probabilities(self) -> dict[str, float]:
        return {arm: 1 / len(self.arms) for arm in self.arms}

    def state(self) -> dict[str, Any]:
        return {"kind": "uniform", "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        _set_rng_state(self.rng, state["rng"])


@dataclass
class BanditSampler:
    """SEC-style Boltzmann bandit over arms, rewarded by learning progress."""

    arms: list[str]
    seed: int = 0
    temperature: float = 0.3
    alpha: float = 0.5
    explore: float = 0.1
    values: dict[str, float] = field(default_factory=dict)
    last_rate: dict[str, float] = field(default_factory=dict)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("the curriculum has no arms; check domain skills and curriculum.arms")
        self.rng = random.Random(self.seed)
        for arm in self.arms:
            self.values.setdefault(arm, 0.0)

    def probabilities(self) -> dict[str, float]:
        top = max(self.values[a] for a in self.arms)
        weights = [math.exp((self.values[a] - top) / self.temperature) for a in self.arms]
        total = sum(weights)
        k = len(self.arms)
        return {
            a: (1 - self.explore) * w / total + self.explore / k
            for a, w in zip(self.arms, weights)
        }

    def sample(self, n: int) -> list[str]:
        probs = self.probabilities()
        return self.rng.choices(self.arms, weights=[probs[a] for a in self.arms], k=n)

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        rewards = {}
        for arm, (correct, attempted) in results.items():
            if arm not in self.values or attempted == 0:
                continue
            rate = correct / attempted
            reward = abs(rate - self.last_rate.get(arm, 0.0))
            self.last_rate[arm] = rate
            self.values[arm] = (1 - self.alpha) * self.values[arm] + self.alpha * reward
            rewards[arm] = reward
        return rewards

    def state(self) -> dict[str, Any]:
        return {
            "kind": "bandit",
            "values": dict(self.values),
            "last_rate": dict(self.last_rate),
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.values.update(state["values"])
        self.last_rate = dict(state["last_rate"])
        _set_rng_state(self.rng, state["rng"])


SAMPLERS = {"uniform": UniformSampler, "bandit": BanditSampler}


def build_sampler(name: str, arms: list[str], seed: int, **options: Any) -> CurriculumSampler:
    if name not in SAMPLERS:
        raise UnknownNameError("curriculum sampler", name, list(SAMPLERS))
    if name == "uniform":
        return UniformSampler(arms, seed)
    return BanditSampler(arms, seed, **options)
