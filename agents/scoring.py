"""Text scored under the student: its prompts as it sees them, its log-probs, its token counts.

The student-preference probe (`pedagogy.agents.style_probe`), the learnability filter
(`pedagogy.agents.learnability`) and the utility policy score text with a backend's
`score(prompts, continuations)` (a local `TransformersBackend`). Prompts are rendered exactly as
the student sees them (`Student.request`, then the backend's chat template when its tokenizer has
one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pedagogy.backends.base import HasTokenizer, Scores, backend_label, require
from pedagogy.errors import BackendError

__all__ = ["student_prompt", "token_counts"]


def _check_scorer(scorer: Any) -> None:
    require(scorer, Scores, "pass a local model backend such as TransformersBackend")


def _tokenizer(scorer: Any) -> Any:
    return scorer.tokenizer if isinstance(scorer, HasTokenizer) else None


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
            f"backend {backend_label(scorer)!r} returned {len(scores)} "
            f"scores for {len(prompts)} prompts; its score() must return one per prompt"
        )
    return [float(s) for s in scores]


def _student_continuation(scorer: Any, prompt: str, max_tokens: int) -> str:
    texts = list(scorer.continue_texts([prompt], max_tokens))
    if len(texts) != 1 or not isinstance(texts[0], str):
        raise BackendError(
            f"backend {backend_label(scorer)!r} returned {texts!r} "
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
