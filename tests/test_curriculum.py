import json

import pytest

from pedagogy.agents.curriculum import (
    SAMPLERS,
    BanditSampler,
    CurriculumSampler,
    FixedOrderSampler,
    UniformSampler,
    ZPDSampler,
    build_sampler,
)
from pedagogy.agents.skill_graph import GatedSampler, SkillGraph
from pedagogy.config import config_from_dict
from pedagogy.errors import ConfigError, UnknownNameError

ARMS = ["s@0", "s@1", "s@2"]

KINDS = [
    pytest.param("uniform", {}, id="uniform"),
    pytest.param("fixed_order", {"explore": 0.1}, id="fixed_order"),
    pytest.param("bandit", {}, id="bandit-progress"),
    pytest.param("bandit", {"reward": "advantage"}, id="bandit-advantage"),
    pytest.param("zpd", {}, id="zpd"),
    pytest.param("uniform", {"gated": True}, id="gated-uniform"),
    pytest.param("fixed_order", {"gated": True, "unlock_at": 0.5}, id="gated-fixed_order"),
    pytest.param("bandit", {"gated": True, "reward": "advantage"}, id="gated-bandit"),
    pytest.param("zpd", {"gated": True, "prerequisites": {"s@2": ["s@0"]}}, id="gated-zpd"),
]


def test_every_sampler_kind_is_covered():
    assert {p.values[0] for p in KINDS} == set(SAMPLERS)


@pytest.mark.parametrize("name, options", KINDS)
def test_sampler_conformance(name, options):
    s = build_sampler(name, ARMS, seed=3, **options)
    assert isinstance(s, CurriculumSampler)

    def check_probs():
        probs = s.probabilities()
        assert set(probs) == set(ARMS)
        assert all(p >= 0 for p in probs.values()) and sum(probs.values()) == pytest.approx(1)
        return probs

    check_probs()
    draws = s.sample(50)
    assert len(draws) == 50 and set(draws) <= set(ARMS)
    assert s.sample(0) == []

    rewards = s.update({"s@0": (5, 10), "s@1": (9, 10), "unknown@9": (1, 1), "s@2": (0, 0)})
    assert set(rewards) == {"s@0", "s@1"}  # known arms that were attempted
    assert all(isinstance(r, float) for r in rewards.values())
    s.update({"s@0": (8, 10)})
    check_probs()

    state = json.loads(json.dumps(s.state()))  # JSON round trip, as stored
    twin = build_sampler(name, ARMS, seed=999, **options)
    twin.load_state(state)
    assert twin.probabilities() == s.probabilities()
    assert twin.sample(20) == s.sample(20)
    # ... and they keep agreeing after further learning
    assert twin.update({"s@1": (3, 4)}) == s.update({"s@1": (3, 4)})
    assert twin.probabilities() == s.probabilities()
    assert twin.sample(20) == s.sample(20)
    assert twin.state() == s.state()


@pytest.mark.parametrize("name, options", KINDS)
def test_state_of_another_kind_is_refused(name, options):
    other = "zpd" if name == "uniform" else "uniform"
    s = build_sampler(name, ARMS, seed=0, **options)
    with pytest.raises(ConfigError, match="same curriculum.sampler"):
        s.load_state(build_sampler(other, ARMS, seed=0).state())


# -- fixed_order --------------------------------------------------------------------------------


def test_fixed_order_moves_on_only_after_threshold():
    s = FixedOrderSampler(ARMS, seed=0, threshold=0.8)
    assert s.probabilities() == {"s@0": 1.0, "s@1": 0.0, "s@2": 0.0}
    assert set(s.sample(20)) == {"s@0"}
    assert s.update({"s@0": (7, 10)}) == {"s@0": 0.0}  # 0.7 < 0.8: stay
    assert s.current() == "s@0"
    s.update({"s@1": (10, 10)})  # another arm passing does not move the order
    assert s.current() == "s@0"
    assert s.update({"s@0": (8, 10)}) == {"s@0": 1.0}  # reaches the threshold: next arm
    assert s.current() == "s@1"
    assert set(s.sample(20)) == {"s@1"}
    s.update({"s@1": (9, 10), "s@2": (10, 10)})  # both pass in one update: past the end
    assert s.current() is None
    assert s.probabilities() == pytest.approx({a: 1 / 3 for a in ARMS})  # review


def test_fixed_order_explore_share():
    s = FixedOrderSampler(ARMS, seed=0, explore=0.2)
    assert s.probabilities() == pytest.approx({"s@0": 0.8, "s@1": 0.1, "s@2": 0.1})


# -- bandit -------------------------------------------------------------------------------------


def test_bandit_prefers_arm_with_learning_progress():
    b = BanditSampler(ARMS, seed=0, temperature=0.1, alpha=0.5, explore=0.0)
    rewards = b.update({"s@0": (9, 10), "s@1": (0, 10), "s@2": (0, 10)})
    assert rewards == {"s@0": 0.9, "s@1": 0.0, "s@2": 0.0}
    probs = b.probabilities()
    assert probs["s@0"] > 0.9
    # progress stalls: value decays, the others catch up
    b.update({"s@0": (9, 10)})
    assert b.values["s@0"] == pytest.approx(0.225)


def test_bandit_progress_follows_the_arm_whose_rate_changes():
    b = build_sampler("bandit", ARMS, 0, temperature=0.1, alpha=0.5, explore=0.0)
    b.update({a: (5, 10) for a in ARMS})
    for correct in (6, 8, 10, 6, 9):  # s@1 keeps moving, the others are flat
        b.update({"s@0": (5, 10), "s@1": (correct, 10), "s@2": (5, 10)})
    probs = b.probabilities()
    assert max(probs, key=probs.get) == "s@1" and probs["s@1"] > 0.8
    draws = b.sample(200)
    assert draws.count("s@1") > 150


def test_bandit_advantage_reward_is_mean_absolute_advantage():
    b = BanditSampler(ARMS, seed=0, alpha=1.0, reward="advantage")
    # first update: baseline = the batch's own rate, 2 p (1 - p)
    assert b.update({"s@0": (5, 10), "s@1": (10, 10), "s@2": (0, 10)}) == pytest.approx(
        {"s@0": 0.5, "s@1": 0.0, "s@2": 0.0}
    )
    # then the baseline is the running mean over earlier attempts: p (1 - b) + (1 - p) b
    assert b.update({"s@0": (10, 10), "s@1": (5, 10)}) == pytest.approx({"s@0": 0.5, "s@1": 0.5})
    assert b.update({"s@0": (9, 10)})["s@0"] == pytest.approx(0.9 * 0.25 + 0.1 * 0.75)
    assert b.values["s@0"] == pytest.approx(0.3)  # alpha = 1: Q is the last reward
    # an arm always solved earns nothing, an uncertain one is preferred
    b.update({"s@1": (10, 10)})
    probs = b.probabilities()
    assert probs["s@0"] > probs["s@2"]


def test_bandit_explore_floor():
    b = BanditSampler(ARMS, seed=0, temperature=0.01, explore=0.3)
    b.update({"s@0": (10, 10)})
    assert min(b.probabilities().values()) >= 0.1 - 1e-12


def test_bandit_loads_state_stored_before_rates_existed():
    b = BanditSampler(ARMS, seed=0)
    old = {
        "kind": "bandit",
        "values": {"s@0": 0.4},
        "last_rate": {"s@0": 0.5},
        "rng": b.state()["rng"],
    }
    b.load_state(old)
    assert b.last_rate == {"s@0": 0.5}
    assert b.update({"s@0": (7, 10)}) == pytest.approx({"s@0": 0.2})


# -- zpd ----------------------------------------------------------------------------------------


def test_zpd_prefers_the_arm_at_half_success():
    z = ZPDSampler(ARMS, seed=0, explore=0.0)
    assert z.probabilities() == pytest.approx({a: 1 / 3 for a in ARMS})  # untried: prior
    rewards = z.update({"s@0": (0, 10), "s@1": (5, 10), "s@2": (10, 10)})
    assert rewards == {"s@0": 0.0, "s@1": 1.0, "s@2": 0.0}
    assert z.probabilities() == {"s@0": 0.0, "s@1": 1.0, "s@2": 0.0}
    assert set(z.sample(30)) == {"s@1"}


def test_zpd_weight_peaks_at_target_and_respects_band():
    z = ZPDSampler(ARMS, seed=0, band=(0.2, 0.8), target=0.5, explore=0.3)
    assert z.weight(0.5) == 1.0
    assert z.weight(0.2) == pytest.approx(0.5) and z.weight(0.8) == pytest.approx(0.5)
    assert z.weight(0.35) == pytest.approx(0.75)
    assert z.weight(0.1) == 0.0 and z.weight(0.9) == 0.0
    z.update({"s@0": (0, 10), "s@1": (6, 10), "s@2": (10, 10)})
    probs = z.probabilities()
    assert probs["s@0"] == pytest.approx(0.1) and probs["s@1"] == pytest.approx(0.8)
    # no arm in the band: uniform, not a division by zero
    z.update({"s@1": (10, 10)})
    assert z.probabilities() == pytest.approx({a: 1 / 3 for a in ARMS})


def test_zpd_prior_for_untried_arms():
    z = ZPDSampler(ARMS, seed=0, prior=0.0, explore=0.0)
    z.update({"s@0": (4, 10)})
    assert z.probabilities()["s@0"] == 1.0


# -- skill graph --------------------------------------------------------------------------------


def test_skill_graph_unlocks_level_after_prerequisite_passes():
    s = build_sampler("uniform", ARMS, 0, gated=True, unlock_at=0.6)
    assert isinstance(s, GatedSampler)
    assert s.unlocked() == ["s@0"]
    assert s.probabilities() == {"s@0": 1.0, "s@1": 0.0, "s@2": 0.0}
    assert set(s.sample(30)) == {"s@0"}
    s.update({"s@0": (5, 10)})  # 0.5 < 0.6
    assert s.unlocked() == ["s@0"] and s.events == []
    s.update({"s@0": (6, 10)})  # reaches unlock_at in the second update
    assert s.unlocked() == ["s@0", "s@1"]
    assert s.events == [{"update": 2, "arm": "s@1", "prerequisites": {"s@0": 0.6}}]
    assert s.probabilities() == {"s@0": 0.5, "s@1": 0.5, "s@2": 0.0}
    assert "s@2" not in s.sample(50)
    s.update({"s@0": (0, 10)})  # unlocking is permanent
    assert s.unlocked() == ["s@0", "s@1"]
    state = json.loads(json.dumps(s.state()))
    assert state["graph"]["events"] == s.events and state["graph"]["unlocked"]["s@1"] == 2


def test_skill_graph_extra_prerequisites_and_cascade():
    arms = ["add@0", "add@1", "carry@0", "carry@1"]
    g = SkillGraph(arms, {"carry@0": ["add@1"]}, unlock_at=0.6)
    assert g.unlocked() == ["add@0"]
    assert g.requires("carry@0") == ["add@1"] and g.requires("carry@1") == ["carry@0"]
    assert g.observe({"add@0": (1, 1), "add@1": (1, 1), "carry@0": (1, 1)}) == [
        "add@1",
        "carry@0",
        "carry@1",
    ]
    assert [e["arm"] for e in g.events] == ["add@1", "carry@0", "carry@1"]


def test_skill_graph_levels_require_the_next_lower_present_level():
    g = SkillGraph(["s@0", "s@2", "t@3"])
    assert g.requires("s@2") == ["s@0"] and g.unlocked() == ["s@0", "t@3"]


def test_skill_graph_without_the_level_chain_gates_only_the_given_prerequisites():
    arms = [f"s@{i}" for i in range(5)]
    g = SkillGraph(arms, {"s@4": ["s@2", "s@3"]}, unlock_at=0.5, chain=False)
    assert g.unlocked() == arms[:4]  # every level but the composite one is a root
    g.observe({"s@2": (6, 10), "s@3": (4, 10)})
    assert not g.is_unlocked("s@4")
    assert g.observe({"s@3": (5, 10)}) == ["s@4"]
    assert g.events[-1]["prerequisites"] == {"s@2": 0.6, "s@3": 0.5}
    assert SkillGraph(arms).requires("s@4") == ["s@3"]  # the default chain
    with pytest.raises(ConfigError, match="chain must be true or false"):
        SkillGraph(arms, chain="no")


def test_gated_sampler_keeps_inner_preferences_among_unlocked_arms():
    s = build_sampler("bandit", ARMS, 0, gated=True, temperature=0.1, explore=0.0, unlock_at=0.5)
    s.update({"s@0": (5, 10)})
    s.update({"s@0": (5, 10), "s@1": (4, 10)})  # s@1 unlocked, 0.4 < 0.5 keeps s@2 locked
    inner = s.inner.probabilities()
    probs = s.probabilities()
    assert probs["s@2"] == 0.0
    assert probs["s@1"] / probs["s@0"] == pytest.approx(inner["s@1"] / inner["s@0"])
    assert s.values == s.inner.values


@pytest.mark.parametrize(
    "prereqs, match",
    [
        ({"s@0": ["s@2"]}, "cycle at arm 's@0': s@0 -> s@1 -> s@2 -> s@0; remove one"),
        ({"s@1": ["s@1"]}, "cycle at arm 's@1': s@1 -> s@1; remove one"),
        ({"s@9": ["s@0"]}, "unknown arm 's@9' in curriculum.prerequisites; fix its name"),
        ({"s@1": ["x@0"]}, "unknown arm 'x@0', a prerequisite of 's@1'"),
        ({"s@1": "s@0"}, r"prerequisites\['s@1'\] is a string; write it as a list"),
    ],
)
def test_skill_graph_bad_prerequisites_name_the_arm_and_fix(prereqs, match):
    with pytest.raises(ConfigError, match=match):
        build_sampler("uniform", ARMS, 0, gated=True, prerequisites=prereqs)


def test_skill_graph_bad_arm_name():
    with pytest.raises(ConfigError, match="bad arm 'nolevel'"):
        SkillGraph(["nolevel"])


# -- build_sampler and errors -------------------------------------------------------------------


def test_build_sampler_existing_calls_keep_working():
    assert isinstance(build_sampler("uniform", ARMS, 0), UniformSampler)
    b = build_sampler("bandit", ARMS, 0, temperature=0.2, alpha=0.3, explore=0.05)
    assert isinstance(b, BanditSampler) and (b.temperature, b.alpha, b.explore) == (0.2, 0.3, 0.05)
    assert b.reward == "progress"


def test_errors_name_the_fix():
    with pytest.raises(UnknownNameError, match="choose one of: bandit, fixed_order, uniform, zpd"):
        build_sampler("nope", ARMS, 0)
    with pytest.raises(ConfigError, match="no arms"):
        UniformSampler([], 0)
    with pytest.raises(ConfigError, match="list each 'skill@level' arm once"):
        UniformSampler(["s@0", "s@0"], 0)


@pytest.mark.parametrize(
    "name, options, match",
    [
        (
            "uniform",
            {"temperature": 0.1},
            "'temperature' does not apply to curriculum sampler 'uniform'",
        ),
        ("zpd", {"threshold": 0.5}, r"its options: band, target, prior, explore"),
        ("bandit", {"temperature": 0}, r"temperature=0 is out of range; choose 0 < temperature"),
        ("bandit", {"alpha": 1.5}, r"alpha=1.5 is out of range"),
        ("bandit", {"explore": -0.1}, r"explore=-0.1 is out of range; choose 0 <= explore <= 1"),
        (
            "bandit",
            {"reward": "gain"},
            "reward='gain' is unknown; choose 'progress' or 'advantage'",
        ),
        ("fixed_order", {"threshold": 2}, "threshold=2 is out of range"),
        ("zpd", {"band": (0.8, 0.2)}, r"band=\[0.8, 0.2\] is empty"),
        ("zpd", {"band": 0.5}, "not a pair"),
        ("zpd", {"target": 0.9}, "target=0.9 is outside band"),
        ("uniform", {"gated": True, "unlock_at": 1.2}, "unlock_at=1.2 is out of range"),
        ("uniform", {"prerequisites": {"s@1": ["s@0"]}}, "pass gated=True"),
    ],
)
def test_bad_options_name_the_value_and_fix(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_sampler(name, ARMS, 0, **options)


# -- config -------------------------------------------------------------------------------------


def test_config_defaults_and_new_fields():
    c = config_from_dict({}).curriculum
    assert (c.sampler, c.temperature, c.alpha, c.explore, c.arms) == ("bandit", 0.1, 0.5, 0.2, None)
    assert (c.reward, c.threshold, c.band, c.target) == ("progress", 0.8, (0.2, 0.8), 0.5)
    assert (c.skill_graph, c.prerequisites, c.unlock_at) == (False, None, 0.6)
    c = config_from_dict(
        {
            "curriculum": {
                "sampler": "zpd",
                "band": [0.1, 0.9],
                "target": 0.4,
                "skill_graph": True,
                "prerequisites": {"s@1": ["t@0"]},
                "unlock_at": 0.7,
                "reward": "advantage",
            }
        }
    ).curriculum
    assert c.band == (0.1, 0.9) and c.prerequisites == {"s@1": ["t@0"]}


@pytest.mark.parametrize(
    "section, match",
    [
        ({"sampler": "greedy"}, "curriculum.sampler"),
        ({"reward": "gain"}, "curriculum.reward"),
        ({"threshold": 1.5}, "curriculum.threshold"),
        ({"unlock_at": -0.1}, "curriculum.unlock_at"),
        ({"band": [0.8, 0.2]}, r"band \[0.8, 0.2\] must be \[low, high\]"),
        ({"band": [0.2, 0.8, 0.9]}, "curriculum.band"),
        ({"target": 0.9}, r"target 0.9 is outside band \[0.2, 0.8\]"),
        ({"prerequisites": {"s@1": ["s"]}}, "bad arm 's'"),
        ({"prerequisites": ["s@1"]}, "curriculum.prerequisites"),
        ({"skill_graf": True}, "curriculum.skill_graf: unknown key"),
    ],
)
def test_config_validation_of_curriculum_fields(section, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict({"curriculum": section})


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("skill_graph", [False, True])
def test_config_options_build_every_sampler(sampler, skill_graph):
    """What the loop's Session.sampler passes: each kind's config options are accepted."""
    from pedagogy.graphs.loop import Session

    cfg = config_from_dict(
        {
            "curriculum": {
                "sampler": sampler,
                "skill_graph": skill_graph,
                "prerequisites": {"s@2": ["s@0"]},
            }
        }
    )
    session = Session.__new__(Session)  # only config and arms are needed to build a sampler
    session.config, session.arms = cfg, ARMS
    s = session.sampler(None)
    assert isinstance(s, GatedSampler) == skill_graph
    s.update({"s@0": (7, 10)})
    resumed = session.sampler(json.loads(json.dumps(s.state())))
    assert resumed.sample(10) == s.sample(10)
