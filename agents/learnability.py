"""The learnability filter (Reverse Speculative Decoding / Gen-SSD).

Teacher text full of tokens the student finds improbable hurts small students, so each chunk of an
explanation is scored as the student's own continuation of the problem; improbable chunks are
dropped when the rest still verifies; otherwise (with `rewrite`) the student writes the rest
itself from the text before the chunk and its own version is kept when it verifies, else the
explanation is rejected.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from pedagogy.agents.scoring import (
    _check_scorer,
    _score,
    _student_continuation,
    student_prompt,
    token_counts,
)
from pedagogy.agents.styles import _format_worked, _parse_worked
from pedagogy.backends.base import ContinuesTexts, ScoringBackend, require
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError

__all__ = ["Chunk", "FilterOutcome", "filter_explanation", "split_chunks"]


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
        require(
            scorer,
            ContinuesTexts,
            "the student cannot rewrite without it; use a local TransformersBackend or "
            "rewrite=False",
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
