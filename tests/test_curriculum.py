import json

import pytest

from pedagogy.agents.curriculum import (
    BanditSampler,
    CurriculumSampler,
    UniformSampler,
    build_sampler,
)
from pedagogy.errors import ConfigError, UnknownNameError

ARMS = ["s@0", "s@1", "s@2"]


@pytest.mark.parametrize("name", ["uniform", "bandit"])
def test_sampler_conformance(name):
    s = build_sampler(name, ARMS, seed=3)
    assert isinstance(s, CurriculumSampler)
    probs = s.probabilities()
    assert set(probs) == set(ARMS) and abs(sum(probs.values()) - 1) < 1e-9
    draws = s.sample(50)
    assert len(draws) == 50 and set(draws) <= set(ARMS)
    s.update({"s@0": (5, 10)})
    state = json.loads(json.dumps(s.state()))  # JSON round trip, as stored
    twin = build_sampler(name, ARMS, seed=999)
    twin.load_state(state)
    assert twin.sample(20) == s.sample(20)
    assert twin.probabilities() == s.probabilities()


def test_bandit_prefers_arm_with_learning_progress():
    b = BanditSampler(ARMS, seed=0, temperature=0.1, alpha=0.5, explore=0.0)
    rewards = b.update({"s@0": (9, 10), "s@1": (0, 10), "s@2": (0, 10)})
    assert rewards == {"s@0": 0.9, "s@1": 0.0, "s@2": 0.0}
    probs = b.probabilities()
    assert probs["s@0"] > 0.9
    # progress stalls: value decays, the others catch up
    b.update({"s@0": (9, 10)})
    assert b.values["s@0"] == pytest.approx(0.225)


def test_bandit_explore_floor():
    b = BanditSampler(ARMS, seed=0, temperature=0.01, explore=0.3)
    b.update({"s@0": (10, 10)})
    assert min(b.probabilities().values()) >= 0.1 - 1e-12


def test_errors_name_the_fix():
    with pytest.raises(UnknownNameError, match="choose one of: bandit, uniform"):
        build_sampler("nope", ARMS, 0)
    with pytest.raises(ConfigError, match="no arms"):
        UniformSampler([], 0)
