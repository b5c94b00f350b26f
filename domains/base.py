"""The Domain protocol: where problems come from and how answers are checked.

A domain owns its world: it poses problems for a (skill, level) from a seeded RNG, parses an
answer out of a model's response, verifies it, and optionally writes a worked solution (which
enables the offline scripted teacher).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Problem:
    """One problem posed to the student."""

    domain: str
    """Name of the domain that made it."""
    skill: str
    """Skill (e.g. a reasoning-gym dataset name)."""
    level: int
    """Difficulty level, 0 = easiest."""
    prompt: str
    """What the student is shown."""
    answer: str
    """The reference answer."""
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """Domain-specific data needed to verify or solve (JSON-serialisable)."""
    source: str = "procedural"
    """procedural | teacher-refined | generator-refined | generator | file."""
    parent_id: str | None = None
    """The problem this one was derived from, if any."""

    @property
    def id(self) -> str:
        """Stable content id: the same problem always gets the same id."""
        key = json.dumps([self.domain, self.skill, self.level, self.prompt, self.answer])
        return hashlib.sha1(key.encode()).hexdigest()[:16]

    @property
    def arm(self) -> str:
        return arm_name(self.skill, self.level)


def arm_name(skill: str, level: int) -> str:
    return f"{skill}@{level}"


def parse_arm(arm: str) -> tuple[str, int]:
    skill, _, level = arm.rpartition("@")
    if not skill or not level.isdigit():
        from pedagogy.errors import ConfigError

        raise ConfigError(f"bad arm {arm!r}: expected 'skill@level', e.g. 'chain_sum@0'")
    return skill, int(level)


@dataclass(frozen=True)
class Verdict:
    """The result of checking one answer."""

    correct: bool
    score: float
    """In [0, 1]; 1.0 = fully correct."""
    parsed_answer: str | None
    """The answer extracted from the response, None if none could be found."""
    verifier: str = "programmatic"
    detail: str = ""


def render_problems(problems: Sequence[Problem]) -> str:
    """Problems in the refinement reply format: each prompt on its line, then ``A: <answer>``."""
    return "\n".join(f"{p.prompt}\nA: {p.answer}" for p in problems)


def extract_final_answer(response: str) -> str | None:
    """The text after the last 'A:' / 'Answer:' line; else the last non-empty line."""
    if not response or not response.strip():
        return None
    matches = list(
        re.finditer(r"(?:^|\n)\s*(?:A|Answer|ANSWER|Final answer)\s*:\s*([^\n]*)", response)
    )
    if matches:
        ans = matches[-1].group(1).strip()
        return ans or None
    lines = [ln.strip() for ln in response.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else None


@runtime_checkable
class Domain(Protocol):
    """Problems for (skill, level) arms, and their checker."""

    name: str

    def skills(self) -> list[str]:
        """The skills this domain can pose."""
        ...

    def levels(self, skill: str) -> list[int]:
        """The difficulty levels of a skill, easiest first."""
        ...

    def generate(self, rng: random.Random, n: int, skill: str, level: int) -> list[Problem]:
        """n problems of one skill and level, fully determined by rng's state."""
        ...

    def parse_answer(self, response: str) -> str | None:
        """Extract the final answer from a model response."""
        ...

    def verify(self, problem: Problem, response: str) -> Verdict:
        """Check a model response (the full text) against the problem."""
        ...

    def solve(self, problem: Problem) -> str | None:
        """A worked solution ending in an answer line, or None if this domain cannot solve."""
        ...


# -- optional capabilities ------------------------------------------------------------------------
# A domain may offer more than the `Domain` protocol asks; each extra is a small protocol of its
# own, so existing domains keep working and `isinstance(domain, VariesProblems)` says which a
# domain has. Callers go through the helpers below, which give a neutral answer when it has not.


@runtime_checkable
class VariesProblems(Protocol):
    """Writes targeted variants of a problem (failure-driven refinement): `problem_variants`."""

    def variants(self, problem: Problem, rng: random.Random, n: int) -> list[Problem]:
        """Up to n problems of the same skill, level and shape as `problem`, other values."""
        ...


@runtime_checkable
class ReadsProblems(Protocol):
    """Reads a problem a model wrote, with its own reference answer: `written_problem`."""

    def parse_problem(self, text: str, like: Problem) -> Problem | None:
        """`text` as a problem of `like`'s skill and level; None when it cannot read it."""
        ...


@runtime_checkable
class TellsParameters(Protocol):
    """Tells the generator parameters that made a problem: `problem_parameters`."""

    def parameters(self, problem: Problem) -> dict[str, Any] | None:
        """E.g. ``{"num_terms": 3, "num_digits": 1}``; None when it cannot tell."""
        ...


@runtime_checkable
class SizesLevels(Protocol):
    """Estimates how many distinct problems a level has: `level_size`."""

    def level_capacity(self, skill: str, level: int) -> int | None:
        """The number of distinct problems of the level; None: no repeats seen (large)."""
        ...


@runtime_checkable
class NamesTools(Protocol):
    """Names the tools an acting student uses on it by default: `domain_tools`."""

    def tools(self) -> list[str]:
        """Registered tool names, e.g. ``["retrieve"]``."""
        ...


@runtime_checkable
class SuppliesToolOptions(Protocol):
    """Supplies options of its tools (the world's corpus for `retrieve`): `domain_tool_options`."""

    def tool_options(self) -> dict[str, dict[str, Any]]:
        """Options per tool name, merged under the config's `agent.tool_options`."""
        ...


CAPABILITIES: dict[str, type] = {
    "variants": VariesProblems,
    "parse_problem": ReadsProblems,
    "parameters": TellsParameters,
    "level_capacity": SizesLevels,
    "tools": NamesTools,
    "tool_options": SuppliesToolOptions,
}
"""Each optional method of a domain, by name, and the protocol that describes it."""


_METHOD_OF = {protocol: method for method, protocol in CAPABILITIES.items()}


def offers(domain: Any, capability: type) -> bool:
    """Whether `domain` has the method of `capability` (one of `CAPABILITIES`' protocols) and
    it can be called (an attribute set to None does not count)."""
    return isinstance(domain, capability) and callable(
        getattr(domain, _METHOD_OF[capability], None)
    )


def problem_variants(domain: Domain, problem: Problem, rng: random.Random, n: int) -> list[Problem]:
    """Up to n targeted variants of `problem` (failure-driven refinement, Socratic-Zero): problems
    of the same skill, level and shape with other values, each with ``parent_id`` = the problem's
    id and ``source`` = "teacher-refined".

    A domain offers them with `VariesProblems` (``variants(problem, rng, n)``, not part of the
    `Domain` protocol, so existing domains keep working); a domain without it, or one that
    cannot vary this problem, gives []. Variants equal to the problem are dropped.
    """
    if n < 1 or not offers(domain, VariesProblems):
        return []
    out = [v for v in domain.variants(problem, rng, n) if v.prompt != problem.prompt]
    return [
        v
        if v.parent_id == problem.id and v.source == "teacher-refined"
        else dataclasses.replace(v, parent_id=problem.id, source="teacher-refined")
        for v in out[:n]
    ]


def written_problem(domain: Domain, text: str, like: Problem) -> Problem | None:
    """The problem a model wrote as `text`, read by the domain as one of `like`'s skill and level,
    with the domain's own reference answer; None when the domain cannot read it.

    A domain offers it with `ReadsProblems` (``parse_problem(text, like)``). It is what lets a
    teacher's or a generator's refinements be checked: the model's stated answer is never taken
    on its word.
    """
    return domain.parse_problem(text, like) if offers(domain, ReadsProblems) else None


def reads_problems(domain: Domain) -> bool:
    """Whether the domain can read problems a model wrote (`written_problem`)."""
    return offers(domain, ReadsProblems)


def problem_parameters(domain: Domain, problem: Problem) -> dict[str, Any] | None:
    """The generator parameters that made `problem` (e.g. ``{"num_terms": 3, "num_digits": 1}``),
    or None when the domain cannot tell.

    A domain offers them with `TellsParameters` (``parameters(problem)``). They let an adaptive
    generator learn which settings inside a level the student is ready for
    (`pedagogy.agents.adaptive`).
    """
    return domain.parameters(problem) if offers(domain, TellsParameters) else None


def has_parameters(domain: Domain) -> bool:
    """Whether the domain can tell a problem's generator parameters (`problem_parameters`)."""
    return offers(domain, TellsParameters)


def domain_tools(domain: Any) -> list[str]:
    """The tools the domain names for an acting student (`NamesTools`); [] when it names none."""
    return list(domain.tools() or []) if offers(domain, NamesTools) else []


def domain_tool_options(domain: Any) -> dict[str, dict[str, Any]]:
    """The options the domain supplies per tool (`SuppliesToolOptions`); {} when none."""
    return dict(domain.tool_options() or {}) if offers(domain, SuppliesToolOptions) else {}


def level_size(
    domain: Domain, skill: str, level: int, *, at_least: int, tries: int = 8
) -> int | None:
    """How many distinct problems (by prompt) a level has, when fewer than `at_least`; None when
    it has at least that many, or when it cannot tell (a level too large to exhaust).

    The domain's `SizesLevels` estimate (``level_capacity(skill, level)``; None for "no repeats
    seen") when it has one; else counted by drawing (`level_problems`). Held-out sets are sized
    by it, so that a small level keeps problems to practise on.
    """
    if offers(domain, SizesLevels):
        size = domain.level_capacity(skill, level)
        return None if size is None or size >= at_least else int(size)
    problems = level_problems(domain, skill, level, at_least=at_least, tries=tries)
    return None if problems is None else len(problems)


def level_problems(
    domain: Domain, skill: str, level: int, *, at_least: int, tries: int = 8
) -> dict[str, Problem] | None:
    """Every distinct problem of a level with fewer than `at_least`, by prompt; None when it has
    at least that many (or seems to: still new ones after `tries` draws).

    Drawn from a fixed seed, `at_least` problems at a time, until `at_least` distinct prompts
    are seen or a draw adds none (the level is used up).
    """
    rng = random.Random(f"level-size:{skill}:{level}")
    seen: dict[str, Problem] = {}
    for _ in range(tries):
        before = len(seen)
        for problem in domain.generate(rng, max(at_least, 16), skill, level):
            seen.setdefault(problem.prompt, problem)
        if len(seen) >= at_least:
            return None
        if len(seen) == before:
            return seen
    return None
