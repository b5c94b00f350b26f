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

The styles live in `pedagogy.agents.styles`, the probe in `pedagogy.agents.style_probe`, the
filter in `pedagogy.agents.learnability` and the scoring they share in `pedagogy.agents.scoring`;
every name stays importable from here.
"""

from __future__ import annotations

from pedagogy.agents.learnability import Chunk, FilterOutcome, filter_explanation, split_chunks
from pedagogy.agents.scoring import student_prompt, token_counts
from pedagogy.agents.style_probe import ProbeResult, probe_styles
from pedagogy.agents.styles import (
    STYLES,
    AdaptiveStyle,
    ConciseStyle,
    DetailedStyle,
    ExplanationStyle,
    WorkedStyle,
    build_style,
    explain_prompt,
    register_style,
)

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
