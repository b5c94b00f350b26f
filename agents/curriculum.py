"""Curriculum samplers: which (skill, level) arms to practise next.

Every sampler implements `CurriculumSampler`: draw arms for a round, learn from the round's
{arm: (correct, attempted)}, report its probabilities, and save/restore its whole state (RNG
included) as a JSON-able dict, which the loop stores per round and restores on resume.

- `uniform`: every arm equally often (the baseline).
- `fixed_order`: the arms in their given order; practise one until its success rate reaches
  `threshold`, then move on (a hand-written syllabus).
- `bandit`: SEC (Self-Evolving Curriculum). Arm values Q follow TD(0), Q <- (1 - alpha) Q + alpha r,
  and arms are drawn from softmax(Q / temperature). r is either the arm's learning progress or
  its mean absolute advantage (see `BanditSampler`).
- `zpd`: zone of proximal development; prefer arms whose success rate is neither 0 nor 1, most of
  all those near `target`.

Except `uniform`, each mixes in a share `explore` drawn uniformly, so no arm starves. A success
rate below is always the rate of the arm's most recent update (correct / attempted of that
batch). `pedagogy.agents.skill_graph.GatedSampler` wraps any of them so that only arms whose
prerequisites are mastered are drawn; `build_sampler(..., gated=True)` builds it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pedagogy.errors import ConfigError
from pedagogy.registry import Registry


@runtime_checkable
class CurriculumSampler(Protocol):
    """Chooses arms for a round and learns from the round's outcomes."""

    arms: list[str]

    def sample(self, n: int) -> list[str]:
        """n arm names (with repetition) for the next round."""
        ...

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        """Learn from {arm: (correct, attempted)}; returns the reward given to each arm.

        Arms this sampler does not know, and arms with no attempts, are ignored (no reward).
        """
        ...

    def probabilities(self) -> dict[str, float]:
        """{arm: probability that one draw of `sample` is that arm}; sums to 1."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this sampler is (JSON-able)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


# -- shared helpers ----------------------------------------------------------------------------


def _rng_state(rng: random.Random) -> list[Any]:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: list[Any]) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def _check_arms(arms: list[str]) -> None:
    if not arms:
        raise ConfigError("the curriculum has no arms; check domain skills and curriculum.arms")
    if len(set(arms)) != len(arms):
        dup = sorted({a for a in arms if arms.count(a) > 1})
        raise ConfigError(f"curriculum arms repeat {dup}; list each 'skill@level' arm once")


def _check_range(name: str, value: Any, low: float, high: float, *, open_low: bool = False) -> None:
    """ConfigError unless low <= value <= high (low < value with open_low)."""
    ok = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (low < value if open_low else low <= value)
        and value <= high
    )
    if not ok:
        bound = f"{low} < {name} <= {high}" if open_low else f"{low} <= {name} <= {high}"
        raise ConfigError(f"curriculum {name}={value!r} is out of range; choose {bound}")


def _check_kind(state: dict[str, Any], kind: str) -> None:
    found = state.get("kind", kind)
    if found != kind:
        raise ConfigError(
            f"the stored curriculum state is for sampler {found!r}, not {kind!r}; resume with the "
            "same curriculum.sampler and curriculum.skill_graph as the run was started with"
        )


def _mix(arms: list[str], weights: list[float], explore: float) -> dict[str, float]:
    """(1 - explore) * weights normalised + explore uniform; all-zero weights give uniform."""
    total = sum(weights)
    k = len(arms)
    if total <= 0:
        return {a: 1 / k for a in arms}
    return {a: (1 - explore) * w / total + explore / k for a, w in zip(arms, weights)}


def _draw(rng: random.Random, probs: dict[str, float], n: int) -> list[str]:
    arms = list(probs)
    return rng.choices(arms, weights=[probs[a] for a in arms], k=n)


def _batches(
    arms: list[str], results: dict[str, tuple[int, int]]
) -> Iterator[tuple[str, int, int]]:
    """(arm, correct, attempted) for the known arms of `results` that were attempted."""
    known = set(arms)
    for arm, (correct, attempted) in results.items():
        if arm in known and attempted > 0:
            yield arm, correct, attempted


@dataclass
class SuccessRates:
    """Per-arm success: the rate of the latest update, and totals over every update."""

    last: dict[str, float] = field(default_factory=dict)
    """correct / attempted of the arm's most recent update."""
    correct: dict[str, int] = field(default_factory=dict)
    attempted: dict[str, int] = field(default_factory=dict)

    def observe(self, arm: str, correct: int, attempted: int) -> float:
        """Record one batch; returns its success rate."""
        rate = correct / attempted
        self.last[arm] = rate
        self.correct[arm] = self.correct.get(arm, 0) + correct
        self.attempted[arm] = self.attempted.get(arm, 0) + attempted
        return rate

    def mean(self, arm: str) -> float | None:
        """Success rate over every attempt so far (None before the first)."""
        n = self.attempted.get(arm, 0)
        return self.correct[arm] / n if n else None

    def state(self) -> dict[str, Any]:
        return {
            "last": dict(self.last),
            "correct": dict(self.correct),
            "attempted": dict(self.attempted),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.last = dict(state.get("last", {}))
        self.correct = dict(state.get("correct", {}))
        self.attempted = dict(state.get("attempted", {}))


# -- samplers ----------------------------------------------------------------------------------


@dataclass
class UniformSampler:
    """Every arm equally often: the baseline curriculum."""

    OPTIONS: ClassVar[tuple[str, ...]] = ()

    arms: list[str]
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_arms(self.arms)
        self.rng = random.Random(self.seed)

    def sample(self, n: int) -> list[str]:
        return [self.rng.choice(self.arms) for _ in range(n)]

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        """No learning: reward 0.0 for each updated arm."""
        return {arm: 0.0 for arm, _, _ in _batches(self.arms, results)}

    def probabilities(self) -> dict[str, float]:
        return {arm: 1 / len(self.arms) for arm in self.arms}

    def state(self) -> dict[str, Any]:
        return {"kind": "uniform", "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, "uniform")
        _set_rng_state(self.rng, state["rng"])


@dataclass
class FixedOrderSampler:
    """A fixed syllabus: the arms in their given order, one at a time.

    The current arm gets probability 1 - explore, the others share `explore` equally. After an
    update in which the current arm's success rate is >= `threshold`, the next arm becomes current
    (several at once if the next ones also passed in that same update). Once every arm has passed,
    all arms are drawn uniformly (review). Reward: 1.0 for an updated arm whose rate passed the
    threshold, else 0.0.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("threshold", "explore")

    arms: list[str]
    seed: int = 0
    threshold: float = 0.8
    explore: float = 0.0
    position: int = 0
    """Index of the arm being practised; len(arms) once all have passed."""
    rates: SuccessRates = field(default_factory=SuccessRates)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_arms(self.arms)
        _check_range("threshold", self.threshold, 0, 1)
        _check_range("explore", self.explore, 0, 1)
        self.rng = random.Random(self.seed)

    def current(self) -> str | None:
        """The arm being practised (None once every arm has passed)."""
        return self.arms[self.position] if self.position < len(self.arms) else None

    def probabilities(self) -> dict[str, float]:
        k = len(self.arms)
        cur = self.current()
        if cur is None:
            return {a: 1 / k for a in self.arms}
        if k == 1:
            return {cur: 1.0}
        return {a: 1 - self.explore if a == cur else self.explore / (k - 1) for a in self.arms}

    def sample(self, n: int) -> list[str]:
        return _draw(self.rng, self.probabilities(), n)

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        batch = {arm: self.rates.observe(arm, c, n) for arm, c, n in _batches(self.arms, results)}
        while (cur := self.current()) is not None and batch.get(cur, -1.0) >= self.threshold:
            self.position += 1
        return {arm: float(rate >= self.threshold) for arm, rate in batch.items()}

    def state(self) -> dict[str, Any]:
        return {
            "kind": "fixed_order",
            "position": self.position,
            "rates": self.rates.state(),
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, "fixed_order")
        self.position = int(state["position"])
        self.rates.load_state(state["rates"])
        _set_rng_state(self.rng, state["rng"])


Reward = Literal["progress", "advantage"]


@dataclass
class BanditSampler:
    """SEC-style Boltzmann bandit over arms.

    After an update with batch success rate p for an arm, its reward r is

    - ``progress``: |p - p_prev|, p_prev the rate of the arm's previous update (0 before any);
    - ``advantage``: the mean absolute advantage of the batch's binary rewards against a per-arm
      value baseline b, mean_i |r_i - b| = p (1 - b) + (1 - p) b, with b the arm's success rate
      over all *earlier* attempts (its running mean). On an arm's first update b = p, which gives
      SEC's group-baseline form 2 p (1 - p). r is high while outcomes are uncertain relative to
      what the arm usually yields, and 0 when the arm is always (or never) solved.

    Then Q <- (1 - alpha) Q + alpha r, and P(arm) = (1 - explore) softmax(Q / temperature) +
    explore / k.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("temperature", "alpha", "explore", "reward")

    arms: list[str]
    seed: int = 0
    temperature: float = 0.3
    alpha: float = 0.5
    explore: float = 0.1
    reward: Reward = "progress"
    values: dict[str, float] = field(default_factory=dict)
    """Q per arm."""
    rates: SuccessRates = field(default_factory=SuccessRates)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_arms(self.arms)
        _check_range("temperature", self.temperature, 0, math.inf, open_low=True)
        _check_range("alpha", self.alpha, 0, 1, open_low=True)
        _check_range("explore", self.explore, 0, 1)
        if self.reward not in ("progress", "advantage"):
            raise ConfigError(
                f"curriculum reward={self.reward!r} is unknown; choose 'progress' or 'advantage'"
            )
        self.rng = random.Random(self.seed)
        for arm in self.arms:
            self.values.setdefault(arm, 0.0)

    @property
    def last_rate(self) -> dict[str, float]:
        """Success rate of each arm's latest update."""
        return self.rates.last

    def probabilities(self) -> dict[str, float]:
        top = max(self.values[a] for a in self.arms)
        weights = [math.exp((self.values[a] - top) / self.temperature) for a in self.arms]
        return _mix(self.arms, weights, self.explore)

    def sample(self, n: int) -> list[str]:
        return _draw(self.rng, self.probabilities(), n)

    def _reward(self, arm: str, rate: float) -> float:
        if self.reward == "progress":
            return abs(rate - self.rates.last.get(arm, 0.0))
        mean = self.rates.mean(arm)
        base = rate if mean is None else mean
        return rate * (1 - base) + (1 - rate) * base

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        rewards = {}
        for arm, correct, attempted in _batches(self.arms, results):
            reward = self._reward(arm, correct / attempted)
            self.rates.observe(arm, correct, attempted)
            self.values[arm] = (1 - self.alpha) * self.values[arm] + self.alpha * reward
            rewards[arm] = reward
        return rewards

    def state(self) -> dict[str, Any]:
        return {
            "kind": "bandit",
            "values": dict(self.values),
            "rates": self.rates.state(),
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, "bandit")
        self.values.update(state["values"])
        if "rates" in state:
            self.rates.load_state(state["rates"])
        else:  # states stored before `rates` existed kept only the latest rates
            self.rates.load_state({"last": state.get("last_rate", {})})
        _set_rng_state(self.rng, state["rng"])


@dataclass
class ZPDSampler:
    """Zone of proximal development: practise what is neither mastered nor out of reach.

    An arm's weight from its success rate p (or `prior` if never tried): inside the band
    [low, high] (inclusive), w = 1 - 0.5 |p - target| / d, with d the distance from `target` to
    the band's edge on p's side, so 1 at the target and 0.5 at the edges; outside the band, 0.
    P(arm) = (1 - explore) w / sum(w) + explore / k; when no arm is in the band, uniform. Reward:
    the arm's weight at its new rate.
    """

    OPTIONS: ClassVar[tuple[str, ...]] = ("band", "target", "prior", "explore")

    arms: list[str]
    seed: int = 0
    band: tuple[float, float] = (0.2, 0.8)
    target: float = 0.5
    prior: float | None = None
    """Success rate assumed for arms never tried; None = `target` (so new arms get tried)."""
    explore: float = 0.1
    rates: SuccessRates = field(default_factory=SuccessRates)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_arms(self.arms)
        band = self.band
        if not (isinstance(band, (list, tuple)) and len(band) == 2):
            raise ConfigError(f"curriculum band={band!r} is not a pair; write it as [low, high]")
        _check_range("band low", band[0], 0, 1)
        _check_range("band high", band[1], 0, 1)
        if band[0] >= band[1]:
            raise ConfigError(
                f"curriculum band={list(band)!r} is empty; write it as [low, high], low < high"
            )
        self.band = (float(band[0]), float(band[1]))
        _check_range("target", self.target, 0, 1)
        if not band[0] <= self.target <= band[1]:
            raise ConfigError(
                f"curriculum target={self.target!r} is outside band {list(band)!r}; "
                "choose a target inside the band"
            )
        if self.prior is not None:
            _check_range("prior", self.prior, 0, 1)
        _check_range("explore", self.explore, 0, 1)
        self.rng = random.Random(self.seed)

    def weight(self, rate: float) -> float:
        """How much the zone wants an arm at this success rate (0 outside the band)."""
        low, high = self.band
        if not low <= rate <= high:
            return 0.0
        edge = low if rate < self.target else high
        d = abs(self.target - edge)
        return 1.0 if d == 0 else 1 - 0.5 * abs(rate - self.target) / d

    def rate(self, arm: str) -> float:
        """The arm's latest success rate, or the prior if it was never tried."""
        prior = self.target if self.prior is None else self.prior
        return self.rates.last.get(arm, prior)

    def probabilities(self) -> dict[str, float]:
        weights = [self.weight(self.rate(a)) for a in self.arms]
        return _mix(self.arms, weights, self.explore)

    def sample(self, n: int) -> list[str]:
        return _draw(self.rng, self.probabilities(), n)

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        return {
            arm: self.weight(self.rates.observe(arm, c, n))
            for arm, c, n in _batches(self.arms, results)
        }

    def state(self) -> dict[str, Any]:
        return {"kind": "zpd", "rates": self.rates.state(), "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, "zpd")
        self.rates.load_state(state["rates"])
        _set_rng_state(self.rng, state["rng"])


SAMPLERS: Registry[type] = Registry(
    "curriculum sampler",
    {
        "uniform": UniformSampler,
        "fixed_order": FixedOrderSampler,
        "bandit": BanditSampler,
        "zpd": ZPDSampler,
    },
    register_with="register_sampler",
)
"""The samplers by name; `curriculum.sampler` names one (checked when a config loads)."""


def register_sampler(name: str, cls: Callable[..., Any], *, replace: bool = False) -> None:
    """Make `name` a valid `curriculum.sampler`: ``cls(arms, seed, **options)`` builds it, a
    `CurriculumSampler` (sample, update, probabilities, state, load_state). Its `OPTIONS`
    (a class attribute, default none) name the `curriculum` settings it takes, e.g.
    ``("explore",)``: a run passes it those settings' values."""
    SAMPLERS.register(name, cls, replace=replace)


def build_sampler(
    name: str,
    arms: list[str],
    seed: int,
    *,
    gated: bool = False,
    prerequisites: dict[str, list[str]] | None = None,
    unlock_at: float | None = None,
    chain: bool | None = None,
    **options: Any,
) -> CurriculumSampler:
    """The sampler `name` over `arms`; with gated=True, wrapped in a skill graph.

    `options` are the sampler's own (see each class's OPTIONS); `prerequisites` (extra
    {arm: [required arms]}), `unlock_at` and `chain` (each level requires the one below)
    configure the skill graph and need gated=True.
    """
    cls = SAMPLERS.get(name)
    takes = tuple(getattr(cls, "OPTIONS", ()))
    unknown = sorted(set(options) - set(takes))
    if unknown:
        allowed = ", ".join(takes) or "none"
        raise ConfigError(
            f"option {unknown[0]!r} does not apply to curriculum sampler {name!r}; remove it "
            f"(its options: {allowed})"
        )
    inner = cls(list(arms), seed, **options)
    if not gated:
        if prerequisites is not None or unlock_at is not None or chain is not None:
            raise ConfigError(
                "prerequisites/unlock_at/chain only apply to a gated sampler; pass gated=True "
                "(curriculum.skill_graph: true) or drop them"
            )
        return inner
    # Imported here: skill_graph builds on this module (and pulls in networkx).
    from pedagogy.agents.skill_graph import GatedSampler, SkillGraph

    graph_options: dict[str, Any] = {} if unlock_at is None else {"unlock_at": unlock_at}
    if chain is not None:
        graph_options["chain"] = chain
    graph = SkillGraph(list(arms), prerequisites, **graph_options)
    return GatedSampler(inner, graph, seed)
