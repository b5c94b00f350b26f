"""The student-preference probe (ARTE): which explanation style helps this student most.

Render every candidate style for a few problems, score log P(correct completion | explanation +
prompt) under the student, and keep the style whose mean gain over no explanation is highest. The
student's own log-probabilities are the preference signal, so no student call is sampled and one
batched `score` call suffices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pedagogy.agents.scoring import _check_scorer, _score, student_prompt
from pedagogy.agents.styles import ExplanationStyle, _check_solution, build_style
from pedagogy.backends.base import ScoringBackend
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError

__all__ = ["ProbeResult", "probe_styles"]


@dataclass
class ProbeResult:
    """Which explanation style helps this student most, and by how much."""

    winner: str
    """The style with the highest mean gain; ties go to the earliest in the given order."""
    mean_gain: dict[str, float]
    """Per style: mean over problems of log P(solution | explanation + prompt) - log P(solution | prompt)."""
    mean_logprob: dict[str, float]
    """Per style: mean log P(solution | explanation + prompt)."""
    baseline: float
    """Mean log P(solution | prompt), no explanation."""
    gains: dict[str, list[float]] = field(default_factory=dict)
    """Per style, the gain on each problem, in the given order."""
    explanations: dict[str, list[str]] = field(default_factory=dict, repr=False)
    """Per style, what it rendered for each problem."""


def probe_styles(
    scorer: ScoringBackend,
    problems_and_solutions: Sequence[tuple[Problem, str]],
    styles: Sequence[ExplanationStyle | str],
    attempts: Sequence[str | None] | None = None,
) -> ProbeResult:
    """Pick the style whose explanations make the student likeliest to produce the solution.

    For every (problem, solution) pair, each style renders an explanation; the student scores
    the solution (the correct completion, e.g. ``S:3+4=7\\nA:7``) after its prompt with and
    without that explanation in context, all in ONE `scorer.score` call. Summed log-probs of
    the same continuation are comparable across contexts, so the gain needs no normalising.

    Args:
        scorer: a backend with `score(prompts, continuations)` (the student).
        problems_and_solutions: (problem, worked solution) pairs, e.g. ``domain.solve(p)``.
        styles: candidate styles (objects, or built-in names for `build_style`).
        attempts: the student's wrong attempt per problem, for styles that point at mistakes.
    """
    _check_scorer(scorer)
    candidates = [build_style(s) if isinstance(s, str) else s for s in styles]
    if not candidates:
        raise ConfigError(
            "probe_styles got no styles; pass at least two, e.g. ['worked', 'concise']"
        )
    names = [getattr(s, "name", None) for s in candidates]
    for style, name in zip(candidates, names):
        if not isinstance(name, str) or not callable(getattr(style, "render", None)):
            raise ConfigError(
                f"{style!r} is not an ExplanationStyle; give it a str name and a "
                "render(problem, solution, attempt) method"
            )
    if len(set(names)) != len(names):
        raise ConfigError(
            f"probe_styles got duplicate style names {names}; give each candidate a distinct name"
        )
    items = list(problems_and_solutions)
    if not items:
        raise ConfigError(
            "probe_styles got no problems; pass at least one (problem, solution) pair"
        )
    if attempts is not None and len(attempts) != len(items):
        raise ConfigError(
            f"probe_styles got {len(attempts)} attempts for {len(items)} problems; pass one "
            "attempt per problem (None where there is none) or no attempts"
        )
    prompts: list[str] = []
    continuations: list[str] = []
    explanations: dict[str, list[str]] = {name: [] for name in names}
    for i, item in enumerate(items):
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ConfigError(
                f"problems_and_solutions[{i}] is {item!r}; pass (problem, solution) pairs"
            )
        problem, solution = item
        solution = _check_solution(problem, solution)
        attempt = attempts[i] if attempts is not None else None
        prompts.append(student_prompt(scorer, problem.prompt))
        continuations.append(solution)
        for style, name in zip(candidates, names):
            text = style.render(problem, solution, attempt)
            explanations[name].append(text)
            prompts.append(student_prompt(scorer, problem.prompt, text))
            continuations.append(solution)
    scores = _score(scorer, prompts, continuations)
    row = len(candidates) + 1
    base = [scores[i * row] for i in range(len(items))]
    gains = {
        name: [scores[i * row + 1 + k] - base[i] for i in range(len(items))]
        for k, name in enumerate(names)
    }
    mean_gain = {name: sum(g) / len(g) for name, g in gains.items()}
    mean_logprob = {
        name: sum(scores[i * row + 1 + k] for i in range(len(items))) / len(items)
        for k, name in enumerate(names)
    }
    # max() keeps the first of equal keys, so ties go to the earliest style given.
    winner = max(names, key=lambda n: mean_gain[n])
    return ProbeResult(
        winner=winner,
        mean_gain=mean_gain,
        mean_logprob=mean_logprob,
        baseline=sum(base) / len(base),
        gains=gains,
        explanations=explanations,
    )
