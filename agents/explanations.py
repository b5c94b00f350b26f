"""Tailored explanations: styles, a student-preference probe and a learnability filter.

Three mechanisms from the tailored-teaching literature, each usable on its own:

- **Styles** (DAP/LiteCoT, Skip-Thinking: explanation length is a knob). An `ExplanationStyle`
  renders an offline teacher's worked solution (`render`) or tells an LLM teacher how to write
  (`instruction`); `Teacher.explain` does whichever fits its teacher, for any style, custom ones
  too, and records the text shown. Built-ins: `worked`, `concise`, `detailed`, `adaptive`.
- **Student-preference probe** (ARTE). Render every candidate style for a few problems, score
  log P(correct completion | explanation + prompt) under the student, and keep the style whose
  mean gain over no explanation is highest. The student's own log-probabilities are the
  preference signal, so no student call is sampled and one batched `score` call suffices.
- **Learnability filter** (Reverse Speculative Decoding / Gen-SSD). Teacher text full of tokens
  the student finds improbable hurts small students, so each chunk of an explanation is scored
  as the student's own continuation of the problem; improbable chunks are dropped when the rest
  still verifies; otherwise (with `rewrite`) the student writes the rest itself from the text
  before the chunk and its own version is kept when it verifies, else the explanation is
  rejected.

Scoring needs a backend with `score(prompts, continuations)` (a local `TransformersBackend`);
prompts are rendered exactly as the student sees them (`Student.request`, then the backend's
chat template when its tokenizer has one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pedagogy.agents.roles import EXPLAIN_PROMPT
from pedagogy.backends.base import ScoringBackend
from pedagogy.domains.base import Problem, extract_final_answer
from pedagogy.errors import BackendError, ConfigError
from pedagogy.registry import Registry

__all__ = [
    "STYLES",
    "AdaptiveStyle",
    "Chunk",
    "ConciseStyle",
    "DetailedStyle",
    "ExplanationStyle",
    "FilterOutcome",
    "ProbeResult",
    "WorkedStyle",
    "build_style",
    "register_style",
    "explain_prompt",
    "filter_explanation",
    "probe_styles",
    "split_chunks",
    "student_prompt",
    "token_counts",
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


# -- scoring helpers ---------------------------------------------------------------------------


def _check_scorer(scorer: Any) -> None:
    if not callable(getattr(scorer, "score", None)):
        raise ConfigError(
            f"backend {getattr(scorer, 'name', type(scorer).__name__)!r} cannot score text (no "
            "score method); pass a local model backend such as TransformersBackend"
        )


def _tokenizer(scorer: Any) -> Any:
    return getattr(scorer, "tokenizer", None)


def student_prompt(scorer: Any, prompt: str, explanation: str | None = None) -> str:
    """The text the student model sees for `prompt`, with `explanation` in context if given.

    The same content as `Student.request`, rendered like the backend renders it: through the
    tokenizer's chat template when it has one, else as is.
    """
    content = prompt if explanation is None else f"{explanation}\n{prompt}"
    tokenizer = _tokenizer(scorer)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        from pedagogy.backends.transformers import render_prompt

        return render_prompt(tokenizer, [{"role": "user", "content": content}])
    return content


def _score(scorer: Any, prompts: list[str], continuations: list[str]) -> list[float]:
    scores = list(scorer.score(prompts, continuations))
    if len(scores) != len(prompts):
        raise BackendError(
            f"backend {getattr(scorer, 'name', type(scorer).__name__)!r} returned {len(scores)} "
            f"scores for {len(prompts)} prompts; its score() must return one per prompt"
        )
    return [float(s) for s in scores]


def _student_continuation(scorer: Any, prompt: str, max_tokens: int) -> str:
    texts = list(scorer.continue_texts([prompt], max_tokens))
    if len(texts) != 1 or not isinstance(texts[0], str):
        raise BackendError(
            f"backend {getattr(scorer, 'name', type(scorer).__name__)!r} returned {texts!r} "
            "from continue_texts for one prompt; it must return one string per prompt"
        )
    return texts[0]


def token_counts(scorer: Any, prompts: Sequence[str], continuations: Sequence[str]) -> list[int]:
    """Tokens of each continuation after its prompt: the backend's tokenizer, else characters.

    Counted as `TransformersBackend.score` counts them: the tokens of prompt + continuation past
    their common prefix with the prompt's tokens. Without a tokenizer, characters stand in (exact
    for the character-level tiny student).
    """
    tokenizer = _tokenizer(scorer)
    if tokenizer is None:
        return [max(len(c), 1) for c in continuations]
    counts = []
    for prompt, continuation in zip(prompts, continuations):
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        full = tokenizer(prompt + continuation, add_special_tokens=False)["input_ids"]
        common = 0
        while common < min(len(p_ids), len(full)) and p_ids[common] == full[common]:
            common += 1
        counts.append(max(len(full) - common, 1))
    return counts


# -- student-preference probe ------------------------------------------------------------------


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


# -- learnability filter -----------------------------------------------------------------------


@dataclass(frozen=True)
class Chunk:
    """One scored unit of an explanation: its text and where it sits in the whole."""

    text: str
    """What is scored (no separators or 'S:'/'A:' markers)."""
    start: int
    """Offset of `text` in the explanation; everything before it is the scoring context."""
    kind: str
    """'step' or 'answer' (worked format), 'text' (sentences and lines of anything else)."""


_SENTENCE = re.compile(r"\S.*?(?:[.!?]+(?=\s)|$)")


def split_chunks(explanation: str) -> list[Chunk]:
    """Worked format: each ';'-separated step and the answer; else sentences within lines."""
    worked = _parse_worked(explanation)
    if worked is not None:
        chunks = []
        offset = explanation.index(worked.steps[0]) if worked.steps else 0
        for step in worked.steps:
            start = explanation.index(step, offset)
            chunks.append(Chunk(step, start, "step"))
            offset = start + len(step)
        start = explanation.index("A:", offset) + 2
        chunks.append(Chunk(worked.answer, start, "answer"))
        return [c for c in chunks if c.text]
    chunks = []
    for line in re.finditer(r"[^\n]+", explanation):
        for sentence in _SENTENCE.finditer(line.group()):
            text = sentence.group().rstrip()
            if text:
                chunks.append(Chunk(text, line.start() + sentence.start(), "text"))
    return chunks


def _join(
    explanation: str, chunks: list[Chunk], keep: list[bool], texts: list[str] | None = None
) -> str:
    """The explanation with only the chunks kept (their text replaced by `texts` if given)."""
    if texts is None:
        if all(keep):
            return explanation
        texts = [c.text for c in chunks]
    worked = _parse_worked(explanation)
    if worked is not None:
        steps = [t for c, t, k in zip(chunks, texts, keep) if k and c.kind == "step"]
        answers = [t for c, t, k in zip(chunks, texts, keep) if k and c.kind == "answer"]
        if not answers:
            return f"S:{';'.join(steps)}" if steps else ""
        return _format_worked(steps, answers[0])
    # Anything else: each kept chunk with the separator that preceded it.
    out, previous_end = [], 0
    for chunk, text, k in zip(chunks, texts, keep):
        lead = explanation[previous_end : chunk.start]
        previous_end = chunk.start + len(chunk.text)
        if k:
            out.append((lead if out else lead.lstrip()) + text)
    return "".join(out).strip()


_MARK = "\x00"


def _contexts(explanation: str, chunks: list[Chunk], keep: list[bool]) -> list[str]:
    """Per chunk, the text before it in the explanation trimmed to `keep` (and itself)."""
    contexts = []
    for i in range(len(chunks)):
        texts = [c.text for c in chunks]
        texts[i] = _MARK
        alive = list(keep)
        alive[i] = True
        contexts.append(_join(explanation, chunks, alive, texts).split(_MARK)[0])
    return contexts


@dataclass
class FilterOutcome:
    """What the learnability filter did to one explanation."""

    text: str
    """The explanation to use: the original, or with improbable chunks dropped."""
    decision: str
    """'kept' (every chunk learnable), 'trimmed' (chunks dropped, still verifies),
    'rewritten' (the student's own continuation replaced the first chunk it could not follow and
    everything after it, and verifies) or 'rejected' (chunks flagged, no verified fix)."""
    reason: str
    chunks: list[str]
    """The chunks scored, in order."""
    scores: list[float]
    """Per chunk, the student's mean log-prob per token."""
    dropped: list[int] = field(default_factory=list)
    """Indices of chunks removed from `text`."""
    flagged: list[int] = field(default_factory=list)
    """Indices of improbable chunks that could not be dropped: rewrite them."""
    threshold: float = 0.0
    rewrite: str | None = None
    """With `rewrite`: the student's continuation from the first flagged chunk (also when it did
    not verify, so a rejection shows what the student would have written instead)."""

    @property
    def accepted(self) -> bool:
        return self.decision != "rejected"


def filter_explanation(
    scorer: ScoringBackend,
    prompt: Problem | str,
    explanation: str,
    *,
    threshold: float = -2.5,
    verify: Callable[[str], bool] | None = None,
    rewrite: bool = False,
    rewrite_tokens: int = 64,
) -> FilterOutcome:
    """Score each chunk of `explanation` as the student's continuation of `prompt`; act on it.

    Chunk i is scored as the continuation of the student's prompt followed by the explanation
    up to chunk i (the preceding chunks, separators and 'S:'/'A:' markers are context, not
    scored). Its score is its summed log-prob divided by its token count: the backend's
    tokenizer when it has one (counted as `TransformersBackend.score` counts), else characters.

    Left to right, as speculative decoding accepts tokens: the first chunk below `threshold` is
    dropped if `verify` accepts the text without it, and the chunks after it are rescored
    without it (one batched `score` call per pass, so 1 + the number of dropped chunks calls).
    A chunk that cannot be dropped (always, when `verify` is None) is flagged for a rewrite,
    together with every later chunk below the threshold (their context is already improbable).
    With `rewrite`, the student then writes the rest itself, as in Reverse Speculative
    Decoding: its greedy continuation of the prompt and the explanation up to the flagged chunk
    replaces that chunk and everything after it, and the result is used ('rewritten') when
    `verify` accepts it: a correct text in the student's own distribution. Otherwise the
    decision is 'rejected'.

    Args:
        threshold: mean log-prob per token below which a chunk is unlearnable; -2.5 is a
            per-token probability of about 0.08.
        verify: checks a candidate text, e.g. ``lambda t: domain.verify(problem, t).correct``.
        rewrite: let the student rewrite what cannot be dropped; needs `verify` and a backend
            with `continue_texts` (a local `TransformersBackend`).
        rewrite_tokens: most tokens the student writes for a rewrite.
    """
    _check_scorer(scorer)
    if rewrite:
        if verify is None:
            raise ConfigError(
                "rewrite needs verify: a student's rewrite is used only when it is checked "
                "correct; pass verify=lambda text: domain.verify(problem, text).correct"
            )
        if not callable(getattr(scorer, "continue_texts", None)):
            raise ConfigError(
                f"backend {getattr(scorer, 'name', type(scorer).__name__)!r} cannot continue "
                "text (no continue_texts method), so the student cannot rewrite; use a local "
                "TransformersBackend or rewrite=False"
            )
        if (
            isinstance(rewrite_tokens, bool)
            or not isinstance(rewrite_tokens, int)
            or rewrite_tokens < 1
        ):
            raise ConfigError(
                f"rewrite_tokens must be a positive integer, got {rewrite_tokens!r}; try 64"
            )
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float))
        or not (math.isfinite(threshold) and threshold <= 0)
    ):
        raise ConfigError(
            f"threshold must be a finite mean log-prob per token <= 0, got {threshold!r}; "
            "try -2.5 (a per-token probability of about 0.08)"
        )
    if verify is not None and not callable(verify):
        raise ConfigError(f"verify must be a callable text -> bool, got {verify!r}")
    text_prompt = prompt.prompt if isinstance(prompt, Problem) else prompt
    if not isinstance(text_prompt, str) or not text_prompt:
        raise ConfigError(f"prompt must be a Problem or a non-empty string, got {prompt!r}")
    if not isinstance(explanation, str) or not explanation.strip():
        raise ConfigError(
            f"explanation must be non-empty text, got {explanation!r}; pass the teacher's "
            "explanation"
        )
    chunks = split_chunks(explanation)
    if not chunks:
        raise ConfigError(f"explanation {explanation!r} has no text to score; pass a real one")
    base = student_prompt(scorer, text_prompt)
    texts = [c.text for c in chunks]
    keep = [True] * len(chunks)
    scores = [0.0] * len(chunks)
    dropped: list[int] = []
    flagged: list[int] = []
    decided = 0  # chunks before this index are settled
    while decided < len(chunks):
        live = [i for i in range(decided, len(chunks)) if keep[i]]
        contexts = _contexts(explanation, chunks, keep)
        prompts = [base + contexts[i] for i in live]
        continuation = [texts[i] for i in live]
        sums = _score(scorer, prompts, continuation)
        counts = token_counts(scorer, prompts, continuation)
        for i, total, n in zip(live, sums, counts):
            scores[i] = total / n
        # The first improbable chunk is also the context of every later one: settle it, and
        # rescore the rest without it if it goes.
        low = next((i for i in live if scores[i] < threshold), None)
        if low is None:
            break
        decided = low + 1
        keep[low] = False
        candidate = _join(explanation, chunks, keep)
        if verify is not None and candidate and verify(candidate):
            dropped.append(low)
        else:
            keep[low] = True
            flagged.append(low)
            flagged.extend(i for i in live if i > low and scores[i] < threshold)
            break
    outcome = FilterOutcome(
        text=_join(explanation, chunks, keep),
        decision="kept",
        reason=f"every chunk scores >= {threshold} per token",
        chunks=texts,
        scores=scores,
        dropped=dropped,
        flagged=flagged,
        threshold=threshold,
    )
    if not dropped and not flagged:
        return outcome
    if not outcome.flagged:
        outcome.decision = "trimmed"
        outcome.reason = (
            f"dropped chunks {outcome.dropped} (below {threshold} per token); the rest verifies"
        )
    elif rewrite and verify is not None:
        first = outcome.flagged[0]
        head = _contexts(explanation, chunks, keep)[first]
        written = _student_continuation(scorer, base + head, rewrite_tokens)
        outcome.rewrite = written
        candidate = (head + written).strip()
        if candidate and verify(candidate):
            outcome.text = candidate
            outcome.decision = "rewritten"
            outcome.reason = (
                f"chunk {first} scores {scores[first]:.3g} < {threshold} per token and cannot "
                "be dropped; the student's own continuation from there verifies"
            )
        else:
            outcome.decision = "rejected"
            outcome.reason = (
                f"chunks {outcome.flagged} score below {threshold} per token and cannot be "
                f"dropped, and the student's rewrite from chunk {first} ({written!r}) does not "
                "verify"
            )
    else:
        outcome.decision = "rejected"
        why = (
            "no verify callback to check a shorter text"
            if verify is None
            else ("the text no longer verifies without them")
        )
        outcome.reason = (
            f"chunks {outcome.flagged} score below {threshold} per token and cannot be dropped "
            f"({why}); rewrite them"
        )
    return outcome
