"""Typed options: each kind's options are checked against what builds it when a config loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pedagogy.config import load_config
from pedagogy.domains.registry import _REGISTRY as DOMAINS
from pedagogy.domains.registry import register_domain
from pedagogy.errors import ConfigError
from pedagogy.options import OptionsSpec, options_model

EXAMPLES = sorted(Path(__file__).resolve().parents[1].joinpath("examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def base():
    return load_config(None)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ({"student": {"options": {"num_threads": 2}}}, "student.options.num_threads"),
        ({"student": {"options": {"threads": "two"}}}, "student.options.threads"),
        ({"teacher": {"options": {"temperature": 1}}}, "it takes no options"),
        ({"domain": {"options": {"skils": ["chain_sum"]}}}, "domain.options.skils"),
        (
            {"episodes": {"intervention": "utility", "intervention_options": {"targte": "x"}}},
            "episodes.intervention_options.targte",
        ),
        ({"agent": {"tool_options": {"retrieve": {"k": "many"}}}}, "retrieve.k"),
        ({"agent": {"tool_options": {"python": {"wall": 3}}}}, "python.wall"),
        ({"domain": {"name": "jsonl", "options": {}}}, "needs option 'path'"),
    ],
)
def test_a_bad_option_is_caught_when_the_config_loads(base, override, expected):
    with pytest.raises(ConfigError) as err:
        base.with_overrides(override)
    assert expected in str(err.value)


def test_every_bad_option_is_listed_at_once(base):
    with pytest.raises(ConfigError) as err:
        base.with_overrides(
            {"student": {"options": {"num_threads": 2}}, "domain": {"options": {"skils": []}}}
        )
    text = str(err.value)
    assert text.startswith("overrides: ") or "2 problems" in text
    assert "num_threads" in text and "skils" in text and "its options:" in text


def test_good_options_pass(base):
    cfg = base.with_overrides(
        {
            "student": {"options": {"threads": 2, "max_batch_size": 64, "tiny": {}}},
            "episodes": {"intervention": "random", "intervention_options": {"seed": 3}},
            "agent": {"tool_options": {"retrieve": {"k": 1}, "python": {"wall_s": 2.0}}},
        }
    )
    assert cfg.student.options["threads"] == 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_examples_options_fit(path):
    load_config(path)


def test_a_custom_domain_is_checked_by_its_factory_signature(base):
    def make(size: int = 3, *, label: str = "x"):
        raise AssertionError("not built when a config loads")

    register_domain("options-test-domain", make, replace=True)
    try:
        with pytest.raises(ConfigError, match="has no option 'sise'"):
            base.with_overrides({"domain": {"name": "options-test-domain", "options": {"sise": 4}}})
        with pytest.raises(ConfigError, match="size"):
            base.with_overrides(
                {"domain": {"name": "options-test-domain", "options": {"size": "big"}}}
            )
        cfg = base.with_overrides(
            {"domain": {"name": "options-test-domain", "options": {"size": 4}}}
        )
        assert cfg.domain.options == {"size": 4}
    finally:
        DOMAINS.pop("options-test-domain", None)


def test_a_factory_taking_any_options_is_not_checked():
    def anything(**options):
        return options

    assert options_model(OptionsSpec(anything)) is None
