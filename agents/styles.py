"""Explanation styles: how a teacher's explanation is written.

Explanation length is a knob (DAP/LiteCoT, Skip-Thinking). An `ExplanationStyle` renders an
offline teacher's worked solution (`render`) or tells an LLM teacher how to write
(`instruction`); `Teacher.explain` does whichever fits its teacher, for any style, custom ones
too, and records the text shown. Built-ins: `worked`, `concise`, `detailed`, `adaptive`; a
plugin adds its own with `register_style`.

Offline teachers write the compact worked format ``S:<step>;<step>\nA:<answer>``; the styles
cut or extend it, and read anything else by its answer line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pedagogy.agents.roles import EXPLAIN_PROMPT
from pedagogy.domains.base import Problem, extract_final_answer
from pedagogy.errors import ConfigError
from pedagogy.registry import Registry

__all__ = [
    "STYLES",
    "AdaptiveStyle",
    "ConciseStyle",
    "DetailedStyle",
    "ExplanationStyle",
    "WorkedStyle",
    "build_style",
    "explain_prompt",
    "register_style",
]


# -- the worked format -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Worked:
    """A solution in the compact worked format ``S:<step>;<step>\\nA:<answer>``."""

    steps: list[str]
    answer: str


def _parse_worked(text: str | None) -> _Worked | None:
    """The steps and answer of a worked-format text, None for any other text."""
    if not text:
        return None
    lines = text.strip().split("\n")
    if len(lines) == 1 and lines[0].startswith("A:"):
        return _Worked([], lines[0][2:])
    if len(lines) == 2 and lines[0].startswith("S:") and lines[1].startswith("A:"):
        steps = lines[0][2:].split(";")
        if all(steps):
            return _Worked(steps, lines[1][2:])
    return None


def _format_worked(steps: Sequence[str], answer: str) -> str:
    return f"S:{';'.join(steps)}\nA:{answer}" if steps else f"A:{answer}"


def _answer_line(text: str) -> str:
    """The last answer line ('A: 7', 'Answer: 7'), else the last non-empty line."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"(?:A|Answer|ANSWER|Final answer)\s*:", line):
            return line
    return lines[-1] if lines else ""


# -- styles ------------------------------------------------------------------------------------


@runtime_checkable
class ExplanationStyle(Protocol):
    """How an explanation is written: rendered from a worked solution, or asked of an LLM."""

    name: str

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        """The explanation an offline teacher gives, built from the domain's `solution`."""
        ...

    def instruction(self) -> str:
        """A sentence appended to an LLM teacher's explain prompt."""
        ...


@dataclass(frozen=True)
class WorkedStyle:
    """The worked solution as is."""

    name: ClassVar[str] = "worked"

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        return _check_solution(problem, solution)

    def instruction(self) -> str:
        return "Show every step of the solution in order, one short step at a time."


@dataclass(frozen=True)
class ConciseStyle:
    """Only the final answer line, or with `steps` > 0 the last few steps that lead to it."""

    name: ClassVar[str] = "concise"
    steps: int = 0
    """Worked-format steps kept before the answer line (the last ones); 0: answer only."""

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(
                f"ConciseStyle.steps must be an integer >= 0, got {self.steps!r}; "
                "use 0 for the answer line only"
            )

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        solution = _check_solution(problem, solution)
        worked = _parse_worked(solution)
        if worked is None:
            return _answer_line(solution)
        kept = worked.steps[len(worked.steps) - self.steps :] if self.steps else []
        return _format_worked(kept, worked.answer)

    def instruction(self) -> str:
        return (
            "Be as brief as possible: give only the final line 'A: <answer>', or the fewest "
            "steps needed to reach it."
        )


@dataclass(frozen=True)
class DetailedStyle:
    """Restate the problem, point at the first wrong step of the attempt, then every step."""

    name: ClassVar[str] = "detailed"

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        solution = _check_solution(problem, solution)
        lines = [f"Problem: {problem.prompt}"]
        check = _first_mistake(solution, attempt)
        if check:
            lines.append(f"Check: {check}")
        # The solution stays last and intact, so its answer line is what a checker parses.
        lines.append(solution.strip())
        return "\n".join(lines)

    def instruction(self) -> str:
        return (
            "Restate the problem, name the first wrong step in the student's answer and why it "
            "is wrong, then show every step of the correct solution."
        )


def _first_mistake(solution: str, attempt: str | None) -> str:
    """'your step 5-8=3 is wrong; it is 5-8=-3', or about the answer; '' when none is found."""
    if not attempt or not attempt.strip():
        return ""
    good, bad = _parse_worked(solution), _parse_worked(attempt)
    if good is not None and bad is not None:
        for i, step in enumerate(bad.steps):
            if i >= len(good.steps):
                return (
                    f"your step {step} is not needed; stop after {good.steps[-1]}"
                    if good.steps
                    else ""
                )
            if step != good.steps[i]:
                return f"your step {step} is wrong; it is {good.steps[i]}"
        if 0 < len(bad.steps) < len(good.steps):
            return f"you skipped the step {good.steps[len(bad.steps)]}"
    right, given = extract_final_answer(solution), extract_final_answer(attempt)
    if given is not None and right is not None and given.strip() != right.strip():
        return f"your answer {given.strip()} is wrong; it is {right.strip()}"
    return ""


@dataclass(frozen=True)
class AdaptiveStyle:
    """Difficulty-aware: concise for easy problems or a strong student, detailed otherwise.

    Decides by `mastery` when given (the student's success rate on the problem's arm), else by
    `level`, else by the problem's own level.
    """

    name: ClassVar[str] = "adaptive"
    mastery: float | None = None
    """The student's mastery of the skill in [0, 1], e.g. its recent success rate."""
    level: int | None = None
    """The difficulty level to assume instead of each problem's own."""
    mastery_threshold: float = 0.8
    """Mastery at or above which explanations are concise."""
    max_concise_level: int = 0
    """Highest level explained concisely when mastery is unknown."""
    concise: ConciseStyle = field(default_factory=ConciseStyle)
    detailed: DetailedStyle = field(default_factory=DetailedStyle)

    def __post_init__(self) -> None:
        for what, value in (
            ("mastery", self.mastery),
            ("mastery_threshold", self.mastery_threshold),
        ):
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ConfigError(
                    f"AdaptiveStyle.{what} must be a number in [0, 1], got {value!r}; "
                    "pass a success rate such as 0.75"
                )
        for what, value in (("level", self.level), ("max_concise_level", self.max_concise_level)):
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigError(
                    f"AdaptiveStyle.{what} must be an integer >= 0, got {value!r}; "
                    "levels count from 0 (easiest)"
                )

    def choose(self, problem: Problem | None = None) -> ExplanationStyle:
        """The style used for `problem` (or, without one, for the configured mastery/level)."""
        if self.mastery is not None:
            easy = self.mastery >= self.mastery_threshold
        else:
            level = self.level if self.level is not None else getattr(problem, "level", None)
            if level is None:
                return self.detailed
            easy = level <= self.max_concise_level
        return self.concise if easy else self.detailed

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        return self.choose(problem).render(problem, solution, attempt)

    def instruction(self) -> str:
        if self.mastery is None and self.level is None:
            return (
                "Match the length to the difficulty: for an easy problem give only the final "
                "answer line; otherwise restate the problem, name the first wrong step and "
                "show every step."
            )
        return self.choose().instruction()


STYLES: Registry[type] = Registry(
    "explanation style",
    {
        "worked": WorkedStyle,
        "concise": ConciseStyle,
        "detailed": DetailedStyle,
        "adaptive": AdaptiveStyle,
    },
    register_with="register_style",
)
"""The explanation styles by name; `episodes.style` names one, or `probe` (checked when a config
loads)."""


def register_style(name: str, cls: Callable[..., Any], *, replace: bool = False) -> None:
    """Make `name` a valid `episodes.style`: ``cls()`` builds it, an `ExplanationStyle` (name,
    render, instruction), used for every explanation of the run."""
    STYLES.register(name, cls, replace=replace)


def build_style(name: str, **options: Any) -> ExplanationStyle:
    """A style by registered name; `options` are its fields (e.g. ``mastery=0.9`` for adaptive)."""
    cls = STYLES.get(name)
    try:
        return cls(**options)
    except TypeError as e:
        raise ConfigError(
            f"bad options {options!r} for explanation style {name!r}: {e}; "
            f"see the fields of {getattr(cls, '__name__', cls)}"
        ) from e


def explain_prompt(problem: Problem, attempt: str, style: ExplanationStyle) -> str:
    """The LLM teacher's explain prompt (`EXPLAIN_PROMPT`) with the style's instruction."""
    return f"{EXPLAIN_PROMPT.format(prompt=problem.prompt, attempt=attempt)}\n{style.instruction()}"


def _check_solution(problem: Problem, solution: str | None) -> str:
    if not isinstance(solution, str) or not solution.strip():
        raise ConfigError(
            f"no worked solution for problem {problem.prompt!r} (got {solution!r}); pass "
            "domain.solve(problem), or use a domain that can solve its problems"
        )
    return solution
