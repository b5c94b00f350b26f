"""Intervention policies: which wrong attempts of a round the teacher explains, within a budget.

Explanations cost budget, so a teacher explains only some of the student's wrong attempts. A
policy sees the round's candidates (each wrong attempt with the explanation that would be shown)
and the budget, and returns one `Decision` per candidate. Every policy spends the budget exactly:
min(budget, number of candidates) interventions (budget None = unlimited: all of them).

- `never`: explains nothing (the no-teacher baseline).
- `always`: the first `budget` candidates in the given order.
- `random`: `budget` candidates drawn by a seeded RNG (kept in the policy's state).
- `utility` (Saha et al., teacher explanations via Theory of Mind): the top-`budget` candidates
  by intervention utility under the student itself,

      utility = log P(target | explanation + "\\n" + prompt) - log P(target | prompt)

  where the prompts are exactly what `Student.request` sends (rendered as the backend renders
  them) and `target` is the correct completion: with `target="solution"` (default) the worked
  solution in the student's own format (`S:<steps>\\nA:<answer>`, `Candidate.solution`, e.g.
  `domain.solve(problem)`), with `target="answer"` just `answer_prefix + problem.answer`. If any
  candidate of a call has no solution, the whole call uses the answer target, so that the
  utilities being ranked are comparable. All 2n log-probabilities come from ONE batched
  `score` call. `measure="prob_gain"` ranks by P(target | explanation) - P(target | prompt)
  instead, the paper's difference of probabilities; `measure="log_ratio_per_token"` divides the
  log ratio by the target's token count, so that long solutions do not dominate the ranking
  just by being long. The same problem posed twice in a round is
  explained once before any problem gets a second explanation (`distinct`). A student backend without `score` (API
  models, scripted) falls back to the teacher's model of the student: utility = 1 - mastery(arm)
  from a `StudentProfile`; each decision's reason says which was used.

`score` is synchronous (a forward pass); from async code call `decide` through
`asyncio.to_thread`. Every policy's whole state is a JSON-able dict (`state`/`load_state`), so a
resumed run makes the same decisions.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pedagogy.agents.curriculum import _rng_state, _set_rng_state
from pedagogy.agents.explanations import token_counts
from pedagogy.agents.profile import StudentProfile
from pedagogy.agents.roles import Student
from pedagogy.backends.base import Backend, HasTokenizer, Scores, backend_label
from pedagogy.backends.transformers import render_prompt
from pedagogy.domains.base import Problem
from pedagogy.errors import BackendError, ConfigError, PedagogyError
from pedagogy.memory.records import DecisionRecord
from pedagogy.registry import Registry

TARGETS = ("solution", "answer")
MEASURES = ("log_ratio", "log_ratio_per_token", "prob_gain")


@dataclass
class Candidate:
    """One wrong first attempt the teacher could explain."""

    id: str
    """The episode id; decisions refer to it."""
    index: int
    """The episode's position in the round's plan."""
    problem: Problem
    attempt: str
    """The student's wrong response."""
    explanation: str
    """The explanation that would be shown before the re-attempt."""
    arm: str = ""
    """"skill@level"; defaults to the problem's arm."""
    solution: str | None = None
    """The correct completion in the student's format (e.g. `domain.solve(problem)`), if known."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ConfigError(
                f"Candidate.id must be a non-empty string (the episode id), got {self.id!r}"
            )
        if not isinstance(self.problem, Problem):
            raise ConfigError(
                f"Candidate.problem must be a pedagogy Problem, got {type(self.problem).__name__}"
            )
        if not self.arm:
            self.arm = self.problem.arm


@dataclass
class Decision:
    """Whether to explain one candidate, and why."""

    candidate_id: str
    intervene: bool
    utility: float | None
    """The number the policy ranked by; None for policies that do not rank."""
    reason: str
    policy: str

    def to_record(self, run_id: str, round: int) -> DecisionRecord:
        """The audit row for the store (`store.record_decisions`)."""
        return DecisionRecord(
            run_id=run_id,
            round=round,
            kind="intervention",
            policy=self.policy,
            subject=self.candidate_id,
            chosen=self.intervene,
            value=self.utility,
            detail={"reason": self.reason},
            episode_id=self.candidate_id,
        )


@runtime_checkable
class InterventionPolicy(Protocol):
    """Decides which candidates of a round get an explanation."""

    name: str

    def decide(self, candidates: Sequence[Candidate], budget: int | None) -> list[Decision]:
        """One decision per candidate, in order; exactly min(budget, n) with intervene=True."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to decide exactly as this policy would next (JSON-able)."""
        ...

    def load_state(self, state: dict[str, Any]) -> None: ...


def interventions(budget: int | None, n: int) -> int:
    """How many of `n` candidates a `budget` pays for; checks the budget."""
    if budget is None:
        return n
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ConfigError(
            f"budget must be a non-negative int or None (unlimited), got {budget!r}; "
            "e.g. budget=8 explains at most 8 wrong attempts per round"
        )
    return min(budget, n)


def _check_candidates(candidates: Sequence[Candidate]) -> None:
    seen: set[str] = set()
    for c in candidates:
        if not isinstance(c, Candidate):
            raise ConfigError(f"candidates must be Candidate objects, got {type(c).__name__}")
        if c.id in seen:
            raise ConfigError(
                f"candidate id {c.id!r} appears twice; give each wrong attempt its episode id"
            )
        seen.add(c.id)


def _check_kind(state: dict[str, Any], kind: str) -> None:
    if state.get("kind") != kind:
        raise ConfigError(
            f"cannot load a {state.get('kind')!r} state into the {kind!r} policy; build the "
            f"policy named in the saved state (build_policy({state.get('kind')!r}, ...))"
        )


def _in_budget(k: int, budget: int | None) -> str:
    return "unlimited budget" if budget is None else f"budget {budget}, {k} to spend"


@dataclass
class NeverPolicy:
    """Never explains: the no-teacher baseline."""

    name: ClassVar[str] = "never"

    def decide(self, candidates: Sequence[Candidate], budget: int | None) -> list[Decision]:
        _check_candidates(candidates)
        interventions(budget, len(candidates))
        return [Decision(c.id, False, None, "policy never explains", self.name) for c in candidates]

    def state(self) -> dict[str, Any]:
        return {"kind": self.name}

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.name)


@dataclass
class AlwaysPolicy:
    """Explains every candidate the budget pays for, in the given order."""

    name: ClassVar[str] = "always"

    def decide(self, candidates: Sequence[Candidate], budget: int | None) -> list[Decision]:
        _check_candidates(candidates)
        k = interventions(budget, len(candidates))
        where = _in_budget(k, budget)
        return [
            Decision(
                c.id,
                i < k,
                None,
                f"position {i + 1} in the given order, {'within' if i < k else 'past'} {where}",
                self.name,
            )
            for i, c in enumerate(candidates)
        ]

    def state(self) -> dict[str, Any]:
        return {"kind": self.name}

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.name)


@dataclass
class RandomPolicy:
    """Explains min(budget, n) candidates drawn uniformly by a seeded RNG."""

    seed: int = 0
    rng: random.Random = field(init=False, repr=False)
    name: ClassVar[str] = "random"

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigError(f"random policy seed must be an int, got {self.seed!r}; e.g. seed=0")
        self.rng = random.Random(self.seed)

    def decide(self, candidates: Sequence[Candidate], budget: int | None) -> list[Decision]:
        _check_candidates(candidates)
        k = interventions(budget, len(candidates))
        chosen = set(self.rng.sample(range(len(candidates)), k))
        where = _in_budget(k, budget)
        return [
            Decision(
                c.id,
                i in chosen,
                None,
                f"{'drawn' if i in chosen else 'not drawn'} at random (seed {self.seed}), {where}",
                self.name,
            )
            for i, c in enumerate(candidates)
        ]

    def state(self) -> dict[str, Any]:
        return {"kind": self.name, "seed": self.seed, "rng": _rng_state(self.rng)}

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.name)
        self.seed = int(state["seed"])
        _set_rng_state(self.rng, state["rng"])


@dataclass
class UtilityPolicy:
    """Explains the top-`budget` candidates by intervention utility under the student.

    See the module docstring for the exact utility. Needs a student backend with `score`, or a
    `profile` to fall back on.
    """

    student: Backend | None = None
    """The student's backend; its `score` gives the log-probabilities."""
    profile: StudentProfile | None = None
    """The teacher's model of the student, used when the student cannot score."""
    target: str = "solution"
    """What counts as the correct completion: "solution" (worked solution) or "answer"."""
    measure: str = "log_ratio"
    """"log_ratio" (difference of log-probabilities) or "prob_gain" (of probabilities)."""
    answer_prefix: str = "A:"
    """Prefix of the answer line in the student's format; the answer target is prefix + answer."""
    distinct: bool = True
    """Spend the budget on distinct problems first: a problem posed several times in a round is
    explained once before any problem is explained twice."""
    name: ClassVar[str] = "utility"

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(
                f"utility policy target {self.target!r} is unknown; choose one of: "
                f"{', '.join(TARGETS)}"
            )
        if self.measure not in MEASURES:
            raise ConfigError(
                f"utility policy measure {self.measure!r} is unknown; choose one of: "
                f"{', '.join(MEASURES)}"
            )
        if not isinstance(self.answer_prefix, str):
            raise ConfigError(
                f"utility policy answer_prefix must be a string, got {self.answer_prefix!r}"
            )
        if not isinstance(self.distinct, bool):
            raise ConfigError(
                f"utility policy distinct must be true or false, got {self.distinct!r}"
            )
        if self.profile is not None and not isinstance(self.profile, StudentProfile):
            raise ConfigError(
                f"utility policy profile must be a StudentProfile, got "
                f"{type(self.profile).__name__}; build one with StudentProfile.from_store"
            )
        if not self.can_score() and self.profile is None:
            raise ConfigError(
                f"the utility policy has {self._no_score()} and no profile to fall back on; "
                "pass a local student (e.g. TransformersBackend) or "
                "profile=StudentProfile.from_store(...)"
            )

    def _no_score(self) -> str:
        if self.student is None:
            return "no student backend"
        return f"student backend {backend_label(self.student)!r} has no score()"

    def can_score(self) -> bool:
        return isinstance(self.student, Scores)

    def decide(self, candidates: Sequence[Candidate], budget: int | None) -> list[Decision]:
        _check_candidates(candidates)
        k = interventions(budget, len(candidates))
        if not candidates:
            return []
        if self.can_score():
            utilities, why = self._scored(candidates)
        else:
            utilities, why = self._from_profile(candidates)
        # Highest utility first; ties (and NaN, ranked last) keep the given order.
        order = sorted(
            range(len(candidates)),
            key=lambda i: (-utilities[i] if not math.isnan(utilities[i]) else math.inf, i),
        )
        if self.distinct:
            # A problem posed twice in a round has the same utility twice, and its second
            # explanation teaches nothing new: repeats go after every distinct problem.
            seen: set[str] = set()
            first, repeats = [], []
            for i in order:
                key = candidates[i].problem.id
                (repeats if key in seen else first).append(i)
                seen.add(key)
            order = first + repeats
            repeat = set(repeats)
        else:
            repeat = set()
        rank = {i: r for r, i in enumerate(order)}
        where = _in_budget(k, budget)
        decisions = []
        for i, c in enumerate(candidates):
            chosen = rank[i] < k
            again = "; repeats a problem ranked higher" if i in repeat else ""
            decisions.append(
                Decision(
                    c.id,
                    chosen,
                    utilities[i],
                    f"{why[i]}{again}; rank {rank[i] + 1} of {len(candidates)}, "
                    f"{'within' if chosen else 'past'} {where}",
                    self.name,
                )
            )
        return decisions

    def targets(self, candidates: Sequence[Candidate]) -> tuple[list[str], str]:
        """The continuation scored for each candidate, and a short description of them."""
        if self.target == "solution" and all(c.solution for c in candidates):
            return [c.solution or "" for c in candidates], "worked solution"
        label = f"{self.answer_prefix}<answer>"
        if self.target == "solution":
            label += " (not every candidate has a worked solution)"
        return [f"{self.answer_prefix}{c.problem.answer}" for c in candidates], label

    def prompts(self, candidates: Sequence[Candidate]) -> tuple[list[str], list[str]]:
        """(with explanation, without) prompts, rendered exactly as the student's backend does."""
        student = Student(self.student)  # type: ignore[arg-type]
        tokenizer = self.student.tokenizer if isinstance(self.student, HasTokenizer) else None
        with_expl, plain = [], []
        for c in candidates:
            with_expl.append(
                render_prompt(tokenizer, student.request(c.problem, c.explanation).messages)
            )
            plain.append(render_prompt(tokenizer, student.request(c.problem).messages))
        return with_expl, plain

    def _scored(self, candidates: Sequence[Candidate]) -> tuple[list[float], list[str]]:
        n = len(candidates)
        continuations, label = self.targets(candidates)
        with_expl, plain = self.prompts(candidates)
        backend_name = backend_label(self.student)
        score = self.student.score  # type: ignore[union-attr]
        try:
            scores = list(score(with_expl + plain, continuations + continuations))
        except PedagogyError:
            raise
        except Exception as e:  # noqa: BLE001 - any scoring failure becomes one actionable error
            raise BackendError(
                f"student backend {backend_name!r} failed to score {2 * n} prompts for the utility "
                f"policy: {type(e).__name__}: {e}; check the student model, or use the profile "
                "fallback (a student without score)"
            ) from e
        if len(scores) != 2 * n:
            raise BackendError(
                f"student backend {backend_name!r} returned {len(scores)} scores for {2 * n} "
                "prompts; score must return one log-probability per prompt"
            )
        tokens = (
            token_counts(self.student, plain, continuations)
            if self.measure == "log_ratio_per_token"
            else []
        )
        utilities, why = [], []
        for i in range(n):
            lp_with, lp_without = float(scores[i]), float(scores[n + i])
            if self.measure == "log_ratio":
                u = lp_with - lp_without
                formula = f"log P({label} | explanation + prompt) - log P(... | prompt)"
            elif self.measure == "log_ratio_per_token":
                u = (lp_with - lp_without) / tokens[i]
                formula = (
                    f"(log P({label} | explanation + prompt) - log P(... | prompt)) / "
                    f"{tokens[i]} tokens"
                )
            else:
                u = math.exp(lp_with) - math.exp(lp_without)
                formula = f"P({label} | explanation + prompt) - P(... | prompt)"
            utilities.append(u)
            why.append(
                f"utility {u:.4g} = {formula} = {lp_with:.4g} vs {lp_without:.4g} under the student"
            )
        return utilities, why

    def _from_profile(self, candidates: Sequence[Candidate]) -> tuple[list[float], list[str]]:
        profile = self.profile if self.profile is not None else StudentProfile()
        utilities, why = [], []
        for c in candidates:
            mastery = profile.mastery(c.arm)
            utilities.append(1.0 - mastery)
            why.append(
                f"{self._no_score()}: profile fallback, utility = 1 - mastery({c.arm}) = "
                f"1 - {mastery:.4g} ({profile.attempts(c.arm)} first attempts seen)"
            )
        return utilities, why

    def state(self) -> dict[str, Any]:
        return {
            "kind": self.name,
            "target": self.target,
            "measure": self.measure,
            "answer_prefix": self.answer_prefix,
            "distinct": self.distinct,
            "profile": None if self.profile is None else self.profile.state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        _check_kind(state, self.name)
        self.target = state["target"]
        self.measure = state["measure"]
        self.answer_prefix = state["answer_prefix"]
        self.distinct = bool(state.get("distinct", True))
        if state.get("profile") is not None:
            if self.profile is None:
                self.profile = StudentProfile.from_state(state["profile"])
            else:
                self.profile.load_state(state["profile"])


POLICIES: Registry[type] = Registry(
    "intervention policy",
    {
        "never": NeverPolicy,
        "always": AlwaysPolicy,
        "random": RandomPolicy,
        "utility": UtilityPolicy,
    },
    register_with="register_policy",
)
"""The intervention policies by name; `episodes.intervention` names one (checked when a config
loads)."""


def register_policy(name: str, cls: Callable[..., Any], *, replace: bool = False) -> None:
    """Make `name` a valid `episodes.intervention`: ``cls(**options)`` builds it, an
    `InterventionPolicy` (decide, state, load_state). Its options are
    `episodes.intervention_options`; a run also passes `seed` (the run's), `student` (the student
    backend) and `profile` (its `StudentProfile`) to a class that takes them."""
    POLICIES.register(name, cls, replace=replace)


def build_policy(name: str, **options: Any) -> InterventionPolicy:
    """The intervention policy called `name`, built with its options.

    Options: never, always: none; random: seed; utility: student, profile, target, measure,
    answer_prefix, distinct.
    """
    cls = POLICIES.get(name)
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):  # nothing to read: its constructor checks its options
        params = []
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return cls(**options)
    allowed = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in options:
        if key not in allowed:
            takes = f"its options are: {', '.join(allowed)}" if allowed else "it takes no options"
            raise ConfigError(
                f"intervention policy {name!r} has no option {key!r} (= {options[key]!r}); {takes}"
            )
    return cls(**options)
