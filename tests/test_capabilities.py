"""Optional backend capabilities are named protocols: each claimer conforms, each lacker is told.

Every registered backend is built here (the tiny transformers student, the scripted backends,
litellm without a server, replay) and checked against what it is known to offer, so a backend
that silently loses (or gains) a capability fails here rather than deep in a run. Agents decide
by `isinstance` on these protocols, never by a backend's name.
"""

import math

import pytest

from pedagogy.agents.acting import ACT_INSTRUCTIONS, Actor, DemonstrationBackend
from pedagogy.agents.explanations import filter_explanation, probe_styles
from pedagogy.agents.intervention import build_policy
from pedagogy.backends.base import (
    Backend,
    ContinuesTexts,
    HasTokenizer,
    Scores,
    WritesTextActions,
    lacks,
    require,
)
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.base import Problem
from pedagogy.errors import ConfigError

CAPABILITIES = (Scores, ContinuesTexts, HasTokenizer, WritesTextActions)
OFFERS = {
    "transformers": {Scores, ContinuesTexts, HasTokenizer, WritesTextActions},
    "scripted": {WritesTextActions},
    "demonstration": {WritesTextActions},
    "litellm": set(),
    "replay": {WritesTextActions},
}
"""What each registered backend offers; a change here is a change users see."""


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from pedagogy.training.tiny import build_tiny_student

    return build_tiny_student(tmp_path_factory.mktemp("tiny") / "m", seed=0)


@pytest.fixture(scope="module")
def backends(tiny_dir):
    from pedagogy.backends.litellm import LiteLLMBackend
    from pedagogy.backends.transformers import TransformersBackend
    from pedagogy.graphs.replay import ReplayBackend

    return {
        "transformers": TransformersBackend(str(tiny_dir), threads=None),
        "scripted": ScriptedBackend(),
        "demonstration": DemonstrationBackend(),
        "litellm": LiteLLMBackend("openai/local", api_base="http://127.0.0.1:9"),
        "replay": ReplayBackend([]),
    }


@pytest.mark.parametrize("kind", sorted(OFFERS))
def test_each_backend_offers_what_it_is_known_to(backends, kind):
    backend = backends[kind]
    assert isinstance(backend, Backend)
    assert {c for c in CAPABILITIES if isinstance(backend, c)} == OFFERS[kind]


def _claimers(capability):
    return [kind for kind, offers in sorted(OFFERS.items()) if capability in offers]


PROMPTS = ["3+4=", "12-5="]


@pytest.mark.parametrize("kind", _claimers(Scores))
def test_scores_conformance(backends, kind):
    backend = backends[kind]
    scores = backend.score(PROMPTS, ["7", "7"])
    assert len(scores) == 2
    assert all(isinstance(s, float) and math.isfinite(s) and s <= 0 for s in scores)
    assert backend.score([], []) == []


@pytest.mark.parametrize("kind", _claimers(ContinuesTexts))
def test_continues_texts_conformance(backends, kind):
    backend = backends[kind]
    texts = backend.continue_texts(PROMPTS, 4)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert backend.continue_texts(PROMPTS[:1], 4) == texts[:1]  # greedy: batch-independent


@pytest.mark.parametrize("kind", _claimers(HasTokenizer))
def test_has_tokenizer_conformance(backends, kind):
    ids = backends[kind].tokenizer("3+4=", add_special_tokens=False)["input_ids"]
    assert ids and all(isinstance(i, int) for i in ids)


@pytest.mark.parametrize("kind", sorted(OFFERS))
def test_text_models_get_a_prefix_and_no_instructions_and_the_rest_are_told(backends, kind):
    actor = Actor(backends[kind])
    if WritesTextActions in OFFERS[kind]:
        assert backends[kind].text_actions is True
        assert (actor.ftp_mode, actor.instructions) == ("prefix", None)
    else:
        assert (actor.ftp_mode, actor.instructions) == ("prompt", ACT_INSTRUCTIONS)


def test_a_backends_name_decides_nothing():
    class NamedLikeALocalModel:
        name, model = "transformers", "impostor"

        async def generate(self, requests):
            return []

    class Declared(NamedLikeALocalModel):
        name = "my-text-model"
        text_actions = True

    assert Actor(NamedLikeALocalModel()).instructions == ACT_INSTRUCTIONS
    assert Actor(Declared()).instructions is None
    assert not isinstance(NamedLikeALocalModel(), Scores | ContinuesTexts | HasTokenizer)
    with pytest.warns(DeprecationWarning, match="no longer consulted.*text_actions = True"):
        from pedagogy.agents.acting import TEXT_BACKENDS  # the old name list, kept one release
    assert "transformers" in TEXT_BACKENDS


# --- a backend lacking a capability is told, in one line ----------------------------------------


def _one_line(error: pytest.ExceptionInfo) -> str:
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    ("capability", "what"),
    [
        (Scores, "cannot score text (no score method)"),
        (ContinuesTexts, "cannot continue text (no continue_texts method)"),
        (HasTokenizer, "has no tokenizer"),
        (WritesTextActions, "is no text model (no text_actions = True)"),
    ],
)
def test_require_names_the_backend_what_it_lacks_and_the_fix(backends, capability, what):
    with pytest.raises(ConfigError) as e:
        require(backends["litellm"], capability, "use a local model")
    assert _one_line(e) == f"backend 'litellm' {what}; use a local model"
    assert lacks(object(), capability) == f"backend 'object' {what}"
    require(backends["transformers"], capability, "unused")  # has it: no error


def test_agents_that_need_a_capability_name_the_backend_that_lacks_it(backends):
    problem = Problem("toy", "add", 0, "3+4=", "7")
    with pytest.raises(ConfigError) as e:
        probe_styles(backends["litellm"], [(problem, "S:3+4=7\nA:7")], ["worked", "concise"])
    assert _one_line(e).startswith("backend 'litellm' cannot score text (no score method); ")

    class ScoresOnly:
        name = "scores-only"

        def score(self, prompts, continuations):
            return [-1.0] * len(prompts)

    with pytest.raises(ConfigError) as e:
        filter_explanation(ScoresOnly(), "3+4=", "A:7", verify=bool, rewrite=True)
    assert _one_line(e).startswith(
        "backend 'scores-only' cannot continue text (no continue_texts method); "
    )
    assert "rewrite=False" in str(e.value)

    with pytest.raises(ConfigError) as e:
        build_policy("utility", student=backends["replay"])
    assert "student backend 'replay' has no score()" in _one_line(e)
