"""The LLM judge: its backend's settings on every call, k samples decided by majority, the votes
and their agreement stored, over real HTTP to the local OpenAI-compatible server."""

from __future__ import annotations

import random
import re

import pytest
from typer.testing import CliRunner

from pedagogy.agents.roles import Verifier, judge_vote
from pedagogy.backends.base import Completion
from pedagogy.backends.litellm import LiteLLMBackend
from pedagogy.cli import app
from pedagogy.config import config_from_dict, load_config
from pedagogy.domains.reasoning_gym import ReasoningGymDomain
from pedagogy.errors import ConfigError
from pedagogy.memory.store import open_store
from pedagogy.runner import build_domain_from
from pedagogy.testing import OpenAICompatServer


@pytest.fixture(scope="module")
def domain():
    return ReasoningGymDomain(skills=["chain_sum"], compact=True)


def by_seed(votes: dict[int, str]):
    """A judge that answers each sample by its seed: mixed yes and no on the same question."""

    def respond(body: dict) -> str:
        return votes[body["seed"]]

    return respond


async def test_k_samples_decide_by_majority_with_the_backends_settings(domain):
    problem = domain.generate(random.Random(0), 1, "chain_sum", 0)[0]
    with OpenAICompatServer(by_seed({0: "yes", 1: "no", 2: "Yes, it is correct."})) as srv:
        judge = LiteLLMBackend("openai/judge", api_base=srv.base_url)
        verifier = Verifier(domain, judge, max_tokens=7, temperature=0.7, judge_samples=3)
        verdict, turn = await verifier.verify(problem, "A:whatever", 2)
        bodies = list(srv.requests)
    assert [(b["max_tokens"], b["temperature"]) for b in bodies] == [(7, 0.7)] * 3
    assert sorted(b["seed"] for b in bodies) == [0, 1, 2]
    assert verdict.correct and verdict.verifier == "llm_judge"
    assert verdict.detail == "judge: 2 of 3 say yes (agreement 0.67)"
    judged = turn.detail["judge"]
    assert judged["votes"] == ["yes", "no", "yes"] and judged["yes"] == 2
    assert judged["agreement"] == pytest.approx(2 / 3, abs=1e-4) and judged["samples"] == 3
    assert judged["responses"][1] == "no"
    # One turn for the three calls: a sample of the majority, the samples' tokens summed.
    assert turn.agent == "verifier" and turn.seq == 2 and turn.response.lower().startswith("yes")
    assert turn.prompt_tokens == 3 * len(bodies[0]["messages"][0]["content"].split())


async def test_a_minority_yes_and_an_unclear_sample_are_not_correct(domain):
    problem = domain.generate(random.Random(1), 1, "chain_sum", 0)[0]
    with OpenAICompatServer(by_seed({0: "no", 1: "yes", 2: "hard to say"})) as srv:
        judge = LiteLLMBackend("openai/judge", api_base=srv.base_url)
        verifier = Verifier(domain, judge, max_tokens=5, temperature=1.0, judge_samples=3)
        verdict, turn = await verifier.verify(problem, f"A:{problem.answer}", 1)
    assert not verdict.correct and verdict.score == 0.0
    assert turn.detail["judge"]["votes"] == ["no", "yes", "invalid"]
    assert turn.detail["judge"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert turn.response == "no"  # what a replay of the one stored turn decides again


async def test_one_sample_sends_the_configured_settings_not_four_tokens(domain):
    problem = domain.generate(random.Random(2), 1, "chain_sum", 0)[0]
    with OpenAICompatServer(lambda body: "No.") as srv:
        judge = LiteLLMBackend("openai/judge", api_base=srv.base_url)
        verdict, turn = await Verifier(domain, judge, max_tokens=32).verify(problem, "A:1", 0)
        (body,) = srv.requests
    assert body["max_tokens"] == 32 and body["temperature"] == 0.0 and "seed" not in body
    assert not verdict.correct and turn.detail["judge"]["votes"] == ["no"]


def test_votes_are_read_from_the_first_word_or_a_lone_yes_or_no():
    def vote(text: str, error: str | None = None) -> str:
        return judge_vote(Completion(text=text, model="m", error=error))

    assert [vote("Yes."), vote("no"), vote("**Yes**"), vote("The answer is correct: yes")] == [
        "yes",
        "no",
        "yes",
        "yes",
    ]
    assert vote("yes or no?").startswith("yes")  # the first word decides
    assert [vote("either yes and no"), vote("unsure"), vote("", "timeout")] == [
        "invalid",
        "invalid",
        "error",
    ]


def test_judge_samples_must_be_odd_and_sampled(domain):
    base = {"kind": "llm_judge", "backend": {"kind": "litellm", "model": "openai/j"}}
    with pytest.raises(ConfigError, match="judge_samples 4 is even.*use 3 or 5"):
        load_config(None).with_overrides({"verifier": {**base, "judge_samples": 4}})
    with pytest.raises(ConfigError, match="judge_samples 3 at temperature 0"):
        load_config(None).with_overrides({"verifier": {**base, "judge_samples": 3}})
    hot = {**base, "backend": {**base["backend"], "temperature": 0.7}, "judge_samples": 3}
    assert load_config(None).with_overrides({"verifier": hot}).verifier.judge_samples == 3
    with pytest.raises(ConfigError, match="even"):
        Verifier(domain, None, judge_samples=2)


def _fair_judge(body: dict) -> str:
    """Right on samples 0 and 2 and wrong on sample 1: the majority is always right."""
    text = body["messages"][0]["content"]
    if "Reference answer: " not in text:
        return "ok"  # the startup check's test request
    reference = re.search(r"Reference answer: (.*)", text).group(1).strip()
    response = text.split("Student response: ", 1)[1].rsplit("\nIs the student's", 1)[0]
    answer = re.findall(r"A:\s*(\S+)", response)
    right = bool(answer) and answer[-1] == reference
    return "yes" if right == (body["seed"] != 1) else "no"


@pytest.mark.slow
def test_a_run_with_a_majority_judge_stores_votes_and_replays(quick_config, tmp_path):
    with OpenAICompatServer(_fair_judge) as srv:
        verifier = {
            "kind": "llm_judge",
            "judge_samples": 3,
            "backend": {
                "kind": "litellm",
                "model": "openai/judge",
                "api_base": srv.base_url,
                "max_tokens": 6,
                "temperature": 0.8,
            },
        }
        config = quick_config(rounds=1, episodes={"per_round": 16}, verifier=verifier)
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--quiet"])
        assert result.exit_code == 0, result.output
        bodies = [b for b in srv.requests if "Reference answer" in b["messages"][0]["content"]]
    assert bodies and {(b["max_tokens"], b["temperature"]) for b in bodies} == {(6, 0.8)}
    store = open_store(str(tmp_path / "work" / "pedagogy.db"))
    (run,) = store.list_runs()
    episodes = store.episodes(run.id, with_turns=True)
    judged = [t for e in episodes for t in e.turns if t.agent == "verifier"]
    assert len(bodies) == 3 * len(judged)
    domain = build_domain_from(config_from_dict(run.config, "run"))
    problems = store.get_problems([e.problem_id for e in episodes])
    for episode in episodes:
        turns = {t.id: t for t in episode.turns}
        judges = [t for t in sorted(episode.turns, key=lambda t: t.seq) if t.agent == "verifier"]
        for verdict, judge in zip(episode.verdicts, judges):
            votes = judge.detail["judge"]["votes"]
            assert len(votes) == 3 and votes[1] != votes[0] == votes[2]
            assert judge.detail["judge"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
            assert verdict.detail.startswith("judge: ") and "(agreement 0.67)" in verdict.detail
            # the majority is right: the verdict is the domain's own
            problem = problems[episode.problem_id]
            assert (
                verdict.correct == domain.verify(problem, turns[verdict.turn_id].response).correct
            )
    replay = CliRunner().invoke(app, ["replay", run.id, "--db", store.url, "--json"])
    assert replay.exit_code == 0, replay.output
    assert '"model_calls": 0' in replay.output and '"mismatches": 0' in replay.output
