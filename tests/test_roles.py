"""The LLM options of the generator and verifier, with scripted backends."""

import random

import pytest

from pedagogy.agents.roles import Generator, Verifier
from pedagogy.backends.scripted import ScriptedBackend
from pedagogy.domains.reasoning_gym import ReasoningGymDomain
from pedagogy.errors import ConfigError


@pytest.fixture(scope="module")
def domain():
    return ReasoningGymDomain(skills=["chain_sum"], compact=True)


async def test_llm_generator_poses_parsed_problems_and_records_turns(domain):
    backend = ScriptedBackend(["3+4=\nA:7", "garbage", "10-2=\nA:8"])
    gen = Generator(domain, backend)
    problems = await gen.pose(random.Random(0), 3, "chain_sum", 1)
    assert [(p.prompt, p.answer, p.source, p.level) for p in problems] == [
        ("3+4=", "7", "generator", 1),
        ("10-2=", "8", "generator", 1),
    ]
    assert len(gen.turns) == 3 and all(t.agent == "generator" for t in gen.turns)


async def test_llm_generator_with_nothing_usable_says_what_to_do(domain):
    gen = Generator(domain, ScriptedBackend(["nothing"]))
    with pytest.raises(ConfigError, match="generator.kind: procedural"):
        await gen.pose(random.Random(0), 1, "chain_sum", 0)


async def test_llm_judge(domain):
    problem = domain.generate(random.Random(0), 1, "chain_sum", 0)[0]
    judge = ScriptedBackend(["yes", "no"])
    v = Verifier(domain, judge)
    ok, turn = await v.verify(problem, "A:whatever", 3)
    assert ok.correct and ok.verifier == "llm_judge" and turn.agent == "verifier" and turn.seq == 3
    bad, _ = await v.verify(problem, f"A:{problem.answer}", 4)
    assert not bad.correct
    assert "Reference answer" in judge.calls[0].messages[0]["content"]


async def test_programmatic_verifier_makes_no_call(domain):
    problem = domain.generate(random.Random(1), 1, "chain_sum", 0)[0]
    verdict, turn = await Verifier(domain).verify(problem, f"A:{problem.answer}", 0)
    assert verdict.correct and turn is None
