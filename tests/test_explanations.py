"""Explanation styles, the student-preference probe and the learnability filter.

Unit tests use a fake scorer; the slow ones use a real tiny student fine-tuned in this module.
"""

from __future__ import annotations

import random

import pytest

from pedagogy.agents.explanations import (
    STYLES,
    AdaptiveStyle,
    ConciseStyle,
    DetailedStyle,
    ExplanationStyle,
    WorkedStyle,
    build_style,
    explain_prompt,
    filter_explanation,
    probe_styles,
    split_chunks,
)
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError, UnknownNameError


def _add(a: int, b: int) -> tuple[Problem, str]:
    return Problem("toy", "add", 0, f"{a}+{b}=", str(a + b)), f"S:{a}+{b}={a + b}\nA:{a + b}"


class Misleading:
    """A style that teaches a wrong result (the right format, the answer off by 11)."""

    name = "misleading"

    def render(self, problem: Problem, solution: str, attempt: str | None = None) -> str:
        a, b = problem.prompt.removesuffix("=").split("+")
        wrong = int(a) + int(b) + 11
        return f"S:{a}+{b}={wrong}\nA:{wrong}"

    def instruction(self) -> str:
        return "Give a wrong answer."


class FakeScorer:
    """Scores by characters: -10 per character of a chunk containing 'qz', -0.1 otherwise;
    records every call."""

    name = "fake"

    def __init__(self, constant: float | None = None):
        self.constant = constant
        self.calls: list[tuple[list[str], list[str]]] = []

    def score(self, prompts, continuations):
        self.calls.append((list(prompts), list(continuations)))
        if self.constant is not None:
            return [self.constant] * len(prompts)
        return [(-10.0 if "qz" in c else -0.1) * len(c) for c in continuations]


# -- styles --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def domain():
    from pedagogy.domains.reasoning_gym import ReasoningGymDomain

    return ReasoningGymDomain(
        skills=["chain_sum"],
        levels={
            "chain_sum": [{"num_terms": 0, "num_digits": 0}, {"num_terms": 1, "num_digits": 0}]
        },
        compact=True,
    )


def _all_styles() -> list[ExplanationStyle]:
    return [
        WorkedStyle(),
        ConciseStyle(),
        ConciseStyle(steps=1),
        DetailedStyle(),
        AdaptiveStyle(),
        AdaptiveStyle(mastery=0.95),
        AdaptiveStyle(mastery=0.1),
        AdaptiveStyle(level=3),
    ]


def test_every_style_renders_a_verified_explanation(domain):
    problems = domain.generate(random.Random(0), 10, "chain_sum", 0)
    problems += domain.generate(random.Random(1), 10, "chain_sum", 1)
    for problem in problems:
        solution = domain.solve(problem)
        attempt = f"A:{int(problem.answer) + 1}"
        for style in _all_styles():
            assert isinstance(style, ExplanationStyle)
            text = style.render(problem, solution, attempt)
            assert domain.verify(problem, text).correct, (style, problem.prompt, text)
        concise = ConciseStyle().render(problem, solution, attempt)
        detailed = DetailedStyle().render(problem, solution, attempt)
        assert len(concise) < len(detailed)
        assert WorkedStyle().render(problem, solution) == solution


def test_concise_and_detailed_in_the_worked_format():
    problem = Problem("toy", "chain", 1, "5-8+3=", "0")
    solution = "S:5-8=-3;-3+3=0\nA:0"
    assert ConciseStyle().render(problem, solution) == "A:0"
    assert ConciseStyle(steps=1).render(problem, solution) == "S:-3+3=0\nA:0"
    detailed = DetailedStyle().render(problem, solution, "S:5-8=3;3+3=6\nA:6")
    assert detailed == (
        "Problem: 5-8+3=\nCheck: your step 5-8=3 is wrong; it is 5-8=-3\nS:5-8=-3;-3+3=0\nA:0"
    )
    # Without steps in the attempt, the wrong answer is pointed at; without an attempt, nothing.
    assert "your answer 6 is wrong; it is 0" in DetailedStyle().render(problem, solution, "A:6")
    assert "Check" not in DetailedStyle().render(problem, solution)
    # Any other text: the answer line alone, or everything with the problem restated.
    prose = "First subtract 8 from 5.\nThen add 3.\nAnswer: 0"
    assert ConciseStyle().render(problem, prose) == "Answer: 0"
    assert DetailedStyle().render(problem, prose).startswith("Problem: 5-8+3=\n")


def test_adaptive_chooses_by_mastery_then_level():
    easy = Problem("toy", "add", 0, "3+4=", "7")
    hard = Problem("toy", "add", 2, "3+4=", "7")
    assert AdaptiveStyle().choose(easy).name == "concise"
    assert AdaptiveStyle().choose(hard).name == "detailed"
    assert AdaptiveStyle(mastery=0.9).choose(hard).name == "concise"
    assert AdaptiveStyle(mastery=0.2).choose(easy).name == "detailed"
    assert AdaptiveStyle(level=0).choose(hard).name == "concise"
    assert AdaptiveStyle(mastery=0.9).instruction() == ConciseStyle().instruction()
    assert "difficulty" in AdaptiveStyle().instruction()


def test_build_style_and_prompts():
    assert set(STYLES) == {"worked", "concise", "detailed", "adaptive"}
    assert build_style("adaptive", mastery=0.5).mastery == 0.5
    with pytest.raises(UnknownNameError, match="unknown explanation style 'terse'.*concise"):
        build_style("terse")
    with pytest.raises(ConfigError, match="bad options .*'colour'.*ConciseStyle"):
        build_style("concise", colour="red")
    problem = Problem("toy", "add", 0, "3+4=", "7")
    prompt = explain_prompt(problem, "A:8", ConciseStyle())
    assert "Problem: 3+4=" in prompt and prompt.endswith(ConciseStyle().instruction())


def test_bad_style_options_name_the_value_and_the_fix():
    with pytest.raises(ConfigError, match=r"mastery must be a number in \[0, 1\], got 1.5"):
        AdaptiveStyle(mastery=1.5)
    with pytest.raises(ConfigError, match="level must be an integer >= 0, got -1"):
        AdaptiveStyle(level=-1)
    with pytest.raises(ConfigError, match="steps must be an integer >= 0, got -2"):
        ConciseStyle(steps=-2)
    with pytest.raises(ConfigError, match="no worked solution for problem '3\\+4=' .*domain.solve"):
        WorkedStyle().render(Problem("toy", "add", 0, "3+4=", "7"), None)


# -- probe (fake scorer) -------------------------------------------------------------------------


def test_probe_scores_everything_in_one_batched_call_and_breaks_ties_by_order():
    scorer = FakeScorer(constant=-3.0)
    items = [_add(3, 4), _add(2, 5)]
    result = probe_styles(scorer, items, ["detailed", "worked", "concise"], attempts=["A:8", None])
    assert len(scorer.calls) == 1
    prompts, continuations = scorer.calls[0]
    assert len(prompts) == 2 * 4  # per problem: no explanation + three styles
    assert prompts[0] == "3+4=" and prompts[2] == "S:3+4=7\nA:7\n3+4="  # as Student.request
    assert continuations == ["S:3+4=7\nA:7"] * 4 + ["S:2+5=7\nA:7"] * 4
    assert result.winner == "detailed"  # all equal: the first given
    assert result.mean_gain == {"detailed": 0.0, "worked": 0.0, "concise": 0.0}
    assert result.baseline == -3.0 and result.gains["worked"] == [0.0, 0.0]
    assert result.explanations["concise"] == ["A:7", "A:7"]


def test_probe_bad_inputs_name_the_value_and_the_fix():
    items = [_add(3, 4)]
    with pytest.raises(ConfigError, match="'scripted' cannot score text.*TransformersBackend"):
        probe_styles(type("S", (), {"name": "scripted"})(), items, ["worked"])
    with pytest.raises(ConfigError, match="no styles; pass at least two"):
        probe_styles(FakeScorer(), items, [])
    with pytest.raises(ConfigError, match=r"duplicate style names \['worked', 'worked'\]"):
        probe_styles(FakeScorer(), items, ["worked", WorkedStyle()])
    with pytest.raises(ConfigError, match="no problems"):
        probe_styles(FakeScorer(), [], ["worked"])
    with pytest.raises(ConfigError, match="2 attempts for 1 problems"):
        probe_styles(FakeScorer(), items, ["worked"], attempts=["A:1", "A:2"])
    with pytest.raises(ConfigError, match=r"problems_and_solutions\[0\] is .*pairs"):
        probe_styles(FakeScorer(), [items[0][0]], ["worked"])
    with pytest.raises(UnknownNameError, match="'verbose'"):
        probe_styles(FakeScorer(), items, ["verbose"])


# -- filter (fake scorer) ------------------------------------------------------------------------


def test_split_chunks_worked_format_and_prose():
    text = "S:3+4=7;qzqz=9\nA:7"
    chunks = split_chunks(text)
    assert [(c.text, c.kind) for c in chunks] == [
        ("3+4=7", "step"),
        ("qzqz=9", "step"),
        ("7", "answer"),
    ]
    assert [text[c.start : c.start + len(c.text)] for c in chunks] == ["3+4=7", "qzqz=9", "7"]
    prose = "Add 3 and 4. That is 7.5 minus 0.5!\nAnswer: 7"
    assert [c.text for c in split_chunks(prose)] == [
        "Add 3 and 4.",
        "That is 7.5 minus 0.5!",
        "Answer: 7",
    ]


def test_filter_drops_an_improbable_chunk_when_the_rest_verifies():
    scorer = FakeScorer()
    out = filter_explanation(
        scorer, "3+4=", "S:3+4=7;qzqz=9\nA:7", verify=lambda t: t.endswith("A:7")
    )
    assert out.decision == "trimmed" and out.accepted
    assert out.text == "S:3+4=7\nA:7" and out.dropped == [1] and out.flagged == []
    assert out.scores == pytest.approx([-0.1, -10.0, -0.1])  # per character without a tokenizer
    # Pass 1 scores every chunk; pass 2 rescores the answer without the dropped chunk.
    assert [c[1] for c in scorer.calls] == [["3+4=7", "qzqz=9", "7"], ["7"]]
    assert scorer.calls[0][0] == ["3+4=S:", "3+4=S:3+4=7;", "3+4=S:3+4=7;qzqz=9\nA:"]
    assert scorer.calls[1][0] == ["3+4=S:3+4=7\nA:"]


def test_filter_keeps_learnable_text_and_flags_what_it_cannot_drop():
    scorer = FakeScorer()
    kept = filter_explanation(scorer, "3+4=", "S:3+4=7\nA:7", verify=lambda t: True)
    assert (kept.decision, kept.text, kept.dropped, kept.flagged) == (
        "kept",
        "S:3+4=7\nA:7",
        [],
        [],
    )
    flagged = filter_explanation(scorer, "3+4=", "S:3+4=7;qzqz=9\nA:7")  # no verify: cannot drop
    assert flagged.decision == "rejected" and not flagged.accepted
    assert flagged.flagged == [1] and flagged.text == "S:3+4=7;qzqz=9\nA:7"
    assert "rewrite" in flagged.reason
    answer = filter_explanation(scorer, "3+4=", "S:3+4=7\nA:qz", verify=lambda t: "A:" in t)
    assert answer.decision == "rejected" and answer.flagged == [1]
    prose = filter_explanation(
        scorer, "3+4=", "Add 3 and 4. Then qzqz the result.\nAnswer: 7", verify=lambda t: True
    )
    assert prose.text == "Add 3 and 4.\nAnswer: 7" and prose.dropped == [1]


class FakeWriter(FakeScorer):
    """A FakeScorer whose student continues any text with `written`; records the prompts."""

    def __init__(self, written: str):
        super().__init__()
        self.written = written
        self.continued: list[tuple[list[str], int]] = []

    def continue_texts(self, prompts, max_tokens=64):
        self.continued.append((list(prompts), max_tokens))
        return [self.written] * len(prompts)


def test_filter_rewrite_uses_the_students_continuation_only_when_it_verifies():
    verify = lambda t: t.endswith("A:7") and "3+4=7" in t  # noqa: E731 - a step is required
    good = FakeWriter("3+4=7\nA:7")
    out = filter_explanation(good, "3+4=", "S:qzqz=7\nA:7", verify=verify, rewrite=True)
    assert out.decision == "rewritten" and out.accepted
    assert out.text == "S:3+4=7\nA:7" and out.rewrite == "3+4=7\nA:7"
    assert out.flagged == [0] and out.dropped == []
    # The student continues its own prompt plus the explanation up to the flagged chunk.
    assert good.continued == [(["3+4=S:"], 64)]
    bad = FakeWriter("3+4=8\nA:8")
    rejected = filter_explanation(bad, "3+4=", "S:qzqz=7\nA:7", verify=verify, rewrite=True)
    assert rejected.decision == "rejected" and not rejected.accepted
    assert rejected.text == "S:qzqz=7\nA:7" and rejected.rewrite == "3+4=8\nA:8"
    assert "'3+4=8\\nA:8'" in rejected.reason and "does not verify" in rejected.reason
    # Nothing to rewrite when a chunk can simply be dropped or every chunk is learnable.
    trimmed = filter_explanation(
        good, "3+4=", "S:3+4=7;qzqz=9\nA:7", verify=lambda t: t.endswith("A:7"), rewrite=True
    )
    assert trimmed.decision == "trimmed" and trimmed.rewrite is None and len(good.continued) == 1


def test_filter_bad_inputs_name_the_value_and_the_fix():
    with pytest.raises(ConfigError, match="rewrite needs verify"):
        filter_explanation(FakeWriter("7"), "3+4=", "A:7", rewrite=True)
    with pytest.raises(ConfigError, match="cannot continue text .* rewrite=False"):
        filter_explanation(FakeScorer(), "3+4=", "A:7", verify=bool, rewrite=True)
    with pytest.raises(ConfigError, match="rewrite_tokens must be a positive integer, got 0"):
        filter_explanation(
            FakeWriter("7"), "3+4=", "A:7", verify=bool, rewrite=True, rewrite_tokens=0
        )
    with pytest.raises(ConfigError, match="threshold must be .* <= 0, got 1.0; try -2.5"):
        filter_explanation(FakeScorer(), "3+4=", "A:7", threshold=1.0)
    with pytest.raises(ConfigError, match="threshold .* got nan"):
        filter_explanation(FakeScorer(), "3+4=", "A:7", threshold=float("nan"))
    with pytest.raises(ConfigError, match="explanation must be non-empty text, got '  '"):
        filter_explanation(FakeScorer(), "3+4=", "  ")
    with pytest.raises(ConfigError, match="prompt must be a Problem or a non-empty string"):
        filter_explanation(FakeScorer(), "", "A:7")
    with pytest.raises(ConfigError, match="verify must be a callable"):
        filter_explanation(FakeScorer(), "3+4=", "A:7", verify="yes")
    with pytest.raises(ConfigError, match="cannot score text"):
        filter_explanation(object(), "3+4=", "A:7")


# -- a real tiny student -------------------------------------------------------------------------


def _worked(a: int, b: int) -> str:
    return f"S:{a}+{b}={a + b}\nA:{a + b}"


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """The tiny student after 150 SFT steps on 1-digit 'a+b=' (bare prompts) plus 2-digit sums
    with their worked solution in context, so that it learns to read explanations."""
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.training.sft import SFTJobConfig, run_sft
    from pedagogy.training.tiny import build_tiny_student

    rng = random.Random(0)
    examples = [(f"{a}+{b}=", _worked(a, b)) for a in range(10) for b in range(10)]
    pairs = [(rng.randrange(10, 100), rng.randrange(10, 100)) for _ in range(200)]
    examples += [(f"{_worked(a, b)}\n{a}+{b}=", _worked(a, b)) for a, b in pairs]
    base = build_tiny_student(tmp_path_factory.mktemp("tiny") / "v0", seed=0)
    out = tmp_path_factory.mktemp("explained") / "v1"
    run_sft(base, out, examples, SFTJobConfig(max_steps=150, batch_size=32, learning_rate=5e-3))
    return TransformersBackend(out, threads=2)


@pytest.mark.slow
@pytest.mark.timeout(900)  # trains the module's student: minutes on busy shared cores
def test_probe_prefers_the_correct_style_over_a_misleading_one(student):
    items = [_add(a, b) for a, b in [(23, 45), (61, 17), (38, 29), (50, 44), (72, 16)]]
    result = probe_styles(student, items, [Misleading(), "worked"])
    assert result.winner == "worked", result.mean_gain
    assert result.mean_gain["worked"] > result.mean_gain["misleading"] + 1.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_filter_with_a_real_student(student):
    verify = lambda text: text.strip().endswith("A:7")  # noqa: E731
    clean = filter_explanation(student, "3+4=", "S:3+4=7\nA:7", verify=verify)
    assert clean.decision == "kept" and clean.text == "S:3+4=7\nA:7", clean.scores
    # The char tokenizer counts one token per character, like the fallback.
    assert all(s > -2.5 for s in clean.scores)
    garbage = filter_explanation(student, "3+4=", "S:3+4=7;qzqzqz=9\nA:7", verify=verify)
    assert garbage.decision == "trimmed", garbage
    assert garbage.dropped == [1] and garbage.text == "S:3+4=7\nA:7"
    assert garbage.scores[1] < -5 < garbage.scores[0]
    unchecked = filter_explanation(student, "3+4=", "S:3+4=7;qzqzqz=9\nA:7")
    assert unchecked.decision == "rejected" and 1 in unchecked.flagged


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_filter_rewrite_with_a_real_student(student):
    # What the filter guarantees, whatever this student happened to learn: the rewrite is the
    # student's own greedy continuation from the text before the first flagged chunk, and it is
    # used exactly when it verifies. A threshold of 0 flags every chunk (log-probs are < 0).
    from pedagogy.agents.explanations import student_prompt

    explanation = "S:2 plus 8 is 10\nA:10"
    base = student_prompt(student, "2+8=")
    head = "S:"  # the text before the first step chunk of the worked format
    own = student.continue_texts([base + head], 64)[0]
    candidate = (head + own).strip()

    rejected = filter_explanation(
        student, "2+8=", explanation, verify=lambda t: False, rewrite=True, threshold=0.0
    )
    assert rejected.decision == "rejected" and rejected.flagged[0] == 0, rejected
    assert rejected.rewrite == own  # what the student wrote is kept for the log

    accepted = filter_explanation(
        student, "2+8=", explanation, verify=lambda t: t == candidate, rewrite=True, threshold=0.0
    )
    assert accepted.decision == "rewritten" and accepted.flagged[0] == 0, accepted
    assert accepted.rewrite == own and accepted.text == candidate
    # Without rewrite, the same scores reject the explanation and say why.
    plain = filter_explanation(student, "2+8=", explanation, verify=lambda t: False, threshold=0.0)
    assert plain.decision == "rejected" and plain.rewrite in (None, "")
    assert plain.scores == rejected.scores
    # Batched continuations equal single ones (left padding does not change them).
    prompts = ["2+8=S:", "5+5=S:", "1+1=S:"]
    batch = student.continue_texts(prompts, 12)
    assert batch == [student.continue_texts([p], 12)[0] for p in prompts]
    assert all(isinstance(t, str) for t in batch)
