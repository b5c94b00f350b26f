"""Skill graph: prerequisites between arms, and a sampler that only draws unlocked arms.

Arms ("skill@level") are the nodes of a directed graph with an edge prerequisite -> arm. By
default each level of a skill requires the next lower level of the same skill among the arms
(s@1 requires s@0; `chain=False` drops these edges, so that only the given prerequisites gate);
extra prerequisites, e.g. {"carry@0": ["add@1"]} or {"s@4": ["s@2", "s@3"]}, add edges.
Arms with no prerequisite (roots) are unlocked from the start. After each update, a locked arm
unlocks when every prerequisite is unlocked and that prerequisite's latest success rate (correct /
attempted of its most recent update) is >= `unlock_at`. Unlocking is permanent, so one bad round
does not pull arms out of the plan; each unlock is recorded with the update that caused it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from pedagogy.agents.curriculum import (
    CurriculumSampler,
    _batches,
    _check_kind,
    _check_range,
    _draw,
    _rng_state,
    _set_rng_state,
)
from pedagogy.domains.base import parse_arm
from pedagogy.errors import ConfigError


def _default_edges(arms: list[str]) -> list[tuple[str, str]]:
    """(s@i', s@i) for each arm, i' the next lower level of skill s among the arms."""
    levels: dict[str, list[int]] = {}
    for arm in arms:
        skill, level = parse_arm(arm)
        levels.setdefault(skill, []).append(level)
    edges = []
    for skill, ls in levels.items():
        ls.sort()
        edges += [(f"{skill}@{lo}", f"{skill}@{hi}") for lo, hi in zip(ls, ls[1:])]
    return edges


@dataclass
class SkillGraph:
    """Which arms are unlocked, given prerequisites and the success rates seen so far."""

    arms: list[str]
    prerequisites: dict[str, list[str]] | None = None
    """Extra {arm: [arms it requires]}, on top of level i requiring the level below."""
    unlock_at: float = 0.6
    chain: bool = True
    """Each level of a skill requires the level below; False: only `prerequisites` gate."""
    graph: nx.DiGraph = field(init=False, repr=False)
    rates: dict[str, float] = field(default_factory=dict)
    """Latest success rate per arm."""
    unlocked_at: dict[str, int] = field(default_factory=dict)
    """{arm: update after which it unlocked}; roots have 0."""
    events: list[dict[str, Any]] = field(default_factory=list)
    """One {"update", "arm", "prerequisites": {arm: rate}} per unlock caused by an update."""
    updates: int = 0
    _order: list[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.arms:
            raise ConfigError("the curriculum has no arms; check domain skills and curriculum.arms")
        _check_range("unlock_at", self.unlock_at, 0, 1)
        g = nx.DiGraph()
        g.add_nodes_from(self.arms)
        if not isinstance(self.chain, bool):
            raise ConfigError(f"SkillGraph.chain must be true or false, got {self.chain!r}")
        if self.chain:
            g.add_edges_from(_default_edges(self.arms))
        known = set(self.arms)
        for arm, required in (self.prerequisites or {}).items():
            if arm not in known:
                raise ConfigError(
                    f"unknown arm {arm!r} in curriculum.prerequisites; fix its name or add it to "
                    f"curriculum.arms (known arms: {', '.join(self.arms)})"
                )
            if isinstance(required, str):
                raise ConfigError(
                    f"curriculum.prerequisites[{arm!r}] is a string; write it as a list, "
                    f"[{required!r}]"
                )
            for req in required:
                if req not in known:
                    raise ConfigError(
                        f"unknown arm {req!r}, a prerequisite of {arm!r} in "
                        "curriculum.prerequisites; fix its name or add it to curriculum.arms "
                        f"(known arms: {', '.join(self.arms)})"
                    )
                g.add_edge(req, arm)
        try:
            cycle = nx.find_cycle(g)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
            raise ConfigError(
                f"curriculum prerequisites form a cycle at arm {cycle[0][0]!r}: {path}; remove "
                "one of these prerequisites (levels of a skill already require the level below)"
            )
        self.graph = g
        self._order = list(nx.topological_sort(g))
        for arm in self.arms:
            if g.in_degree(arm) == 0:
                self.unlocked_at.setdefault(arm, 0)

    def requires(self, arm: str) -> list[str]:
        """The arms `arm` directly requires."""
        return sorted(self.graph.predecessors(arm))

    def is_unlocked(self, arm: str) -> bool:
        return arm in self.unlocked_at

    def unlocked(self) -> list[str]:
        """Unlocked arms, in arm order."""
        return [a for a in self.arms if a in self.unlocked_at]

    def observe(self, results: dict[str, tuple[int, int]]) -> list[str]:
        """Record one update's {arm: (correct, attempted)}; returns the arms it unlocked."""
        self.updates += 1
        for arm, correct, attempted in _batches(self.arms, results):
            self.rates[arm] = correct / attempted
        opened = []
        for arm in self._order:  # topological: an arm unlocked here can unlock its successors
            if arm in self.unlocked_at:
                continue
            required = self.requires(arm)
            if all(
                r in self.unlocked_at and self.rates.get(r, -1.0) >= self.unlock_at
                for r in required
            ):
                self.unlocked_at[arm] = self.updates
                self.events.append(
                    {
                        "update": self.updates,
                        "arm": arm,
                        "prerequisites": {r: self.rates[r] for r in required},
                    }
                )
                opened.append(arm)
        return opened

    def state(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            "rates": dict(self.rates),
            "unlocked": dict(self.unlocked_at),
            "events": [dict(e, prerequisites=dict(e["prerequisites"])) for e in self.events],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.rates = dict(state["rates"])
        self.unlocked_at = dict(state["unlocked"])
        self.events = [dict(e) for e in state["events"]]


@dataclass
class GatedSampler:
    """Any sampler, restricted to the arms its skill graph has unlocked.

    P(arm) = P_inner(arm) / sum of P_inner over unlocked arms for unlocked arms, 0 for locked ones;
    if the inner sampler puts no mass on any unlocked arm, unlocked arms are drawn uniformly.
    Updates go to the inner sampler (its rewards are returned) and to the graph.
    """

    inner: CurriculumSampler
    graph: SkillGraph
    seed: int = 0
    arms: list[str] = field(init=False)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if set(self.inner.arms) != set(self.graph.arms):
            raise ConfigError(
                "the skill graph and the gated sampler have different arms; build both from the "
                "same arm list (build_sampler(..., gated=True) does)"
            )
        self.arms = list(self.inner.arms)
        self.rng = random.Random(self.seed)

    @property
    def values(self) -> dict[str, float]:
        """The inner sampler's arm values, if it has any (a bandit's Q)."""
        return getattr(self.inner, "values", {})

    @property
    def events(self) -> list[dict[str, Any]]:
        """The graph's unlock events."""
        return self.graph.events

    def unlocked(self) -> list[str]:
        return self.graph.unlocked()

    def probabilities(self) -> dict[str, float]:
        inner = self.inner.probabilities()
        open_ = [a for a in self.arms if self.graph.is_unlocked(a)]
        total = sum(inner[a] for a in open_)
        probs = dict.fromkeys(self.arms, 0.0)
        for a in open_:
            probs[a] = inner[a] / total if total > 0 else 1 / len(open_)
        return probs

    def sample(self, n: int) -> list[str]:
        probs = {a: p for a, p in self.probabilities().items() if p > 0}
        return _draw(self.rng, probs, n)

    def update(self, results: dict[str, tuple[int, int]]) -> dict[str, float]:
        rewards = self.inner.update(results)
        self.graph.observe(results)
        return rewards

    def state(self) -> dict[str, Any]:
        return {
            "kind": "gated",
            "inner": self.inner.state(),
            "graph": self.graph.state(),
            "rng": _rng_state(self.rng),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, "gated")
        self.inner.load_state(state["inner"])
        self.graph.load_state(state["graph"])
        _set_rng_state(self.rng, state["rng"])
